//! [`WalStats`]: a snapshot of the log's size, position and health.

use std::sync::atomic::Ordering;

use super::record::Lsn;
use super::state::Shared;

/// A snapshot of the log, from [`Wal::stats`](super::Wal::stats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalStats {
    /// Bytes of all retained segments (synced bytes, headers included).
    pub bytes_on_disk: u64,
    /// Retained segment files.
    pub segments: usize,
    /// The oldest retained record, if any.
    pub first_lsn: Option<Lsn>,
    /// The newest synced record, if any is retained.
    pub last_lsn: Option<Lsn>,
    /// Every registered sink, by name.
    pub sinks: Vec<SinkStats>,
    /// Records appended since the log was opened.
    pub appends: u64,
    /// Syncs of segment data since the log was opened; far fewer than `appends` when group
    /// commit works. Zero with `fsync: false`.
    pub syncs: u64,
    /// Records lost to corruption: cut off the tail at open, or skipped by readers.
    pub corrupted_records: u64,
    /// Bytes cut off the newest segment at open (a torn or corrupted tail).
    pub truncated_bytes: u64,
}

/// How far one sink is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStats {
    /// The sink's name.
    pub sink: String,
    /// The last LSN it has committed.
    pub checkpoint: Lsn,
    /// Synced records after its checkpoint.
    pub lag_records: u64,
    /// Bytes of those records on disk (frames, without segment headers).
    pub lag_bytes: u64,
}

pub(crate) fn snapshot(shared: &Shared) -> WalStats {
    let state = shared.lock();
    let durable_lsn = state.durable_lsn;
    let oldest_segment = state.segments.keys().next().copied();
    let first_lsn = oldest_segment.filter(|first| durable_lsn >= *first);
    let sinks = state
        .sinks
        .iter()
        .map(|(name, sink)| SinkStats {
            sink: name.clone(),
            checkpoint: sink.checkpoint,
            lag_records: durable_lsn.0.saturating_sub(sink.checkpoint.0),
            lag_bytes: state.bytes_after(sink.position),
        })
        .collect();
    let counters = &shared.counters;
    WalStats {
        bytes_on_disk: state.segments.values().sum(),
        segments: state.segments.len(),
        first_lsn,
        last_lsn: first_lsn.map(|_| durable_lsn),
        sinks,
        appends: counters.appends.load(Ordering::Relaxed),
        syncs: counters.syncs.load(Ordering::Relaxed),
        corrupted_records: counters.corrupted_records.load(Ordering::Relaxed),
        truncated_bytes: counters.truncated_bytes.load(Ordering::Relaxed),
    }
}
