//! Opening the log after a clean stop or a crash: take the directory lock, check the segments,
//! cut a torn or corrupted tail off the newest one, find the next LSN and load the checkpoints.
//!
//! Only the newest segment can have a torn tail (the writer syncs a segment completely before
//! starting the next), so only it is read whole here; older segments have their header checked
//! and their frames are checked by the readers as they go.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use bytes::Bytes;

use super::checkpoint;
use super::config::WalConfig;
use super::error::WalError;
use super::record::{Decoded, Lsn, decode_frame, find_next_frame};
use super::segment::{
    self, HeaderCheck, SEGMENT_HEADER_LEN, SegmentFile, check_header, encode_header,
};
use super::state::{self, LogState, SinkState};
use super::writer::ActiveSegment;

/// What opening found and set up.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) dir_lock: File,
    pub(crate) state: LogState,
    pub(crate) active: ActiveSegment,
    pub(crate) next_lsn: Lsn,
    /// Records cut off the newest segment.
    pub(crate) corrupted_records: u64,
    /// Bytes cut off the newest segment.
    pub(crate) truncated_bytes: u64,
}

/// Damage repaired in the newest segment.
#[derive(Debug, Default)]
struct Repairs {
    corrupted_records: u64,
    truncated_bytes: u64,
}

/// Opens (or creates) the log in `config.dir`; blocking.
pub(crate) fn recover(config: &WalConfig) -> Result<Recovered, WalError> {
    let wal_dir = state::wal_dir(&config.dir);
    let checkpoint_dir = state::checkpoint_dir(&config.dir);
    fs::create_dir_all(&wal_dir)?;
    fs::create_dir_all(&checkpoint_dir)?;
    let dir_lock = lock_dir(&config.dir)?;
    checkpoint::remove_leftovers(&checkpoint_dir)?;

    let mut segments = segment::list_segments(&wal_dir)?;
    let mut repairs = Repairs::default();
    let newest = match segments.split_last_mut() {
        Some((newest, older)) => {
            for segment in older.iter() {
                check_older_segment(&wal_dir, segment)?;
            }
            Some(recover_newest_segment(
                &wal_dir,
                newest,
                config.fsync,
                &mut repairs,
            )?)
        }
        None => None,
    };

    let mut saved_checkpoints = BTreeMap::new();
    for sink in &config.sinks {
        saved_checkpoints.insert(sink.clone(), checkpoint::read(&checkpoint_dir, sink)?);
    }
    let last_on_disk = match &newest {
        Some((active, last_lsn)) => last_lsn.unwrap_or(Lsn(active.first_lsn.0.saturating_sub(1))),
        None => Lsn::ZERO,
    };
    // A sink may have committed records that were then cut off (a flipped bit in a synced
    // record): never hand out an LSN again that a sink has already passed.
    let max_checkpoint = saved_checkpoints
        .values()
        .flatten()
        .copied()
        .max()
        .unwrap_or(Lsn::ZERO);
    let durable_lsn = last_on_disk.max(max_checkpoint).max(config.lsn_floor);
    let next_lsn = durable_lsn.next();
    let mut counted_gaps = BTreeSet::new();
    if durable_lsn > last_on_disk {
        tracing::warn!(last_on_disk = %last_on_disk, next_lsn = %next_lsn, "a sink checkpoint or stored position is past the end of the wal, skipping its lsns");
        // Already counted in `corrupted_records` when the tail was cut.
        counted_gaps.insert(last_on_disk.next());
    }

    let active = match newest {
        Some((active, _)) if durable_lsn == last_on_disk => active,
        // No segment yet; or LSNs are skipped, and a segment's LSNs are kept consecutive.
        _ => {
            let file = segment::create_segment(&wal_dir, next_lsn, config.fsync)?;
            segments.push(SegmentFile {
                first_lsn: next_lsn,
                len: SEGMENT_HEADER_LEN,
            });
            ActiveSegment {
                file,
                first_lsn: next_lsn,
                len: SEGMENT_HEADER_LEN,
            }
        }
    };

    let mut state = LogState {
        segments: segments
            .iter()
            .map(|segment| (segment.first_lsn, segment.len))
            .collect(),
        durable_lsn,
        sinks: BTreeMap::new(),
        counted_gaps,
    };
    let oldest_first = *state.segments.keys().next().expect("a segment exists");
    // A sink without a checkpoint starts at the oldest retained record.
    let before_oldest = Lsn(oldest_first.0.saturating_sub(1));
    for (sink, saved) in saved_checkpoints {
        let checkpoint = match saved {
            Some(lsn) if lsn < before_oldest => {
                tracing::warn!(sink, checkpoint = %lsn, oldest = %oldest_first, "records after the sink checkpoint were collected while it was not registered");
                before_oldest
            }
            Some(lsn) => lsn,
            None => before_oldest,
        };
        let position =
            state::position_after(&wal_dir, state.segment_for(checkpoint.next()), checkpoint)?;
        state.sinks.insert(
            sink,
            SinkState {
                checkpoint,
                position,
            },
        );
    }

    if repairs.corrupted_records > 0 || repairs.truncated_bytes > 0 {
        tracing::warn!(
            corrupted_records = repairs.corrupted_records,
            truncated_bytes = repairs.truncated_bytes,
            "wal recovered from a torn or corrupted tail"
        );
    }
    tracing::info!(segments = state.segments.len(), next_lsn = %next_lsn, sinks = state.sinks.len(), "wal opened");
    Ok(Recovered {
        dir_lock,
        state,
        active,
        next_lsn,
        corrupted_records: repairs.corrupted_records,
        truncated_bytes: repairs.truncated_bytes,
    })
}

