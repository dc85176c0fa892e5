//! Sinks: where telemetry leaves. Each reads the write-ahead log from its own checkpoint, so
//! a slow sink never holds back a fast one, and a crash replays what a sink had not finished.
//!
//! Adding a sink is one file here plus one line in [`build`] (the config's `type`).

pub mod prometheus;

use std::future::Future;
use std::pin::Pin;

use crate::batch::Batch;

pub mod blackhole;
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

/// A boxed future, for object-safe async methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A destination.
pub trait Sink: Send {
    /// Writes one batch. The pipeline commits the batch's log position only after this
    /// returns `Ok`, so a sink must not acknowledge what it has not made durable or visible.
    fn write(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), SinkError>>;
}
