//! `fertivision logs search`, `fertivision logs tail` and `fertivision trace show`: the
//! collector's search API (`/api/v1/logs/search`, `/api/v1/logs/tail`, `/api/v1/traces/{id}`)
//! from a terminal. Rendering is kept apart from fetching so that it can be tested.

use std::fmt::Write as _;

use anyhow::{Context, bail};
use serde_json::Value;

/// What `logs search` asks for.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsSearchArgs {
    /// The query: words in the body, `field:value`, `"phrases"`, AND / OR / NOT, ranges
    /// (`severity_number:>=17`), attributes (`attributes.http.route:"/api/v1/patients"`).
    pub query: Option<String>,
    /// How far back: an age (`15m`, `1h`, `7d`) or an RFC 3339 time.
    #[arg(long, default_value = "1h")]
    pub since: String,
    /// Until when (default: now).
    #[arg(long)]
    pub until: Option<String>,
    /// Records to show, newest first (1 to 1000).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// One JSON object per record instead of one line.
    #[arg(long)]
    pub json: bool,
    /// The collector's query port (default: from `collector.query_listen`).
    #[arg(long, value_name = "URL")]
    pub collector: Option<String>,
}

/// What `logs tail` asks for.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsTailArgs {
    /// The query (as for `logs search`); records matching it are printed as they arrive.
    pub query: Option<String>,
    /// One JSON object per record instead of one line.
    #[arg(long)]
    pub json: bool,
    /// The collector's query port (default: from `collector.query_listen`).
    #[arg(long, value_name = "URL")]
    pub collector: Option<String>,
}

/// What `trace show` asks for.
#[derive(Debug, Clone, clap::Args)]
pub struct TraceShowArgs {
    /// The trace id: 32 hex digits.
    pub trace_id: String,
    /// Width of the bars, in columns.
    #[arg(long, default_value_t = 40)]
    pub width: usize,
    /// The collector's query port (default: from `collector.query_listen`).
    #[arg(long, value_name = "URL")]
    pub collector: Option<String>,
}

/// The collector's query base URL: `--collector`, or the configured query address with an
/// unspecified host replaced by loopback.
pub fn collector_url(flag: Option<&str>, query_listen: std::net::SocketAddr) -> String {
    match flag {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let host = if query_listen.ip().is_unspecified() {
                "127.0.0.1".to_owned()
            } else {
                query_listen.ip().to_string()
            };
            format!("http://{host}:{}", query_listen.port())
        }
    }
}

async fn get_json(
    client: &reqwest::Client,
    url: &str,
    query: &[(&str, String)],
) -> anyhow::Result<Value> {
    let response = client
        .get(url)
        .query(query)
        .send()
        .await
        .with_context(|| format!("cannot reach the collector at {url}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("{url} did not answer JSON"))?;
    if !status.is_success() {
        let message = body["error"].as_str().unwrap_or("no reason given");
        bail!("{status}: {message}");
    }
    Ok(body)
}

/// Prints a page of log records.
pub async fn logs_search(base: &str, args: &LogsSearchArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut query = vec![
        ("q", args.query.clone().unwrap_or_default()),
        ("start", args.since.clone()),
        ("limit", args.limit.to_string()),
    ];
    if let Some(until) = &args.until {
        query.push(("end", until.clone()));
    }
    let page = get_json(&client, &format!("{base}/api/v1/logs/search"), &query).await?;
    let hits = page["hits"].as_array().cloned().unwrap_or_default();
    for hit in &hits {
        if args.json {
            println!("{hit}");
        } else {
            println!("{}", log_line(hit));
        }
    }
    if !args.json {
        eprintln!(
            "{} of {} matching records, in {:.1} ms",
            hits.len(),
            page["total"],
            page["took_ms"].as_f64().unwrap_or_default()
        );
    }
    Ok(())
}

/// Prints records as the collector's live tail sends them (server-sent events), until
/// interrupted.
pub async fn logs_tail(base: &str, args: &LogsTailArgs) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    let url = format!("{base}/api/v1/logs/tail");
    let response = reqwest::Client::new()
        .get(&url)
        .query(&[("q", args.query.clone().unwrap_or_default())])
        .send()
        .await
        .with_context(|| format!("cannot reach the collector at {url}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        bail!(
            "{status}: {}",
            body["error"].as_str().unwrap_or("no reason given")
        );
    }
    let mut events = response.bytes_stream();
    let mut buffer = String::new();
    while let Some(chunk) = events.next().await {
        buffer.push_str(&String::from_utf8_lossy(
            &chunk.context("the tail was cut")?,
        ));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            for data in event.lines().filter_map(|l| l.strip_prefix("data:")) {
                let Ok(hit) = serde_json::from_str::<Value>(data.trim()) else {
                    continue;
                };
                if args.json {
                    println!("{hit}");
                } else {
                    println!("{}", log_line(&hit));
                }
            }
        }
    }
    Ok(())
}

