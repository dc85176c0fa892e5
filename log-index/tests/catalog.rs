//! The catalog of the span index: distinct services, and the operations of one service with
//! their span kinds, over every partition.

use chrono::{Days, Utc};
use log_index::{Operation, SpanIndex, StoreConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![KeyValue {
            key: "service.name".to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(service.to_owned())),
            }),
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// One request with one span per `(name, kind, start ns)`, all of `service`.
fn spans(service: &str, spans: &[(&str, SpanKind, i64)]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(service),
            scope_spans: vec![ScopeSpans {
                spans: spans
                    .iter()
                    .enumerate()
                    .map(|(i, (name, kind, start))| Span {
                        trace_id: vec![7; 16],
                        span_id: vec![i as u8 + 1; 8],
                        name: (*name).to_owned(),
                        kind: *kind as i32,
                        start_time_unix_nano: *start as u64,
                        end_time_unix_nano: *start as u64 + 1_000_000,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn operation(name: &str, kind: &str) -> Operation {
    Operation {
        name: name.to_owned(),
        kind: kind.to_owned(),
    }
}

#[test]
fn services_and_operations_are_distinct_sorted_and_span_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let index = SpanIndex::open(dir.path(), StoreConfig::default()).unwrap();
    assert!(index.services().unwrap().is_empty());
    assert!(index.operations("fertivision-api").unwrap().is_empty());

    let now = Utc::now().timestamp_nanos_opt().unwrap();
    let two_days_ago = (Utc::now() - Days::new(2)).timestamp_nanos_opt().unwrap();
    index
        .add(&spans(
            "fertivision-worker",
            &[
                ("analyse_document", SpanKind::Internal, now),
                ("analyse_document", SpanKind::Internal, now + 1),
                ("queue receive", SpanKind::Consumer, two_days_ago),
            ],
        ))
        .unwrap();
    index
        .add(&spans(
            "fertivision-api",
            &[
                (
                    "POST /api/v1/patients/{id}/documents",
                    SpanKind::Server,
                    now,
                ),
                ("GET /healthz", SpanKind::Server, two_days_ago),
                ("GET /healthz", SpanKind::Client, now),
                ("SELECT patients", SpanKind::Unspecified, now),
            ],
        ))
        .unwrap();
    index
        .add(&spans("billing", &[("invoice", SpanKind::Producer, now)]))
        .unwrap();
    index.commit(None).unwrap();
    assert!(
        index.store().partitions().len() >= 2,
        "the spans are in more than one partition"
    );

    assert_eq!(
        index.services().unwrap(),
        ["billing", "fertivision-api", "fertivision-worker"]
    );
    assert_eq!(
        index.operations("fertivision-api").unwrap(),
        [
            operation("GET /healthz", "client"),
            operation("GET /healthz", "server"),
            operation("POST /api/v1/patients/{id}/documents", "server"),
            operation("SELECT patients", "unspecified"),
        ]
    );
    assert_eq!(
        index.operations("fertivision-worker").unwrap(),
        [
            operation("analyse_document", "internal"),
            operation("queue receive", "consumer"),
        ]
    );
    assert_eq!(
        index.operations("billing").unwrap(),
        [operation("invoice", "producer")]
    );
    assert!(index.operations("nosuch").unwrap().is_empty());
    // A service name is matched exactly, not as a prefix or a word.
    assert!(index.operations("fertivision").unwrap().is_empty());
}

#[test]
fn what_is_added_but_not_committed_is_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let index = SpanIndex::open(dir.path(), StoreConfig::default()).unwrap();
    let now = Utc::now().timestamp_nanos_opt().unwrap();
    index
        .add(&spans("api", &[("GET /", SpanKind::Server, now)]))
        .unwrap();
    assert!(index.services().unwrap().is_empty());
    index.commit(None).unwrap();
    assert_eq!(index.services().unwrap(), ["api"]);
    assert_eq!(
        index.operations("api").unwrap(),
        [operation("GET /", "server")]
    );
}
