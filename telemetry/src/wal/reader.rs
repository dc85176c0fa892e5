//! [`WalReader`]: one sink's way through the log, from its checkpoint on, in LSN order.
//!
//! Reads run on blocking threads in chunks of up to 1 MiB and only ever cover synced bytes
//! (the lengths the writer publishes after each sync), so a reader never sees a half-written
//! frame. A frame that fails its CRC is stepped over: the next valid frame is searched for byte
//! by byte, and the LSNs skipped are counted once in `corrupted_records`.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::checkpoint;
use super::error::WalError;
use super::record::{Decoded, Lsn, Record, decode_frame, find_next_frame};
use super::segment::{self, Position, SEGMENT_HEADER_LEN};
use super::state::{self, Shared};
use super::{gc, join};

/// Most bytes read from a segment in one go (a larger frame is read whole).
const READ_CHUNK_BYTES: usize = 1 << 20;

/// Reads the log for one sink, from the record after its checkpoint.
///
/// Get one with [`Wal::reader`](super::Wal::reader). [`next`](WalReader::next) returns records
/// in LSN order and waits at the end of the log; [`commit`](WalReader::commit) saves how far
/// the sink has finished. Records read but not committed are read again by the sink's next
/// reader (after a restart too): delivery is at least once. A sink normally has one reader;
/// a second one starts at the checkpoint as it is then, and commits from either only ever move
/// the checkpoint forward.
#[derive(Debug)]
pub struct WalReader {
    shared: Arc<Shared>,
    sink: String,
    durable: watch::Receiver<Lsn>,
    /// Where the next read starts; `None` while a read is running.
    cursor: Option<Cursor>,
    /// A read on a blocking thread that a cancelled `next` left behind; the next call collects
    /// it, so cancelling `next` (in a `select!`) loses nothing.
    pending: Option<JoinHandle<ReadStep>>,
    /// Records read and not yet returned, each with the position after it.
    buffered: VecDeque<(Record, Position)>,
    /// The next LSN to return; smaller ones are behind the reader.
    expected: Lsn,
    /// The last record returned and the position after it.
    last_read: Option<(Lsn, Position)>,
}

/// A place in the log to read from.
#[derive(Debug)]
struct Cursor {
    position: Position,
    /// The segment at `position`, once opened.
    file: Option<File>,
    /// The last valid LSN passed, returned or not; LSNs must grow, so a frame at or below it
    /// is stale.
    last_seen: Lsn,
}

impl Cursor {
    /// The start of the segment whose first record is `segment`.
    fn at_segment(segment: Lsn, last_seen: Lsn) -> Cursor {
        Cursor {
            position: Position {
                segment,
                offset: SEGMENT_HEADER_LEN,
            },
            file: None,
            last_seen: last_seen.max(Lsn(segment.0.saturating_sub(1))),
        }
    }
}

/// What one read on a blocking thread brings back.
#[derive(Debug)]
struct ReadStep {
    cursor: Cursor,
    records: Vec<(Record, Position)>,
    error: Option<io::Error>,
}

impl WalReader {
    /// A reader for `sink` starting after its checkpoint; fails if the sink is not registered.
    pub(crate) fn open(shared: Arc<Shared>, sink: &str) -> Result<WalReader, WalError> {
        let Some(start) = shared.lock().sinks.get(sink).map(|state| state.checkpoint) else {
            return Err(WalError::UnknownSink(sink.to_owned()));
        };
        let durable = shared.durable.clone();
        let mut reader = WalReader {
            shared,
            sink: sink.to_owned(),
            durable,
            cursor: None,
            pending: None,
            buffered: VecDeque::new(),
            expected: start.next(),
            last_read: None,
        };
        reader.cursor = Some(reader.restart_cursor());
        Ok(reader)
    }

    /// The sink this reader reads for.
    pub fn sink(&self) -> &str {
        &self.sink
    }

