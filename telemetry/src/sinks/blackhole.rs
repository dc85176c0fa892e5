//! `blackhole`: accepts everything and keeps only counts. The far end of throughput
//! benchmarks (OTLP -> log -> blackhole) and of pipelines that only need the log. With a
//! `rate` it takes at most that many items per second, to model a slow backend (overload
//! tests: the log fills behind it and senders are refused).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

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
    /// Items per second at most, and when the sink is free to take the next batch.
    pace: Option<(u64, Instant)>,
}

impl Blackhole {
    /// A new blackhole that takes everything at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// A blackhole that takes at most `rate` items per second (`rate` > 0).
    pub fn with_rate(rate: u64) -> Self {
        Self {
            counts: Arc::default(),
            pace: Some((rate.max(1), Instant::now())),
        }
    }

    /// Its counts, shared.
    pub fn counts(&self) -> Arc<BlackholeCounts> {
        Arc::clone(&self.counts)
    }
}

impl Sink for Blackhole {
    fn write(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), SinkError>> {
        let items = batch.items() as u64;
        Box::pin(async move {
            if let Some((rate, free_at)) = &mut self.pace {
                tokio::time::sleep_until(*free_at).await;
                let cost = Duration::from_secs_f64(items as f64 / *rate as f64);
                *free_at = (*free_at).max(Instant::now()) + cost;
            }
            self.counts.batches.fetch_add(1, Ordering::Relaxed);
            self.counts.items.fetch_add(items, Ordering::Relaxed);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    use super::*;

    fn logs(n: usize) -> Batch {
        Batch::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default(); n],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_paces_the_writes() {
        let mut sink = Blackhole::with_rate(1000);
        let start = Instant::now();
        for _ in 0..5 {
            sink.write(logs(500)).await.unwrap();
        }
        // 2500 items at 1000/s: the fifth batch waits for the first four (2 s).
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(sink.counts().items.load(Ordering::Relaxed), 2500);

        let mut fast = Blackhole::new();
        let start = Instant::now();
        fast.write(logs(500)).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
