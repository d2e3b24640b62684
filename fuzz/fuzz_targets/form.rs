#![no_main]
//! cargo fuzz run form --sanitizer none (see scripts/fuzz.sh); the body is ferry_fuzz::form.
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_fuzz::form(data));
