//! Jaeger's HTTP query API over the `span_index` sink's index, in Jaeger's JSON shapes, so
//! that tools written for Jaeger (Grafana's Jaeger data source, the Jaeger UI) read our traces:
//!
//! - `GET /api/services`: the services, sorted;
//! - `GET /api/services/{service}/operations`: the operation names of a service (the legacy
//!   shape, a list of names);
//! - `GET /api/operations?service=S&spanKind=K`: the operations of a service with their span
//!   kinds (`[{"name", "spanKind"}]`), optionally of one kind;
//! - `GET /api/traces?service=&operation=&tags=&minDuration=&maxDuration=&start=&end=&limit=`:
//!   the traces with a span that matches every criterion, newest first;
//! - `GET /api/traces/{traceID}`: one trace.
//!
//! As in Jaeger, `start` and `end` are unix **microseconds** (absent: unbounded),
//! `minDuration`/`maxDuration` are Go durations (`250ms`, `1.5s`, `2m`), `limit` is the number
//! of traces (default [`DEFAULT_TRACE_LIMIT`], at most [`MAX_TRACE_LIMIT`]), and `tags` is a JSON
//! object (`{"http.status_code":"500","error":"true"}`) or logfmt (`http.status_code=500
//! error=true`); `tag=key:value` may also be repeated. A tag matches the span's attributes or
//! its resource's; `error=true` matches spans with status error, and `span.kind`,
//! `otel.status_code`, `otel.status_description` and `otel.scope.name` match the span's kind,
//! status, status message and scope.
//!
//! Every answer is Jaeger's envelope `{"data", "total", "limit", "offset", "errors"}`; a bad
//! parameter is a 400 and an unknown trace a 404, with `errors: [{"code", "msg"}]`.
//!
//! A span in Jaeger's model: `references` holds `CHILD_OF` its parent and `FOLLOWS_FROM` its
//! links; times are microseconds; `tags` are its attributes plus `span.kind`,
//! `otel.status_code`, `error`, `otel.status_description` and `otel.scope.name` (as Jaeger's
//! OTLP translator adds them); `logs` are its events (`event` = the name, then the
//! attributes). Each distinct (service, resource) of a trace is one process, `p1`, `p2`, ...
//! in order of first appearance, tagged with the resource attributes but `service.name`.

use std::collections::HashSet;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use log_index::{Cursor, Hit, SearchError, SearchRequest, SpanIndex};
use serde_json::{Map, Value, json};

use crate::query::{Indexes, QUERY_TIMEOUT};

/// Traces a search returns when `limit` is not given (or is 0), as in the Jaeger UI.
pub const DEFAULT_TRACE_LIMIT: usize = 20;
/// Most traces one search returns.
pub const MAX_TRACE_LIMIT: usize = 1000;
/// Most matching spans a search reads while collecting distinct traces.
pub const MAX_SCANNED_SPANS: usize = 100_000;

/// The routes.
pub fn router(indexes: Indexes) -> Router {
    Router::new()
        .route("/api/services", get(services))
        .route(
            "/api/services/{service}/operations",
            get(service_operations),
        )
        .route("/api/operations", get(operations))
        .route("/api/traces", get(find_traces))
        .route("/api/traces/{trace_id}", get(trace))
        .with_state(indexes)
}

/// Jaeger's envelope around `data`.
fn envelope(data: Value, total: usize) -> Response {
    axum::Json(json!({
        "data": data,
        "total": total,
        "limit": 0,
        "offset": 0,
        "errors": null,
    }))
    .into_response()
}

/// An answer other than 200, in Jaeger's envelope: `errors: [{"code", "msg"}]`.
#[derive(Debug)]
struct JaegerError(StatusCode, String);

impl IntoResponse for JaegerError {
    fn into_response(self) -> Response {
        let body = json!({
            "data": null,
            "total": 0,
            "limit": 0,
            "offset": 0,
            "errors": [{ "code": self.0.as_u16(), "msg": self.1 }],
        });
        (self.0, axum::Json(body)).into_response()
    }
}

