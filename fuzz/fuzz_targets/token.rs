#![no_main]
//! cargo fuzz run token --sanitizer none (see scripts/fuzz.sh); the body is ferry_fuzz::token.
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_fuzz::token(data));