/// One record on one line: time, severity, service, body, and the trace if any.
pub fn log_line(hit: &Value) -> String {
    let mut line = format!(
        "{} {:<5} {:<20} {}",
        hit["time"].as_str().unwrap_or("-"),
        hit["severity"].as_str().unwrap_or("-"),
        hit["service"].as_str().unwrap_or("-"),
        hit["body"].as_str().unwrap_or(""),
    );
    if let Some(trace) = hit["trace_id"].as_str() {
        let _ = write!(line, "  trace={trace}");
    }
    line
}

/// Prints the waterfall of one trace.
pub async fn trace_show(base: &str, args: &TraceShowArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let trace = get_json(
        &client,
        &format!("{base}/api/v1/traces/{}", args.trace_id),
        &[],
    )
    .await?;
    print!("{}", waterfall(&trace, args.width.clamp(10, 200)));
    Ok(())
}

fn ns(value: &Value) -> i64 {
    value.as_i64().unwrap_or_default()
}

/// A trace as text: a header, then each span in tree order (children under their parent,
/// by start time) with its service, operation, offset and duration from the trace's start and a
/// bar on a common time axis, errors marked `✗`; each span's log records follow it.
pub fn waterfall(trace: &Value, width: usize) -> String {
    let spans = trace["spans"].as_array().cloned().unwrap_or_default();
    let logs = trace["logs"].as_array().cloned().unwrap_or_default();
    let start = spans
        .iter()
        .map(|s| ns(&s["ts"]))
        .chain(logs.iter().map(|l| ns(&l["ts"])))
        .min()
        .unwrap_or_default();
    let end = spans
        .iter()
        .map(|s| ns(&s["end"]))
        .chain(logs.iter().map(|l| ns(&l["ts"])))
        .max()
        .unwrap_or(start)
        .max(start + 1);
    let total = (end - start) as f64;
    let ms = |v: i64| v as f64 / 1e6;
    let mut services: Vec<&str> = spans.iter().filter_map(|s| s["service"].as_str()).collect();
    services.sort_unstable();
    services.dedup();
    let mut out = format!(
        "trace {}  {} spans, {} services, {} log records, {:.1} ms\n",
        trace["trace_id"].as_str().unwrap_or("?"),
        spans.len(),
        services.len(),
        logs.len(),
        ms(end - start)
    );

    // Tree order: roots (no parent, or a parent not in the trace) by start, children below.
    let ids: std::collections::HashSet<&str> =
        spans.iter().filter_map(|s| s["span_id"].as_str()).collect();
    let mut order: Vec<(usize, &Value)> = Vec::new();
    fn visit<'a>(
        parent: Option<&str>,
        depth: usize,
        spans: &'a [Value],
        ids: &std::collections::HashSet<&str>,
        order: &mut Vec<(usize, &'a Value)>,
    ) {
        let mut children: Vec<&Value> = spans
            .iter()
            .filter(|s| {
                let p = s["parent_span_id"].as_str();
                match parent {
                    None => p.is_none_or(|p| !ids.contains(p)),
                    Some(parent) => p == Some(parent),
                }
            })
            .collect();
        children.sort_by_key(|s| ns(&s["ts"]));
        for child in children {
            order.push((depth, child));
            if depth < 64 {
                visit(child["span_id"].as_str(), depth + 1, spans, ids, order);
            }
        }
    }
    visit(None, 0, &spans, &ids, &mut order);

    let label_width = order
        .iter()
        .map(|(depth, s)| depth * 2 + s["name"].as_str().unwrap_or("").chars().count())
        .max()
        .unwrap_or(0)
        .min(60);
    let service_width = services.iter().map(|s| s.len()).max().unwrap_or(0).min(30);
    for (depth, span) in &order {
        let from = ns(&span["ts"]) - start;
        let to = ns(&span["end"]) - start;
        let first = ((from as f64 / total) * width as f64).floor() as usize;
        let last = (((to as f64 / total) * width as f64).ceil() as usize)
            .clamp(first + 1, width.max(first + 1));
        let bar: String = (0..width)
            .map(|i| if i >= first && i < last { '█' } else { ' ' })
            .collect();
        let error = span["status"] == "error";
        let label = format!(
            "{}{}",
            "  ".repeat(*depth),
            span["name"].as_str().unwrap_or("?")
        );
        let _ = writeln!(
            out,
            "{:<sw$}  {:<lw$} {} {:>9.1} ms {:>9.1} ms |{}|",
            span["service"].as_str().unwrap_or("?"),
            label,
            if error { "✗" } else { " " },
            ms(from),
            ms(to - from),
            bar,
            sw = service_width,
            lw = label_width,
        );
        if error && let Some(message) = span["status_message"].as_str() {
            let _ = writeln!(out, "{:<sw$}    error: {message}", "", sw = service_width);
        }
        let span_id = span["span_id"].as_str();
        for log in logs.iter().filter(|l| l["span_id"].as_str() == span_id) {
            let _ = writeln!(
                out,
                "{:<sw$}    {:>+9.1} ms {} {}",
                "",
                ms(ns(&log["ts"]) - start),
                log["severity"].as_str().unwrap_or("-"),
                log["body"].as_str().unwrap_or(""),
                sw = service_width,
            );
        }
    }
    let unplaced: Vec<&Value> = logs
        .iter()
        .filter(|l| l["span_id"].as_str().is_none_or(|id| !ids.contains(id)))
        .collect();
    if !unplaced.is_empty() {
        let _ = writeln!(out, "log records outside the trace's spans:");
        for log in unplaced {
            let _ = writeln!(
                out,
                "  {:>+9.1} ms {} {} {}",
                ms(ns(&log["ts"]) - start),
                log["severity"].as_str().unwrap_or("-"),
                log["service"].as_str().unwrap_or("-"),
                log["body"].as_str().unwrap_or(""),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn trace() -> Value {
        let t = 1_800_000_000_000_000_000i64;
        json!({
            "trace_id": "5b8efff798038103d269b633813fc60c",
            "spans": [
                { "service": "fertivision-api", "name": "POST /documents", "span_id": "a1", "ts": t, "end": t + 400_000_000, "status": "unset" },
                { "service": "fertivision-worker", "name": "parse", "span_id": "c3", "parent_span_id": "b2", "ts": t + 150_000_000, "end": t + 160_000_000, "status": "ok" },
                { "service": "fertivision-worker", "name": "analyse_document", "span_id": "b2", "parent_span_id": "a1", "ts": t + 100_000_000, "end": t + 300_000_000, "status": "error", "status_message": "no text layer" }
            ],
            "logs": [
                { "service": "fertivision-worker", "span_id": "b2", "ts": t + 290_000_000, "severity": "ERROR", "body": "analysis failed" },
                { "service": "fertivision-api", "ts": t + 5_000_000, "severity": "INFO", "body": "no span" }
            ]
        })
    }

    #[test]
    fn the_waterfall_nests_children_marks_errors_and_interleaves_logs() {
        let text = waterfall(&trace(), 20);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("trace 5b8efff798038103d269b633813fc60c  3 spans, 2 services, 2 log records, 400.0 ms"), "{text}");
        assert!(
            lines[1].starts_with("fertivision-api     POST /documents"),
            "{text}"
        );
        assert!(lines[1].ends_with("|████████████████████|"), "{text}");
        assert!(lines[2].contains("  analyse_document ✗"), "{text}");
        assert!(
            lines[2].contains("100.0 ms     200.0 ms |     ██████████     |"),
            "{text}"
        );
        assert!(lines[3].contains("error: no text layer"), "{text}");
        assert!(
            lines[4].contains("+290.0 ms ERROR analysis failed"),
            "{text}"
        );
        assert!(
            lines[5].contains("    parse"),
            "children under their parent: {text}"
        );
        assert!(
            lines[6].starts_with("log records outside the trace's spans:"),
            "{text}"
        );
        assert!(
            lines[7].contains("+5.0 ms INFO fertivision-api no span"),
            "{text}"
        );
    }

    #[test]
    fn a_log_line_has_time_severity_service_body_and_trace() {
        let line = log_line(
            &json!({ "time": "2026-11-29T10:00:00Z", "severity": "WARN", "service": "api", "body": "slow", "trace_id": "ab" }),
        );
        assert_eq!(
            line,
            "2026-11-29T10:00:00Z WARN  api                  slow  trace=ab"
        );
    }

    #[test]
    fn the_collector_url_defaults_to_loopback() {
        let any = "0.0.0.0:7070".parse().unwrap();
        assert_eq!(collector_url(None, any), "http://127.0.0.1:7070");
        assert_eq!(collector_url(Some("http://c:1/"), any), "http://c:1");
    }
}
