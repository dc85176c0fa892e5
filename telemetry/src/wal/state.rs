//! The in-memory view of the log that the writer, the readers and the owner share: which
//! segments exist and how much of each is synced, each sink's checkpoint, the size budget and
//! the counters.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::config::WalConfig;
use super::error::AppendError;
use super::record::Lsn;
use super::segment::{self, Position, SEGMENT_HEADER_LEN, SegmentFile};

/// What [`AppendError::Full`] suggests as the client's wait: sinks typically commit every
/// second or faster, and a full log frees a whole segment at a time.
const FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What the lock in [`Shared`] guards. Held only for map lookups and updates, never for I/O.
#[derive(Debug, Default)]
pub(crate) struct LogState {
    /// Every retained segment by first LSN, with its synced length in bytes. The newest is the
    /// one being written; all others are complete.
    pub(crate) segments: BTreeMap<Lsn, u64>,
    /// The last record that is synced and so visible to readers (`Lsn(0)`: none).
    pub(crate) durable_lsn: Lsn,
    /// The registered sinks.
    pub(crate) sinks: BTreeMap<String, SinkState>,
    /// Where runs of missing LSNs (records lost to corruption) start, once counted.
    pub(crate) counted_gaps: BTreeSet<Lsn>,
}

/// One registered sink.
#[derive(Debug, Clone)]
pub(crate) struct SinkState {
    /// The last LSN it has finished; everything up to it may be collected.
    pub(crate) checkpoint: Lsn,
    /// Where the record after the checkpoint starts (feeds the lag in bytes).
    pub(crate) position: Position,
}

impl LogState {
    /// The segment that holds `lsn` if it is retained: the newest one starting at or before it,
    /// or the oldest one when `lsn` is older than the retained log.
    pub(crate) fn segment_for(&self, lsn: Lsn) -> SegmentFile {
        let (first_lsn, len) = self
            .segments
            .range(..=lsn)
            .next_back()
            .or_else(|| self.segments.iter().next())
            .expect("the log always has a segment to write to");
        SegmentFile {
            first_lsn: *first_lsn,
            len: *len,
        }
    }

    /// Record bytes from `position` to the end of the synced log.
    pub(crate) fn bytes_after(&self, position: Position) -> u64 {
        self.segments
            .range(position.segment..)
            .map(|(first_lsn, len)| {
                let start = if *first_lsn == position.segment {
                    position.offset.max(SEGMENT_HEADER_LEN)
                } else {
                    SEGMENT_HEADER_LEN
                };
                len.saturating_sub(start)
            })
            .sum()
    }

    /// The checkpoint of the slowest registered sink: every record up to it is no longer needed.
    /// With no sinks at all, nobody needs anything that is synced.
    pub(crate) fn min_checkpoint(&self) -> Lsn {
        self.sinks
            .values()
            .map(|sink| sink.checkpoint)
            .min()
            .unwrap_or(self.durable_lsn)
    }
}

/// Where the record after `lsn` starts, for the lag statistics.
/// `segment` is the one [`LogState::segment_for`] gives for the LSN after `lsn`.
pub(crate) fn position_after(
    wal_dir: &Path,
    segment: SegmentFile,
    lsn: Lsn,
) -> io::Result<Position> {
    Ok(Position {
        segment: segment.first_lsn,
        offset: segment::offset_after(wal_dir, segment, lsn)?,
    })
}

/// Monotonic counters shown by `stats()`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) appends: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) corrupted_records: AtomicU64,
    pub(crate) truncated_bytes: AtomicU64,
}

/// Everything the writer, the readers and the owner of the log share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: WalConfig,
    pub(crate) wal_dir: PathBuf,
    pub(crate) checkpoint_dir: PathBuf,
    state: Mutex<LogState>,
    /// The last synced LSN, sent by the writer after each sync; readers wait on it.
    pub(crate) durable: watch::Receiver<Lsn>,
    /// Bytes of all retained segments plus the frames accepted but not yet written: what
    /// `max_bytes` limits.
    retained_bytes: AtomicU64,
    pub(crate) counters: Counters,
    /// The error that stopped the writer, if one did.
    failure: OnceLock<Arc<io::Error>>,
    /// One lock per registered sink, held while its checkpoint file is written, so that
    /// commits from several readers of a sink land in order.
    commit_locks: BTreeMap<String, Mutex<()>>,
}

impl Shared {
    pub(crate) fn new(
        config: WalConfig,
        state: LogState,
        durable: watch::Receiver<Lsn>,
        counters: Counters,
    ) -> Self {
        let retained_bytes = state.segments.values().sum();
        let commit_locks = state
            .sinks
            .keys()
            .map(|sink| (sink.clone(), Mutex::new(())))
            .collect();
        Shared {
            wal_dir: wal_dir(&config.dir),
            checkpoint_dir: checkpoint_dir(&config.dir),
            config,
            state: Mutex::new(state),
            durable,
            retained_bytes: AtomicU64::new(retained_bytes),
            counters,
            failure: OnceLock::new(),
            commit_locks,
        }
    }

