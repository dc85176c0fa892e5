//! `log_index` and `span_index`: log records and spans into the tantivy index of the
//! `log-index` crate, behind the search API ([`crate::query`]).
//!
//! Each write adds the batch's documents; each commit commits the partitions written since the
//! last one (what is committed is searchable at once: the pipeline commits these sinks every
//! second) and stores the log position with them, so after a crash the index resumes where its
//! data ends (exactly once, see [`log_index::store`]). Other signals pass through untouched.

use std::sync::Arc;

use log_index::{IndexError, LogIndex, SpanIndex};

use super::{BoxFuture, CommitPolicy, Sink, SinkError};
use crate::batch::Batch;
use crate::wal::Lsn;

/// Index commits: once a second (searchable within about a second of the acknowledgement,
/// with half the segments, and so half the merging, of the default half second).
const INDEX_COMMITS: CommitPolicy = CommitPolicy {
    records: 8192,
    every: std::time::Duration::from_secs(1),
};

/// What an index sink needs of an index. Every method blocks.
pub trait Indexed: Send + Sync + 'static {
    /// Adds the batch's documents if it is of the index's signal; ignores it otherwise.
    fn add_batch(&self, batch: &Batch) -> Result<(), IndexError>;
    /// Commits what was added, with the log position `lsn`.
    fn commit_at(&self, lsn: u64) -> Result<(), IndexError>;
    /// The position stored by the last commit.
    fn stored_position(&self) -> Option<u64>;
}

impl Indexed for LogIndex {
    fn add_batch(&self, batch: &Batch) -> Result<(), IndexError> {
        match batch {
            Batch::Logs(request) => self.add(request).map(|_| ()),
            _ => Ok(()),
        }
    }
    fn commit_at(&self, lsn: u64) -> Result<(), IndexError> {
        self.commit(Some(lsn))
    }
    fn stored_position(&self) -> Option<u64> {
        self.store().position()
    }
}

impl Indexed for SpanIndex {
    fn add_batch(&self, batch: &Batch) -> Result<(), IndexError> {
        let Batch::Traces(request) = batch else {
            return Ok(());
        };
        let (_, skipped) = self.add(request)?;
        if skipped > 0 {
            tracing::debug!(skipped, "spans without a trace or span id not indexed");
        }
        Ok(())
    }
    fn commit_at(&self, lsn: u64) -> Result<(), IndexError> {
        self.commit(Some(lsn))
    }
    fn stored_position(&self) -> Option<u64> {
        self.store().position()
    }
}

/// The sink over an index.
#[derive(Debug)]
pub struct IndexSink<I> {
    index: Arc<I>,
}

/// The `log_index` sink.
pub type LogIndexSink = IndexSink<LogIndex>;
/// The `span_index` sink.
pub type SpanIndexSink = IndexSink<SpanIndex>;

impl<I: Indexed> IndexSink<I> {
    /// A sink into `index`.
    pub fn new(index: Arc<I>) -> Self {
        Self { index }
    }
}

/// Runs `work` off the runtime.
async fn blocking(
    work: impl FnOnce() -> Result<(), IndexError> + Send + 'static,
) -> Result<(), SinkError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(outcome) => outcome.map_err(|error| SinkError {
            message: error.to_string(),
            // A full disk or a lock held by another process may clear; the batch is kept.
            retryable: true,
        }),
        Err(join) => Err(SinkError {
            message: format!("index task failed: {join}"),
            retryable: false,
        }),
    }
}

impl<I: Indexed> Sink for IndexSink<I> {
    fn write(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), SinkError>> {
        let index = Arc::clone(&self.index);
        Box::pin(blocking(move || index.add_batch(&batch)))
    }

    fn commit(&mut self, position: Lsn) -> BoxFuture<'_, Result<(), SinkError>> {
        let index = Arc::clone(&self.index);
        Box::pin(blocking(move || index.commit_at(position.0)))
    }

    fn durable_position(&self) -> Option<Lsn> {
        self.index.stored_position().map(Lsn)
    }

    fn commit_policy(&self) -> CommitPolicy {
        INDEX_COMMITS
    }
}
