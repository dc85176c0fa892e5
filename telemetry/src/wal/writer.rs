//! The writer: one thread that owns the newest segment and turns queued appends into synced
//! frames, with group commit.
//!
//! Appenders put their record on a bounded channel and wait on a oneshot. The writer takes
//! everything that is queued, writes it as one batch, syncs once and then answers every
//! appender in the batch; appends that arrive during the sync form the next batch. So under
//! load one `fdatasync` acknowledges many records.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};

use super::error::AppendError;
use super::record::{Lsn, Signal, encode_frame, frame_len};
use super::segment::{self, SEGMENT_HEADER_LEN};
use super::state::Shared;

/// Most bytes of frames written before one sync; more queued appends wait for the next batch.
const MAX_BATCH_BYTES: u64 = 16 << 20;

/// What [`AppendError::NoSpace`] suggests as the client's wait: space comes back when a sink's
/// commit lets a segment go, or when an operator frees some.
const NO_SPACE_RETRY_AFTER: Duration = Duration::from_secs(1);

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
                Err(BatchError::NoSpace(error)) => self.refuse(&error, &mut batch),
                Err(BatchError::Failed(error)) => return self.fail(error, batch, requests),
            }
        }
    }

    /// Writes and syncs a batch; returns the LSN of its first record.
    ///
    /// A full disk while writing into the active segment is not the end of the log: the
    /// segment is cut back to where the batch began and the batch refused
    /// ([`BatchError::NoSpace`]), so the next batch starts on a clean frame boundary. A full
    /// disk anywhere else (a sync, starting a segment after part of the batch is synced) fails
    /// the log as any other error does.
    fn write_batch(&mut self, batch: &[AppendRequest]) -> Result<Lsn, BatchError> {
        let first_lsn = self.next_lsn;
        let (start_segment, start_len) = (self.active.first_lsn, self.active.len);
        match self.write_frames(batch) {
            Ok(()) => Ok(first_lsn),
            Err(WriteError::Write(error))
                if is_no_space(&error)
                    && self.active.first_lsn == start_segment
                    && self.active.len == start_len =>
            {
                self.buf.clear();
                self.next_lsn = first_lsn;
                self.active
                    .file
                    .set_len(start_len)
                    .map_err(BatchError::Failed)?;
                self.active
                    .file
                    .seek(SeekFrom::Start(start_len))
                    .map_err(BatchError::Failed)?;
                Err(BatchError::NoSpace(error))
            }
            Err(WriteError::Write(error) | WriteError::Other(error)) => {
                Err(BatchError::Failed(error))
            }
        }
    }

    fn write_frames(&mut self, batch: &[AppendRequest]) -> Result<(), WriteError> {
        let segment_bytes = self.shared.config.effective_segment_bytes();
        let mut sealed = Vec::new();
        for request in batch {
            let used = self.active.len + self.buf.len() as u64;
            if used > SEGMENT_HEADER_LEN && used + frame_len(request.payload.len()) > segment_bytes
            {
                self.flush().map_err(WriteError::Other)?;
                self.sync().map_err(WriteError::Other)?;
                sealed.push((self.active.first_lsn, self.active.len));
                self.roll().map_err(WriteError::Other)?;
            }
            encode_frame(
                &mut self.buf,
                self.next_lsn,
                request.signal,
                &request.payload,
            );
            self.next_lsn = self.next_lsn.next();
        }
        self.flush().map_err(WriteError::Write)?;
        self.sync().map_err(WriteError::Other)?;

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
        Ok(())
    }

    /// Writes the encoded frames; on an error the segment's length is unchanged (the file may
    /// hold part of them past it).
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

    /// Answers a batch that did not fit on the disk: nothing of it is in the log, its bytes go
    /// back to the size budget, and the appenders may send it again.
    fn refuse(&self, error: &io::Error, batch: &mut Vec<AppendRequest>) {
        let bytes: u64 = batch.iter().map(|r| frame_len(r.payload.len())).sum();
        self.shared.release_retained(bytes);
        tracing::warn!(%error, records = batch.len(), "wal disk full, batch refused");
        for request in batch.drain(..) {
            let _ = request.reply.send(Err(AppendError::NoSpace {
                retry_after: NO_SPACE_RETRY_AFTER,
            }));
        }
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

/// Why a batch was not written.
enum BatchError {
    /// The disk is full; the segment is back where the batch began and the log goes on.
    NoSpace(io::Error),
    /// Anything else: the log accepts no more appends.
    Failed(io::Error),
}

/// Where writing a batch failed: writing the last frames into the active segment (which can be
/// undone), or elsewhere (which cannot).
enum WriteError {
    Write(io::Error),
    Other(io::Error),
}

/// `ENOSPC` (and `EDQUOT`, a full quota, which is the same thing to the log).
fn is_no_space(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}