impl From<SearchError> for JaegerError {
    fn from(e: SearchError) -> Self {
        match e {
            SearchError::InvalidQuery(_) | SearchError::InvalidParameter(_) => {
                JaegerError(StatusCode::BAD_REQUEST, e.to_string())
            }
            SearchError::Index(_) => {
                tracing::error!(error = %e, "jaeger query failed");
                JaegerError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

fn bad_request(message: impl Into<String>) -> JaegerError {
    JaegerError(StatusCode::BAD_REQUEST, message.into())
}

fn span_index(indexes: &Indexes) -> Result<Arc<SpanIndex>, JaegerError> {
    indexes.spans.clone().ok_or_else(|| {
        JaegerError(
            StatusCode::NOT_FOUND,
            "no span_index sink is configured in the collector's pipeline".to_owned(),
        )
    })
}

/// Runs `work` on the blocking pool, within [`QUERY_TIMEOUT`].
async fn run<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, JaegerError> + Send + 'static,
) -> Result<T, JaegerError> {
    match tokio::time::timeout(QUERY_TIMEOUT, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(join)) => Err(JaegerError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the query failed: {join}"),
        )),
        Err(_) => Err(JaegerError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the query took longer than {} s", QUERY_TIMEOUT.as_secs()),
        )),
    }
}

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The query parameters in order (repeated ones repeated), or a 400.
fn params(params: Params) -> Result<Vec<(String, String)>, JaegerError> {
    params
        .map(|Query(pairs)| pairs)
        .map_err(|e| bad_request(e.body_text()))
}

/// The last non-empty value of `name`.
fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(key, value)| key == name && !value.trim().is_empty())
        .map(|(_, value)| value.trim())
}

async fn services(State(indexes): State<Indexes>) -> Result<Response, JaegerError> {
    let index = span_index(&indexes)?;
    let services = run(move || Ok(index.services()?)).await?;
    let total = services.len();
    Ok(envelope(json!(services), total))
}

async fn service_operations(
    State(indexes): State<Indexes>,
    Path(service): Path<String>,
) -> Result<Response, JaegerError> {
    let index = span_index(&indexes)?;
    let operations = run(move || Ok(index.operations(&service)?)).await?;
    let mut names: Vec<String> = operations.into_iter().map(|o| o.name).collect();
    names.dedup();
    let total = names.len();
    Ok(envelope(json!(names), total))
}

/// Jaeger's name of a stored span kind: unspecified is the empty string.
fn jaeger_span_kind(kind: &str) -> &str {
    if kind == "unspecified" { "" } else { kind }
}

async fn operations(
    State(indexes): State<Indexes>,
    pairs: Params,
) -> Result<Response, JaegerError> {
    let index = span_index(&indexes)?;
    let pairs = params(pairs)?;
    let service = param(&pairs, "service")
        .ok_or_else(|| bad_request("parameter 'service' is required"))?
        .to_owned();
    let kind = param(&pairs, "spanKind").map(str::to_ascii_lowercase);
    if let Some(kind) = &kind
        && !["server", "client", "producer", "consumer", "internal"].contains(&kind.as_str())
    {
        return Err(bad_request(format!(
            "unsupported span kind: '{kind}' (server, client, producer, consumer or internal)"
        )));
    }
    let operations = run(move || Ok(index.operations(&service)?)).await?;
    let data: Vec<Value> = operations
        .iter()
        .filter(|o| kind.as_deref().is_none_or(|k| k == o.kind))
        .map(|o| json!({ "name": o.name, "spanKind": jaeger_span_kind(&o.kind) }))
        .collect();
    let total = data.len();
    Ok(envelope(Value::Array(data), total))
}

