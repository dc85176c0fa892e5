//! The writer: one thread that owns the newest segment and turns queued appends into synced
//! frames, with group commit.
//!
//! Appenders put their record on a bounded channel and wait on a oneshot. The writer takes
//! everything that is queued, writes it as one batch, syncs once and then answers every
//! appender in the batch; appends that arrive during the sync form the next batch. So under
//! load one `fdatasync` acknowledges many records.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};

use super::error::AppendError;
use super::record::{Lsn, Signal, encode_frame, frame_len};
use super::segment::{self, SEGMENT_HEADER_LEN};
use super::state::Shared;

/// Most bytes of frames written before one sync; more queued appends wait for the next batch.
const MAX_BATCH_BYTES: u64 = 16 << 20;

/// One record on its way to the writer.
#[derive(Debug)]
pub(crate) struct AppendRequest {
    pub(crate) signal: Signal,
    pub(crate) payload: Bytes,
    /// Gets the record's LSN once it is synced.
    pub(crate) reply: oneshot::Sender<Result<Lsn, AppendError>>,
    /// The record's share of the queue's byte budget, given back when it is answered.
    pub(crate) _queue_permit: OwnedSemaphorePermit,
}

/// The segment being written.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    pub(crate) file: File,
    pub(crate) first_lsn: Lsn,
    /// Bytes written, header included; the file's position is at the end.
    pub(crate) len: u64,
}

/// The state of the writer thread.
#[derive(Debug)]
pub(crate) struct Writer {
    shared: Arc<Shared>,
    active: ActiveSegment,
    next_lsn: Lsn,
    durable: watch::Sender<Lsn>,
    /// Frames encoded but not yet written to the active segment.
    buf: Vec<u8>,
    /// The lock on the log's directory, held until the writer stops.
    _dir_lock: File,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        active: ActiveSegment,
        next_lsn: Lsn,
        durable: watch::Sender<Lsn>,
        dir_lock: File,
    ) -> Self {
        Writer {
            shared,
            active,
            next_lsn,
            durable,
            buf: Vec::new(),
            _dir_lock: dir_lock,
        }
    }

    /// Starts the writer thread. It stops when every sender of `requests` is gone and the
    /// queue is empty, or after a write fails.
    pub(crate) fn spawn(
        self,
        requests: mpsc::Receiver<AppendRequest>,
    ) -> io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || self.run(requests))
    }

    fn run(mut self, mut requests: mpsc::Receiver<AppendRequest>) {
        let mut batch = Vec::new();
        while let Some(first) = requests.blocking_recv() {
            let mut batch_bytes = frame_len(first.payload.len());
            batch.push(first);
            while batch_bytes < MAX_BATCH_BYTES {
                let Ok(request) = requests.try_recv() else {
                    break;
                };
                batch_bytes += frame_len(request.payload.len());
                batch.push(request);
            }
            match self.write_batch(&batch) {
                Ok(first_lsn) => {
                    for (request, lsn) in batch.drain(..).zip(first_lsn.0..) {
                        // An appender that stopped waiting has dropped its receiver; the record
                        // is in the log all the same.
                        let _ = request.reply.send(Ok(Lsn(lsn)));
                    }
                }
                Err(error) => return self.fail(error, batch, requests),
            }
        }
    }

    /// Writes and syncs a batch; returns the LSN of its first record.
    fn write_batch(&mut self, batch: &[AppendRequest]) -> io::Result<Lsn> {
        let first_lsn = self.next_lsn;
        let segment_bytes = self.shared.config.effective_segment_bytes();
        let mut sealed = Vec::new();
        for request in batch {
            let used = self.active.len + self.buf.len() as u64;
            if used > SEGMENT_HEADER_LEN && used + frame_len(request.payload.len()) > segment_bytes
            {
                self.flush()?;
                self.sync()?;
                sealed.push((self.active.first_lsn, self.active.len));
                self.roll()?;
            }
            encode_frame(
                &mut self.buf,
                self.next_lsn,
                request.signal,
                &request.payload,
            );
            self.next_lsn = self.next_lsn.next();
        }
        self.flush()?;
        self.sync()?;

        let last_lsn = Lsn(self.next_lsn.0 - 1);
        {
            let mut state = self.shared.lock();
            state.segments.extend(sealed);
            state
                .segments
                .insert(self.active.first_lsn, self.active.len);
            state.durable_lsn = last_lsn;
        }
        self.shared
            .counters
            .appends
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        // After the shared view is updated, so a woken reader finds the new records.
        self.durable.send_replace(last_lsn);
        Ok(first_lsn)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.active.file.write_all(&self.buf)?;
        self.active.len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        if self.shared.config.fsync {
            self.active.file.sync_data()?;
            self.shared.counters.syncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Starts a new segment at the next LSN (the current one is synced).
    fn roll(&mut self) -> io::Result<()> {
        let file = segment::create_segment(
            &self.shared.wal_dir,
            self.next_lsn,
            self.shared.config.fsync,
        )?;
        self.shared.add_retained(SEGMENT_HEADER_LEN);
        tracing::debug!(first_lsn = %self.next_lsn, "wal segment started");
        self.active = ActiveSegment {
            file,
            first_lsn: self.next_lsn,
            len: SEGMENT_HEADER_LEN,
        };
        Ok(())
    }

    /// After a failed write or sync nothing more is accepted: what the page cache holds is no
    /// longer known (a failed fsync may have dropped dirty pages), and reopening the log
    /// recovers exactly what reached the disk.
    fn fail(
        self,
        error: io::Error,
        batch: Vec<AppendRequest>,
        mut requests: mpsc::Receiver<AppendRequest>,
    ) {
        tracing::error!(%error, "wal write failed, the wal accepts no more appends");
        let error = Arc::new(error);
        self.shared.fail(error.clone());
        requests.close();
        let queued = std::iter::from_fn(|| requests.try_recv().ok());
        for request in batch.into_iter().chain(queued) {
            let _ = request.reply.send(Err(AppendError::Io(error.clone())));
        }
    }
}
