//! Every decoder facing the network (`telemetry::decode::decode_untrusted`) on fuzzed input:
//! it must never panic, hang or allocate without bound.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = telemetry::decode::decode_untrusted(data);
});
