//! The log and span index of FertiVision: OTLP log records and spans in time-partitioned
//! tantivy indexes (one per UTC day and kind), full-text and field search over them, and the
//! lookups that link logs and traces.
//!
//! The collector's `log_index` and `span_index` sinks write here; the query API and the CLI
//! read. Every call blocks: async code runs them on `spawn_blocking`.
//!
//! ```
//! use log_index::{LogIndex, StoreConfig, SearchRequest};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let logs = LogIndex::open(dir.path(), StoreConfig::default())?;
//! // logs.add(&export_logs_request)?; logs.commit(Some(lsn))?;
//! let page = logs.search(&SearchRequest { query: "severity:ERROR".into(), limit: 50, ..Default::default() })?;
//! assert_eq!(page.total, 0);
//! # Ok(()) }
//! ```

pub mod catalog;
pub mod doc;
pub mod schema;
pub mod search;
pub mod store;

use std::path::Path;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

pub use catalog::Operation;
pub use schema::{Kind, LogFields, SpanFields};
pub use search::{Bucket, Cursor, HistogramRequest, Hit, SearchError, SearchPage, SearchRequest};
pub use store::{IndexError, IndexStore, StoreConfig};

use search::Parser;

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
}

/// The log records: `<dir>/logs/<day>/`.
#[derive(Debug)]
pub struct LogIndex {
    fields: LogFields,
    store: IndexStore,
    parser: Parser,
}

impl LogIndex {
    /// Opens (or creates) the log partitions under `dir/logs`.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Self, IndexError> {
        let fields = LogFields::new();
        let store = IndexStore::open(
            &dir.join(Kind::Logs.dir_name()),
            Kind::Logs,
            fields.schema.clone(),
            config,
        )?;
        let parser = Parser::new(&fields.schema, vec![fields.body]);
        Ok(Self {
            fields,
            store,
            parser,
        })
    }

    /// Adds the records of one export request; searchable after [`LogIndex::commit`].
    pub fn add(&self, request: &ExportLogsServiceRequest) -> Result<usize, IndexError> {
        let docs = doc::log_docs(&self.fields, request, now_ns());
        let count = docs.len();
        self.store.add(docs)?;
        Ok(count)
    }

    /// Commits and makes searchable what was added, storing the log position `lsn`.
    pub fn commit(&self, lsn: Option<u64>) -> Result<(), IndexError> {
        self.store.commit(lsn)
    }

    /// A page of log records, newest first.
    pub fn search(&self, request: &SearchRequest) -> Result<SearchPage, SearchError> {
        search::search(&self.store, &self.parser, request)
    }

    /// Records matching `query` indexed after `after` (a hit's `seq`), in indexing order: the
    /// next page of a live tail. Start from [`IndexStore::last_seq`].
    pub fn tail(&self, query: &str, after: u64, limit: usize) -> Result<Vec<Hit>, SearchError> {
        search::tail(&self.store, &self.parser, query, after, limit)
    }

    /// Counts per interval (and severity) of the records matching a query.
    pub fn histogram(
        &self,
        request: &search::HistogramRequest,
    ) -> Result<Vec<search::Bucket>, SearchError> {
        search::histogram(&self.store, &self.parser, request)
    }

    /// The log records of one trace, oldest first.
    pub fn by_trace(&self, trace_id: &str) -> Result<Vec<Hit>, SearchError> {
        search::by_trace(&self.store, trace_id)
    }

    /// The partitions.
    pub fn store(&self) -> &IndexStore {
        &self.store
    }
}

/// The spans: `<dir>/spans/<day>/`.
#[derive(Debug)]
pub struct SpanIndex {
    fields: SpanFields,
    store: IndexStore,
    parser: Parser,
}

impl SpanIndex {
    /// Opens (or creates) the span partitions under `dir/spans`.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Self, IndexError> {
        let fields = SpanFields::new();
        let store = IndexStore::open(
            &dir.join(Kind::Spans.dir_name()),
            Kind::Spans,
            fields.schema.clone(),
            config,
        )?;
        let parser = Parser::new(&fields.schema, vec![fields.name, fields.status_message]);
        Ok(Self {
            fields,
            store,
            parser,
        })
    }

    /// Adds the spans of one export request; returns (added, skipped for lack of ids).
    pub fn add(&self, request: &ExportTraceServiceRequest) -> Result<(usize, usize), IndexError> {
        let (docs, skipped) = doc::span_docs(&self.fields, request);
        let count = docs.len();
        self.store.add(docs)?;
        Ok((count, skipped))
    }

    /// Commits and makes searchable what was added, storing the log position `lsn`.
    pub fn commit(&self, lsn: Option<u64>) -> Result<(), IndexError> {
        self.store.commit(lsn)
    }

    /// A page of spans, newest first.
    pub fn search(&self, request: &SearchRequest) -> Result<SearchPage, SearchError> {
        search::search(&self.store, &self.parser, request)
    }

    /// The spans of one trace, by start time.
    pub fn by_trace(&self, trace_id: &str) -> Result<Vec<Hit>, SearchError> {
        search::by_trace(&self.store, trace_id)
    }

    /// The distinct services of the spans, sorted (at most [`catalog::MAX_CATALOG_ITEMS`]).
    pub fn services(&self) -> Result<Vec<String>, SearchError> {
        catalog::services(&self.store)
    }

    /// The distinct operations of `service` with their span kinds, sorted by name then kind
    /// (at most [`catalog::MAX_CATALOG_ITEMS`]).
    pub fn operations(&self, service: &str) -> Result<Vec<Operation>, SearchError> {
        catalog::operations(&self.store, service)
    }

    /// The partitions.
    pub fn store(&self) -> &IndexStore {
        &self.store
    }
}
