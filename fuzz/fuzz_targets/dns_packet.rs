#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover::fuzzing::dns_packet(data));
