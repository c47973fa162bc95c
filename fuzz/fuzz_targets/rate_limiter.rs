#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tickwire_core::fuzzing::rate_limiter(data));
