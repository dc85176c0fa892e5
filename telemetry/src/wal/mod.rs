//! The write-ahead log: every accepted batch is on disk before its sender hears "accepted", and
//! every sink reads the log at its own pace from its own checkpoint.
//!
//! # The idea
//!
//! A receiver calls [`Wal::append`] with the encoded OTLP request. The record gets the next
//! [`Lsn`] (log sequence number), is written to the newest segment file and synced; only then
//! does `append` return. Appends that arrive while a sync is running are written together and
//! share the next sync (group commit), so a busy collector pays one `fdatasync` for many
//! requests.
//!
//! Each sink has a [`WalReader`] that returns records in LSN order, starting after the sink's
//! checkpoint and waiting at the end of the log. When the sink has finished records (written
//! them to its index, forwarded them), it calls [`WalReader::commit`]; the checkpoint survives
//! restarts. A segment is deleted once every registered sink has committed past it, so a slow
//! sink never holds up a fast one, only the disk space.
//!
//! The log is bounded: at `max_bytes` an append fails at once with [`AppendError::Full`], which
//! the receivers answer with RESOURCE_EXHAUSTED or 429 and a retry hint. After a crash,
//! [`Wal::open`] keeps every synced record, cuts a torn tail off the newest segment and counts
//! what it cut ([`WalStats::corrupted_records`], [`WalStats::truncated_bytes`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use bytes::Bytes;
//! use telemetry::wal::{Signal, Wal, WalConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let config = WalConfig {
//!     sinks: vec!["span_index".into()],
//!     ..WalConfig::new(dir.path())
//! };
//! let wal = Wal::open(config).await?;
//!
//! // A receiver: once this returns, the batch survives a crash.
//! let lsn = wal.append(Signal::Traces, Bytes::from_static(b"encoded request")).await?;
//!
//! // A sink: read, handle, commit.
//! let mut reader = wal.reader("span_index")?;
//! let record = reader.next().await?;
//! assert_eq!((record.lsn, record.signal), (lsn, Signal::Traces));
//! reader.commit(record.lsn).await?;
//! assert_eq!(wal.stats().sinks[0].lag_records, 0);
//!
//! drop(reader);
//! wal.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # On disk
//!
//! ```text
//! {dir}/LOCK                           held while the log is open
//! {dir}/wal/{first_lsn:020}.seg        segments (header, then frames)
//! {dir}/checkpoints/{sink}             one checkpoint per sink
//! ```
//!
//! The segment header is described in `segment.rs`, the record frame in `record.rs` and the
//! checkpoint file in `checkpoint.rs`.
//!
//! # Threads
//!
//! File work never runs on the async runtime: one writer thread (see `writer.rs`) owns the
//! newest segment, fed by a bounded channel; reads, commits and garbage collection run on
//! blocking threads.

mod checkpoint;
mod config;
mod error;
mod gc;
mod reader;
mod record;
mod recovery;
mod segment;
mod state;
mod stats;
mod writer;

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

pub use config::WalConfig;
pub use error::{AppendError, WalError};
pub use reader::WalReader;
pub use record::{Lsn, Record, Signal, UnknownSignal};
pub use stats::{SinkStats, WalStats};

use record::frame_len;
use state::{Counters, Shared};
use writer::{AppendRequest, Writer};

/// Most appends queued for the writer at once.
const QUEUE_RECORDS: usize = 1024;
/// Most payload bytes queued for the writer at once (or one largest record, if more).
const QUEUE_BYTES: u64 = 64 << 20;

/// An open write-ahead log. See the [module documentation](self).
///
/// Share it behind an `Arc`: `append`, `reader` and `stats` take `&self`. Call
/// [`close`](Wal::close) to stop; a `Wal` that is only dropped lets its writer finish the queued
/// appends and release the directory in the background.
#[derive(Debug)]
pub struct Wal {
    shared: Arc<Shared>,
    requests: mpsc::Sender<AppendRequest>,
    /// Bytes of payload that may wait for the writer; an append waits for its share.
    queue_budget: Arc<Semaphore>,
    writer: JoinHandle<()>,
}

