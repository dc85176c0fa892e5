//! The two schemas: log records and spans. Field names are what users type in queries
//! (`service:api`, `severity:ERROR`, `attributes.http.route:"/x"`, `duration_ms:>250`).
//!
//! Times are `i64` nanoseconds since the epoch, in fast columns only: ranges and ordering read
//! the column, exact to the nanosecond, and no term dictionary holds one term per record (such
//! dictionaries were a large part of indexing and merging). `ts`, `seq` and `duration_ms` take
//! ranges (`duration_ms:>250`, `ts:[a TO b]`), not single values. Identifiers, services,
//! severities and statuses are single raw terms; bodies and status messages are full text.
//! Attributes and resource attributes are JSON objects with dotted keys expanded, each string
//! leaf one raw term, so `attributes.http.route:"/api/v1/patients"` matches exactly and
//! `attributes.http.status_code:>=500` is a range. `seq` orders records with the same
//! timestamp, so cursors are stable.

use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, JsonObjectOptions, STORED, STRING, Schema, TEXT,
    TextFieldIndexing,
};

/// What kind of records an index holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// OTLP log records.
    Logs,
    /// OTLP spans.
    Spans,
}

impl Kind {
    /// The directory name of this kind's partitions.
    pub fn dir_name(self) -> &'static str {
        match self {
            Kind::Logs => "logs",
            Kind::Spans => "spans",
        }
    }
}

/// Attributes: every leaf a raw term, numbers also in a fast column (for ranges).
fn attributes_options() -> JsonObjectOptions {
    resource_options().set_fast("raw")
}

/// Resource attributes: searchable by exact value but without a fast column; they repeat on
/// every record of a resource, and ranges over them are not needed.
fn resource_options() -> JsonObjectOptions {
    JsonObjectOptions::default()
        .set_stored()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("raw")
                .set_index_option(IndexRecordOption::Basic),
        )
        .set_expand_dots_enabled()
}

/// The fields of the log schema.
#[derive(Debug, Clone)]
pub struct LogFields {
    /// The schema itself.
    pub schema: Schema,
    /// `ts`: the record's time, ns (its observed time when it has none).
    pub ts: Field,
    /// `observed_ts`: when the SDK saw it, ns.
    pub observed_ts: Field,
    /// `severity_number`: 1 (TRACE) to 24 (FATAL4), 0 unset.
    pub severity_number: Field,
    /// `severity`: the text (`INFO`, `ERROR`), or the name of the number when none was sent.
    pub severity: Field,
    /// `body`: full text.
    pub body: Field,
    /// `service`: `service.name` of the resource.
    pub service: Field,
    /// `instance`: `service.instance.id` of the resource.
    pub instance: Field,
    /// `trace_id`: 32 lower-case hex digits, or absent.
    pub trace_id: Field,
    /// `span_id`: 16 lower-case hex digits, or absent.
    pub span_id: Field,
    /// `scope`: the instrumentation scope's name.
    pub scope: Field,
    /// `attributes`: the record's attributes.
    pub attributes: Field,
    /// `resource`: the resource's attributes.
    pub resource: Field,
    /// `seq`: a tie-break for records with the same `ts`.
    pub seq: Field,
}

impl LogFields {
    /// Builds the schema.
    pub fn new() -> Self {
        let mut b = Schema::builder();
        let ts = b.add_i64_field("ts", FAST | STORED);
        let observed_ts = b.add_i64_field("observed_ts", STORED);
        let severity_number = b.add_u64_field("severity_number", INDEXED | FAST | STORED);
        let severity = b.add_text_field("severity", STRING | FAST | STORED);
        let body = b.add_text_field("body", TEXT | STORED);
        let service = b.add_text_field("service", STRING | FAST | STORED);
        let instance = b.add_text_field("instance", STRING | STORED);
        let trace_id = b.add_text_field("trace_id", STRING | STORED);
        let span_id = b.add_text_field("span_id", STRING | STORED);
        let scope = b.add_text_field("scope", STRING | STORED);
        let attributes = b.add_json_field("attributes", attributes_options());
        let resource = b.add_json_field("resource", resource_options());
        let seq = b.add_u64_field("seq", FAST | STORED);
        Self {
            schema: b.build(),
            ts,
            observed_ts,
            severity_number,
            severity,
            body,
            service,
            instance,
            trace_id,
            span_id,
            scope,
            attributes,
            resource,
            seq,
        }
    }
}

