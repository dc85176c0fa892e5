//! Every decoder that faces the network, behind one function, for the fuzz target
//! (`fuzz/fuzz_targets/decode.rs`) and the no-panic test (`tests/decode_robustness.rs`): OTLP
//! protobuf and JSON export requests of the three signals, gzip bodies (with the inflation
//! bound), Pyroscope application names, profile records of the log, and pprof profiles.
//! None of them may panic or allocate without bound on any input.

use axum::http::{HeaderMap, HeaderValue, header};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::batch::Batch;
use crate::wal::{Lsn, Record, Signal};

/// Largest inflated body the fuzzed gzip path may produce (the receiver's bound is larger;
/// a small one keeps fuzzing fast while exercising the same check).
const FUZZ_INFLATE_LIMIT: usize = 1024 * 1024;

/// Feeds `data` to every untrusted-input decoder; returns how many accepted it (a value the
/// fuzzer cannot optimise away).
pub fn decode_untrusted(data: &[u8]) -> usize {
    let bytes = Bytes::copy_from_slice(data);
    let mut accepted = 0;
    accepted += usize::from(ExportTraceServiceRequest::decode(data).is_ok());
    accepted += usize::from(ExportMetricsServiceRequest::decode(data).is_ok());
    accepted += usize::from(ExportLogsServiceRequest::decode(data).is_ok());
    accepted += usize::from(serde_json::from_slice::<ExportTraceServiceRequest>(data).is_ok());
    accepted += usize::from(serde_json::from_slice::<ExportMetricsServiceRequest>(data).is_ok());
    accepted += usize::from(serde_json::from_slice::<ExportLogsServiceRequest>(data).is_ok());

    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    if let Ok(inflated) =
        crate::sources::otlp_http::decompress(&headers, bytes.clone(), FUZZ_INFLATE_LIMIT)
    {
        accepted += 1;
        accepted += usize::from(ExportTraceServiceRequest::decode(inflated).is_ok());
    }

    let text = String::from_utf8_lossy(data);
    accepted += usize::from(crate::sources::pyroscope::parse_name(Some(&text)).is_ok());

    for signal in [
        Signal::Traces,
        Signal::Metrics,
        Signal::Logs,
        Signal::Profiles,
    ] {
        let record = Record {
            lsn: Lsn(1),
            signal,
            payload: bytes.clone(),
        };
        accepted += usize::from(Batch::decode(&record).is_ok());
    }
    accepted +=
        usize::from(crate::sinks::profiles::pprof::decode(data, FUZZ_INFLATE_LIMIT).is_ok());
    accepted
}
