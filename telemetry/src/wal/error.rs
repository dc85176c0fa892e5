//! What can go wrong: [`WalError`] for opening, reading and committing, [`AppendError`] for
//! appending (the receivers turn it into a status code).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::record::Lsn;

/// An error from opening the log, reading it or committing a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The configuration cannot work; the message says which field.
    #[error("invalid wal config: {0}")]
    InvalidConfig(String),
    /// Another process (or another `Wal` in this one) has the directory open.
    #[error("wal directory {} is in use by another process", dir.display())]
    Locked {
        /// The log's directory.
        dir: PathBuf,
    },
    /// A segment was written by a format version this build does not read.
    #[error("wal segment {} has format version {version}, which this build does not read", path.display())]
    UnsupportedVersion {
        /// The segment file.
        path: PathBuf,
        /// The version in its header.
        version: u16,
    },
    /// `reader` was asked for a sink that is not in `WalConfig::sinks`.
    #[error("sink {0:?} is not registered in the wal config")]
    UnknownSink(String),
    /// `commit` was given an LSN the reader has not read yet.
    #[error("cannot commit lsn {lsn}: the reader has read up to {read}")]
    CommitAhead {
        /// The LSN given to `commit`.
        lsn: Lsn,
        /// The last LSN the reader returned (`Lsn(0)`: none yet).
        read: Lsn,
    },
    /// The log was closed: no more records will come.
    #[error("the wal is closed")]
    Closed,
    /// A file operation failed.
    #[error("wal i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Why a record was not appended. Nothing was acknowledged: the caller may retry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// The retained log has reached `max_bytes`: push back (RESOURCE_EXHAUSTED, or HTTP 429
    /// with `Retry-After`) until the sinks catch up.
    #[error("the wal is full, retry after {retry_after:?}")]
    Full {
        /// A suggestion for the client's next attempt.
        retry_after: Duration,
    },
    /// The payload is larger than `max_record_bytes`; retrying will not help.
    #[error("record of {size} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// The payload's size.
        size: usize,
        /// `WalConfig::max_record_bytes`.
        max: usize,
    },
    /// The disk is full: nothing of the record was written, and the log goes on. Push back
    /// like [`AppendError::Full`]; the append may succeed once space is freed.
    #[error("the wal's disk is full, retry after {retry_after:?}")]
    NoSpace {
        /// A suggestion for the client's next attempt.
        retry_after: Duration,
    },
    /// A write or sync failed. After this the log accepts no more appends (a failed fsync
    /// leaves the page cache in an unknown state); reopening recovers what was synced.
    #[error("wal write failed: {0}")]
    Io(Arc<io::Error>),
    /// The log has been closed.
    #[error("the wal is closed")]
    Closed,
}
