//! The six dashboards, panel by panel. Every query reaches its metric through a catalogue
//! declaration.

use fertivision::otel::catalogue as app;
use telemetry::catalogue::collector as col;

use crate::{Board, Row, burn_rates, label, latency, lines, quantile, rate, series, stat};

/// Every dashboard, in the order of the data: the API, the workers, what they depend on, the
/// cache and limits, then the collector and its index.
pub fn all() -> Vec<Board> {
    vec![
        overview(),
        workers(),
        dependencies(),
        cache_and_limits(),
        collector(),
        log_index(),
    ]
}

fn overview() -> Board {
    let http = &app::HTTP_SERVER_REQUEST_DURATION;
    let route = label("http.route");
    let method = label("http.request.method");
    let status = label("http.response.status_code");
    let by_route = format!("{route}, {method}");
    let errors = format!(
        "sum(rate({}[$__rate_interval])) / sum(rate({}[$__rate_interval]))",
        series(http, "_count", &format!("{status}=~\"5..\"")),
        series(http, "_count", "")
    );
    let mut slo = vec![
        stat(
            "Requests per second",
            http.help,
            "reqps",
            format!(
                "sum(rate({}[$__rate_interval]))",
                series(http, "_count", "")
            ),
        ),
        stat(
            "Server errors (5xx)",
            "Share of requests answered with a 5xx.",
            "percentunit",
            errors.clone(),
        ),
    ];
    slo.extend(burn_rates(&[http]));
    slo.push(lines(
        "Requests in flight",
        &app::HTTP_SERVER_ACTIVE_REQUESTS,
        "short",
        vec![(
            format!(
                "sum by ({m}) ({})",
                series(&app::HTTP_SERVER_ACTIVE_REQUESTS, "", ""),
                m = method
            ),
            format!("{{{{{method}}}}}"),
        )],
    ));
    Board {
        uid: "fertivision-overview",
        title: "FertiVision — Service overview",
        description: "The API: rate, errors and duration per route, with exemplars that open the trace of a request.",
        services_from: http,
        rows: vec![
            Row {
                title: "Service level",
                panels: slo,
            },
            Row {
                title: "Per route",
                panels: vec![
                    lines(
                        "Rate by route",
                        http,
                        "reqps",
                        vec![(
                            rate(http, &by_route, ""),
                            format!("{{{{{method}}}}} {{{{{route}}}}}"),
                        )],
                    ),
                    lines(
                        "Errors by route and status",
                        http,
                        "reqps",
                        vec![(
                            rate(
                                http,
                                &format!("{route}, {status}"),
                                &format!("{status}=~\"[45]..\""),
                            ),
                            format!("{{{{{status}}}}} {{{{{route}}}}}"),
                        )],
                    ),
                    latency(
                        "Duration by route",
                        http,
                        &route,
                        &format!("{{{{{route}}}}}"),
                    ),
                    latency("Duration, all routes", http, "", ""),
                ],
            },
        ],
    }
}

fn workers() -> Board {
    let jobs = &app::JOBS;
    let status = label("job.status");
    let kind = label("job.kind");
    let duration = &app::JOB_DURATION;
    let outcome = label("outcome");
    let mut service = vec![
        lines(
            "Jobs by status",
            jobs,
            "short",
            vec![(
                format!("max by ({status}) ({})", series(jobs, "", "")),
                format!("{{{{{status}}}}}"),
            )],
        ),
        lines(
            "Oldest due job waiting",
            &app::JOBS_OLDEST_DUE_AGE,
            "s",
            vec![(
                format!("max({})", series(&app::JOBS_OLDEST_DUE_AGE, "", "")),
                "oldest".into(),
            )],
        ),
    ];
    service.extend(burn_rates(&[duration, &app::DOCUMENT_PROCESSING]));
    Board {
        uid: "fertivision-workers",
        title: "FertiVision — Workers and queue",
        description: "Background jobs: the queue's depth and age, attempts by outcome, retries and durations.",
        services_from: jobs,
        rows: vec![
            Row {
                title: "Queue",
                panels: {
                    service.push(latency(
                        "Queue wait by kind",
                        &app::JOB_QUEUE_WAIT,
                        &kind,
                        &format!("{{{{{kind}}}}}"),
                    ));
                    service
                },
            },
            Row {
                title: "Attempts",
                panels: vec![
                    lines(
                        "Attempts by kind and outcome",
                        duration,
                        "ops",
                        vec![(
                            rate(duration, &format!("{kind}, {outcome}"), ""),
                            format!("{{{{{kind}}}}} {{{{{outcome}}}}}"),
                        )],
                    ),
                    lines(
                        "Retries by kind",
                        &app::JOB_RETRIES,
                        "ops",
                        vec![(
                            rate(&app::JOB_RETRIES, &kind, ""),
                            format!("{{{{{kind}}}}}"),
                        )],
                    ),
                    latency(
                        "Attempt duration by kind",
                        duration,
                        &kind,
                        &format!("{{{{{kind}}}}}"),
                    ),
                    latency(
                        "Document analysis",
                        &app::DOCUMENT_PROCESSING,
                        &outcome,
                        &format!("{{{{{outcome}}}}}"),
                    ),
                    latency("Report generation", &app::REPORT_GENERATION, "", ""),
                    lines(
                        "Patients created",
                        &app::PATIENTS,
                        "ops",
                        vec![(rate(&app::PATIENTS, "job", ""), "{{job}}".into())],
                    ),
                ],
            },
        ],
    }
}

