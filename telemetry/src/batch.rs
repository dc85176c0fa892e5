//! What flows through the pipeline: one decoded OTLP export request (or one profile), read
//! back from the write-ahead log.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::wal::{Record, Signal};

/// A pprof profile with the labels it was pushed with (Pyroscope `/ingest`).
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Application name, e.g. `fertivision-api` (Pyroscope's `name`, without its labels).
    pub service: String,
    /// Labels from the name (`name=svc{instance=a,kind=cpu}`), sorted.
    pub labels: Vec<(String, String)>,
    /// Start of the profiled interval, unix seconds.
    pub from: i64,
    /// End of the profiled interval, unix seconds.
    pub until: i64,
    /// The pprof protobuf, possibly gzip-compressed as sent.
    pub pprof: Bytes,
}

/// One unit of work for transforms and sinks.
#[derive(Debug, Clone, PartialEq)]
pub enum Batch {
    /// Spans.
    Traces(ExportTraceServiceRequest),
    /// Metric data points.
    Metrics(ExportMetricsServiceRequest),
    /// Log records.
    Logs(ExportLogsServiceRequest),
    /// One profile.
    Profile(Profile),
}

/// A log record that does not decode back into a batch.
#[derive(Debug, thiserror::Error)]
#[error("log record {lsn} does not decode: {reason}")]
pub struct DecodeError {
    /// Its sequence number.
    pub lsn: u64,
    /// Why.
    pub reason: String,
}

impl Batch {
    /// Its signal.
    pub fn signal(&self) -> Signal {
        match self {
            Batch::Traces(_) => Signal::Traces,
            Batch::Metrics(_) => Signal::Metrics,
            Batch::Logs(_) => Signal::Logs,
            Batch::Profile(_) => Signal::Profiles,
        }
    }

    /// Items in the batch: spans, data points, log records, or 1 for a profile.
    pub fn items(&self) -> usize {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        match self {
            Batch::Traces(r) => r
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum(),
            Batch::Logs(r) => r
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len())
                .sum(),
            Batch::Metrics(r) => r
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .map(|m| match &m.data {
                    Some(Data::Gauge(g)) => g.data_points.len(),
                    Some(Data::Sum(s)) => s.data_points.len(),
                    Some(Data::Histogram(h)) => h.data_points.len(),
                    Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
                    Some(Data::Summary(s)) => s.data_points.len(),
                    None => 0,
                })
                .sum(),
            Batch::Profile(_) => 1,
        }
    }

    /// Decodes a log record. Profiles are stored as [`encode_profile`] wrote them.
    pub fn decode(record: &Record) -> Result<Batch, DecodeError> {
        let fail = |reason: String| DecodeError {
            lsn: record.lsn.0,
            reason,
        };
        let payload = record.payload.clone();
        match record.signal {
            Signal::Traces => ExportTraceServiceRequest::decode(payload)
                .map(Batch::Traces)
                .map_err(|e| fail(e.to_string())),
            Signal::Metrics => ExportMetricsServiceRequest::decode(payload)
                .map(Batch::Metrics)
                .map_err(|e| fail(e.to_string())),
            Signal::Logs => ExportLogsServiceRequest::decode(payload)
                .map(Batch::Logs)
                .map_err(|e| fail(e.to_string())),
            Signal::Profiles => decode_profile(&payload).map(Batch::Profile).map_err(fail),
        }
    }
}

/// The log's encoding of a profile: a small JSON header line, then the pprof bytes.
pub fn encode_profile(profile: &Profile) -> Bytes {
    let header = serde_json::json!({
        "service": profile.service,
        "labels": profile.labels,
        "from": profile.from,
        "until": profile.until,
    });
    let mut out = serde_json::to_vec(&header).expect("json");
    out.push(b'\n');
    out.extend_from_slice(&profile.pprof);
    Bytes::from(out)
}

fn decode_profile(payload: &Bytes) -> Result<Profile, String> {
    let split = payload
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("no profile header")?;
    let header: serde_json::Value =
        serde_json::from_slice(&payload[..split]).map_err(|e| e.to_string())?;
    let labels = header["labels"]
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|p| Some((p[0].as_str()?.to_owned(), p[1].as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Profile {
        service: header["service"].as_str().ok_or("no service")?.to_owned(),
        labels,
        from: header["from"].as_i64().ok_or("no from")?,
        until: header["until"].as_i64().ok_or("no until")?,
        pprof: payload.slice(split + 1..),
    })
}
