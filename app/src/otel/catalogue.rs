//! Every metric the API and the workers record, declared once. The code records through
//! [`metrics()`]; the dashboard and alert generators read [`ALL`]. Names follow the
//! OpenTelemetry semantic conventions where one exists (`http.server.request.duration`,
//! `db.client.operation.duration`); the clinic's own are `fertivision.*`. No label ever holds
//! a patient's data: routes are templates, tables and operations are constants.

use std::sync::OnceLock;

use telemetry::catalogue::{
    Counter, Gauge, Histogram, Indicator, Meter, MetricDef, MetricKind, Slo,
};

/// Buckets for request and query durations, in seconds: 1 ms to 10 s.
const LATENCY: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets for background work, in seconds: 10 ms to 5 min.
const WORK: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The API answers: 99.9 % of requests without a server error (5xx).
pub const API_AVAILABILITY: Slo = Slo {
    id: "api-availability",
    description: "99.9% of API requests are answered without a server error (5xx).",
    objective: 0.999,
    events: &[],
    indicator: Indicator::Errors {
        label: "http.response.status_code",
        bad: "5..",
    },
};

/// The API answers reads fast: 99 % of GET requests within 20 ms (the bound of issue 6).
pub const API_LATENCY: Slo = Slo {
    id: "api-latency",
    description: "99% of API reads (GET) are answered within 20 ms.",
    objective: 0.99,
    events: &[("http.request.method", "GET")],
    indicator: Indicator::Latency { threshold: 0.02 },
};

/// Uploaded documents get analysed: 99 % of analysis jobs end completed, not dead.
pub const ANALYSIS_AVAILABILITY: Slo = Slo {
    id: "analysis-availability",
    description: "99% of document analyses end with the document analysed, not dead after their last attempt.",
    objective: 0.99,
    events: &[
        ("job.kind", crate::jobs::ANALYZE_DOCUMENT),
        ("outcome", "completed|dead"),
    ],
    indicator: Indicator::Errors {
        label: "outcome",
        bad: "dead",
    },
};

/// Uploaded documents get analysed fast: 99 % of analyses within 60 s.
pub const ANALYSIS_LATENCY: Slo = Slo {
    id: "analysis-latency",
    description: "99% of document analyses (text extraction, classification, storing the values) finish within 60 s.",
    objective: 0.99,
    events: &[],
    indicator: Indicator::Latency { threshold: 60.0 },
};

/// `http.server.request.duration`: every request the API answers.
pub static HTTP_SERVER_REQUEST_DURATION: MetricDef = MetricDef {
    name: "http.server.request.duration",
    kind: MetricKind::Histogram,
    unit: "s",
    labels: &[
        "http.route",
        "http.request.method",
        "http.response.status_code",
    ],
    help: "Duration of HTTP requests the API answered, by route template, method and status.",
    slos: &[API_AVAILABILITY, API_LATENCY],
    buckets: LATENCY,
};

/// `http.server.active_requests`: requests being served now.
pub static HTTP_SERVER_ACTIVE_REQUESTS: MetricDef = MetricDef {
    name: "http.server.active_requests",
    kind: MetricKind::UpDownCounter,
    unit: "{request}",
    labels: &["http.request.method"],
    help: "Requests the API is serving now.",
    slos: &[],
    buckets: &[],
};

/// `db.client.operation.duration`: every store call (all its statements).
pub static DB_CLIENT_OPERATION_DURATION: MetricDef = MetricDef {
    name: "db.client.operation.duration",
    kind: MetricKind::Histogram,
    unit: "s",
    labels: &[
        "db.system.name",
        "db.operation.name",
        "db.collection.name",
        "outcome",
    ],
    help: "Duration of database calls by system, operation, table and outcome (ok, error, timeout, circuit_open).",
    slos: &[],
    buckets: LATENCY,
};

/// `fertivision.job.duration`: one attempt of a background job.
pub static JOB_DURATION: MetricDef = MetricDef {
    name: "fertivision.job.duration",
    kind: MetricKind::Histogram,
    unit: "s",
    labels: &["job.kind", "outcome"],
    help: "Duration of one attempt of a background job by kind and outcome (completed, retry, dead).",
    slos: &[ANALYSIS_AVAILABILITY],
    buckets: WORK,
};

/// `fertivision.job.retries`: failed attempts that will be retried.
pub static JOB_RETRIES: MetricDef = MetricDef {
    name: "fertivision.job.retries",
    kind: MetricKind::Counter,
    unit: "{attempt}",
    labels: &["job.kind"],
    help: "Job attempts that failed and were scheduled again.",
    slos: &[],
    buckets: &[],
};

/// `fertivision.patients`: patients created (`fertivision_patients_total`).
pub static PATIENTS: MetricDef = MetricDef {
    name: "fertivision.patients",
    kind: MetricKind::Counter,
    unit: "{patient}",
    labels: &[],
    help: "Patients created.",
    slos: &[],
    buckets: &[],
};

