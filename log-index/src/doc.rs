//! From OTLP to index documents: one document per log record and per span, with the resource
//! and scope they came with.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde_json::{Map, Value};
use tantivy::TantivyDocument;
use tantivy::schema::OwnedValue;

use crate::schema::{LogFields, SpanFields};

/// An attribute value as JSON: strings, numbers and booleans as themselves, arrays and maps
/// as JSON arrays and objects, bytes as lower-case hex.
pub fn any_value_to_json(value: &AnyValue) -> Value {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number)
        }
        Some(any_value::Value::ArrayValue(array)) => {
            Value::Array(array.values.iter().map(any_value_to_json).collect())
        }
        Some(any_value::Value::KvlistValue(list)) => Value::Object(attributes_to_map(&list.values)),
        Some(any_value::Value::BytesValue(bytes)) => Value::String(hex::encode(bytes)),
        // An index into the string table of an OTLP profiles dictionary; logs and spans do
        // not carry one, so there is nothing to resolve it against.
        Some(any_value::Value::StringValueStrindex(_)) | None => Value::Null,
    }
}

/// Attributes as a JSON object (the last value wins for a repeated key).
pub fn attributes_to_map(attributes: &[KeyValue]) -> Map<String, Value> {
    attributes
        .iter()
        .map(|kv| {
            let value = kv.value.as_ref().map_or(Value::Null, any_value_to_json);
            (kv.key.clone(), value)
        })
        .collect()
}

/// An attribute value as the index stores it, built directly (no JSON in between, and strings
/// stay strings: no guessing of dates).
pub fn any_value_to_owned(value: &AnyValue) -> OwnedValue {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => OwnedValue::Str(s.clone()),
        Some(any_value::Value::BoolValue(b)) => OwnedValue::Bool(*b),
        Some(any_value::Value::IntValue(i)) => OwnedValue::I64(*i),
        Some(any_value::Value::DoubleValue(d)) => OwnedValue::F64(*d),
        Some(any_value::Value::ArrayValue(array)) => {
            OwnedValue::Array(array.values.iter().map(any_value_to_owned).collect())
        }
        Some(any_value::Value::KvlistValue(list)) => attributes_to_owned(&list.values),
        Some(any_value::Value::BytesValue(bytes)) => OwnedValue::Str(hex::encode(bytes)),
        Some(any_value::Value::StringValueStrindex(_)) | None => OwnedValue::Null,
    }
}

/// Attributes as an index object.
pub fn attributes_to_owned(attributes: &[KeyValue]) -> OwnedValue {
    OwnedValue::Object(
        attributes
            .iter()
            .map(|kv| {
                let value = kv
                    .value
                    .as_ref()
                    .map_or(OwnedValue::Null, any_value_to_owned);
                (kv.key.clone(), value)
            })
            .collect(),
    )
}

/// A body as the text that is indexed: strings as they are, anything else as JSON.
fn body_text(body: Option<&AnyValue>) -> String {
    match body.and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(_) => any_value_to_json(body.expect("has a value")).to_string(),
        None => String::new(),
    }
}

/// The severity text for a severity number (OTLP's ranges: 1-4 TRACE ... 21-24 FATAL).
pub fn severity_name(number: i32) -> &'static str {
    match number {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => "UNSPECIFIED",
    }
}

/// An id as lower-case hex; `None` when empty or all zero.
pub fn hex_id(bytes: &[u8]) -> Option<String> {
    (!bytes.is_empty() && bytes.iter().any(|b| *b != 0)).then(|| hex::encode(bytes))
}

fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// What every document of a resource carries: `service.name` (`unknown` without one),
/// `service.instance.id`, and all the resource's attributes.
fn resource_fields(resource: Option<&Resource>) -> (&str, Option<&str>, OwnedValue) {
    let attributes = resource.map_or(&[][..], |r| r.attributes.as_slice());
    (
        string_attribute(attributes, "service.name").unwrap_or("unknown"),
        string_attribute(attributes, "service.instance.id"),
        attributes_to_owned(attributes),
    )
}

fn to_i64(nanos: u64) -> i64 {
    i64::try_from(nanos).unwrap_or(i64::MAX)
}

/// One document to index, with the time that picks its partition.
#[derive(Debug)]
pub struct IndexDoc {
    /// Nanoseconds since the epoch.
    pub ts: i64,
    /// The document (without `seq`, which the store assigns).
    pub doc: TantivyDocument,
}

