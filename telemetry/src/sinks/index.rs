//! `log_index` and `span_index`: log records and spans into the tantivy index of the
//! `log-index` crate, behind the search API ([`crate::query`]).
//!
//! Each write adds the batch's documents; each commit commits the partitions written since the
//! last one (what is committed is searchable at once: the pipeline commits these sinks every
//! second) and stores the log position with them, so after a crash the index resumes where its
//! data ends (exactly once, see [`log_index::store`]). Other signals pass through untouched.
//!
//! Indexing is the collector's heaviest work (building tantivy's term dictionaries, merging
//! segments), and the only work it can put off: what is acknowledged is already in the log.
//! So each index sink works on a thread of its own at a lower CPU priority (`nice`, 19 by
//! default), and tantivy's indexing and merge threads, which that thread starts, inherit it.
//! On a machine the collector shares with the services it watches, their requests, and the
//! collector's own receivers and searches, go first; the index takes the CPU they leave, and
//! when there is none it falls behind, reading the log later (the log's limits then push back
//! on the senders, as for any slow sink).

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, mpsc};

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
    worker: Worker,
}

/// The `log_index` sink.
pub type LogIndexSink = IndexSink<LogIndex>;
/// The `span_index` sink.
pub type SpanIndexSink = IndexSink<SpanIndex>;

impl<I: Indexed> IndexSink<I> {
    /// A sink into `index`, working on a thread named `index-{kind}` (`kind` is `logs` or
    /// `spans`: a pipeline has at most one index sink of each) at CPU priority `nice` (0, as
    /// the rest of the process, to 19, the lowest).
    pub fn new(index: Arc<I>, kind: &str, nice: i32) -> std::io::Result<Self> {
        Ok(Self {
            index,
            worker: Worker::start(kind, nice)?,
        })
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The thread an index sink's work runs on, one job at a time (the pipeline awaits each write
/// and commit before the next). It ends when its sink is dropped.
#[derive(Debug)]
struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    fn start(name: &str, nice: i32) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (started, outcome) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("index-{name}"))
            .spawn(move || {
                if let Err(error) = lower_priority(nice) {
                    let _ = started.send(Err(error));
                    return;
                }
                let _ = started.send(Ok(()));
                while let Ok(job) = queue.recv() {
                    job();
                }
            })?;
        outcome
            .recv()
            .map_err(|_| std::io::Error::other("the index thread ended before it started"))??;
        Ok(Self { jobs })
    }

    /// Runs `work` on the thread. A panic in it fails this call, not the thread.
    async fn run(
        &self,
        work: impl FnOnce() -> Result<(), IndexError> + Send + 'static,
    ) -> Result<(), SinkError> {
        let (done, outcome) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(std::panic::catch_unwind(AssertUnwindSafe(work)));
        });
        let stopped = || SinkError {
            message: "the index thread has stopped".to_owned(),
            retryable: false,
        };
        self.jobs.send(job).map_err(|_| stopped())?;
        match outcome.await.map_err(|_| stopped())? {
            Ok(outcome) => outcome.map_err(|error| SinkError {
                message: error.to_string(),
                // A full disk or a lock held by another process may clear; the batch is kept.
                retryable: true,
            }),
            Err(_) => Err(SinkError {
                message: "index task panicked".to_owned(),
                retryable: false,
            }),
        }
    }
}

/// Sets the calling thread's nice value (Linux keeps one per thread, and a thread starts with
/// its creator's). Raising it needs no privilege; 0 leaves the thread as it is.
fn lower_priority(nice: i32) -> std::io::Result<()> {
    if nice == 0 {
        return Ok(());
    }
    rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice).map_err(|errno| {
        std::io::Error::other(format!(
            "cannot set the index thread's nice value to {nice}: {errno}"
        ))
    })
}

impl<I: Indexed> Sink for IndexSink<I> {
    fn write(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), SinkError>> {
        let index = Arc::clone(&self.index);
        Box::pin(self.worker.run(move || index.add_batch(&batch)))
    }

    fn commit(&mut self, position: Lsn) -> BoxFuture<'_, Result<(), SinkError>> {
        let index = Arc::clone(&self.index);
        Box::pin(self.worker.run(move || index.commit_at(position.0)))
    }

    fn durable_position(&self) -> Option<Lsn> {
        self.index.stored_position().map(Lsn)
    }

    fn commit_policy(&self) -> CommitPolicy {
        INDEX_COMMITS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice_of_this_thread() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("getpriority")
    }

    #[tokio::test]
    async fn work_runs_at_the_sinks_priority_and_the_threads_it_starts_inherit_it() {
        let callers = nice_of_this_thread();
        let worker = Worker::start("test", 7).unwrap();
        let (seen, read) = std::sync::mpsc::channel();
        worker
            .run(move || {
                let started = std::thread::spawn(nice_of_this_thread).join().unwrap();
                seen.send((nice_of_this_thread(), started)).unwrap();
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(read.recv().unwrap(), (7, 7));
        assert_eq!(
            nice_of_this_thread(),
            callers,
            "the caller's thread is left alone"
        );
    }

    #[tokio::test]
    async fn a_panic_fails_its_call_and_the_thread_goes_on() {
        let worker = Worker::start("test", 0).unwrap();
        let failed = worker.run(|| panic!("on purpose")).await.unwrap_err();
        assert!(!failed.retryable);
        assert_eq!(failed.message, "index task panicked");
        let retryable = worker
            .run(|| {
                Err(IndexError::Io {
                    path: "index".into(),
                    source: std::io::Error::from(std::io::ErrorKind::StorageFull),
                })
            })
            .await
            .unwrap_err();
        assert!(retryable.retryable, "{retryable:?}");
        worker.run(|| Ok(())).await.unwrap();
    }
}