    /// The next record, waiting for one if the reader is at the end of the log.
    ///
    /// Only synced records are returned. Cancel-safe: dropping the future loses no record.
    /// Fails with [`WalError::Closed`] once the log is closed and everything synced has been
    /// returned.
    pub async fn next(&mut self) -> Result<Record, WalError> {
        loop {
            if let Some(record) = self.pop() {
                return Ok(record);
            }
            if self.pending.is_some() {
                // A read started before a cancellation: its result may be old, read again.
                self.fill().await?;
                continue;
            }
            // Mark the current durable LSN as seen before reading, so a sync that lands during
            // the read wakes the wait below.
            self.durable.borrow_and_update();
            self.fill().await?;
            if !self.buffered.is_empty() {
                continue;
            }
            if self.durable.changed().await.is_err() {
                // The writer has stopped; what it synced last may still be unread.
                self.fill().await?;
                return self.pop().ok_or(WalError::Closed);
            }
        }
    }

    /// The next record if one is synced and unread, without waiting for new ones.
    pub async fn try_next(&mut self) -> Result<Option<Record>, WalError> {
        if self.buffered.is_empty() {
            self.fill().await?;
        }
        Ok(self.pop())
    }

    /// Saves `lsn` as the sink's checkpoint: it has finished every record up to `lsn`, and
    /// its next reader (after a restart too) starts after it. Durable on return (with
    /// `fsync`); segments every registered sink has finished are then deleted.
    ///
    /// Committing at or below the current checkpoint does nothing; committing past the last
    /// record this reader returned fails with [`WalError::CommitAhead`].
    pub async fn commit(&mut self, lsn: Lsn) -> Result<(), WalError> {
        let current = self.shared.lock().sinks[&self.sink].checkpoint;
        if lsn <= current {
            return Ok(());
        }
        let Some((read_lsn, read_end)) = self.last_read.filter(|(read, _)| lsn <= *read) else {
            return Err(WalError::CommitAhead {
                lsn,
                read: self.last_read.map_or(Lsn::ZERO, |(read, _)| read),
            });
        };
        let known_position = (lsn == read_lsn).then_some(read_end);
        let shared = self.shared.clone();
        let sink = self.sink.clone();
        let task = tokio::task::spawn_blocking(move || {
            commit_blocking(&shared, &sink, lsn, known_position)
        });
        join(task.await)?
    }

    fn pop(&mut self) -> Option<Record> {
        let (record, end) = self.buffered.pop_front()?;
        self.last_read = Some((record.lsn, end));
        Some(record)
    }