/// A Go duration (`300ms`, `1.5h`, `2h45m`, `1µs`) in nanoseconds; negative ones are refused.
pub fn parse_go_duration(text: &str) -> Result<f64, String> {
    let bad = || format!("'{text}' is not a duration like 250ms, 1.5s or 2m");
    let mut rest = text.trim();
    if let Some(unsigned) = rest.strip_prefix('+') {
        rest = unsigned;
    }
    if rest.starts_with('-') {
        return Err(format!("'{text}' is negative"));
    }
    if rest == "0" {
        return Ok(0.0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." {
            return Err(bad());
        }
        let value: f64 = number.parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    Ok(total)
}

/// `text` as a double-quoted query literal.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `key` as a query field path, or why it cannot be one.
fn field_path(prefix: &str, key: &str) -> Result<String, JaegerError> {
    if key.is_empty() || key.contains('\\') || key.chars().any(char::is_control) {
        return Err(bad_request(format!("tag key '{key}' cannot be searched")));
    }
    let mut path = format!("{prefix}.");
    for c in key.chars() {
        if "+^`:{}\"'[]()!* ".contains(c) {
            path.push('\\');
        }
        path.push(c);
    }
    Ok(path)
}

/// One tag as a query clause.
fn tag_clause(key: &str, value: &str) -> Result<String, JaegerError> {
    Ok(match key {
        "error" => match value.to_ascii_lowercase().as_str() {
            "true" => "status:error".to_owned(),
            "false" => "(status:ok OR status:unset)".to_owned(),
            _ => {
                return Err(bad_request(format!(
                    "tag 'error' is true or false, not '{value}'"
                )));
            }
        },
        "span.kind" => format!("kind:{}", quoted(&value.to_ascii_lowercase())),
        "otel.status_code" => format!("status:{}", quoted(&value.to_ascii_lowercase())),
        "otel.status_description" => format!("status_message:{}", quoted(value)),
        "otel.scope.name" | "otel.library.name" => format!("scope:{}", quoted(value)),
        _ => format!(
            "({}:{value} OR {}:{value})",
            field_path("attributes", key)?,
            field_path("resource", key)?,
            value = quoted(value)
        ),
    })
}

/// `k=v k2="v 2" flag` (a bare key is `true`).
fn parse_logfmt(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut tags = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(tags);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        if key.is_empty() {
            return Err(format!("'{text}' is not logfmt: a tag has no key"));
        }
        if chars.next_if_eq(&'=').is_none() {
            tags.push((key, "true".to_owned()));
            continue;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err(format!("'{text}' is not logfmt: an unclosed quote")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        tags.push((key, value));
    }
}

/// The tags of a `tags` parameter: a JSON object, or logfmt.
fn parse_tags(text: &str) -> Result<Vec<(String, String)>, String> {
    if !text.trim_start().starts_with('{') {
        return parse_logfmt(text);
    }
    let object: Map<String, Value> =
        serde_json::from_str(text).map_err(|e| format!("malformed 'tags' parameter: {e}"))?;
    object
        .into_iter()
        .map(|(key, value)| match value {
            Value::String(s) => Ok((key, s)),
            Value::Number(_) | Value::Bool(_) => Ok((key, value.to_string())),
            _ => Err(format!("tag '{key}' is not a string, number or boolean")),
        })
        .collect()
}

/// A microsecond time parameter in nanoseconds.
fn micros(pairs: &[(String, String)], name: &str) -> Result<Option<i64>, JaegerError> {
    param(pairs, name)
        .map(|text| {
            text.parse::<i64>()
                .map(|us| us.saturating_mul(1000))
                .map_err(|_| {
                    bad_request(format!(
                        "unable to parse param '{name}': '{text}' is not unix microseconds"
                    ))
                })
        })
        .transpose()
}

fn duration(pairs: &[(String, String)], name: &str) -> Result<Option<f64>, JaegerError> {
    param(pairs, name)
        .map(|text| {
            parse_go_duration(text)
                .map_err(|e| bad_request(format!("unable to parse param '{name}': {e}")))
        })
        .transpose()
}

/// A trace search: the query of a matching span, the time bounds, how many traces.
#[derive(Debug, Clone, PartialEq)]
struct TraceSearch {
    query: String,
    start: Option<i64>,
    end: Option<i64>,
    limit: usize,
}

fn trace_search(pairs: &[(String, String)]) -> Result<TraceSearch, JaegerError> {
    let mut clauses = Vec::new();
    if let Some(service) = param(pairs, "service") {
        clauses.push(format!("service:{}", quoted(service)));
    }
    if let Some(operation) = param(pairs, "operation") {
        clauses.push(format!("name:{}", quoted(operation)));
    }
    for (key, value) in pairs {
        let tags = match key.as_str() {
            "tags" if !value.trim().is_empty() => parse_tags(value).map_err(bad_request)?,
            "tag" if !value.trim().is_empty() => {
                let (k, v) = value.split_once(':').ok_or_else(|| {
                    bad_request(format!("malformed 'tag' parameter '{value}': key:value"))
                })?;
                vec![(k.to_owned(), v.to_owned())]
            }
            _ => continue,
        };
        for (k, v) in tags {
            clauses.push(tag_clause(&k, &v)?);
        }
    }
    let min = duration(pairs, "minDuration")?;
    let max = duration(pairs, "maxDuration")?;
    if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        return Err(bad_request("'minDuration' is greater than 'maxDuration'"));
    }
    if let Some(min) = min {
        clauses.push(format!("duration_ms:>={}", min / 1e6));
    }
    if let Some(max) = max {
        clauses.push(format!("duration_ms:<={}", max / 1e6));
    }
    let (start, end) = (micros(pairs, "start")?, micros(pairs, "end")?);
    if let (Some(start), Some(end)) = (start, end)
        && start > end
    {
        return Err(bad_request("'start' is after 'end'"));
    }
    let limit = match param(pairs, "limit") {
        None => DEFAULT_TRACE_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(0) => DEFAULT_TRACE_LIMIT,
            Ok(n) => n.min(MAX_TRACE_LIMIT),
            Err(_) => {
                return Err(bad_request(format!(
                    "unable to parse param 'limit': '{text}' is not a count"
                )));
            }
        },
    };
    Ok(TraceSearch {
        query: clauses.join(" AND "),
        start,
        end,
        limit,
    })
}

