//! `log_index` and `span_index`: log records and spans into the tantivy index of the
//! `log-index` crate, behind the search API ([`crate::query`]).
//!
//! Each write adds the batch's documents; each commit commits the partitions written since the
//! last one (what is committed is searchable at once: the pipeline commits these sinks every
//! second) and stores the log position with them, so after a crash the index resumes where its
//! data ends (exactly once, see [`log_index::store`]). Other signals are not even decoded for
//! these sinks ([`Sink::takes`]).
//!
//! Indexing is the collector's heaviest work (decoding and redacting the batches, building
//! tantivy's term dictionaries, merging segments), and the only work it can put off: what is
//! acknowledged is already in the log. So each index sink runs on a thread of its own
//! ([`Placement::Own`]: its log reader, decoding, transforms and tantivy's calls, which block)
//! at a lower CPU priority (`nice`, 19 by default), and tantivy's indexing and merge threads,
//! which that thread starts, inherit it. On a machine the collector shares with the services
//! it watches, their requests, and the collector's own receivers and searches, go first; the
//! index takes the CPU they leave, and when there is none it falls behind, reading the log
//! later (the log's limits then push back on the senders, as for any slow sink).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use log_index::{IndexError, LogIndex, SpanIndex};

use super::{BoxFuture, CommitPolicy, Placement, Sink, SinkError};
use crate::batch::Batch;
use crate::wal::{Lsn, Signal};

/// Index commits: once a second (searchable within about a second of the acknowledgement,
/// with half the segments, and so half the merging, of the default half second).
const INDEX_COMMITS: CommitPolicy = CommitPolicy {
    records: 8192,
    every: std::time::Duration::from_secs(1),
};

/// What an index sink needs of an index. Every method blocks.
pub trait Indexed: Send + Sync + 'static {
    /// The signal the index holds.
    const SIGNAL: Signal;
    /// Adds the batch's documents if it is of the index's signal; ignores it otherwise.
    fn add_batch(&self, batch: &Batch) -> Result<(), IndexError>;
    /// Commits what was added, with the log position `lsn`.
    fn commit_at(&self, lsn: u64) -> Result<(), IndexError>;
    /// The position stored by the last commit.
    fn stored_position(&self) -> Option<u64>;
}

impl Indexed for LogIndex {
    const SIGNAL: Signal = Signal::Logs;
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
    const SIGNAL: Signal = Signal::Traces;
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
    thread: String,
    nice: i32,
}

/// The `log_index` sink.
pub type LogIndexSink = IndexSink<LogIndex>;
/// The `span_index` sink.
pub type SpanIndexSink = IndexSink<SpanIndex>;

impl<I: Indexed> IndexSink<I> {
    /// A sink into `index`, to run on a thread named `index-{kind}` (`kind` is `logs` or
    /// `spans`: a pipeline has at most one index sink of each) at CPU priority `nice` (0, as
    /// the rest of the process, to 19, the lowest).
    pub fn new(index: Arc<I>, kind: &str, nice: i32) -> Self {
        Self {
            index,
            thread: format!("index-{kind}"),
            nice,
        }
    }
}

/// Runs one blocking call into the index. A panic in it fails this call, non-retryably, and
/// the sink goes on; an index error may clear (a full disk, a lock held by another process),
/// so the batch is kept and retried.
fn call(work: impl FnOnce() -> Result<(), IndexError>) -> Result<(), SinkError> {
    match std::panic::catch_unwind(AssertUnwindSafe(work)) {
        Ok(outcome) => outcome.map_err(|error| SinkError {
            message: error.to_string(),
            retryable: true,
        }),
        Err(_) => Err(SinkError {
            message: "index task panicked".to_owned(),
            retryable: false,
        }),
    }
}

impl<I: Indexed> Sink for IndexSink<I> {
    fn write(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move { call(|| self.index.add_batch(&batch)) })
    }

    fn commit(&mut self, position: Lsn) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move { call(|| self.index.commit_at(position.0)) })
    }

    fn durable_position(&self) -> Option<Lsn> {
        self.index.stored_position().map(Lsn)
    }

    fn commit_policy(&self) -> CommitPolicy {
        INDEX_COMMITS
    }

    fn takes(&self, signal: Signal) -> bool {
        signal == I::SIGNAL
    }

    /// Always a thread of its own, even at `nice = 0`: tantivy's calls block.
    fn placement(&self) -> Placement {
        Placement::Own {
            thread: self.thread.clone(),
            nice: self.nice,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_fails_its_call_and_the_sink_goes_on() {
        let failed = call(|| panic!("on purpose")).unwrap_err();
        assert!(!failed.retryable);
        assert_eq!(failed.message, "index task panicked");
        let retryable = call(|| {
            Err(IndexError::Io {
                path: "index".into(),
                source: std::io::Error::from(std::io::ErrorKind::StorageFull),
            })
        })
        .unwrap_err();
        assert!(retryable.retryable, "{retryable:?}");
        call(|| Ok(())).unwrap();
    }
}
