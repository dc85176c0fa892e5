//! The index end to end over OTLP requests: what is committed is searchable; field, phrase,
//! boolean and range queries; newest first with cursors; traces; bad queries; retention;
//! damaged partitions; positions.

use chrono::{Days, Utc};
use log_index::{LogIndex, SearchError, SearchRequest, SpanIndex, StoreConfig};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.to_owned()))
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            text("service.name", service),
            text("service.instance.id", "i-1"),
        ],
        ..Default::default()
    })
}

struct Log<'a> {
    ts: i64,
    severity: i32,
    body: &'a str,
    trace: Option<[u8; 16]>,
    attributes: Vec<KeyValue>,
}

fn logs(service: &str, records: Vec<Log<'_>>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(service),
            scope_logs: vec![ScopeLogs {
                log_records: records
                    .into_iter()
                    .map(|r| LogRecord {
                        time_unix_nano: r.ts as u64,
                        severity_number: r.severity,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(r.body.to_owned())),
                        }),
                        trace_id: r.trace.map(|t| t.to_vec()).unwrap_or_default(),
                        attributes: r.attributes,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn now() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap()
}

fn request(query: &str) -> SearchRequest {
    SearchRequest {
        query: query.to_owned(),
        limit: 100,
        ..Default::default()
    }
}

fn bodies(index: &LogIndex, query: &str) -> Vec<String> {
    index
        .search(&request(query))
        .unwrap()
        .hits
        .iter()
        .map(|h| h.fields["body"].as_str().unwrap().to_owned())
        .collect()
}

const MS: i64 = 1_000_000;

fn sample(index: &LogIndex) -> i64 {
    let t = now() - 60_000 * MS;
    index
        .add(&logs(
            "api",
            vec![
                Log {
                    ts: t,
                    severity: 9,
                    body: "patient record created",
                    trace: Some([1; 16]),
                    attributes: vec![
                        text("http.route", "/api/v1/patients"),
                        kv("http.status_code", any_value::Value::IntValue(201)),
                    ],
                },
                Log {
                    ts: t + MS,
                    severity: 17,
                    body: "database timeout after 5000 ms",
                    trace: Some([2; 16]),
                    attributes: vec![
                        text("http.route", "/api/v1/patients/{id}/analyses/semen"),
                        kv("http.status_code", any_value::Value::IntValue(503)),
                    ],
                },
                Log {
                    ts: t + 2 * MS,
                    severity: 13,
                    body: "slow query on analyses table",
                    trace: None,
                    attributes: vec![],
                },
            ],
        ))
        .unwrap();
    index
        .add(&logs(
            "worker",
            vec![
                Log {
                    ts: t + 3 * MS,
                    severity: 9,
                    body: "document analysed: AMH 0.8 ng/mL",
                    trace: Some([2; 16]),
                    attributes: vec![text("job.kind", "analyse_document")],
                },
                Log {
                    ts: t + 4 * MS,
                    severity: 21,
                    body: "report rendering crashed",
                    trace: None,
                    attributes: vec![text("job.kind", "render_report")],
                },
            ],
        ))
        .unwrap();
    index.commit(Some(42)).unwrap();
    t
}

#[test]
fn queries_of_every_kind_find_what_they_should() {
    let dir = tempfile::tempdir().unwrap();
    let index = LogIndex::open(dir.path(), StoreConfig::default()).unwrap();
    assert!(bodies(&index, "").is_empty(), "nothing before the commit");
    let t = sample(&index);

    // Newest first.
    assert_eq!(bodies(&index, "").len(), 5);
    assert_eq!(bodies(&index, "")[0], "report rendering crashed");
    // Full text, words ANDed by default, case-insensitive.
    assert_eq!(
        bodies(&index, "database TIMEOUT"),
        ["database timeout after 5000 ms"]
    );
    assert!(bodies(&index, "database crashed").is_empty());
    // Phrases.
    assert_eq!(
        bodies(&index, "\"slow query\""),
        ["slow query on analyses table"]
    );
    assert!(bodies(&index, "\"query slow\"").is_empty());
    // Fields and boolean operators.
    assert_eq!(bodies(&index, "service:worker").len(), 2);
    assert_eq!(
        bodies(&index, "severity:ERROR"),
        ["database timeout after 5000 ms"]
    );
    assert_eq!(bodies(&index, "severity:ERROR OR severity:FATAL").len(), 2);
    assert_eq!(bodies(&index, "service:api AND NOT severity:INFO").len(), 2);
    assert_eq!(bodies(&index, "service:api -severity:INFO").len(), 2);
    // Attributes by key, exact and as ranges.
    assert_eq!(
        bodies(&index, "attributes.http.route:\"/api/v1/patients\""),
        ["patient record created"]
    );
    assert_eq!(
        bodies(&index, "attributes.http.status_code:>=500"),
        ["database timeout after 5000 ms"]
    );
    assert_eq!(
        bodies(&index, "attributes.job.kind:render_report"),
        ["report rendering crashed"]
    );
    assert_eq!(
        bodies(&index, "resource.service.instance.id:\"i-1\"").len(),
        5
    );
    // Ranges on severity.
    assert_eq!(bodies(&index, "severity_number:>=17").len(), 3 - 1);
    // A trace id.
    let trace = "02020202020202020202020202020202";
    assert_eq!(bodies(&index, &format!("trace_id:{trace}")).len(), 2);
    let of_trace = index.by_trace(&trace.to_uppercase()).unwrap();
    assert_eq!(of_trace.len(), 2);
    assert!(of_trace[0].ts < of_trace[1].ts, "oldest first");
    // Time bounds.
    let page = index
        .search(&SearchRequest {
            start: Some(t + MS),
            end: Some(t + 3 * MS),
            ..request("")
        })
        .unwrap();
    assert_eq!(page.total, 3);
}

#[test]
fn pages_follow_the_cursor_without_gaps_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let index = LogIndex::open(dir.path(), StoreConfig::default()).unwrap();
    let t = now() - 3_600_000 * MS;
    // 250 records, many sharing a timestamp (the tie-break matters).
    let records: Vec<Log<'_>> = (0..250)
        .map(|i| Log {
            ts: t + (i / 3) * MS,
            severity: 9,
            body: "tick",
            trace: None,
            attributes: vec![],
        })
        .collect();
    index.add(&logs("api", records)).unwrap();
    index.commit(None).unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = index
            .search(&SearchRequest {
                limit: 40,
                cursor,
                ..request("tick")
            })
            .unwrap();
        assert_eq!(page.total, 250);
        seen.extend(page.hits.iter().map(|h| (h.ts, h.seq)));
        match page.next_cursor {
            Some(next) => cursor = Some(log_index::Cursor::decode(&next).unwrap()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 250);
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(sorted, seen, "strictly newest first, nothing twice");
}

#[test]
fn bad_queries_and_parameters_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let index = LogIndex::open(dir.path(), StoreConfig::default()).unwrap();
    sample(&index);
    for bad in [
        "nosuchfield:x",
        "body:(unclosed",
        "\"unterminated",
        "severity_number:>abc",
        "AND",
        "a:(^",
    ] {
        match index.search(&request(bad)) {
            Err(SearchError::InvalidQuery(message)) => assert!(!message.is_empty()),
            other => panic!("{bad}: {other:?}"),
        }
    }
    // Times and sequence numbers live in fast columns only: they take ranges, and the error
    // says so; stored-only fields are named as not searchable.
    for (query, says) in [
        ("ts:5", "field 'ts' takes ranges"),
        ("seq:1", "field 'seq' takes ranges"),
        (
            "observed_ts:5",
            "field 'observed_ts' is stored, not searchable",
        ),
    ] {
        match index.search(&request(query)) {
            Err(SearchError::InvalidQuery(message)) => {
                assert!(message.contains(says), "{query}: {message}")
            }
            other => panic!("{query}: {other:?}"),
        }
    }
    assert!(index.search(&request("ts:>=0")).unwrap().total > 0);
    let long = "x ".repeat(3000);
    assert!(matches!(
        index.search(&request(&long)),
        Err(SearchError::InvalidQuery(_))
    ));
    assert!(matches!(
        index.search(&SearchRequest {
            limit: 0,
            ..request("")
        }),
        Err(SearchError::InvalidParameter(_))
    ));
    assert!(matches!(
        index.search(&SearchRequest {
            start: Some(10),
            end: Some(5),
            ..request("")
        }),
        Err(SearchError::InvalidParameter(_))
    ));
    assert!(matches!(
        log_index::Cursor::decode("zz"),
        Err(SearchError::InvalidParameter(_))
    ));
    assert!(matches!(
        index.by_trace("xyz"),
        Err(SearchError::InvalidParameter(_))
    ));
}

