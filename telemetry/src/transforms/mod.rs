//! Transforms: verbs applied to batches between the log and a sink (`redact`, `sample`).

pub mod redact;
pub mod sample;

use std::time::Instant;

use crate::batch::Batch;

/// A transform. It may hold batches back (tail sampling waits for a trace to complete) and
/// release them later from [`Transform::flush_due`].
pub trait Transform: Send {
    /// Applies the transform to one batch; returns what passes on now (possibly nothing).
    fn apply(&mut self, batch: Batch, now: Instant) -> Vec<Batch>;
    /// Releases what was held back and is due at `now` (e.g. traces whose decision timed out).
    fn flush_due(&mut self, now: Instant) -> Vec<Batch> {
        let _ = now;
        Vec::new()
    }
    /// When the oldest data still held arrived: the `now` of the [`Transform::apply`] that
    /// brought it. The pipeline does not move the log's checkpoint past records read at or
    /// after that time, so what is held is replayed after a crash instead of lost.
    fn held_since(&self) -> Option<Instant> {
        None
    }
}