/// One process at a time: an advisory lock on `dir/LOCK`, released when the writer stops (or
/// the process dies).
fn lock_dir(dir: &Path) -> Result<File, WalError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(WalError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(error)) => Err(error.into()),
    }
}

/// An older segment's frames carry their own CRCs, so a damaged header is only logged; a
/// segment of a newer format stops the open rather than being misread.
fn check_older_segment(wal_dir: &Path, segment: &SegmentFile) -> Result<(), WalError> {
    let path = segment::segment_path(wal_dir, segment.first_lsn);
    match check_header(&segment::read_header(&path)?, segment.first_lsn) {
        HeaderCheck::Valid => Ok(()),
        HeaderCheck::UnsupportedVersion(version) => {
            Err(WalError::UnsupportedVersion { path, version })
        }
        HeaderCheck::Invalid => {
            tracing::warn!(segment = ?path, "damaged wal segment header, its records are read by their checksums");
            Ok(())
        }
    }
}

/// Reads the newest segment whole, cuts off a torn or corrupted tail, and opens it for
/// appending. Returns it with the LSN of its last record.
///
/// A bad frame followed by valid frames is not a tail but damage in the middle: cutting there
/// would delete acknowledged records, so the frame is left for readers to skip and count.
fn recover_newest_segment(
    wal_dir: &Path,
    segment: &mut SegmentFile,
    fsync: bool,
    repairs: &mut Repairs,
) -> Result<(ActiveSegment, Option<Lsn>), WalError> {
    let path = segment::segment_path(wal_dir, segment.first_lsn);
    let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
    let file_len = file.metadata()?.len();
    let mut bytes = Bytes::from(segment::read_at(&mut file, 0, file_len as usize)?);
    match check_header(&bytes, segment.first_lsn) {
        HeaderCheck::Valid => {}
        HeaderCheck::UnsupportedVersion(version) => {
            return Err(WalError::UnsupportedVersion { path, version });
        }
        HeaderCheck::Invalid => {
            // A crash while the segment was being created; or a damaged header in front of good
            // frames, which the scan below keeps.
            tracing::warn!(segment = ?path, "damaged header on the newest wal segment, rewriting it");
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&encode_header(segment.first_lsn))?;
            let mut repaired = encode_header(segment.first_lsn).to_vec();
            repaired.extend_from_slice(bytes.get(SEGMENT_HEADER_LEN as usize..).unwrap_or(&[]));
            repairs.truncated_bytes += file_len.min(SEGMENT_HEADER_LEN);
            bytes = Bytes::from(repaired);
        }
    }

    let mut offset = SEGMENT_HEADER_LEN as usize;
    let mut last_lsn: Option<Lsn> = None;
    let before_first = Lsn(segment.first_lsn.0.saturating_sub(1));
    while offset < bytes.len() {
        let after = last_lsn.unwrap_or(before_first);
        if let Decoded::Frame { record, frame_len } = decode_frame(&bytes.slice(offset..))
            && record.lsn > after
        {
            last_lsn = Some(record.lsn);
            offset += frame_len;
            continue;
        }
        if let Some(next) = find_next_frame(&bytes, offset, after) {
            tracing::warn!(segment = ?path, offset, resumes_at = next, "corrupted record in the newest wal segment, readers will skip it");
            offset = next;
            continue;
        }
        let cut = bytes.len() - offset;
        tracing::warn!(segment = ?path, offset, bytes = cut, "cutting a torn or corrupted tail off the wal");
        repairs.corrupted_records += 1;
        repairs.truncated_bytes += cut as u64;
        bytes.truncate(offset);
        break;
    }

    let len = bytes.len() as u64;
    if len != file_len || repairs.truncated_bytes > 0 {
        file.set_len(len)?;
        if fsync {
            file.sync_all()?;
        }
    }
    file.seek(SeekFrom::Start(len))?;
    segment.len = len;
    Ok((
        ActiveSegment {
            file,
            first_lsn: segment.first_lsn,
            len,
        },
        last_lsn,
    ))
}