#[test]
fn the_parser_survives_arbitrary_input() {
    let dir = tempfile::tempdir().unwrap();
    let index = LogIndex::open(dir.path(), StoreConfig::default()).unwrap();
    let alphabet: Vec<char> = "ab:()\"*^~[]{}<>=!-+ /\\.TO ANDORNOT 0123456789é\u{0}"
        .chars()
        .collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..3000 {
        let len = (state % 24) as usize;
        let query: String = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                alphabet[(state % alphabet.len() as u64) as usize]
            })
            .collect();
        // Either a page or an error; never a panic or a hang.
        let _ = index.search(&request(&query));
    }
}

#[test]
fn positions_survive_reopening_and_a_damaged_partition_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let index = LogIndex::open(dir.path(), StoreConfig::default()).unwrap();
        sample(&index);
        assert_eq!(index.store().position(), Some(42));
    }
    // A second partition, then damage the first one's metadata.
    let old = Utc::now().date_naive() - Days::new(1);
    {
        let index = LogIndex::open(dir.path(), StoreConfig::default()).unwrap();
        let ts = log_index::store::day_start_ns(old) + 5 * MS;
        index
            .add(&logs(
                "api",
                vec![Log {
                    ts,
                    severity: 9,
                    body: "yesterday",
                    trace: None,
                    attributes: vec![],
                }],
            ))
            .unwrap();
        index.commit(Some(43)).unwrap();
        assert_eq!(bodies(&index, "yesterday"), ["yesterday"]);
    }
    let today = Utc::now().date_naive().format("%Y-%m-%d").to_string();
    std::fs::write(
        dir.path().join("logs").join(&today).join("meta.json"),
        b"{ not json",
    )
    .unwrap();
    let index = LogIndex::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(index.store().position(), Some(43));
    let damaged = index.store().damaged();
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert!(damaged[0].starts_with(&today));
    assert_eq!(bodies(&index, ""), ["yesterday"], "the rest still answers");
    // New records for today go to a fresh partition.
    sample(&index);
    assert_eq!(bodies(&index, "").len(), 6);
}

