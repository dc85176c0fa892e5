//! No decoder facing the network panics: random bytes, and valid OTLP messages (protobuf,
//! JSON, gzip) with bytes flipped, cut or inserted, through `telemetry::decode`. A seeded,
//! bounded run of the same function the fuzz target drives (`cargo fuzz run decode` in
//! `telemetry/fuzz`), so CI keeps the property without a fuzzer.

use std::io::Write;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use telemetry::decode::decode_untrusted;

fn seeds() -> Vec<Vec<u8>> {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    name: "GET /api/v1/patients".into(),
                    attributes: vec![KeyValue {
                        key: "http.route".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("/x".into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let protobuf = request.encode_to_vec();
    let json = serde_json::to_vec(&request).unwrap();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&protobuf).unwrap();
    let profile = b"{\"service\":\"api\",\"labels\":[],\"from\":1,\"until\":2}\n\x1f\x8b".to_vec();
    vec![
        protobuf,
        json,
        gzip.finish().unwrap(),
        profile,
        b"api{instance=a,kind=cpu}".to_vec(),
    ]
}

#[test]
fn no_decoder_panics_on_random_or_mutated_input() {
    let mut rng = StdRng::seed_from_u64(0xF3E7_1517);
    let seeds = seeds();
    for seed in &seeds {
        assert!(
            decode_untrusted(seed) > 0,
            "a valid seed is accepted by some decoder"
        );
    }
    for round in 0..20_000 {
        let input: Vec<u8> = if round % 4 == 0 {
            let len = rng.random_range(0..512);
            (0..len).map(|_| rng.random()).collect()
        } else {
            let mut input = seeds[round % seeds.len()].clone();
            for _ in 0..rng.random_range(1..8) {
                match rng.random_range(0..3) {
                    0 if !input.is_empty() => {
                        let i = rng.random_range(0..input.len());
                        input[i] = rng.random();
                    }
                    1 if !input.is_empty() => {
                        let cut = rng.random_range(0..input.len());
                        input.truncate(cut);
                    }
                    _ => {
                        let i = rng.random_range(0..=input.len());
                        input.insert(i, rng.random());
                    }
                }
            }
            input
        };
        let _ = decode_untrusted(&input);
    }
}
