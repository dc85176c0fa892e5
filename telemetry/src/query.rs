//! The search API on the query port, over the `log_index` and `span_index` sinks' indexes:
//!
//! - `GET /api/v1/logs/search?q=&start=&end=&limit=&cursor=`: log records, newest first;
//! - `GET /api/v1/spans/search?q=&start=&end=&limit=&cursor=`: spans, newest first;
//! - `GET /api/v1/logs/histogram?q=&start=&end=&interval=&by=severity`: counts of matching log
//!   records per interval (default: the last hour in 60 buckets), optionally per severity;
//! - `GET /api/v1/logs/tail?q=`: log records matching `q` as they are indexed, as server-sent
//!   events (`data: {record}`), from the moment of the request;
//! - `GET /api/v1/traces/{trace_id}`: the spans and the log records of one trace, oldest first.
//!
//! `start` and `end` are RFC 3339 times (`2026-11-29T10:00:00Z`), unix nanoseconds, or ages
//! (`15m`, `2h`, `7d`: that long ago). `limit` is 1 to 1000 (default 100). A bad query or
//! parameter is a 400 whose `error` says what is wrong; a search that takes longer than
//! [`QUERY_TIMEOUT`] is answered 503 (it finishes in the background).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use log_index::{Cursor, LogIndex, SearchError, SearchRequest, SpanIndex};
use serde::Deserialize;
use serde_json::json;

/// Longest a search may run before the API gives up on it.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Hits per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;

/// The indexes the API reads; either may be absent (no such sink in the pipeline).
#[derive(Debug, Clone, Default)]
pub struct Indexes {
    /// The `log_index` sink's index.
    pub logs: Option<Arc<LogIndex>>,
    /// The `span_index` sink's index.
    pub spans: Option<Arc<SpanIndex>>,
}

/// The routes.
pub fn router(indexes: Indexes) -> Router {
    Router::new()
        .route("/api/v1/logs/search", get(search_logs))
        .route("/api/v1/logs/histogram", get(logs_histogram))
        .route("/api/v1/logs/tail", get(logs_tail))
        .route("/api/v1/spans/search", get(search_spans))
        .route("/api/v1/traces/{trace_id}", get(trace))
        .with_state(indexes)
}

/// Query parameters of the searches.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    q: Option<String>,
    start: Option<String>,
    end: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// An answer other than 200: its status and what is wrong, as `{"error": "..."}`.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        match e {
            SearchError::InvalidQuery(_) | SearchError::InvalidParameter(_) => {
                ApiError(StatusCode::BAD_REQUEST, e.to_string())
            }
            SearchError::Index(_) => {
                tracing::error!(error = %e, "search failed");
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

/// A time parameter: RFC 3339, unix nanoseconds, or an age such as `15m`.
pub fn parse_time(name: &str, text: &str, now_ns: i64) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(ns) = text.parse::<i64>() {
        return Ok(ns);
    }
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return time
            .timestamp_nanos_opt()
            .ok_or_else(|| format!("{name}: '{text}' is out of range"));
    }
    let unit = text.chars().last().unwrap_or(' ');
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => 0,
    };
    match text[..text.len() - unit.len_utf8().min(text.len())].parse::<i64>() {
        Ok(count) if seconds > 0 && count >= 0 => {
            Ok(now_ns.saturating_sub(count.saturating_mul(seconds).saturating_mul(1_000_000_000)))
        }
        _ => Err(format!(
            "{name}: '{text}' is not an RFC 3339 time, unix nanoseconds, or an age like 15m, 2h, 7d"
        )),
    }
}

fn request(params: SearchParams) -> Result<SearchRequest, SearchError> {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let time = |name: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(|v| parse_time(name, v, now))
            .transpose()
            .map_err(SearchError::InvalidParameter)
    };
    Ok(SearchRequest {
        query: params.q.unwrap_or_default(),
        start: time("start", &params.start)?,
        end: time("end", &params.end)?,
        limit: params.limit.unwrap_or(DEFAULT_LIMIT),
        cursor: params.cursor.as_deref().map(Cursor::decode).transpose()?,
    })
}

/// Runs `work` off the runtime, within [`QUERY_TIMEOUT`].
async fn run<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SearchError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::time::timeout(QUERY_TIMEOUT, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(outcome)) => Ok(outcome?),
        Ok(Err(join)) => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("search failed: {join}"),
        )),
        Err(_) => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the search took longer than {} s", QUERY_TIMEOUT.as_secs()),
        )),
    }
}

fn not_configured(kind: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no {kind} sink in the collector's pipeline"),
    )
}

/// The search request of a query string, or what is wrong with it.
fn parsed(
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<SearchRequest, ApiError> {
    let Query(params) = params.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    Ok(request(params)?)
}

async fn search_logs(
    State(indexes): State<Indexes>,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let index = indexes.logs.ok_or_else(|| not_configured("log_index"))?;
    let request = parsed(params)?;
    page(move || index.search(&request)).await
}

async fn search_spans(
    State(indexes): State<Indexes>,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let index = indexes.spans.ok_or_else(|| not_configured("span_index"))?;
    let request = parsed(params)?;
    page(move || index.search(&request)).await
}

/// Query parameters of the histogram.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistogramParams {
    q: Option<String>,
    start: Option<String>,
    end: Option<String>,
    interval: Option<String>,
    by: Option<String>,
}