#[test]
fn retention_drops_old_and_oversized_partitions_while_searches_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        retention_days: 3,
        ..StoreConfig::default()
    };
    let index = LogIndex::open(dir.path(), config).unwrap();
    let today = Utc::now().date_naive();
    for age in 0..3u64 {
        let ts = log_index::store::day_start_ns(today - Days::new(age)) + MS;
        index
            .add(&logs(
                "api",
                vec![Log {
                    ts,
                    severity: 9,
                    body: &format!("day minus {age}"),
                    trace: None,
                    attributes: vec![],
                }],
            ))
            .unwrap();
    }
    index.commit(None).unwrap();
    assert_eq!(index.store().partitions().len(), 3);
    // A search holding the oldest partition keeps working while it is dropped.
    let held = index.store().partitions()[0].searcher();
    let dropped = index.store().apply_retention(today + Days::new(1));
    assert_eq!(dropped, [today - Days::new(2)]);
    assert_eq!(held.num_docs(), 1);
    assert_eq!(bodies(&index, "").len(), 2);
    // Over the size budget: the oldest go until it fits, never the newest.
    let tiny = StoreConfig {
        max_bytes: 1,
        ..config
    };
    drop(index);
    let index = LogIndex::open(dir.path(), tiny).unwrap();
    let dropped = index.store().apply_retention(today);
    assert_eq!(dropped, [today - Days::new(1)]);
    assert_eq!(bodies(&index, ""), ["day minus 0"]);
}