/// The ids of the traces with a span matching `search`, newest first.
fn matching_trace_ids(index: &SpanIndex, search: &TraceSearch) -> Result<Vec<String>, SearchError> {
    let mut ids = Vec::new();
    let mut seen = HashSet::new();
    let mut cursor: Option<Cursor> = None;
    let mut scanned = 0;
    loop {
        let page = index.search(&SearchRequest {
            query: search.query.clone(),
            start: search.start,
            end: search.end,
            limit: log_index::search::MAX_LIMIT,
            cursor,
        })?;
        scanned += page.hits.len();
        for hit in &page.hits {
            let Some(id) = hit.fields.get("trace_id").and_then(Value::as_str) else {
                continue;
            };
            if seen.insert(id.to_owned()) {
                ids.push(id.to_owned());
                if ids.len() == search.limit {
                    return Ok(ids);
                }
            }
        }
        match page.next_cursor {
            Some(next) if scanned < MAX_SCANNED_SPANS => cursor = Some(Cursor::decode(&next)?),
            _ => return Ok(ids),
        }
    }
}

/// A trace id as 32 lower-case hex digits (shorter ones, 64-bit ids, are left-padded).
fn normalized_trace_id(text: &str) -> Result<String, JaegerError> {
    if text.is_empty() || text.len() > 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad_request(format!(
            "malformed trace id '{text}': at most 32 hex digits"
        )));
    }
    Ok(format!("{:0>32}", text.to_ascii_lowercase()))
}

async fn find_traces(
    State(indexes): State<Indexes>,
    pairs: Params,
) -> Result<Response, JaegerError> {
    let index = span_index(&indexes)?;
    let pairs = params(pairs)?;
    let by_id: Vec<String> = pairs
        .iter()
        .filter(|(key, value)| key == "traceID" && !value.trim().is_empty())
        .map(|(_, value)| normalized_trace_id(value.trim()))
        .collect::<Result<_, _>>()?;
    let search = if by_id.is_empty() {
        Some(trace_search(&pairs)?)
    } else {
        None
    };
    let traces = run(move || {
        let ids = match &search {
            Some(search) => matching_trace_ids(&index, search)?,
            None => by_id,
        };
        let mut traces = Vec::with_capacity(ids.len());
        for id in ids {
            let spans = index.by_trace(&id)?;
            if !spans.is_empty() {
                traces.push(jaeger_trace(&id, &spans));
            }
        }
        Ok(traces)
    })
    .await?;
    let total = traces.len();
    Ok(envelope(Value::Array(traces), total))
}

async fn trace(
    State(indexes): State<Indexes>,
    Path(trace_id): Path<String>,
) -> Result<Response, JaegerError> {
    let index = span_index(&indexes)?;
    let id = normalized_trace_id(&trace_id)?;
    let spans = {
        let id = id.clone();
        run(move || Ok(index.by_trace(&id)?)).await?
    };
    if spans.is_empty() {
        return Err(JaegerError(
            StatusCode::NOT_FOUND,
            "trace not found".to_owned(),
        ));
    }
    Ok(envelope(json!([jaeger_trace(&id, &spans)]), 0))
}