    /// Reads the next synced records into `buffered` (none if the reader is at the end).
    async fn fill(&mut self) -> Result<(), WalError> {
        if self.pending.is_none() {
            let cursor = self.cursor.take().unwrap_or_else(|| self.restart_cursor());
            let shared = self.shared.clone();
            let after = Lsn(self.expected.0 - 1);
            self.pending = Some(tokio::task::spawn_blocking(move || {
                read_step(&shared, cursor, after)
            }));
        }
        let result = self.pending.as_mut().expect("started above").await;
        self.pending = None;
        let step = join(result)?;
        self.cursor = Some(step.cursor);
        for (record, end) in step.records {
            if record.lsn < self.expected {
                continue;
            }
            if record.lsn > self.expected {
                self.shared.count_missing(self.expected, record.lsn);
            }
            self.expected = record.lsn.next();
            self.buffered.push_back((record, end));
        }
        match step.error {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    /// A cursor at the start of the segment holding the next expected record; records before
    /// it in that segment are skipped as they are read.
    fn restart_cursor(&self) -> Cursor {
        let segment = self.shared.lock().segment_for(self.expected);
        Cursor::at_segment(segment.first_lsn, Lsn::ZERO)
    }
}

fn commit_blocking(
    shared: &Shared,
    sink: &str,
    lsn: Lsn,
    known_position: Option<Position>,
) -> Result<(), WalError> {
    let _in_order = shared.commit_lock(sink);
    if lsn <= shared.lock().sinks[sink].checkpoint {
        // Another reader of the sink committed further meanwhile.
        return Ok(());
    }
    checkpoint::write(&shared.checkpoint_dir, sink, lsn, shared.config.fsync)?;
    let position = match known_position {
        Some(position) => position,
        None => {
            let segment = shared.lock().segment_for(lsn.next());
            state::position_after(&shared.wal_dir, segment, lsn)?
        }
    };
    {
        let mut state = shared.lock();
        let sink = state
            .sinks
            .get_mut(sink)
            .expect("readers are only made for registered sinks");
        sink.checkpoint = lsn;
        sink.position = position;
    }
    gc::collect_garbage(shared)?;
    Ok(())
}

/// Reads from `cursor` until it has records above `after` or reaches the synced end.
fn read_step(shared: &Shared, mut cursor: Cursor, after: Lsn) -> ReadStep {
    let mut records = Vec::new();
    let error = read_records(shared, &mut cursor, after, &mut records).err();
    ReadStep {
        cursor,
        records,
        error,
    }
}

fn read_records(
    shared: &Shared,
    cursor: &mut Cursor,
    after: Lsn,
    records: &mut Vec<(Record, Position)>,
) -> io::Result<()> {
    loop {
        let segment = cursor.position.segment;
        let (synced_len, next_segment) = {
            let state = shared.lock();
            let next = state
                .segments
                .range((Bound::Excluded(segment), Bound::Unbounded))
                .next()
                .map(|(first_lsn, _)| *first_lsn);
            (state.segments.get(&segment).copied(), next)
        };
        // A segment that is gone was collected: every sink had finished it.
        let at_end = synced_len.is_none_or(|len| cursor.position.offset >= len);
        if at_end {
            // A segment with a successor is complete; the newest one may still grow.
            match next_segment {
                Some(next) => {
                    *cursor = Cursor::at_segment(next, cursor.last_seen);
                    continue;
                }
                None => return Ok(()),
            }
        }
        let synced_len = synced_len.expect("checked above");
        let file = match &mut cursor.file {
            Some(file) => file,
            None => match File::open(segment::segment_path(&shared.wal_dir, segment)) {
                Ok(file) => cursor.file.insert(file),
                Err(error)
                    if error.kind() == io::ErrorKind::NotFound
                        && !shared.lock().segments.contains_key(&segment) =>
                {
                    continue;
                }
                Err(error) => return Err(error),
            },
        };
        read_chunk(
            file,
            &mut cursor.position,
            &mut cursor.last_seen,
            synced_len,
            after,
            records,
        )?;
        if !records.is_empty() {
            return Ok(());
        }
    }
}

/// Reads the frames of one chunk from `position`, which it moves past them.
fn read_chunk(
    file: &mut File,
    position: &mut Position,
    last_seen: &mut Lsn,
    synced_len: u64,
    after: Lsn,
    records: &mut Vec<(Record, Position)>,
) -> io::Result<()> {
    debug_assert!(position.offset < synced_len);
    let start = position.offset;
    let available = synced_len - start;
    let mut chunk = Bytes::from(segment::read_at(
        file,
        start,
        (available as usize).min(READ_CHUNK_BYTES),
    )?);
    let mut consumed = 0;
    while consumed < chunk.len() {
        match decode_frame(&chunk.slice(consumed..)) {
            Decoded::Frame { record, frame_len } if record.lsn > *last_seen => {
                consumed += frame_len;
                *last_seen = record.lsn;
                if record.lsn > after {
                    let end = Position {
                        segment: position.segment,
                        offset: start + consumed as u64,
                    };
                    records.push((record, end));
                }
            }
            // The rest of this frame comes with the next chunk.
            Decoded::Incomplete { .. } if consumed > 0 => break,
            // A frame larger than a chunk: read it whole.
            Decoded::Incomplete { needed } if needed as u64 <= available => {
                chunk = Bytes::from(segment::read_at(file, start, needed)?);
            }
            // A bad CRC or signal, an LSN that does not grow, or a length past the synced end.
            _ => {
                let bad_at = start + consumed as u64;
                let rest = Bytes::from(segment::read_at(
                    file,
                    bad_at,
                    (synced_len - bad_at) as usize,
                )?);
                // Frames up to `after` that follow are skipped by the normal path above.
                let resume_at = find_next_frame(&rest, 0, *last_seen)
                    .map_or(synced_len, |found| bad_at + found as u64);
                tracing::warn!(segment = %position.segment, offset = bad_at, resumes_at = resume_at, "skipping a corrupted wal record");
                position.offset = resume_at;
                return Ok(());
            }
        }
    }
    position.offset = start + consumed as u64;
    Ok(())
}
