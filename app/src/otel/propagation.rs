//! W3C trace context in and out: an incoming `traceparent` header becomes the parent of the
//! request's span; a job carries its producer's context in its payload, so the worker's span
//! continues the request's trace; a response names its trace.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use telemetry::catalogue::TraceRef;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// Whether `value` is a `traceparent` as W3C Trace Context writes it: version, 32 and 16
/// lower-case hex digits, flags. The SDK's parser also takes shorter ids; a malformed header
/// must be ignored, not repaired.
fn well_formed(value: &str) -> bool {
    let parts: Vec<&str> = value.trim().split('-').collect();
    let hex = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() >= 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && (parts[0] != "00" || parts.len() == 4)
}

/// The remote context in `carrier`, when it holds a valid one.
fn extract(carrier: &dyn Extractor) -> Option<Context> {
    if !carrier.get("traceparent").is_some_and(well_formed) {
        return None;
    }
    let context = TraceContextPropagator::new().extract_with_context(&Context::new(), carrier);
    context.span().span_context().is_valid().then_some(context)
}

/// Makes the context of a valid `traceparent` in `headers` the parent of `span` (which must
/// not have been entered yet). Without one, `span` starts a trace.
pub fn continue_from_headers(span: &tracing::Span, headers: &HeaderMap) {
    if let Some(parent) = extract(&Headers(headers)) {
        // Fails only when the span was already started or is disabled: then it keeps its own.
        let _ = span.set_parent(parent);
    }
}

/// Makes the context carried in a job's payload the parent of `span`.
pub fn continue_from_carrier(span: &tracing::Span, carrier: &HashMap<String, String>) {
    if let Some(parent) = extract(carrier) {
        let _ = span.set_parent(parent);
    }
}

/// The context of `span` as a carrier (`traceparent`, and `tracestate` when there is one),
/// to travel inside a job. Empty when `span` has no valid context (telemetry off).
pub fn carrier(span: &tracing::Span) -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    let context = span.context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
    }
    carrier
}

/// The trace and span id of `span`, and whether the trace is recorded (sampled).
pub fn trace_of(span: &tracing::Span) -> Option<(TraceRef, bool)> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| {
        let trace = TraceRef {
            trace_id: span_context.trace_id().to_bytes(),
            span_id: span_context.span_id().to_bytes(),
        };
        (trace, span_context.is_sampled())
    })
}

/// The trace and span id of `span`, for exemplars and response headers.
pub fn trace_ref(span: &tracing::Span) -> Option<TraceRef> {
    trace_of(span).map(|(trace, _)| trace)
}

/// The trace of `span` as a metric exemplar: only when the trace is recorded, so that an
/// exemplar always leads somewhere.
pub fn exemplar(span: &tracing::Span) -> Option<TraceRef> {
    trace_of(span).and_then(|(trace, sampled)| sampled.then_some(trace))
}

/// `traceparent` for `trace` (version 00), flagged sampled or not, as a header value.
pub fn traceparent_header(trace: &TraceRef, sampled: bool) -> HeaderValue {
    HeaderValue::from_bytes(&traceparent_bytes(trace, sampled))
        .expect("hex digits are visible ASCII")
}

/// The trace id of `trace` in hex, as a header value (`x-trace-id`).
pub fn trace_id_header(trace: &TraceRef) -> HeaderValue {
    let mut hex = [0u8; 32];
    hex::encode_to_slice(trace.trace_id, &mut hex).expect("32 digits for 16 bytes");
    HeaderValue::from_bytes(&hex).expect("hex digits are visible ASCII")
}

/// `00-{trace id}-{span id}-{flags}`, written in place (every response carries one).
fn traceparent_bytes(trace: &TraceRef, sampled: bool) -> [u8; 55] {
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    hex::encode_to_slice(trace.trace_id, &mut out[3..35]).expect("32 digits for 16 bytes");
    hex::encode_to_slice(trace.span_id, &mut out[36..52]).expect("16 digits for 8 bytes");
    if sampled {
        out[54] = b'1';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_valid_traceparent_is_a_parent() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let context = extract(&Headers(&headers)).expect("valid");
        assert_eq!(
            context.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            headers.insert("traceparent", bad.parse().unwrap());
            assert!(extract(&Headers(&headers)).is_none(), "{bad}");
        }
        let trace = TraceRef {
            trace_id: [0xab; 16],
            span_id: [0x01; 8],
        };
        assert_eq!(
            traceparent_header(&trace, true),
            "00-abababababababababababababababab-0101010101010101-01"
        );
        assert_eq!(
            traceparent_header(&trace, false),
            "00-abababababababababababababababab-0101010101010101-00"
        );
        assert_eq!(trace_id_header(&trace), "abababababababababababababababab");
    }
}