/// The log records of an export request as documents. A record without a time gets its
/// observed time, and without either the time `now_ns`.
pub fn log_docs(
    fields: &LogFields,
    request: &ExportLogsServiceRequest,
    now_ns: i64,
) -> Vec<IndexDoc> {
    let mut docs = Vec::new();
    for resource_logs in &request.resource_logs {
        let (service, instance, resource) = resource_fields(resource_logs.resource.as_ref());
        for scope_logs in &resource_logs.scope_logs {
            let scope = scope_logs.scope.as_ref().map(|s| s.name.as_str());
            for record in &scope_logs.log_records {
                let observed = to_i64(record.observed_time_unix_nano);
                let ts = match (record.time_unix_nano, observed) {
                    (0, 0) => now_ns,
                    (0, observed) => observed,
                    (time, _) => to_i64(time),
                };
                let mut doc = TantivyDocument::default();
                doc.add_i64(fields.ts, ts);
                doc.add_i64(
                    fields.observed_ts,
                    if observed == 0 { ts } else { observed },
                );
                let number = record.severity_number.clamp(0, 24);
                doc.add_u64(fields.severity_number, number as u64);
                let severity = if record.severity_text.is_empty() {
                    severity_name(number).to_owned()
                } else {
                    record.severity_text.to_ascii_uppercase()
                };
                doc.add_text(fields.severity, severity);
                doc.add_text(fields.body, body_text(record.body.as_ref()));
                doc.add_text(fields.service, service);
                if let Some(instance) = instance {
                    doc.add_text(fields.instance, instance);
                }
                if let Some(trace_id) = hex_id(&record.trace_id) {
                    doc.add_text(fields.trace_id, trace_id);
                }
                if let Some(span_id) = hex_id(&record.span_id) {
                    doc.add_text(fields.span_id, span_id);
                }
                if let Some(scope) = scope.filter(|s| !s.is_empty()) {
                    doc.add_text(fields.scope, scope);
                }
                doc.add_field_value(fields.attributes, &attributes_to_owned(&record.attributes));
                doc.add_field_value(fields.resource, &resource);
                docs.push(IndexDoc { ts, doc });
            }
        }
    }
    docs
}

fn span_kind(kind: i32) -> &'static str {
    match SpanKind::try_from(kind).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Internal => "internal",
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Unspecified => "unspecified",
    }
}

/// The spans of an export request as documents. Spans without a trace id or span id are
/// skipped (they cannot be found or placed in a trace); the count of skipped spans is returned.
pub fn span_docs(
    fields: &SpanFields,
    request: &ExportTraceServiceRequest,
) -> (Vec<IndexDoc>, usize) {
    let mut docs = Vec::new();
    let mut skipped = 0;
    for resource_spans in &request.resource_spans {
        let (service, instance, resource) = resource_fields(resource_spans.resource.as_ref());
        for scope_spans in &resource_spans.scope_spans {
            let scope = scope_spans.scope.as_ref().map(|s| s.name.as_str());
            for span in &scope_spans.spans {
                let (Some(trace_id), Some(span_id)) =
                    (hex_id(&span.trace_id), hex_id(&span.span_id))
                else {
                    skipped += 1;
                    continue;
                };
                let start = to_i64(span.start_time_unix_nano);
                let end = to_i64(span.end_time_unix_nano).max(start);
                let mut doc = TantivyDocument::default();
                doc.add_i64(fields.ts, start);
                doc.add_i64(fields.end, end);
                doc.add_f64(fields.duration_ms, (end - start) as f64 / 1e6);
                doc.add_text(fields.trace_id, trace_id);
                doc.add_text(fields.span_id, span_id);
                if let Some(parent) = hex_id(&span.parent_span_id) {
                    doc.add_text(fields.parent_span_id, parent);
                }
                doc.add_text(fields.name, &span.name);
                doc.add_text(fields.kind, span_kind(span.kind));
                doc.add_text(fields.service, service);
                if let Some(instance) = instance {
                    doc.add_text(fields.instance, instance);
                }
                let (status, message) = match &span.status {
                    Some(status) => (
                        match StatusCode::try_from(status.code).unwrap_or(StatusCode::Unset) {
                            StatusCode::Ok => "ok",
                            StatusCode::Error => "error",
                            StatusCode::Unset => "unset",
                        },
                        status.message.as_str(),
                    ),
                    None => ("unset", ""),
                };
                doc.add_text(fields.status, status);
                if !message.is_empty() {
                    doc.add_text(fields.status_message, message);
                }
                if let Some(scope) = scope.filter(|s| !s.is_empty()) {
                    doc.add_text(fields.scope, scope);
                }
                doc.add_field_value(fields.attributes, &attributes_to_owned(&span.attributes));
                doc.add_field_value(fields.resource, &resource);
                let events: Vec<Value> = span
                    .events
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "name": e.name,
                            "ts": to_i64(e.time_unix_nano),
                            "attributes": attributes_to_map(&e.attributes),
                        })
                    })
                    .collect();
                doc.add_text(fields.events, Value::Array(events).to_string());
                let links: Vec<Value> = span
                    .links
                    .iter()
                    .map(|l| {
                        serde_json::json!({
                            "trace_id": hex::encode(&l.trace_id),
                            "span_id": hex::encode(&l.span_id),
                            "attributes": attributes_to_map(&l.attributes),
                        })
                    })
                    .collect();
                doc.add_text(fields.links, Value::Array(links).to_string());
                docs.push(IndexDoc { ts: start, doc });
            }
        }
    }
    (docs, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_json() {
        let nested = AnyValue {
            value: Some(any_value::Value::KvlistValue(
                opentelemetry_proto::tonic::common::v1::KeyValueList {
                    values: vec![KeyValue {
                        key: "a".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::IntValue(3)),
                        }),
                        ..Default::default()
                    }],
                },
            )),
        };
        assert_eq!(any_value_to_json(&nested), serde_json::json!({"a": 3}));
        let bytes = AnyValue {
            value: Some(any_value::Value::BytesValue(vec![0xab, 0x01])),
        };
        assert_eq!(any_value_to_json(&bytes), serde_json::json!("ab01"));
        assert_eq!(severity_name(17), "ERROR");
        assert_eq!(severity_name(0), "UNSPECIFIED");
        assert_eq!(hex_id(&[0; 16]), None);
        assert_eq!(hex_id(&[1, 2]), Some("0102".to_owned()));
    }
}