#[test]
fn spans_are_found_by_service_operation_duration_status_and_trace() {
    let dir = tempfile::tempdir().unwrap();
    let index = SpanIndex::open(dir.path(), StoreConfig::default()).unwrap();
    let t = now() - 60_000 * MS;
    let span = |id: u8, parent: Option<u8>, name: &str, start: i64, ms: i64, error: bool| Span {
        trace_id: vec![7; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.to_owned(),
        start_time_unix_nano: start as u64,
        end_time_unix_nano: (start + ms * MS) as u64,
        status: error.then(|| Status {
            code: status::StatusCode::Error as i32,
            message: "boom".into(),
        }),
        attributes: vec![text("http.route", "/api/v1/patients")],
        ..Default::default()
    };
    let request = |service: &str, spans: Vec<Span>| ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(service),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    index
        .add(&request(
            "api",
            vec![span(1, None, "POST /api/v1/patients", t, 300, false)],
        ))
        .unwrap();
    index
        .add(&request(
            "worker",
            vec![
                span(2, Some(1), "analyse", t + 10 * MS, 200, true),
                span(3, Some(2), "parse", t + 20 * MS, 5, false),
            ],
        ))
        .unwrap();
    index.commit(None).unwrap();
    let names = |q: &str| -> Vec<String> {
        index
            .search(&request_for(q))
            .unwrap()
            .hits
            .iter()
            .map(|h| h.fields["name"].as_str().unwrap().to_owned())
            .collect()
    };
    fn request_for(q: &str) -> SearchRequest {
        SearchRequest {
            query: q.to_owned(),
            limit: 100,
            ..Default::default()
        }
    }
    assert_eq!(names("service:worker").len(), 2);
    assert_eq!(names("duration_ms:>250"), ["POST /api/v1/patients"]);
    assert_eq!(names("duration_ms:[100 TO 250]"), ["analyse"]);
    assert_eq!(names("status:error"), ["analyse"]);
    assert_eq!(names("name:parse"), ["parse"]);
    assert_eq!(names("attributes.http.route:\"/api/v1/patients\"").len(), 3);
    let trace = index.by_trace("07070707070707070707070707070707").unwrap();
    let order: Vec<&str> = trace
        .iter()
        .map(|h| h.fields["name"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["POST /api/v1/patients", "analyse", "parse"]);
    assert_eq!(trace[1].fields["parent_span_id"], "0101010101010101");
    assert_eq!(trace[1].fields["status_message"], "boom");
}

#[test]
fn histogram_counts_per_interval_and_severity() {
    let dir = tempfile::tempdir().unwrap();
    let index = LogIndex::open(dir.path(), StoreConfig::default()).unwrap();
    let t = sample(&index); // 5 records at t .. t + 4 ms
    let buckets = index
        .histogram(&log_index::HistogramRequest {
            query: String::new(),
            start: t - 10 * MS,
            end: t + 10 * MS,
            interval: 2 * MS,
            by_severity: true,
        })
        .unwrap();
    assert_eq!(buckets.iter().map(|b| b.count).sum::<u64>(), 5);
    assert!(buckets.len() >= 10 && buckets.len() <= 12, "{buckets:?}");
    assert!(
        buckets
            .windows(2)
            .all(|w| w[1].start - w[0].start == 2 * MS)
    );
    let errors: u64 = buckets
        .iter()
        .map(|b| {
            b.by_severity
                .as_ref()
                .unwrap()
                .get("ERROR")
                .copied()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(errors, 1);
    let only_api = index
        .histogram(&log_index::HistogramRequest {
            query: "service:api".into(),
            start: t - 10 * MS,
            end: t + 10 * MS,
            interval: 20 * MS,
            by_severity: false,
        })
        .unwrap();
    assert_eq!(only_api.iter().map(|b| b.count).sum::<u64>(), 3);
    assert!(only_api[0].by_severity.is_none());
    assert!(matches!(
        index.histogram(&log_index::HistogramRequest {
            query: String::new(),
            start: 0,
            end: t,
            interval: MS,
            by_severity: false,
        }),
        Err(SearchError::InvalidParameter(_))
    ));
}