fn dependencies() -> Board {
    let state = &app::BREAKER_STATE;
    let dependency = label("dependency");
    let db = &app::DB_CLIENT_OPERATION_DURATION;
    let operation = label("db.operation.name");
    let table = label("db.collection.name");
    let outcome = label("outcome");
    let pool = &app::DB_CLIENT_CONNECTION_COUNT;
    let pool_state = label("db.client.connection.state");
    Board {
        uid: "fertivision-dependencies",
        title: "FertiVision — Dependencies and circuit breakers",
        description: "The database, object storage and Redis as the services see them: breakers, call latency, outcomes and the pool.",
        services_from: state,
        rows: vec![
            Row {
                title: "Circuit breakers",
                panels: vec![
                    lines(
                        "Breaker state (0 closed, 1 half-open, 2 open)",
                        state,
                        "short",
                        vec![(
                            format!("max by (job, {dependency}) ({})", series(state, "", "")),
                            format!("{{{{job}}}} {{{{{dependency}}}}}"),
                        )],
                    ),
                    lines(
                        "Breaker transitions",
                        &app::BREAKER_TRANSITIONS,
                        "ops",
                        vec![(
                            rate(&app::BREAKER_TRANSITIONS, &format!("{dependency}, to"), ""),
                            format!("{{{{{dependency}}}}} to {{{{to}}}}"),
                        )],
                    ),
                ],
            },
            Row {
                title: "Database",
                panels: vec![
                    latency(
                        "Database calls by operation and table",
                        db,
                        &format!("{operation}, {table}"),
                        &format!("{{{{{operation}}}}} {{{{{table}}}}}"),
                    ),
                    lines(
                        "Database calls by outcome",
                        db,
                        "ops",
                        vec![(rate(db, &outcome, ""), format!("{{{{{outcome}}}}}"))],
                    ),
                    lines(
                        "Pool connections",
                        pool,
                        "short",
                        vec![(
                            format!("sum by ({pool_state}) ({})", series(pool, "", "")),
                            format!("{{{{{pool_state}}}}}"),
                        )],
                    ),
                ],
            },
        ],
    }
}

fn cache_and_limits() -> Board {
    let cache = &app::CACHE_REQUESTS;
    let result = label("cache.result");
    let limits = &app::RATE_LIMIT_REFUSALS;
    let hit_ratio = format!(
        "sum(rate({}[$__rate_interval])) / sum(rate({}[$__rate_interval]))",
        series(cache, "_total", &format!("{result}=\"hit\"")),
        series(cache, "_total", "")
    );
    Board {
        uid: "fertivision-cache-limits",
        title: "FertiVision — Cache and rate limits",
        description: "The read-through cache's hits and misses, and the requests refused by per-token rate limits.",
        services_from: cache,
        rows: vec![Row {
            title: "Cache and limits",
            panels: vec![
                stat("Cache hit ratio", cache.help, "percentunit", hit_ratio),
                lines(
                    "Cache lookups by result",
                    cache,
                    "ops",
                    vec![(rate(cache, &result, ""), format!("{{{{{result}}}}}"))],
                ),
                lines(
                    "Rate-limit refusals by limit",
                    limits,
                    "reqps",
                    vec![(rate(limits, "limit", ""), "{{limit}}".into())],
                ),
            ],
        }],
    }
}