/// An attribute as a Jaeger tag; `None` for a null value. Arrays and maps are JSON strings.
fn tag(key: &str, value: &Value) -> Option<Value> {
    let (kind, value) = match value {
        Value::Null => return None,
        Value::Bool(_) => ("bool", value.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => ("int64", value.clone()),
        Value::Number(_) => ("float64", value.clone()),
        Value::String(_) => ("string", value.clone()),
        Value::Array(_) | Value::Object(_) => ("string", Value::String(value.to_string())),
    };
    Some(json!({ "key": key, "type": kind, "value": value }))
}

fn tags<'a>(attributes: impl IntoIterator<Item = (&'a String, &'a Value)>) -> Vec<Value> {
    attributes
        .into_iter()
        .filter_map(|(key, value)| tag(key, value))
        .collect()
}

fn text<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    fields
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn object<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a Map<String, Value>> {
    fields.get(name).and_then(Value::as_object)
}

/// A stored JSON-array string (`events`, `links`) as its elements.
fn stored_array(fields: &Map<String, Value>, name: &str) -> Vec<Value> {
    match fields.get(name) {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_default(),
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    }
}

fn micros_of(ns: i64) -> u64 {
    u64::try_from(ns / 1000).unwrap_or(0)
}

/// One span in Jaeger's model.
fn jaeger_span(trace_id: &str, hit: &Hit, process_id: &str) -> Value {
    let fields = &hit.fields;
    let start = fields.get("ts").and_then(Value::as_i64).unwrap_or(hit.ts);
    let end = fields
        .get("end")
        .and_then(Value::as_i64)
        .unwrap_or(start)
        .max(start);
    let mut references = Vec::new();
    if let Some(parent) = text(fields, "parent_span_id") {
        references.push(json!({ "refType": "CHILD_OF", "traceID": trace_id, "spanID": parent }));
    }
    for link in stored_array(fields, "links") {
        let (Some(link_trace), Some(link_span)) = (
            link.get("trace_id").and_then(Value::as_str),
            link.get("span_id").and_then(Value::as_str),
        ) else {
            continue;
        };
        if !link_trace.is_empty() && !link_span.is_empty() {
            references.push(
                json!({ "refType": "FOLLOWS_FROM", "traceID": link_trace, "spanID": link_span }),
            );
        }
    }
    let mut span_tags = object(fields, "attributes").map(tags).unwrap_or_default();
    if let Some(kind) = text(fields, "kind").filter(|k| *k != "unspecified") {
        span_tags.push(json!({ "key": "span.kind", "type": "string", "value": kind }));
    }
    match text(fields, "status") {
        Some("ok") => {
            span_tags.push(json!({ "key": "otel.status_code", "type": "string", "value": "OK" }));
        }
        Some("error") => {
            span_tags
                .push(json!({ "key": "otel.status_code", "type": "string", "value": "ERROR" }));
            span_tags.push(json!({ "key": "error", "type": "bool", "value": true }));
        }
        _ => {}
    }
    if let Some(message) = text(fields, "status_message") {
        span_tags
            .push(json!({ "key": "otel.status_description", "type": "string", "value": message }));
    }
    if let Some(scope) = text(fields, "scope") {
        span_tags.push(json!({ "key": "otel.scope.name", "type": "string", "value": scope }));
    }
    let logs: Vec<Value> = stored_array(fields, "events")
        .iter()
        .map(|event| {
            let attributes = event.get("attributes").and_then(Value::as_object);
            let mut log_fields = Vec::new();
            let name = event.get("name").and_then(Value::as_str).unwrap_or("");
            if !name.is_empty() && attributes.is_none_or(|a| !a.contains_key("event")) {
                log_fields.push(json!({ "key": "event", "type": "string", "value": name }));
            }
            log_fields.extend(attributes.map(tags).unwrap_or_default());
            let ts = event.get("ts").and_then(Value::as_i64).unwrap_or(start);
            json!({ "timestamp": micros_of(ts), "fields": log_fields })
        })
        .collect();
    json!({
        "traceID": trace_id,
        "spanID": text(fields, "span_id").unwrap_or_default(),
        "flags": 1,
        "operationName": text(fields, "name").unwrap_or_default(),
        "references": references,
        "startTime": micros_of(start),
        "duration": micros_of(end - start),
        "tags": span_tags,
        "logs": logs,
        "processID": process_id,
        "warnings": null,
    })
}