impl Wal {
    /// Opens the log in `config.dir`, creating it if needed.
    ///
    /// Replays what is there: a torn or corrupted tail of the newest segment is cut off (and
    /// counted in [`WalStats`]), LSNs continue after the last record, and each sink in
    /// `config.sinks` resumes after its checkpoint (a new sink at the oldest retained record).
    /// Fails if the config is invalid, another process has the log open, or the disk fails.
    pub async fn open(config: WalConfig) -> Result<Wal, WalError> {
        config.validate()?;
        let recovered = {
            let config = config.clone();
            join(tokio::task::spawn_blocking(move || recovery::recover(&config)).await)??
        };
        let (durable_tx, durable_rx) = watch::channel(recovered.state.durable_lsn);
        let counters = Counters::default();
        counters
            .corrupted_records
            .store(recovered.corrupted_records, Ordering::Relaxed);
        counters
            .truncated_bytes
            .store(recovered.truncated_bytes, Ordering::Relaxed);
        let queue_bytes = QUEUE_BYTES.max(frame_len(config.max_record_bytes));
        let shared = Arc::new(Shared::new(config, recovered.state, durable_rx, counters));
        let (requests, requests_rx) = mpsc::channel(QUEUE_RECORDS);
        let writer = Writer::new(
            shared.clone(),
            recovered.active,
            recovered.next_lsn,
            durable_tx,
            recovered.dir_lock,
        )
        .spawn(requests_rx)?;
        let wal = Wal {
            shared,
            requests,
            queue_budget: Arc::new(Semaphore::new(queue_bytes as usize)),
            writer,
        };
        // A crash may have come between a commit and its collection.
        wal.collect_garbage().await?;
        Ok(wal)
    }

    /// Appends one record and returns its LSN once it is synced to disk (with `fsync`).
    ///
    /// Fails at once with [`AppendError::TooLarge`] for a payload over `max_record_bytes` and
    /// with [`AppendError::Full`] when the record does not fit under `max_bytes`. Waits while
    /// the writer's queue is full. If the future is dropped, the record may or may not be
    /// written.
    pub async fn append(&self, signal: Signal, payload: Bytes) -> Result<Lsn, AppendError> {
        if let Some(error) = self.shared.failure() {
            return Err(AppendError::Io(error));
        }
        let max = self.shared.config.effective_max_record_bytes();
        if payload.len() > max {
            return Err(AppendError::TooLarge {
                size: payload.len(),
                max,
            });
        }
        let bytes = frame_len(payload.len());
        let reservation = self.shared.reserve(bytes)?;
        let queue_permit = self
            .queue_budget
            .clone()
            .acquire_many_owned(u32::try_from(bytes).expect("checked against max_record_bytes"))
            .await
            .map_err(|_| AppendError::Closed)?;
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest {
            signal,
            payload,
            reply,
            _queue_permit: queue_permit,
        };
        self.requests
            .send(request)
            .await
            .map_err(|_| AppendError::Closed)?;
        reservation.hand_over();
        answer.await.unwrap_or(Err(AppendError::Closed))
    }

    /// A reader for `sink`, starting after its checkpoint. The sink must be in
    /// `WalConfig::sinks`, and have no other reader open.
    pub fn reader(&self, sink: &str) -> Result<WalReader, WalError> {
        WalReader::open(self.shared.clone(), sink)
    }

    /// Deletes the segments that every registered sink has committed past, and returns how
    /// many. Commits do this too; call it to reclaim space at other times.
    pub async fn collect_garbage(&self) -> Result<usize, WalError> {
        let shared = self.shared.clone();
        Ok(join(
            tokio::task::spawn_blocking(move || gc::collect_garbage(&shared)).await,
        )??)
    }

    /// Size, positions, per-sink lag and counters; cheap (no I/O).
    pub fn stats(&self) -> WalStats {
        stats::snapshot(&self.shared)
    }

    /// Stops accepting appends, waits until every queued one is synced and answered, and
    /// releases the directory. Readers can still read what was synced, then get
    /// [`WalError::Closed`].
    pub async fn close(self) -> Result<(), WalError> {
        let Wal {
            shared,
            requests,
            writer,
            ..
        } = self;
        drop(requests);
        if let Err(panic) = join(tokio::task::spawn_blocking(move || writer.join()).await)? {
            std::panic::resume_unwind(panic);
        }
        match shared.failure() {
            Some(error) => Err(io::Error::new(error.kind(), error.to_string()).into()),
            None => Ok(()),
        }
    }
}

/// The result of a blocking task; a panic in it is passed on.
fn join<T>(result: Result<T, tokio::task::JoinError>) -> Result<T, WalError> {
    match result {
        Ok(value) => Ok(value),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        // The runtime is shutting down.
        Err(_) => Err(WalError::Closed),
    }
}