/// `fertivision.document.processing`: a document's analysis, from its job's start to its
/// values stored (`fertivision_document_processing_seconds`).
pub static DOCUMENT_PROCESSING: MetricDef = MetricDef {
    name: "fertivision.document.processing",
    kind: MetricKind::Histogram,
    unit: "s",
    labels: &["outcome"],
    help: "Time to analyse one uploaded document (extract text, classify, store), by outcome.",
    slos: &[ANALYSIS_LATENCY],
    buckets: WORK,
};

/// `fertivision.report.generation`: rendering and storing one PDF report
/// (`fertivision_report_generation_seconds`).
pub static REPORT_GENERATION: MetricDef = MetricDef {
    name: "fertivision.report.generation",
    kind: MetricKind::Histogram,
    unit: "s",
    labels: &[],
    help: "Time to generate one patient report: load the records, render the PDF, store it.",
    slos: &[],
    buckets: WORK,
};

/// `db.client.connection.count`: the database pool's connections by state.
pub static DB_CLIENT_CONNECTION_COUNT: MetricDef = MetricDef {
    name: "db.client.connection.count",
    kind: MetricKind::Gauge,
    unit: "{connection}",
    labels: &["db.system.name", "db.client.connection.state"],
    help: "Connections of the database pool, used and idle (sampled every few seconds).",
    slos: &[],
    buckets: &[],
};

/// `fertivision.jobs`: jobs by status; `pending` is the queue depth.
pub static JOBS: MetricDef = MetricDef {
    name: "fertivision.jobs",
    kind: MetricKind::Gauge,
    unit: "{job}",
    labels: &["job.status"],
    help: "Jobs in the database by status; pending ones are the queue depth (sampled by the workers).",
    slos: &[],
    buckets: &[],
};

/// `fertivision.jobs.oldest_due.age`: how long the longest-waiting due job has waited.
pub static JOBS_OLDEST_DUE_AGE: MetricDef = MetricDef {
    name: "fertivision.jobs.oldest_due.age",
    kind: MetricKind::Gauge,
    unit: "s",
    labels: &[],
    help: "How long the longest-waiting due job (pending, or failed and past its retry time) has waited; 0 when none (sampled by the workers).",
    slos: &[],
    buckets: &[],
};

/// `fertivision.job.queue.wait`: the queue's lag, from a job being due to a worker taking it.
pub static JOB_QUEUE_WAIT: MetricDef = MetricDef {
    name: "fertivision.job.queue.wait",
    kind: MetricKind::Histogram,
    unit: "s",
    labels: &["job.kind"],
    help: "Time from a job being due (queued, or its retry time) to a worker taking it.",
    slos: &[],
    buckets: WORK,
};

/// `fertivision.breaker.state`: each circuit breaker's state.
pub static BREAKER_STATE: MetricDef = MetricDef {
    name: "fertivision.breaker.state",
    kind: MetricKind::Gauge,
    unit: "1",
    labels: &["dependency"],
    help: "Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open.",
    slos: &[],
    buckets: &[],
};

/// `fertivision.breaker.transitions`: state changes of each circuit breaker.
pub static BREAKER_TRANSITIONS: MetricDef = MetricDef {
    name: "fertivision.breaker.transitions",
    kind: MetricKind::Counter,
    unit: "{transition}",
    labels: &["dependency", "to"],
    help: "Circuit breaker state changes per dependency and new state.",
    slos: &[],
    buckets: &[],
};

/// `fertivision.cache.requests`: read-through cache lookups.
pub static CACHE_REQUESTS: MetricDef = MetricDef {
    name: "fertivision.cache.requests",
    kind: MetricKind::Counter,
    unit: "{request}",
    labels: &["cache.result"],
    help: "Read-through cache lookups by result (hit, miss).",
    slos: &[],
    buckets: &[],
};

/// `fertivision.rate_limit.refusals`: requests refused by a rate limit.
pub static RATE_LIMIT_REFUSALS: MetricDef = MetricDef {
    name: "fertivision.rate_limit.refusals",
    kind: MetricKind::Counter,
    unit: "{request}",
    labels: &["limit"],
    help: "Requests answered 429 by a per-token rate limit, by limit.",
    slos: &[],
    buckets: &[],
};

/// `fertivision.telemetry.lost`: telemetry this process could not hand to the collector.
pub static TELEMETRY_LOST: MetricDef = MetricDef {
    name: "fertivision.telemetry.lost",
    kind: MetricKind::Counter,
    unit: "{item}",
    labels: &["signal", "reason"],
    help: "Spans, log records and metric exports lost on the way to the collector, by reason (queue_full, export_failed).",
    slos: &[],
    buckets: &[],
};