fn collector() -> Board {
    let lost = &app::TELEMETRY_LOST;
    Board {
        uid: "fertivision-collector",
        title: "FertiVision — Collector pipeline",
        description: "What the collector accepts, refuses and drops, its write-ahead log, and each sink's lag and latency.",
        services_from: &col::ACCEPTED_ITEMS,
        rows: vec![
            Row {
                title: "Intake",
                panels: vec![
                    lines(
                        "Accepted items by signal",
                        &col::ACCEPTED_ITEMS,
                        "ops",
                        vec![(
                            rate(&col::ACCEPTED_ITEMS, "signal", ""),
                            "{{signal}}".into(),
                        )],
                    ),
                    lines(
                        "Requests received by signal",
                        &col::RECEIVED_REQUESTS,
                        "reqps",
                        vec![(
                            rate(&col::RECEIVED_REQUESTS, "signal", ""),
                            "{{signal}}".into(),
                        )],
                    ),
                    lines(
                        "Refused requests by reason",
                        &col::REFUSED_REQUESTS,
                        "reqps",
                        vec![(
                            rate(&col::REFUSED_REQUESTS, "signal, reason", ""),
                            "{{signal}} {{reason}}".into(),
                        )],
                    ),
                    lines(
                        "Rejected items and malformed requests",
                        &col::REJECTED_ITEMS,
                        "ops",
                        vec![
                            (
                                rate(&col::REJECTED_ITEMS, "signal", ""),
                                "rejected {{signal}}".into(),
                            ),
                            (
                                rate(&col::MALFORMED_REQUESTS, "signal", ""),
                                "malformed {{signal}}".into(),
                            ),
                        ],
                    ),
                    latency(
                        "Items per request",
                        &col::BATCH_ITEMS,
                        "signal",
                        "{{signal}}",
                    ),
                    lines(
                        "Telemetry the services lost on the way",
                        lost,
                        "ops",
                        // The services' own series: not scoped to the collector's job.
                        vec![(
                            format!(
                                "sum by (job, signal, reason) (rate({}_total[$__rate_interval]))",
                                lost.prometheus_name()
                            ),
                            "{{job}} {{signal}} {{reason}}".into(),
                        )],
                    ),
                ],
            },
            Row {
                title: "Write-ahead log and sinks",
                panels: vec![
                    lines(
                        "Log size against its limit",
                        &col::WAL_BYTES,
                        "bytes",
                        vec![
                            (series(&col::WAL_BYTES, "", ""), "log {{instance}}".into()),
                            (
                                series(&col::WAL_MAX_BYTES, "", ""),
                                "limit {{instance}}".into(),
                            ),
                        ],
                    ),
                    lines(
                        "Log segments and corrupted records",
                        &col::WAL_SEGMENTS,
                        "short",
                        vec![
                            (series(&col::WAL_SEGMENTS, "", ""), "segments".into()),
                            (
                                series(&col::WAL_CORRUPTED_RECORDS, "", ""),
                                "corrupted records".into(),
                            ),
                        ],
                    ),
                    lines(
                        "Lag per sink (records)",
                        &col::SINK_LAG_RECORDS,
                        "short",
                        vec![(
                            format!("max by (sink) ({})", series(&col::SINK_LAG_RECORDS, "", "")),
                            "{{sink}}".into(),
                        )],
                    ),
                    lines(
                        "Lag per sink (bytes)",
                        &col::SINK_LAG_BYTES,
                        "bytes",
                        vec![(
                            format!("max by (sink) ({})", series(&col::SINK_LAG_BYTES, "", "")),
                            "{{sink}}".into(),
                        )],
                    ),
                    lines(
                        "Sink throughput",
                        &col::SINK_ITEMS,
                        "ops",
                        vec![
                            (rate(&col::SINK_ITEMS, "sink", ""), "items {{sink}}".into()),
                            (
                                rate(&col::SINK_BATCHES, "sink", ""),
                                "batches {{sink}}".into(),
                            ),
                        ],
                    ),
                    lines(
                        "Dropped batches and retries per sink",
                        &col::SINK_DROPPED_BATCHES,
                        "ops",
                        vec![
                            (
                                rate(&col::SINK_DROPPED_BATCHES, "sink", ""),
                                "dropped {{sink}}".into(),
                            ),
                            (
                                rate(&col::SINK_RETRIES, "sink", ""),
                                "retried {{sink}}".into(),
                            ),
                        ],
                    ),
                    latency(
                        "Sink write latency",
                        &col::SINK_WRITE_SECONDS,
                        "sink",
                        "{{sink}}",
                    ),
                ],
            },
            Row {
                title: "Prometheus sink",
                panels: vec![
                    lines(
                        "Series held",
                        &col::PROMETHEUS_SINK_SERIES,
                        "short",
                        vec![(
                            series(&col::PROMETHEUS_SINK_SERIES, "", ""),
                            "{{sink}}".into(),
                        )],
                    ),
                    lines(
                        "Data points written and dropped",
                        &col::PROMETHEUS_SINK_DATA_POINTS_WRITTEN,
                        "ops",
                        vec![
                            (
                                rate(&col::PROMETHEUS_SINK_BATCHES, "sink", ""),
                                "batches {{sink}}".into(),
                            ),
                            (
                                rate(&col::PROMETHEUS_SINK_DATA_POINTS_WRITTEN, "sink", ""),
                                "written {{sink}}".into(),
                            ),
                            (
                                rate(
                                    &col::PROMETHEUS_SINK_DROPPED_DATA_POINTS,
                                    "sink, reason",
                                    "",
                                ),
                                "dropped {{sink}} {{reason}}".into(),
                            ),
                            (
                                rate(&col::PROMETHEUS_SINK_DROPPED_SERIES, "sink", ""),
                                "over the series cap {{sink}}".into(),
                            ),
                            (
                                rate(&col::PROMETHEUS_SINK_TRUNCATED_LABEL_VALUES, "sink", ""),
                                "label values cut {{sink}}".into(),
                            ),
                        ],
                    ),
                ],
            },
        ],
    }
}