impl Default for LogFields {
    fn default() -> Self {
        Self::new()
    }
}

/// The fields of the span schema.
#[derive(Debug, Clone)]
pub struct SpanFields {
    /// The schema itself.
    pub schema: Schema,
    /// `ts`: the span's start, ns (the partition and ordering time).
    pub ts: Field,
    /// `end`: the span's end, ns.
    pub end: Field,
    /// `duration_ms`: end - start in milliseconds, fractional.
    pub duration_ms: Field,
    /// `trace_id`: 32 lower-case hex digits.
    pub trace_id: Field,
    /// `span_id`: 16 lower-case hex digits.
    pub span_id: Field,
    /// `parent_span_id`: 16 lower-case hex digits, absent for a root.
    pub parent_span_id: Field,
    /// `name`: the operation.
    pub name: Field,
    /// `kind`: `internal`, `server`, `client`, `producer`, `consumer` or `unspecified`.
    pub kind: Field,
    /// `service`: `service.name` of the resource.
    pub service: Field,
    /// `instance`: `service.instance.id` of the resource.
    pub instance: Field,
    /// `status`: `unset`, `ok` or `error`.
    pub status: Field,
    /// `status_message`: full text.
    pub status_message: Field,
    /// `scope`: the instrumentation scope's name.
    pub scope: Field,
    /// `attributes`: the span's attributes.
    pub attributes: Field,
    /// `resource`: the resource's attributes.
    pub resource: Field,
    /// `events`: the span's events as stored JSON (name, time, attributes); not searchable.
    pub events: Field,
    /// `links`: the span's links as stored JSON; not searchable.
    pub links: Field,
    /// `seq`: a tie-break for spans with the same `ts`.
    pub seq: Field,
}

impl SpanFields {
    /// Builds the schema.
    pub fn new() -> Self {
        let mut b = Schema::builder();
        let ts = b.add_i64_field("ts", FAST | STORED);
        let end = b.add_i64_field("end", STORED);
        let duration_ms = b.add_f64_field("duration_ms", FAST | STORED);
        let trace_id = b.add_text_field("trace_id", STRING | STORED);
        let span_id = b.add_text_field("span_id", STRING | STORED);
        let parent_span_id = b.add_text_field("parent_span_id", STRING | STORED);
        let name = b.add_text_field("name", STRING | FAST | STORED);
        let kind = b.add_text_field("kind", STRING | STORED);
        let service = b.add_text_field("service", STRING | FAST | STORED);
        let instance = b.add_text_field("instance", STRING | STORED);
        let status = b.add_text_field("status", STRING | STORED);
        let status_message = b.add_text_field("status_message", TEXT | STORED);
        let scope = b.add_text_field("scope", STRING | STORED);
        let attributes = b.add_json_field("attributes", attributes_options());
        let resource = b.add_json_field("resource", resource_options());
        let events = b.add_text_field("events", STORED);
        let links = b.add_text_field("links", STORED);
        let seq = b.add_u64_field("seq", FAST | STORED);
        Self {
            schema: b.build(),
            ts,
            end,
            duration_ms,
            trace_id,
            span_id,
            parent_span_id,
            name,
            kind,
            service,
            instance,
            status,
            status_message,
            scope,
            attributes,
            resource,
            events,
            links,
            seq,
        }
    }
}

impl Default for SpanFields {
    fn default() -> Self {
        Self::new()
    }
}
