#![no_main]
//! cargo fuzz run claims --sanitizer none (see scripts/fuzz.sh); the body is ferry_fuzz::claims.
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_fuzz::claims(data));
