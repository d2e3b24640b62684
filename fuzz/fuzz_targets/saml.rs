#![no_main]
//! cargo fuzz run saml --sanitizer none (see scripts/fuzz.sh); the body is ferry_fuzz::saml.
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_fuzz::saml(data));
