//! `blackhole`: accepts everything and keeps only counts. The far end of throughput
//! benchmarks (OTLP -> log -> blackhole) and of pipelines that only need the log.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{BoxFuture, Sink, SinkError};
use crate::batch::Batch;

/// What went through.
#[derive(Debug, Default)]
pub struct BlackholeCounts {
    /// Batches written.
    pub batches: AtomicU64,
    /// Items (spans, data points, log records, profiles) written.
    pub items: AtomicU64,
}

/// The blackhole sink.
#[derive(Debug, Clone, Default)]
pub struct Blackhole {
    counts: Arc<BlackholeCounts>,
}

impl Blackhole {
    /// A new blackhole.
    pub fn new() -> Self {
        Self::default()
    }

    /// Its counts, shared.
    pub fn counts(&self) -> Arc<BlackholeCounts> {
        Arc::clone(&self.counts)
    }
}

impl Sink for Blackhole {
    fn write(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), SinkError>> {
        self.counts.batches.fetch_add(1, Ordering::Relaxed);
        self.counts
            .items
            .fetch_add(batch.items() as u64, Ordering::Relaxed);
        Box::pin(async { Ok(()) })
    }
}