/// A bucket width: `500ms`, `30s`, `5m`, `1h`, `1d`.
pub fn parse_interval(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (number, unit) = match text.strip_suffix("ms") {
        Some(number) => (number, 1_000_000i64),
        None => {
            let unit = match text.chars().last() {
                Some('s') => 1_000_000_000,
                Some('m') => 60_000_000_000,
                Some('h') => 3_600_000_000_000,
                Some('d') => 86_400_000_000_000,
                _ => 0,
            };
            (&text[..text.len().saturating_sub(1)], unit)
        }
    };
    match number.parse::<i64>() {
        Ok(n) if n > 0 && unit > 0 => Ok(n.saturating_mul(unit)),
        _ => Err(format!(
            "interval: '{text}' is not a duration like 500ms, 30s, 5m, 1h, 1d"
        )),
    }
}

async fn logs_histogram(
    State(indexes): State<Indexes>,
    params: Result<Query<HistogramParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let index = indexes.logs.ok_or_else(|| not_configured("log_index"))?;
    let Query(params) = params.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let bad = |e: String| ApiError(StatusCode::BAD_REQUEST, e);
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let end = match &params.end {
        Some(end) => parse_time("end", end, now).map_err(bad)?,
        None => now,
    };
    let start = match &params.start {
        Some(start) => parse_time("start", start, now).map_err(bad)?,
        None => end - 3_600_000_000_000,
    };
    let interval = match &params.interval {
        Some(interval) => parse_interval(interval).map_err(bad)?,
        None => ((end - start) / 60).max(1_000_000),
    };
    let by_severity = match params.by.as_deref() {
        None => false,
        Some("severity") => true,
        Some(other) => return Err(bad(format!("by: '{other}' is not 'severity'"))),
    };
    let request = log_index::HistogramRequest {
        query: params.q.unwrap_or_default(),
        start,
        end,
        interval,
        by_severity,
    };
    let buckets = run(move || index.histogram(&request)).await?;
    Ok(axum::Json(json!({ "interval_ns": interval, "buckets": buckets })).into_response())
}

/// How often a live tail looks for new records.
pub const TAIL_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TailParams {
    q: Option<String>,
}

async fn logs_tail(
    State(indexes): State<Indexes>,
    params: Result<Query<TailParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let index = indexes.logs.ok_or_else(|| not_configured("log_index"))?;
    let Query(params) = params.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let query = params.q.unwrap_or_default();
    // A bad query is a 400 now, not an error in the middle of the stream.
    {
        let (index, query) = (Arc::clone(&index), query.clone());
        run(move || index.tail(&query, u64::MAX, 1)).await?;
    }
    let after = index.store().last_seq();
    let stream = futures_util::stream::unfold(
        (index, query, after, std::collections::VecDeque::new()),
        |(index, query, mut after, mut ready): (
            Arc<LogIndex>,
            String,
            u64,
            std::collections::VecDeque<Event>,
        )| async move {
            loop {
                if let Some(event) = ready.pop_front() {
                    return Some((
                        Ok::<_, std::convert::Infallible>(event),
                        (index, query, after, ready),
                    ));
                }
                tokio::time::sleep(TAIL_EVERY).await;
                let (i, q) = (Arc::clone(&index), query.clone());
                let Ok(Ok(hits)) =
                    tokio::task::spawn_blocking(move || i.tail(&q, after, 1000)).await
                else {
                    return None;
                };
                for hit in hits {
                    after = after.max(hit.seq);
                    ready.push_back(Event::default().json_data(&hit).unwrap_or_default());
                }
            }
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn page(
    search: impl FnOnce() -> Result<log_index::SearchPage, SearchError> + Send + 'static,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let page = run(search).await?;
    Ok(axum::Json(json!({
        "hits": page.hits,
        "total": page.total,
        "next_cursor": page.next_cursor,
        "took_ms": started.elapsed().as_secs_f64() * 1000.0,
    }))
    .into_response())
}

async fn trace(
    State(indexes): State<Indexes>,
    Path(trace_id): Path<String>,
) -> Result<Response, ApiError> {
    if indexes.logs.is_none() && indexes.spans.is_none() {
        return Err(not_configured("log_index or span_index"));
    }
    let id = trace_id.clone();
    let found = run(move || {
        let spans = match &indexes.spans {
            Some(index) => index.by_trace(&id)?,
            None => Vec::new(),
        };
        let logs = match &indexes.logs {
            Some(index) => index.by_trace(&id)?,
            None => Vec::new(),
        };
        Ok((spans, logs))
    })
    .await?;
    let (spans, logs) = found;
    if spans.is_empty() && logs.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no span or log record of trace {trace_id}"),
        ));
    }
    Ok(axum::Json(json!({
        "trace_id": trace_id.to_ascii_lowercase(),
        "spans": spans,
        "logs": logs,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_durations() {
        assert_eq!(parse_interval("500ms"), Ok(500_000_000));
        assert_eq!(parse_interval("30s"), Ok(30_000_000_000));
        assert_eq!(parse_interval("5m"), Ok(300_000_000_000));
        assert_eq!(parse_interval("1d"), Ok(86_400_000_000_000));
        for bad in ["", "0s", "5", "ms", "-1m", "1w"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_are_rfc3339_nanoseconds_or_ages() {
        let now = 1_000_000 * 1_000_000_000i64;
        assert_eq!(parse_time("start", "5", now), Ok(5));
        assert_eq!(
            parse_time("start", "1970-01-01T00:00:01Z", now),
            Ok(1_000_000_000)
        );
        assert_eq!(
            parse_time("start", "15m", now),
            Ok(now - 900 * 1_000_000_000)
        );
        assert_eq!(
            parse_time("start", "2d", now),
            Ok(now - 172_800 * 1_000_000_000)
        );
        for bad in ["", "m", "yesterday", "-3h", "1w"] {
            let message = parse_time("start", bad, now).unwrap_err();
            assert!(message.starts_with("start: "), "{message}");
        }
    }
}
