//! Runs one sink off the write-ahead log: read from the sink's checkpoint, decode, run the
//! batch through each of the sink's paths ([`Chain`]s) that carries it, write (retrying what
//! the sink says may succeed later), and commit: first the sink ([`Sink::commit`]), then the
//! sink's checkpoint in the log. Each sink has its own reader, so a slow sink falls behind on
//! its own instead of holding the others back.
//!
//! After a crash the log is replayed from the checkpoint: at least once. A sink that stores its
//! position with its data gets exactly once: records at or before its
//! [`Sink::durable_position`] are skipped. The checkpoint never passes a record whose data a
//! transform still holds (a trace waiting for its sampling decision), so held data is replayed,
//! not lost.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::batch::Batch;
use crate::metrics::{CollectorMetrics, SinkLabels};
use crate::sinks::{BoxFuture, CommitPolicy, Placement, Sink};
use crate::topology::Chain;
use crate::wal::{Lsn, Signal, WalReader};

/// First pause before writing a batch again after a retryable failure; doubles up to 5 s.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Starts [`run_sink`] where the sink's [`Sink::placement`] says: as a task on the current
/// runtime, or on a thread of its own, at its CPU priority, with a runtime of its own. The
/// future resolves once the sink has stopped (after `stop` turned true).
///
/// Fails when the thread cannot be started or its priority set.
pub fn spawn_sink(
    name: String,
    reader: WalReader,
    chains: Vec<Chain>,
    sink: Box<dyn Sink>,
    metrics: Arc<CollectorMetrics>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<BoxFuture<'static, ()>> {
    let (thread, nice) = match sink.placement() {
        Placement::Shared => {
            let task = tokio::spawn(run_sink(name, reader, chains, sink, metrics, stop));
            return Ok(Box::pin(async move {
                let _ = task.await;
            }));
        }
        Placement::Own { thread, nice } => (thread, nice),
    };
    let (stopped, done) = tokio::sync::oneshot::channel::<()>();
    let (started, outcome) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(thread.clone())
        .spawn(move || {
            let runtime = set_nice(nice).and_then(|()| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            });
            let runtime = match runtime {
                Ok(runtime) => {
                    let _ = started.send(Ok(()));
                    runtime
                }
                Err(error) => {
                    let _ = started.send(Err(error));
                    return;
                }
            };
            runtime.block_on(run_sink(name, reader, chains, sink, metrics, stop));
            let _ = stopped.send(());
        })?;
    outcome
        .recv()
        .map_err(|_| std::io::Error::other(format!("thread {thread} ended before it started")))??;
    Ok(Box::pin(async move {
        let _ = done.await;
    }))
}