fn log_index() -> Board {
    let index_sinks = r#"sink=~"log_index|span_index|logs|spans""#;
    Board {
        uid: "fertivision-log-index",
        title: "FertiVision — Log index",
        description: "The tantivy log and span index: what it takes in, how fast it answers, and its disk against its limit.",
        services_from: &col::INDEX_BYTES,
        rows: vec![Row {
            title: "Log and span index",
            panels: vec![
                lines(
                    "Ingest rate",
                    &col::SINK_ITEMS,
                    "ops",
                    vec![(
                        rate(&col::SINK_ITEMS, "sink", index_sinks),
                        "{{sink}}".into(),
                    )],
                ),
                latency(
                    "Query latency by route",
                    &col::QUERY_SECONDS,
                    "route",
                    "{{route}}",
                ),
                lines(
                    "Disk against the size limit",
                    &col::INDEX_BYTES,
                    "bytes",
                    vec![
                        (series(&col::INDEX_BYTES, "", ""), "{{index}}".into()),
                        (
                            series(&col::INDEX_MAX_BYTES, "", ""),
                            "limit {{index}}".into(),
                        ),
                    ],
                ),
                lines(
                    "Index sinks' lag (records)",
                    &col::SINK_LAG_RECORDS,
                    "short",
                    vec![(
                        format!(
                            "max by (sink) ({})",
                            series(&col::SINK_LAG_RECORDS, "", index_sinks)
                        ),
                        "{{sink}}".into(),
                    )],
                ),
                stat(
                    "Queries per second",
                    col::QUERY_SECONDS.help,
                    "reqps",
                    format!(
                        "sum(rate({}[$__rate_interval]))",
                        series(&col::QUERY_SECONDS, "_count", "")
                    ),
                ),
                lines(
                    "Slowest route (p99)",
                    &col::QUERY_SECONDS,
                    "s",
                    vec![(
                        format!("topk(1, {})", quantile(&col::QUERY_SECONDS, 0.99, "route")),
                        "{{route}}".into(),
                    )],
                ),
            ],
        }],
    }
}