/// Every declaration, for the generators and the tests.
pub static ALL: &[&MetricDef] = &[
    &HTTP_SERVER_REQUEST_DURATION,
    &HTTP_SERVER_ACTIVE_REQUESTS,
    &DB_CLIENT_OPERATION_DURATION,
    &JOB_DURATION,
    &JOB_RETRIES,
    &PATIENTS,
    &DOCUMENT_PROCESSING,
    &REPORT_GENERATION,
    &DB_CLIENT_CONNECTION_COUNT,
    &JOBS,
    &JOBS_OLDEST_DUE_AGE,
    &JOB_QUEUE_WAIT,
    &BREAKER_STATE,
    &BREAKER_TRANSITIONS,
    &CACHE_REQUESTS,
    &RATE_LIMIT_REFUSALS,
    &TELEMETRY_LOST,
];

/// The instruments of this process, one per declaration.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The meter they record into (exported by [`super::Telemetry`]).
    pub meter: Meter,
    /// See [`HTTP_SERVER_REQUEST_DURATION`].
    pub http_duration: Histogram,
    /// See [`HTTP_SERVER_ACTIVE_REQUESTS`].
    pub http_active: Gauge,
    /// See [`DB_CLIENT_OPERATION_DURATION`].
    pub db_duration: Histogram,
    /// See [`JOB_DURATION`].
    pub job_duration: Histogram,
    /// See [`JOB_RETRIES`].
    pub job_retries: Counter,
    /// See [`PATIENTS`].
    pub patients: Counter,
    /// See [`DOCUMENT_PROCESSING`].
    pub document_processing: Histogram,
    /// See [`REPORT_GENERATION`].
    pub report_generation: Histogram,
    /// See [`DB_CLIENT_CONNECTION_COUNT`].
    pub db_connections: Gauge,
    /// See [`JOBS`].
    pub jobs: Gauge,
    /// See [`JOBS_OLDEST_DUE_AGE`].
    pub jobs_oldest_due_age: Gauge,
    /// See [`JOB_QUEUE_WAIT`].
    pub job_queue_wait: Histogram,
    /// See [`BREAKER_STATE`].
    pub breaker_state: Gauge,
    /// See [`BREAKER_TRANSITIONS`].
    pub breaker_transitions: Counter,
    /// See [`CACHE_REQUESTS`].
    pub cache_requests: Counter,
    /// See [`RATE_LIMIT_REFUSALS`].
    pub rate_limit_refusals: Counter,
    /// See [`TELEMETRY_LOST`].
    pub telemetry_lost: Counter,
}

/// The process's instruments (created on first use).
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let meter = Meter::new();
        Metrics {
            http_duration: meter.histogram(&HTTP_SERVER_REQUEST_DURATION),
            http_active: meter.gauge(&HTTP_SERVER_ACTIVE_REQUESTS),
            db_duration: meter.histogram(&DB_CLIENT_OPERATION_DURATION),
            job_duration: meter.histogram(&JOB_DURATION),
            job_retries: meter.counter(&JOB_RETRIES),
            patients: meter.counter(&PATIENTS),
            document_processing: meter.histogram(&DOCUMENT_PROCESSING),
            report_generation: meter.histogram(&REPORT_GENERATION),
            db_connections: meter.gauge(&DB_CLIENT_CONNECTION_COUNT),
            jobs: meter.gauge(&JOBS),
            jobs_oldest_due_age: meter.gauge(&JOBS_OLDEST_DUE_AGE),
            job_queue_wait: meter.histogram(&JOB_QUEUE_WAIT),
            breaker_state: meter.gauge(&BREAKER_STATE),
            breaker_transitions: meter.counter(&BREAKER_TRANSITIONS),
            cache_requests: meter.counter(&CACHE_REQUESTS),
            rate_limit_refusals: meter.counter(&RATE_LIMIT_REFUSALS),
            telemetry_lost: meter.counter(&TELEMETRY_LOST),
            meter,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_unique_valid_and_named_as_promised() {
        let mut names = std::collections::HashSet::new();
        for def in ALL {
            assert!(names.insert(def.name), "{} declared twice", def.name);
            assert!(!def.help.is_empty(), "{} has no help", def.name);
            assert_eq!(
                def.kind == MetricKind::Histogram,
                !def.buckets.is_empty(),
                "{}: buckets exactly for histograms",
                def.name
            );
            assert!(
                def.buckets.windows(2).all(|w| w[0] < w[1]),
                "{}: buckets ascend",
                def.name
            );
            assert!(!def.prometheus_name().is_empty());
            assert_eq!(def.problems(), Vec::<String>::new());
        }
        let mut slos = std::collections::HashSet::new();
        for slo in ALL.iter().flat_map(|def| def.slos) {
            assert!(slos.insert(slo.id), "SLO {} declared twice", slo.id);
        }
        assert_eq!(slos.len(), 4, "API and analysis, availability and latency");
        assert_eq!(PATIENTS.prometheus_series(), "fertivision_patients_total");
        assert_eq!(
            DOCUMENT_PROCESSING.prometheus_name(),
            "fertivision_document_processing_seconds"
        );
        assert_eq!(
            HTTP_SERVER_REQUEST_DURATION.prometheus_name(),
            "http_server_request_duration_seconds"
        );
    }
}