/// Sets the calling thread's nice value (Linux keeps one per thread, and a thread starts with
/// its creator's). Raising it needs no privilege; 0 leaves the thread as it is.
fn set_nice(nice: i32) -> std::io::Result<()> {
    if nice == 0 {
        return Ok(());
    }
    rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice).map_err(|errno| {
        std::io::Error::other(format!(
            "cannot set the thread's nice value to {nice}: {errno}"
        ))
    })
}

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
    let stored = sink.durable_position();
    if let Some(stored) = stored {
        tracing::info!(sink = %name, position = %stored, "sink resumes after its stored position");
    }
    // The signals this sink writes: the records of the others are not even decoded.
    let wanted: Vec<Signal> = Signal::ALL
        .into_iter()
        .filter(|&signal| sink.takes(signal) && chains.iter().any(|c| c.carries(signal)))
        .collect();
    let policy = sink.commit_policy();
    let mut progress = Progress::new(policy);
    let mut tick = tokio::time::interval(policy.every);
    loop {
        let record = tokio::select! {
            record = reader.next() => record,
            _ = tick.tick() => {
                let due: Vec<Batch> = chains.iter_mut().flat_map(|c| c.flush_due(Instant::now())).collect();
                for batch in due {
                    write(&name, sink.as_mut(), batch, &counters, &stop).await;
                }
                progress.commit(&name, held_since(&chains), sink.as_mut(), &mut reader).await;
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
        let now = Instant::now();
        if stored.is_some_and(|stored| record.lsn <= stored) {
            // The sink stored this record before the crash or stop.
        } else if !wanted.contains(&record.signal) {
            // Not this sink's signal: nothing to write.
        } else {
            match Batch::decode(&record) {
                Ok(batch) => {
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
        }
        progress.read(record.lsn, now);
        if progress.due() {
            progress
                .commit(&name, held_since(&chains), sink.as_mut(), &mut reader)
                .await;
        }
    }
    progress
        .commit(&name, held_since(&chains), sink.as_mut(), &mut reader)
        .await;
}

/// When the oldest data any chain holds arrived.
fn held_since(chains: &[Chain]) -> Option<Instant> {
    chains.iter().filter_map(Chain::held_since).min()
}

/// Records read and not committed yet, with when each was read.
struct Progress {
    read: VecDeque<(Instant, Lsn)>,
    last_commit: Instant,
    policy: CommitPolicy,
}

impl Progress {
    fn new(policy: CommitPolicy) -> Self {
        Self {
            read: VecDeque::new(),
            last_commit: Instant::now(),
            policy,
        }
    }

    fn read(&mut self, lsn: Lsn, at: Instant) {
        self.read.push_back((at, lsn));
    }

    fn due(&self) -> bool {
        self.read.len() as u64 >= self.policy.records
            || self.last_commit.elapsed() >= self.policy.every
    }

    /// Commits the sink and then its checkpoint up to the newest record read before
    /// `held_since` (when the oldest data the chains still hold arrived). On failure nothing moves; the next commit tries again.
    async fn commit(
        &mut self,
        name: &str,
        held_since: Option<Instant>,
        sink: &mut dyn Sink,
        reader: &mut WalReader,
    ) {
        let done = self
            .read
            .iter()
            .take_while(|(at, _)| held_since.is_none_or(|held| *at < held))
            .count();
        if done == 0 {
            return;
        }
        let (_, lsn) = self.read[done - 1];
        if let Err(error) = sink.commit(lsn).await {
            tracing::warn!(sink = name, %error, "sink commit failed; will retry");
            return;
        }
        if let Err(error) = reader.commit(lsn).await {
            tracing::warn!(sink = name, %error, "checkpoint not written; records will be replayed");
            return;
        }
        self.read.drain(..done);
        self.last_commit = Instant::now();
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use bytes::Bytes;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use prost::Message;

    use super::*;
    use crate::sinks::{BoxFuture, SinkError};
    use crate::topology::Path;
    use crate::transforms::Transform;
    use crate::wal::{Signal, Wal, WalConfig};

    fn log(body: &str) -> Bytes {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(body.to_owned())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        Bytes::from(request.encode_to_vec())
    }

    fn body(batch: &Batch) -> String {
        let Batch::Logs(request) = batch else {
            panic!("logs expected")
        };
        match &request.resource_logs[0].scope_logs[0].log_records[0].body {
            Some(AnyValue {
                value: Some(any_value::Value::StringValue(s)),
            }) => s.clone(),
            other => panic!("{other:?}"),
        }
    }

    /// Records bodies and commits, and for each write the thread it ran on (name, nice value)
    /// and the nice value of a thread started from there; may report a stored position, take
    /// one signal only, or ask for a thread of its own.
    #[derive(Default, Clone)]
    struct Recording {
        bodies: Arc<Mutex<Vec<String>>>,
        commits: Arc<Mutex<Vec<Lsn>>>,
        threads: Arc<Mutex<Vec<(ThreadSeen, i32)>>>,
        stored: Option<Lsn>,
        only: Option<Signal>,
        placement: Option<Placement>,
    }

    /// A thread's name and nice value.
    type ThreadSeen = (Option<String>, i32);

    fn this_thread() -> ThreadSeen {
        let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid()))
            .expect("getpriority");
        (std::thread::current().name().map(str::to_owned), nice)
    }

    impl Sink for Recording {
        fn write(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), SinkError>> {
            self.bodies.lock().unwrap().push(body(&batch));
            let started = std::thread::spawn(|| this_thread().1).join().unwrap();
            self.threads.lock().unwrap().push((this_thread(), started));
            Box::pin(async { Ok(()) })
        }
        fn takes(&self, signal: Signal) -> bool {
            self.only.is_none_or(|only| only == signal)
        }
        fn placement(&self) -> Placement {
            self.placement.clone().unwrap_or(Placement::Shared)
        }
        fn commit(&mut self, position: Lsn) -> BoxFuture<'_, Result<(), SinkError>> {
            self.commits.lock().unwrap().push(position);
            Box::pin(async { Ok(()) })
        }
        fn durable_position(&self) -> Option<Lsn> {
            self.stored
        }
    }

    /// Holds the first batch until `release` is set.
    struct HoldFirst {
        held: Option<(Instant, Batch)>,
        seen_any: bool,
        release: Arc<AtomicBool>,
    }

    impl Transform for HoldFirst {
        fn apply(&mut self, batch: Batch, now: Instant) -> Vec<Batch> {
            if self.seen_any {
                return vec![batch];
            }
            self.seen_any = true;
            self.held = Some((now, batch));
            Vec::new()
        }
        fn flush_due(&mut self, _now: Instant) -> Vec<Batch> {
            if self.release.load(Ordering::SeqCst) {
                self.held.take().map(|(_, b)| b).into_iter().collect()
            } else {
                Vec::new()
            }
        }
        fn held_since(&self) -> Option<Instant> {
            self.held.as_ref().map(|(at, _)| *at)
        }
    }

    fn straight(transforms: &[&str]) -> Path {
        Path {
            sources: vec!["in".into()],
            transforms: transforms.iter().map(|t| (*t).to_owned()).collect(),
            carries_otlp: true,
            carries_profiles: false,
        }
    }

    async fn wal_with(dir: &std::path::Path, records: usize) -> Arc<Wal> {
        let wal = Wal::open(WalConfig {
            sinks: vec!["s".into()],
            ..WalConfig::new(dir.join("wal"))
        })
        .await
        .unwrap();
        for i in 1..=records {
            wal.append(Signal::Logs, log(&format!("r{i}")))
                .await
                .unwrap();
        }
        Arc::new(wal)
    }

    async fn until(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn records_at_or_before_the_sinks_stored_position_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let wal = wal_with(dir.path(), 10).await;
        let sink = Recording {
            stored: Some(Lsn(6)),
            ..Recording::default()
        };
        let (stop, stopped) = watch::channel(false);
        let runner = tokio::spawn(run_sink(
            "s".into(),
            wal.reader("s").unwrap(),
            vec![Chain::from_parts(straight(&[]), Vec::new())],
            Box::new(sink.clone()),
            Arc::default(),
            stopped,
        ));
        until("the commit of record 10", || {
            sink.commits.lock().unwrap().contains(&Lsn(10))
        })
        .await;
        stop.send(true).unwrap();
        runner.await.unwrap();
        assert_eq!(*sink.bodies.lock().unwrap(), ["r7", "r8", "r9", "r10"]);
        assert_eq!(wal.stats().sinks[0].checkpoint, Lsn(10));
    }

    #[tokio::test]
    async fn records_of_signals_the_sink_does_not_take_are_skipped_undecoded() {
        for (only, dropped) in [(Some(Signal::Logs), 0), (None, 1)] {
            let dir = tempfile::tempdir().unwrap();
            let wal = wal_with(dir.path(), 1).await;
            // Not a trace request: a sink that decoded it would count it as dropped.
            wal.append(Signal::Traces, Bytes::from_static(b"\xff\xff not protobuf"))
                .await
                .unwrap();
            wal.append(Signal::Logs, log("r3")).await.unwrap();
            let sink = Recording {
                only,
                ..Recording::default()
            };
            let metrics = Arc::new(CollectorMetrics::default());
            let (stop, stopped) = watch::channel(false);
            let runner = tokio::spawn(run_sink(
                "s".into(),
                wal.reader("s").unwrap(),
                vec![Chain::from_parts(straight(&[]), Vec::new())],
                Box::new(sink.clone()),
                Arc::clone(&metrics),
                stopped,
            ));
            until("the commit of record 3", || {
                sink.commits.lock().unwrap().contains(&Lsn(3))
            })
            .await;
            stop.send(true).unwrap();
            runner.await.unwrap();
            assert_eq!(*sink.bodies.lock().unwrap(), ["r1", "r3"]);
            let labels = SinkLabels { sink: "s".into() };
            assert_eq!(
                metrics.sink_dropped.get_or_create(&labels).get(),
                dropped,
                "sink taking {only:?}"
            );
        }
    }

    /// Notes the thread each batch goes through on.
    struct NoteThread(Arc<Mutex<Vec<ThreadSeen>>>);

    impl Transform for NoteThread {
        fn apply(&mut self, batch: Batch, _now: Instant) -> Vec<Batch> {
            self.0.lock().unwrap().push(this_thread());
            vec![batch]
        }
    }

    #[tokio::test]
    async fn a_sink_on_a_thread_of_its_own_reads_transforms_and_writes_there_at_its_priority() {
        let dir = tempfile::tempdir().unwrap();
        let wal = wal_with(dir.path(), 3).await;
        let sink = Recording {
            placement: Some(Placement::Own {
                thread: "sink-test".into(),
                nice: 7,
            }),
            ..Recording::default()
        };
        let transformed = Arc::new(Mutex::new(Vec::new()));
        let callers = this_thread();
        let (stop, stopped) = watch::channel(false);
        let running = spawn_sink(
            "s".into(),
            wal.reader("s").unwrap(),
            vec![Chain::from_parts(
                straight(&["note"]),
                vec![Box::new(NoteThread(Arc::clone(&transformed)))],
            )],
            Box::new(sink.clone()),
            Arc::default(),
            stopped,
        )
        .unwrap();
        until("the commit of record 3", || {
            sink.commits.lock().unwrap().contains(&Lsn(3))
        })
        .await;
        stop.send(true).unwrap();
        running.await;
        let there = (Some("sink-test".to_owned()), 7);
        // A thread started from the sink's (as tantivy's are) inherits its priority.
        assert_eq!(*sink.threads.lock().unwrap(), vec![(there.clone(), 7); 3]);
        assert_eq!(*transformed.lock().unwrap(), vec![there; 3]);
        assert_eq!(this_thread(), callers, "the caller's thread is left alone");
        assert_eq!(wal.stats().sinks[0].checkpoint, Lsn(3));
    }

    #[tokio::test]
    async fn the_checkpoint_waits_for_data_a_transform_holds() {
        let dir = tempfile::tempdir().unwrap();
        let wal = wal_with(dir.path(), 5).await;
        let sink = Recording::default();
        let release = Arc::new(AtomicBool::new(false));
        let hold = HoldFirst {
            held: None,
            seen_any: false,
            release: Arc::clone(&release),
        };
        let (stop, stopped) = watch::channel(false);
        let runner = tokio::spawn(run_sink(
            "s".into(),
            wal.reader("s").unwrap(),
            vec![Chain::from_parts(straight(&["hold"]), vec![Box::new(hold)])],
            Box::new(sink.clone()),
            Arc::default(),
            stopped,
        ));
        until("records 2 to 5", || sink.bodies.lock().unwrap().len() == 4).await;
        // Two commit periods pass; record 1 is still held, so nothing may be committed.
        tokio::time::sleep(2 * CommitPolicy::default().every).await;
        assert!(sink.commits.lock().unwrap().is_empty());
        assert_eq!(wal.stats().sinks[0].checkpoint, Lsn(0));

        release.store(true, Ordering::SeqCst);
        until("the commit of record 5", || {
            sink.commits.lock().unwrap().contains(&Lsn(5))
        })
        .await;
        stop.send(true).unwrap();
        runner.await.unwrap();
        assert_eq!(*sink.bodies.lock().unwrap(), ["r2", "r3", "r4", "r5", "r1"]);
        assert_eq!(wal.stats().sinks[0].checkpoint, Lsn(5));
    }
}
