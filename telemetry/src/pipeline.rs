//! Runs one sink off the write-ahead log: read from the sink's checkpoint, decode, run the
//! batch through each of the sink's paths ([`Chain`]s) that carries it, write (retrying what the sink says may succeed later), and commit
//! the position. Each sink has its own reader, so a slow sink falls behind on its own instead
//! of holding the others back; what it had not committed is replayed after a crash
//! (at-least-once: sinks that must count exactly once remember the last position they stored).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::batch::Batch;
use crate::metrics::{CollectorMetrics, SinkLabels};
use crate::sinks::Sink;
use crate::topology::Chain;
use crate::wal::{Lsn, WalReader};

/// Commit the position after this many records, or after [`COMMIT_EVERY`], whichever first.
const COMMIT_RECORDS: u64 = 512;
/// Commit the position at least this often while records flow.
const COMMIT_EVERY: Duration = Duration::from_millis(500);
/// First pause before writing a batch again after a retryable failure; doubles up to 5 s.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Runs `sink` until `stop` turns true, then commits what it finished.
pub async fn run_sink(
    name: String,
    mut reader: WalReader,
    mut chains: Vec<Chain>,
    mut sink: Box<dyn Sink>,
    metrics: Arc<CollectorMetrics>,
    stop: watch::Receiver<bool>,
) {
    let mut stopping = stop.clone();
    let labels = SinkLabels { sink: name.clone() };
    let counters = SinkCounters::new(&metrics, &labels);
    let mut uncommitted: Option<Lsn> = None;
    let mut since_commit = 0u64;
    let mut last_commit = Instant::now();
    let mut tick = tokio::time::interval(COMMIT_EVERY);
    loop {
        let record = tokio::select! {
            record = reader.next() => record,
            _ = tick.tick() => {
                let due: Vec<Batch> = chains.iter_mut().flat_map(|c| c.flush_due(Instant::now())).collect();
                for batch in due {
                    write(&name, sink.as_mut(), batch, &counters, &stop).await;
                }
                commit(&name, &mut reader, &mut uncommitted, &mut since_commit, &mut last_commit).await;
                continue;
            }
            () = stopped(&mut stopping) => break,
        };
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                tracing::error!(sink = %name, %error, "cannot read the write-ahead log");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        match Batch::decode(&record) {
            Ok(batch) => {
                let now = Instant::now();
                let outputs: Vec<Batch> = match chains.as_mut_slice() {
                    // The common case: one path, no copy of the batch.
                    [chain] => chain.apply(batch, now),
                    chains => chains
                        .iter_mut()
                        .flat_map(|c| c.apply(batch.clone(), now))
                        .collect(),
                };
                for batch in outputs {
                    write(&name, sink.as_mut(), batch, &counters, &stop).await;
                }
            }
            Err(error) => {
                counters.dropped.inc();
                tracing::warn!(sink = %name, %error, "log record skipped");
            }
        }
        uncommitted = Some(record.lsn);
        since_commit += 1;
        if since_commit >= COMMIT_RECORDS || last_commit.elapsed() >= COMMIT_EVERY {
            commit(
                &name,
                &mut reader,
                &mut uncommitted,
                &mut since_commit,
                &mut last_commit,
            )
            .await;
        }
    }
    commit(
        &name,
        &mut reader,
        &mut uncommitted,
        &mut since_commit,
        &mut last_commit,
    )
    .await;
}

/// Resolves when the stop flag turns true (mapped to `()`: the guard `wait_for` returns is
/// not `Send`).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The counters of one sink, resolved once.
struct SinkCounters {
    batches: prometheus_client::metrics::counter::Counter,
    items: prometheus_client::metrics::counter::Counter,
    dropped: prometheus_client::metrics::counter::Counter,
    retries: prometheus_client::metrics::counter::Counter,
    write_seconds: prometheus_client::metrics::histogram::Histogram,
}

impl SinkCounters {
    fn new(metrics: &CollectorMetrics, labels: &SinkLabels) -> Self {
        Self {
            batches: metrics.sink_batches.get_or_create(labels).clone(),
            items: metrics.sink_items.get_or_create(labels).clone(),
            dropped: metrics.sink_dropped.get_or_create(labels).clone(),
            retries: metrics.sink_retries.get_or_create(labels).clone(),
            write_seconds: metrics.sink_write_seconds.get_or_create(labels).clone(),
        }
    }
}

async fn write(
    name: &str,
    sink: &mut dyn Sink,
    batch: Batch,
    counters: &SinkCounters,
    stop: &watch::Receiver<bool>,
) {
    let items = batch.items() as u64;
    let mut pause = RETRY_PAUSE;
    loop {
        let started = Instant::now();
        let outcome = sink.write(batch.clone()).await;
        counters
            .write_seconds
            .observe(started.elapsed().as_secs_f64());
        let stopping = *stop.borrow();
        match outcome {
            Ok(()) => {
                counters.batches.inc();
                counters.items.inc_by(items);
                return;
            }
            Err(error) if error.retryable && !stopping => {
                counters.retries.inc();
                tracing::warn!(sink = name, %error, retry_in_ms = pause.as_millis() as u64, "sink write failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(error) => {
                counters.dropped.inc();
                tracing::warn!(sink = name, %error, "batch dropped by the sink");
                return;
            }
        }
    }
}

async fn commit(
    name: &str,
    reader: &mut WalReader,
    uncommitted: &mut Option<Lsn>,
    since_commit: &mut u64,
    last_commit: &mut Instant,
) {
    let Some(lsn) = uncommitted.take() else {
        return;
    };
    if let Err(error) = reader.commit(lsn).await {
        tracing::warn!(sink = name, %error, "checkpoint not written; records will be replayed");
        *uncommitted = Some(lsn);
        return;
    }
    *since_commit = 0;
    *last_commit = Instant::now();
}
