//! The alerts that are not SLO burn rates: breakers, the job queue, dead letters, the
//! collector, the index, scrape targets and lost telemetry. Each with a check in which it
//! fires and one in which it stays quiet.

use fertivision::otel::catalogue::{
    BREAKER_STATE, JOB_DURATION, JOBS, JOBS_OLDEST_DUE_AGE, TELEMETRY_LOST,
};
use telemetry::catalogue::MetricDef;
use telemetry::catalogue::collector::{
    INDEX_BYTES, INDEX_MAX_BYTES, REFUSED_REQUESTS, SINK_DROPPED_BATCHES, WAL_BYTES, WAL_MAX_BYTES,
};

use crate::{AlertRule, Check, Group, Severity, selector};

/// The scrape job of the collector in `compose/prometheus/prometheus.yml`.
pub const COLLECTOR_JOB: &str = "fertivision-collector";

/// Pending jobs above which the queue is a backlog.
const BACKLOG_JOBS: u32 = 100;
/// Seconds a due job may wait (the analysis SLO allows 60 s for all of it).
const OLDEST_DUE_SECONDS: u32 = 300;
/// Share of job attempts failing that needs a look.
const JOB_FAILURE_RATIO: f64 = 0.1;

fn rule(
    name: &'static str,
    severity: Severity,
    expr: String,
    hold: Option<&'static str>,
    (summary, description): (&str, &str),
    (dashboard, log_query): (&'static str, &str),
) -> AlertRule {
    AlertRule {
        name,
        severity,
        expr,
        hold,
        labels: vec![],
        summary: summary.to_owned(),
        description: description.to_owned(),
        dashboard,
        log_query: log_query.to_owned(),
    }
}

fn check(
    alert: &'static str,
    name: &str,
    series: &[(String, &str)],
    eval_time: &'static str,
    expect: Vec<(Severity, Vec<(&'static str, String)>)>,
) -> Check {
    Check {
        name: name.to_owned(),
        alert,
        series: series
            .iter()
            .map(|(s, v)| (s.clone(), (*v).to_owned()))
            .collect(),
        eval_time,
        expect,
    }
}

/// A series of `def` (with `suffix`) and labels, in promtool's notation.
fn series(def: &MetricDef, suffix: &str, labels: &str) -> String {
    format!("{}{suffix}{{{labels}}}", def.prometheus_name())
}

fn labels(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// Every operational alert and its checks.
pub(crate) fn group() -> Group {
    let mut alerts = Vec::new();
    let mut checks = Vec::new();

    // A breaker open for more than a minute.
    let state = selector(&BREAKER_STATE, "", &[]);
    alerts.push(rule(
        "CircuitBreakerOpen",
        Severity::Page,
        format!("max by (job, dependency) ({state}) == 2"),
        Some("1m"),
        (
            "{{ $labels.job }}: the {{ $labels.dependency }} circuit breaker is open",
            "Calls to {{ $labels.dependency }} have failed often enough that the breaker stopped \
         making them for over a minute: the requests and jobs that need it are refused fast \
         (503) instead of waiting.",
        ),
        (
            "fertivision-dependencies",
            "service:{{ $labels.job }} AND \"circuit breaker\"",
        ),
    ));
    let api = r#"job="fertivision-api", instance="api-1", dependency="database""#;
    checks.push(check(
        "CircuitBreakerOpen",
        "open for five minutes",
        &[(series(&BREAKER_STATE, "", api), "0 0 2x10")],
        "8m",
        vec![(
            Severity::Page,
            labels(&[("job", "fertivision-api"), ("dependency", "database")]),
        )],
    ));
    checks.push(check(
        "CircuitBreakerOpen",
        "open, half-open, closed again within the minute",
        &[(series(&BREAKER_STATE, "", api), "0 0 2 1 0x8")],
        "8m",
        vec![],
    ));

    // The job queue.
    let pending = selector(&JOBS, "", &[("job.status", "pending")]);
    alerts.push(rule(
        "JobQueueBacklog",
        Severity::Ticket,
        format!("max by (job) ({pending}) > {BACKLOG_JOBS}"),
        Some("10m"),
        (
            "{{ $labels.job }}: more than 100 jobs pending for 10 minutes",
            "Document analyses and reports are queued faster than the workers finish them; \
         results reach the clinic late.",
        ),
        (
            "fertivision-workers",
            "service:{{ $labels.job }} AND severity_number:>=13",
        ),
    ));
    let worker = r#"job="fertivision-worker", instance="worker-1", job_status="pending""#;
    checks.push(check(
        "JobQueueBacklog",
        "250 pending for 20 minutes",
        &[(series(&JOBS, "", worker), "250x20")],
        "15m",
        vec![(Severity::Ticket, labels(&[("job", "fertivision-worker")]))],
    ));
    checks.push(check(
        "JobQueueBacklog",
        "a burst of 250 drained within 5 minutes",
        &[(series(&JOBS, "", worker), "250 200 150 100 50 0x15")],
        "15m",
        vec![],
    ));

    let oldest = selector(&JOBS_OLDEST_DUE_AGE, "", &[]);
    alerts.push(rule(
        "JobOldestDueTooOld",
        Severity::Page,
        format!("max by (job) ({oldest}) > {OLDEST_DUE_SECONDS}"),
        Some("5m"),
        (
            "{{ $labels.job }}: a due job has waited more than 5 minutes",
            "The queue is not moving: a job that is due has not been taken for over five minutes, \
         so uploaded documents are not being analysed.",
        ),
        (
            "fertivision-workers",
            "service:{{ $labels.job }} AND severity_number:>=13",
        ),
    ));
    let age = r#"job="fertivision-worker", instance="worker-1""#;
    checks.push(check(
        "JobOldestDueTooOld",
        "waiting ten minutes and growing",
        &[(series(&JOBS_OLDEST_DUE_AGE, "", age), "0+60x20")],
        "15m",
        vec![(Severity::Page, labels(&[("job", "fertivision-worker")]))],
    ));
    checks.push(check(
        "JobOldestDueTooOld",
        "jobs taken within seconds",
        &[(series(&JOBS_OLDEST_DUE_AGE, "", age), "2 0 5 1 0x16")],
        "15m",
        vec![],
    ));

    // Failing and dead jobs.
    let attempts = selector(&JOB_DURATION, "_count", &[]);
    let failed = selector(&JOB_DURATION, "_count", &[("outcome", "retry|dead")]);
    alerts.push(rule(
        "JobFailureRateHigh",
        Severity::Ticket,
        format!(
            "sum by (job, job_kind) (rate({failed}[10m]))\n/\nsum by (job, job_kind) (rate({attempts}[10m]))\n> {JOB_FAILURE_RATIO}"
        ),
        Some("10m"),
        ("{{ $labels.job }}: over 10 % of {{ $labels.job_kind }} attempts fail", "Job attempts end in a retry or dead; retries delay results and a dependency or an \
         input may be failing."),
        ("fertivision-workers", "service:{{ $labels.job }} AND \"job failed\""),
    ));
    let kind = r#"job="fertivision-worker", instance="worker-1", job_kind="analyze_document""#;
    let ok = format!("{kind}, outcome=\"completed\"");
    let retry = format!("{kind}, outcome=\"retry\"");
    checks.push(check(
        "JobFailureRateHigh",
        "one attempt in four retried",
        &[
            (series(&JOB_DURATION, "_count", &ok), "0+30x40"),
            (series(&JOB_DURATION, "_count", &retry), "0+10x40"),
        ],
        "35m",
        vec![(
            Severity::Ticket,
            labels(&[
                ("job", "fertivision-worker"),
                ("job_kind", "analyze_document"),
            ]),
        )],
    ));
    checks.push(check(
        "JobFailureRateHigh",
        "one attempt in a hundred retried",
        &[
            (series(&JOB_DURATION, "_count", &ok), "0+99x40"),
            (series(&JOB_DURATION, "_count", &retry), "0+1x40"),
        ],
        "35m",
        vec![],
    ));

    let dead = selector(&JOBS, "", &[("job.status", "dead")]);
    alerts.push(rule(
        "JobDeadLetters",
        Severity::Ticket,
        format!("max by (job) (delta({dead}[30m])) > 0"),
        None,
        (
            "{{ $labels.job }}: jobs died in the last 30 minutes",
            "Jobs failed their last attempt and will not be retried: their documents stay \
         unanalysed or their reports unmade until someone looks.",
        ),
        (
            "fertivision-workers",
            "service:{{ $labels.job }} AND \"job dead\"",
        ),
    ));
    let dead_series = r#"job="fertivision-worker", instance="worker-1", job_status="dead""#;
    checks.push(check(
        "JobDeadLetters",
        "one more dead job",
        &[(series(&JOBS, "", dead_series), "3x10 4x10")],
        "15m",
        vec![(Severity::Ticket, labels(&[("job", "fertivision-worker")]))],
    ));
    checks.push(check(
        "JobDeadLetters",
        "old dead jobs, none new",
        &[(series(&JOBS, "", dead_series), "3x20")],
        "15m",
        vec![],
    ));

    // The collector.
    let refused = selector(&REFUSED_REQUESTS, "_total", &[]);
    alerts.push(rule(
        "CollectorRefusingData",
        Severity::Page,
        format!("sum by (job, instance, reason) (rate({refused}[5m])) > 0"),
        Some("5m"),
        (
            "The collector refuses OTLP requests ({{ $labels.reason }})",
            "Senders are told to retry later; what they cannot hold is lost and counted as \
         fertivision_telemetry_lost_total on their side.",
        ),
        ("fertivision-collector", "\"refus\" OR severity_number:>=13"),
    ));
    let refused_series = r#"job="fertivision-collector", instance="collector:7070", signal="traces", reason="log_full""#;
    checks.push(check(
        "CollectorRefusingData",
        "refusing for ten minutes",
        &[(
            series(&REFUSED_REQUESTS, "_total", refused_series),
            "0+20x20",
        )],
        "15m",
        vec![(
            Severity::Page,
            labels(&[
                ("job", COLLECTOR_JOB),
                ("instance", "collector:7070"),
                ("reason", "log_full"),
            ]),
        )],
    ));
    checks.push(check(
        "CollectorRefusingData",
        "no refusals",
        &[(series(&REFUSED_REQUESTS, "_total", refused_series), "0x20")],
        "15m",
        vec![],
    ));

    let dropped = selector(&SINK_DROPPED_BATCHES, "_total", &[]);
    alerts.push(rule(
        "CollectorDroppingData",
        Severity::Page,
        format!("sum by (job, instance, sink) (increase({dropped}[5m])) > 0"),
        None,
        (
            "The collector's {{ $labels.sink }} sink dropped batches",
            "Data accepted by the collector did not reach the {{ $labels.sink }} sink and never \
         will: the platform promises nothing accepted is lost.",
        ),
        ("fertivision-collector", "\"dropped\""),
    ));
    let dropped_series =
        r#"job="fertivision-collector", instance="collector:7070", sink="log_index""#;
    checks.push(check(
        "CollectorDroppingData",
        "two batches dropped",
        &[(
            series(&SINK_DROPPED_BATCHES, "_total", dropped_series),
            "0x10 2x10",
        )],
        "12m",
        vec![(
            Severity::Page,
            labels(&[
                ("job", COLLECTOR_JOB),
                ("instance", "collector:7070"),
                ("sink", "log_index"),
            ]),
        )],
    ));
    checks.push(check(
        "CollectorDroppingData",
        "nothing dropped",
        &[(
            series(&SINK_DROPPED_BATCHES, "_total", dropped_series),
            "0x20",
        )],
        "12m",
        vec![],
    ));

    let wal = selector(&WAL_BYTES, "", &[]);
    let wal_max = selector(&WAL_MAX_BYTES, "", &[]);
    for (severity, share, hold) in [
        (Severity::Ticket, "0.8", "5m"),
        (Severity::Page, "0.95", "2m"),
    ] {
        alerts.push(rule(
            "CollectorLogNearFull",
            severity,
            format!("{wal} / {wal_max} > {share}"),
            Some(hold),
            (
                "The collector's write-ahead log is nearly full",
                "A sink is not keeping up, so the log keeps what it has not finished; when the log \
             is full the collector refuses new data.",
            ),
            ("fertivision-collector", "\"write-ahead\" OR \"sink\""),
        ));
    }
    let wal_labels = r#"job="fertivision-collector", instance="collector:7070""#;
    let wal_fired = labels(&[("job", COLLECTOR_JOB), ("instance", "collector:7070")]);
    checks.push(check(
        "CollectorLogNearFull",
        "at 97 % for ten minutes: both",
        &[
            (series(&WAL_BYTES, "", wal_labels), "970x15"),
            (series(&WAL_MAX_BYTES, "", wal_labels), "1000x15"),
        ],
        "12m",
        vec![
            (Severity::Ticket, wal_fired.clone()),
            (Severity::Page, wal_fired.clone()),
        ],
    ));
    checks.push(check(
        "CollectorLogNearFull",
        "at 85 %: the ticket only",
        &[
            (series(&WAL_BYTES, "", wal_labels), "850x15"),
            (series(&WAL_MAX_BYTES, "", wal_labels), "1000x15"),
        ],
        "12m",
        vec![(Severity::Ticket, wal_fired)],
    ));
    checks.push(check(
        "CollectorLogNearFull",
        "at 30 %",
        &[
            (series(&WAL_BYTES, "", wal_labels), "300x15"),
            (series(&WAL_MAX_BYTES, "", wal_labels), "1000x15"),
        ],
        "12m",
        vec![],
    ));

    let index = selector(&INDEX_BYTES, "", &[]);
    let index_max = selector(&INDEX_MAX_BYTES, "", &[]);
    alerts.push(rule(
        "LogIndexDiskNearFull",
        Severity::Ticket,
        format!("{index} / {index_max} > 0.9"),
        Some("30m"),
        (
            "The {{ $labels.index }} index is at 90 % of its size limit",
            "Past its size limit the index drops its oldest days before their retention ends: \
         logs or traces the clinic may need for an investigation disappear early.",
        ),
        ("fertivision-log-index", "\"retention\" OR \"partition\""),
    ));
    let index_labels = r#"job="fertivision-collector", instance="collector:7070", index="logs""#;
    let index_fired = labels(&[
        ("job", COLLECTOR_JOB),
        ("instance", "collector:7070"),
        ("index", "logs"),
    ]);
    checks.push(check(
        "LogIndexDiskNearFull",
        "at 95 % for an hour",
        &[
            (series(&INDEX_BYTES, "", index_labels), "95x70"),
            (series(&INDEX_MAX_BYTES, "", index_labels), "100x70"),
        ],
        "60m",
        vec![(Severity::Ticket, index_fired)],
    ));
    checks.push(check(
        "LogIndexDiskNearFull",
        "at half",
        &[
            (series(&INDEX_BYTES, "", index_labels), "50x70"),
            (series(&INDEX_MAX_BYTES, "", index_labels), "100x70"),
        ],
        "60m",
        vec![],
    ));

    // Scrape targets.
    alerts.push(rule(
        "ScrapeTargetDown",
        Severity::Page,
        "up == 0".to_owned(),
        Some("2m"),
        (
            "Prometheus cannot scrape {{ $labels.job }} at {{ $labels.instance }}",
            "The target is down or unreachable: its metrics, and the alerts that read them, are \
         blind until it is back.",
        ),
        ("fertivision-collector", "severity_number:>=17"),
    ));
    let up = r#"up{job="fertivision-collector", instance="collector:7070"}"#;
    checks.push(check(
        "ScrapeTargetDown",
        "down for five minutes",
        &[(up.to_owned(), "1 1 0x10")],
        "8m",
        vec![(
            Severity::Page,
            labels(&[("job", COLLECTOR_JOB), ("instance", "collector:7070")]),
        )],
    ));
    checks.push(check(
        "ScrapeTargetDown",
        "one failed scrape",
        &[(up.to_owned(), "1 1 0 1x10")],
        "8m",
        vec![],
    ));

    alerts.push(rule(
        "ScrapeTargetAbsent",
        Severity::Page,
        format!("absent(up{{job=\"{COLLECTOR_JOB}\"}})"),
        Some("5m"),
        (
            "Prometheus has no collector target",
            "The collector's scrape job is missing from Prometheus (its configuration or service \
         discovery lost it): every FertiVision metric and alert is blind.",
        ),
        ("fertivision-collector", "severity_number:>=17"),
    ));
    checks.push(check(
        "ScrapeTargetAbsent",
        "no collector target at all",
        &[(
            r#"up{job="prometheus", instance="localhost:9090"}"#.to_owned(),
            "1x15",
        )],
        "10m",
        vec![(Severity::Page, labels(&[("job", COLLECTOR_JOB)]))],
    ));
    checks.push(check(
        "ScrapeTargetAbsent",
        "the collector target is there",
        &[(up.to_owned(), "1x15")],
        "10m",
        vec![],
    ));

    // Telemetry the services could not hand over.
    let lost = selector(&TELEMETRY_LOST, "_total", &[]);
    alerts.push(rule(
        "TelemetryLost",
        Severity::Ticket,
        format!("sum by (job, signal, reason) (rate({lost}[5m])) > 0"),
        Some("10m"),
        ("{{ $labels.job }} loses {{ $labels.signal }} on the way to the collector ({{ $labels.reason }})", "The service drops telemetry it cannot queue or export: traces, logs or metrics of \
         this period are incomplete."),
        ("fertivision-collector", "service:{{ $labels.job }}"),
    ));
    let lost_series =
        r#"job="fertivision-api", instance="api-1", signal="traces", reason="queue_full""#;
    checks.push(check(
        "TelemetryLost",
        "losing spans for twenty minutes",
        &[(series(&TELEMETRY_LOST, "_total", lost_series), "0+50x25")],
        "20m",
        vec![(
            Severity::Ticket,
            labels(&[
                ("job", "fertivision-api"),
                ("signal", "traces"),
                ("reason", "queue_full"),
            ]),
        )],
    ));
    checks.push(check(
        "TelemetryLost",
        "nothing lost",
        &[(series(&TELEMETRY_LOST, "_total", lost_series), "0x25")],
        "20m",
        vec![],
    ));

    Group {
        name: "fertivision-operations".into(),
        records: vec![],
        alerts,
        checks,
    }
}
