#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover::fuzzing::catalog_file(data));
