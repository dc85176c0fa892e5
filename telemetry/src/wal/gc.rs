//! Garbage collection: deleting the segments every registered sink has finished.
//!
//! A segment can go when all its records are at or below the slowest sink's checkpoint, which
//! is known without reading it: its records end where the next segment begins. The newest
//! segment is never deleted (the writer appends to it).

use std::fs;
use std::io;

use super::record::Lsn;
use super::segment::{self, SegmentFile};
use super::state::Shared;

/// Deletes the finished segments; returns how many.
pub(crate) fn collect_garbage(shared: &Shared) -> io::Result<usize> {
    let finished = take_finished(shared);
    if finished.is_empty() {
        return Ok(0);
    }
    // They are out of the shared view already, so no reader starts on them; a reader that has
    // one open keeps reading it (the file lives on until closed), and has nothing left in it.
    let mut freed = 0;
    let mut result = Ok(());
    for segment in &finished {
        let path = segment::segment_path(&shared.wal_dir, segment.first_lsn);
        match fs::remove_file(&path) {
            Ok(()) => freed += segment.len,
            Err(error) if error.kind() == io::ErrorKind::NotFound => freed += segment.len,
            Err(error) => {
                // The file is reopened (and collected again) on the next start.
                tracing::warn!(file = ?path, %error, "could not delete a wal segment");
                result = Err(error);
                break;
            }
        }
    }
    shared.release_retained(freed);
    if shared.config.fsync && freed > 0 {
        segment::sync_dir(&shared.wal_dir)?;
    }
    tracing::debug!(
        segments = finished.len(),
        bytes = freed,
        "wal segments collected"
    );
    result.map(|()| finished.len())
}

/// Removes the finished segments from the shared view and returns them.
fn take_finished(shared: &Shared) -> Vec<SegmentFile> {
    let mut state = shared.lock();
    let done_up_to = state.min_checkpoint();
    let finished: Vec<SegmentFile> = state
        .segments
        .iter()
        .zip(state.segments.keys().skip(1))
        .take_while(|(_, next_first)| Lsn(next_first.0 - 1) <= done_up_to)
        .map(|((first_lsn, len), _)| SegmentFile {
            first_lsn: *first_lsn,
            len: *len,
        })
        .collect();
    for segment in &finished {
        state.segments.remove(&segment.first_lsn);
    }
    finished
}
