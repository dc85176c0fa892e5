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

fn failed(error: IndexError) -> SinkError {
    SinkError {
        message: error.to_string(),
        // A full disk or a lock held by another process may clear; the batch is kept.
        retryable: true,
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, IndexError> + Send + 'static,
) -> Result<T, SinkError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(outcome) => outcome.map_err(failed),
        Err(join) => Err(SinkError {
            message: format!("index task failed: {join}"),
            retryable: false,
        }),
    }
}

/// The log index sink.
#[derive(Debug, Clone)]
pub struct LogIndexSink {
    index: Arc<LogIndex>,
}

impl LogIndexSink {
    /// A sink into `index`.
    pub fn new(index: Arc<LogIndex>) -> Self {
        Self { index }
    }
}

impl Sink for LogIndexSink {
    fn write(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let Batch::Logs(request) = batch else {
                return Ok(());
            };
            let index = Arc::clone(&self.index);
            blocking(move || index.add(&request).map(|_| ())).await
        })
    }

    fn commit(&mut self, position: Lsn) -> BoxFuture<'_, Result<(), SinkError>> {
        let index = Arc::clone(&self.index);
        Box::pin(blocking(move || index.commit(Some(position.0))))
    }

    fn durable_position(&self) -> Option<Lsn> {
        self.index.store().position().map(Lsn)
    }

    fn commit_policy(&self) -> CommitPolicy {
        INDEX_COMMITS
    }
}

/// The span index sink.
#[derive(Debug, Clone)]
pub struct SpanIndexSink {
    index: Arc<SpanIndex>,
}

impl SpanIndexSink {
    /// A sink into `index`.
    pub fn new(index: Arc<SpanIndex>) -> Self {
        Self { index }
    }
}

impl Sink for SpanIndexSink {
    fn write(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let Batch::Traces(request) = batch else {
                return Ok(());
            };
            let index = Arc::clone(&self.index);
            let (_, skipped) = blocking(move || index.add(&request)).await?;
            if skipped > 0 {
                tracing::debug!(skipped, "spans without a trace or span id not indexed");
            }
            Ok(())
        })
    }

    fn commit(&mut self, position: Lsn) -> BoxFuture<'_, Result<(), SinkError>> {
        let index = Arc::clone(&self.index);
        Box::pin(blocking(move || index.commit(Some(position.0))))
    }

    fn durable_position(&self) -> Option<Lsn> {
        self.index.store().position().map(Lsn)
    }

    fn commit_policy(&self) -> CommitPolicy {
        INDEX_COMMITS
    }
}