/// One trace in Jaeger's model: its spans in the order given, and one process per distinct
/// (service, resource), `p1`, `p2`, ... in order of first appearance.
pub fn jaeger_trace(trace_id: &str, spans: &[Hit]) -> Value {
    let mut processes: Vec<(String, Map<String, Value>)> = Vec::new();
    let mut jaeger_spans = Vec::with_capacity(spans.len());
    for hit in spans {
        let service = text(&hit.fields, "service").unwrap_or("unknown").to_owned();
        let resource = object(&hit.fields, "resource").cloned().unwrap_or_default();
        let index = match processes
            .iter()
            .position(|(s, r)| *s == service && *r == resource)
        {
            Some(index) => index,
            None => {
                processes.push((service, resource));
                processes.len() - 1
            }
        };
        jaeger_spans.push(jaeger_span(trace_id, hit, &format!("p{}", index + 1)));
    }
    let processes: Map<String, Value> = processes
        .iter()
        .enumerate()
        .map(|(i, (service, resource))| {
            let tags = tags(resource.iter().filter(|(key, _)| *key != "service.name"));
            (
                format!("p{}", i + 1),
                json!({ "serviceName": service, "tags": tags }),
            )
        })
        .collect();
    json!({
        "traceID": trace_id,
        "spans": jaeger_spans,
        "processes": processes,
        "warnings": null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("250ms"), Ok(250e6));
        assert_eq!(parse_go_duration("1.5s"), Ok(1.5e9));
        assert_eq!(parse_go_duration("2m"), Ok(120e9));
        assert_eq!(parse_go_duration("1h30m"), Ok(5400e9));
        assert_eq!(parse_go_duration("10us"), Ok(10e3));
        assert_eq!(parse_go_duration("10µs"), Ok(10e3));
        assert_eq!(parse_go_duration("0"), Ok(0.0));
        for bad in ["", "5", "ms", "1d", "1.2.3s", "-1s", "1 s", "abc"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_are_json_or_logfmt() {
        assert_eq!(
            parse_tags(r#"{"http.status_code":"500","error":true,"n":3}"#).unwrap(),
            pairs(&[("error", "true"), ("http.status_code", "500"), ("n", "3")])
        );
        assert_eq!(
            parse_tags(r#"http.status_code=500  route="/a b\"c" error"#).unwrap(),
            pairs(&[
                ("http.status_code", "500"),
                ("route", "/a b\"c"),
                ("error", "true")
            ])
        );
        assert!(parse_tags("{nope").is_err());
        assert!(parse_tags(r#"{"a":[1]}"#).is_err());
        assert!(parse_tags(r#"a="open"#).is_err());
    }

    #[test]
    fn searches_become_queries() {
        let search = trace_search(&pairs(&[
            ("service", "fertivision-api"),
            ("operation", "GET \"x\""),
            ("tags", r#"{"error":"true","http.route":"/a"}"#),
            ("minDuration", "250ms"),
            ("maxDuration", "1.5s"),
            ("start", "1000"),
            ("end", "2000"),
            ("lookback", "custom"),
        ]))
        .unwrap();
        assert_eq!(
            search.query,
            r#"service:"fertivision-api" AND name:"GET \"x\"" AND status:error AND (attributes.http.route:"/a" OR resource.http.route:"/a") AND duration_ms:>=250 AND duration_ms:<=1500"#
        );
        assert_eq!(
            (search.start, search.end, search.limit),
            (Some(1_000_000), Some(2_000_000), DEFAULT_TRACE_LIMIT)
        );
        assert_eq!(
            trace_search(&pairs(&[("limit", "5000")])).unwrap().limit,
            MAX_TRACE_LIMIT
        );
        assert_eq!(
            trace_search(&pairs(&[("tag", "a b:c")])).unwrap().query,
            r#"(attributes.a\ b:"c" OR resource.a\ b:"c")"#
        );
        for bad in [
            ("minDuration", "soon"),
            ("start", "yesterday"),
            ("limit", "-1"),
            ("tags", "{"),
            ("tags", r#"{"error":"maybe"}"#),
            ("tag", "nocolon"),
            ("tags", r#"{"a\\b":"1"}"#),
        ] {
            assert!(trace_search(&pairs(&[bad])).is_err(), "{bad:?}");
        }
        assert!(trace_search(&pairs(&[("minDuration", "2s"), ("maxDuration", "1s")])).is_err());
    }

    #[test]
    fn trace_ids_are_padded_and_checked() {
        assert_eq!(
            normalized_trace_id("ABC").unwrap(),
            "00000000000000000000000000000abc"
        );
        assert!(normalized_trace_id("xyz").is_err());
        assert!(normalized_trace_id(&"a".repeat(33)).is_err());
    }
}