    /// The state; a panic elsewhere while holding the lock leaves it consistent (every update
    /// is a single map operation), so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serializes the checkpoint writes of `sink` (a registered sink); blocks, so only for
    /// blocking threads.
    pub(crate) fn commit_lock(&self, sink: &str) -> MutexGuard<'_, ()> {
        self.commit_locks[sink]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `bytes` from the size budget, or fails with `Full` when they do not fit.
    pub(crate) fn reserve(&self, bytes: u64) -> Result<Reservation<'_>, AppendError> {
        let max = self.config.max_bytes;
        let mut current = self.retained_bytes.load(Ordering::Relaxed);
        loop {
            if current + bytes > max {
                return Err(AppendError::Full {
                    retry_after: FULL_RETRY_AFTER,
                });
            }
            match self.retained_bytes.compare_exchange_weak(
                current,
                current + bytes,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Ok(Reservation {
                        shared: self,
                        bytes,
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Counts bytes the writer added outside any reservation (a new segment's header).
    pub(crate) fn add_retained(&self, bytes: u64) {
        self.retained_bytes.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Gives back the bytes of collected segments.
    pub(crate) fn release_retained(&self, bytes: u64) {
        self.retained_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Counts the records `from..to` as lost to corruption, once however many readers find the
    /// gap.
    pub(crate) fn count_missing(&self, from: Lsn, to: Lsn) {
        debug_assert!(from < to);
        if !self.lock().counted_gaps.insert(from) {
            return;
        }
        let missing = to.0 - from.0;
        self.counters
            .corrupted_records
            .fetch_add(missing, Ordering::Relaxed);
        tracing::warn!(first_missing = %from, missing, "wal records lost to corruption");
    }

    /// Records the error that stopped the writer.
    pub(crate) fn fail(&self, error: Arc<io::Error>) {
        let _ = self.failure.set(error);
    }

    /// The error that stopped the writer, if one did.
    pub(crate) fn failure(&self) -> Option<Arc<io::Error>> {
        self.failure.get().cloned()
    }
}

/// Bytes taken from the size budget by an append on its way to the writer; given back if the
/// append is dropped before the writer has it.
#[derive(Debug)]
pub(crate) struct Reservation<'a> {
    shared: &'a Shared,
    bytes: u64,
}

impl Reservation<'_> {
    /// The writer has the record: its bytes stay counted, now as part of a segment.
    pub(crate) fn hand_over(self) {
        std::mem::forget(self);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.shared.release_retained(self.bytes);
    }
}

/// Where the segments of the log in `dir` live.
pub(crate) fn wal_dir(dir: &Path) -> PathBuf {
    dir.join("wal")
}

/// Where the checkpoints of the log in `dir` live.
pub(crate) fn checkpoint_dir(dir: &Path) -> PathBuf {
    dir.join("checkpoints")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(segments: &[(u64, u64)]) -> LogState {
        LogState {
            segments: segments.iter().map(|&(lsn, len)| (Lsn(lsn), len)).collect(),
            ..LogState::default()
        }
    }

    #[test]
    fn segment_for_picks_the_covering_segment() {
        let state = state(&[(10, 100), (20, 200), (30, 300)]);
        assert_eq!(state.segment_for(Lsn(5)).first_lsn, Lsn(10));
        assert_eq!(state.segment_for(Lsn(10)).first_lsn, Lsn(10));
        assert_eq!(state.segment_for(Lsn(19)).first_lsn, Lsn(10));
        assert_eq!(state.segment_for(Lsn(20)).first_lsn, Lsn(20));
        assert_eq!(state.segment_for(Lsn(99)).first_lsn, Lsn(30));
    }

    #[test]
    fn bytes_after_counts_records_not_headers() {
        let state = state(&[(10, 100), (20, 200)]);
        let h = SEGMENT_HEADER_LEN;
        let start = Position {
            segment: Lsn(10),
            offset: h,
        };
        assert_eq!(state.bytes_after(start), 100 - h + 200 - h);
        let middle = Position {
            segment: Lsn(10),
            offset: 60,
        };
        assert_eq!(state.bytes_after(middle), 40 + 200 - h);
        let collected = Position {
            segment: Lsn(1),
            offset: 500,
        };
        assert_eq!(state.bytes_after(collected), 100 - h + 200 - h);
        let end = Position {
            segment: Lsn(20),
            offset: 200,
        };
        assert_eq!(state.bytes_after(end), 0);
    }

    #[test]
    fn reservations_respect_the_budget_and_give_back_on_drop() {
        let config = WalConfig {
            max_bytes: 100,
            ..WalConfig::new("/tmp/x")
        };
        let (_tx, rx) = watch::channel(Lsn::ZERO);
        let shared = Shared::new(config, state(&[(1, 40)]), rx, Counters::default());
        let first = shared.reserve(50).unwrap();
        assert!(matches!(shared.reserve(11), Err(AppendError::Full { .. })));
        drop(first);
        shared.reserve(60).unwrap().hand_over();
        assert!(matches!(shared.reserve(1), Err(AppendError::Full { .. })));
        shared.release_retained(40);
        shared.reserve(40).unwrap().hand_over();
    }
}
