#![no_main]
//! cargo fuzz run config --sanitizer none (see scripts/fuzz.sh); the body is ferry_fuzz::config.
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_fuzz::config(data));
