//! Sinks: where telemetry leaves. Each reads the write-ahead log from its own checkpoint, so
//! a slow sink never holds back a fast one, and a crash replays what a sink had not finished.
//!
//! Adding a sink is one file here plus one line in [`build`] (the config's `type`).

pub mod prometheus;

use std::future::Future;
use std::pin::Pin;

use crate::batch::Batch;
use crate::wal::{Lsn, Signal};

pub mod blackhole;
pub mod file;
pub mod index;
pub mod otlp;
pub mod profiles;

/// A sink's failure. `retryable` failures are retried from the same log position (nothing is
/// skipped); others are counted as dropped and logged.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    /// What went wrong.
    pub message: String,
    /// Whether writing the same batch again may succeed.
    pub retryable: bool,
}

/// When the pipeline commits a sink (see [`Sink::commit_policy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitPolicy {
    /// Commit after this many log records.
    pub records: u64,
    /// Commit at least this often while records flow.
    pub every: std::time::Duration,
}

impl Default for CommitPolicy {
    /// 512 records or half a second.
    fn default() -> Self {
        Self {
            records: 512,
            every: std::time::Duration::from_millis(500),
        }
    }
}

/// Where the pipeline runs a sink (see [`Sink::placement`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// On the collector's runtime, with the receivers and the other sinks.
    Shared,
    /// On a thread of its own named `thread`, at CPU priority `nice` (0, that of the rest of
    /// the process, to 19, the lowest), with a runtime of its own: the sink's log reader,
    /// decoding, transforms and writes all run there, and the threads they start (tantivy's)
    /// inherit the priority. For sinks whose work blocks, or can wait for the CPU that the
    /// receivers and the services sharing the machine leave: what they have not written yet
    /// is in the log.
    Own {
        /// The thread's name (at most 15 bytes show in `ps`).
        thread: String,
        /// Its nice value.
        nice: i32,
    },
}

/// A boxed future, for object-safe async methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A destination.
///
/// The pipeline calls [`Sink::write`] for each batch, then, every few hundred records or half
/// a second, [`Sink::commit`] with the log position up to which every record's output has
/// been written, and only after that succeeds moves the sink's checkpoint in the log. After a
/// crash the log is replayed from the checkpoint, so a sink sees again what it had not
/// committed: delivery is at least once.
///
/// A sink that stores its own position together with its data (atomically, in its
/// `commit`) and reports it from [`Sink::durable_position`] gets every record exactly once:
/// the pipeline skips the records at or before that position. (Exactly once holds when no
/// transform on the sink's paths holds data back; behind `sample`, a kept trace may be
/// written again after a crash.)
pub trait Sink: Send {
    /// Writes one batch. A sink must not report success for what it could not take; it may
    /// buffer what it took until [`Sink::commit`].
    fn write(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), SinkError>>;

    /// Makes everything written so far durable (or visible), recording `position` with it
    /// if the sink keeps its own position. The log's checkpoint for this sink moves to
    /// `position` only after this returns `Ok`.
    fn commit(&mut self, position: Lsn) -> BoxFuture<'_, Result<(), SinkError>> {
        let _ = position;
        Box::pin(async { Ok(()) })
    }

    /// How often the pipeline commits this sink: after this many log records, or this long
    /// after the last commit while records flow, whichever first.
    fn commit_policy(&self) -> CommitPolicy {
        CommitPolicy::default()
    }

    /// The position stored with the sink's own data at start: records at or before it are
    /// not written again. `None` for sinks that keep no position.
    fn durable_position(&self) -> Option<Lsn> {
        None
    }

    /// Whether the sink writes batches of `signal`. The pipeline skips the log records of
    /// the other signals without decoding them or running them through transforms: the log
    /// holds every signal, and a sink of one (the Prometheus endpoint, an index) would
    /// otherwise decode and redact all of them only to drop most.
    fn takes(&self, signal: Signal) -> bool {
        let _ = signal;
        true
    }

    /// Where the pipeline runs this sink: [`Placement::Shared`] unless the sink says
    /// otherwise. A sink whose `write` or `commit` blocks must ask for a thread of its own.
    fn placement(&self) -> Placement {
        Placement::Shared
    }
}
