//! [`WalConfig`]: where the log lives, how large it may grow, and which sinks read it.

use std::path::PathBuf;

use super::checkpoint;
use super::error::WalError;
use super::record::{FRAME_HEADER_LEN, frame_len};
use super::segment::SEGMENT_HEADER_LEN;

/// How the write-ahead log is laid out and bounded. Build it with [`WalConfig::new`] and change
/// the fields that matter; [`Wal::open`](super::Wal::open) checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    /// The log's directory; `wal/` (segments), `checkpoints/` and a `LOCK` file go in it.
    pub dir: PathBuf,
    /// Largest size of one segment file, header included (default 64 MiB). Capped at half of
    /// `max_bytes`, since the newest segment is never collected; a record larger than this
    /// gets a segment of its own.
    pub segment_bytes: u64,
    /// Largest size of the retained log (default 1 GiB): an append that would take the segments
    /// past it fails at once with [`AppendError::Full`](super::AppendError::Full). (A new
    /// segment's 24-byte header may go over by that much.)
    pub max_bytes: u64,
    /// Largest payload of one record (default 4 MiB, the OTLP/gRPC default message limit);
    /// larger ones fail with [`AppendError::TooLarge`](super::AppendError::TooLarge).
    pub max_record_bytes: usize,
    /// Sync (`fdatasync`) each group of appends, and each checkpoint, before acknowledging it
    /// (default true). `false` is for benchmarks only: a crash can then lose acknowledged
    /// records.
    pub fsync: bool,
    /// The sinks that read the log (names of `A-Z a-z 0-9 _ -`). Each keeps its own checkpoint,
    /// and a segment is deleted only when every one of them has finished it, including a sink
    /// that has not started reading. With no sinks, nothing holds segments back.
    pub sinks: Vec<String>,
    /// No record gets an LSN at or below this (default zero): the highest position a sink
    /// stored with its own data (see [`crate::sinks::Sink::durable_position`]). If the log
    /// was replaced, or its tail cut after that sink stored it, new records still number
    /// after it instead of being skipped by the sink as already stored.
    pub lsn_floor: super::Lsn,
}

impl WalConfig {
    /// Defaults for a log in `dir` with no sinks.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WalConfig {
            dir: dir.into(),
            segment_bytes: 64 << 20,
            max_bytes: 1 << 30,
            max_record_bytes: 4 << 20,
            fsync: true,
            sinks: Vec::new(),
            lsn_floor: super::Lsn::ZERO,
        }
    }

    /// The size at which the writer starts a new segment: `segment_bytes`, but at most half of
    /// `max_bytes`, so that collecting every finished segment always makes room again.
    pub(crate) fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.min(self.max_bytes / 2)
    }

    /// The largest payload that can be appended: `max_record_bytes`, or less if a record that
    /// size could never fit under `max_bytes`.
    pub(crate) fn effective_max_record_bytes(&self) -> usize {
        let fits = self.max_bytes - SEGMENT_HEADER_LEN - FRAME_HEADER_LEN as u64;
        self.max_record_bytes
            .min(usize::try_from(fits).unwrap_or(usize::MAX))
    }

    /// Checks that the fields can work.
    pub(crate) fn validate(&self) -> Result<(), WalError> {
        let invalid = |message: String| Err(WalError::InvalidConfig(message));
        if self.max_record_bytes > (u32::MAX as usize) - FRAME_HEADER_LEN {
            return invalid(format!(
                "max_record_bytes {} does not fit the 32-bit frame length",
                self.max_record_bytes
            ));
        }
        let smallest_log = 2 * (SEGMENT_HEADER_LEN + frame_len(0));
        if self.max_bytes < smallest_log {
            return invalid(format!(
                "max_bytes {} is below the minimum of {smallest_log}",
                self.max_bytes
            ));
        }
        if self.segment_bytes < SEGMENT_HEADER_LEN + frame_len(0) {
            return invalid(format!(
                "segment_bytes {} cannot hold a header and a record",
                self.segment_bytes
            ));
        }
        for (index, sink) in self.sinks.iter().enumerate() {
            checkpoint::validate_sink_name(sink)?;
            if self.sinks[..index].contains(sink) {
                return invalid(format!("sink {sink:?} is listed twice"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> WalConfig {
        WalConfig {
            segment_bytes: 4096,
            max_bytes: 8192,
            max_record_bytes: 1024,
            sinks: vec!["a".into(), "b".into()],
            ..WalConfig::new("/tmp/x")
        }
    }

    #[test]
    fn defaults_are_valid() {
        WalConfig::new("/tmp/x").validate().unwrap();
        small().validate().unwrap();
    }

    #[test]
    fn rejects_fields_that_cannot_work() {
        let cases = [
            WalConfig {
                segment_bytes: 40,
                ..small()
            },
            WalConfig {
                max_bytes: 50,
                ..small()
            },
            WalConfig {
                max_record_bytes: usize::MAX,
                ..small()
            },
            WalConfig {
                sinks: vec!["a".into(), "a".into()],
                ..small()
            },
            WalConfig {
                sinks: vec!["../up".into()],
                ..small()
            },
        ];
        for config in cases {
            assert!(
                matches!(config.validate(), Err(WalError::InvalidConfig(_))),
                "{config:?}"
            );
        }
    }

    #[test]
    fn segments_and_records_are_capped_by_the_log_size() {
        let config = WalConfig {
            segment_bytes: 1 << 20,
            max_bytes: 4096,
            max_record_bytes: 4 << 20,
            ..WalConfig::new("/tmp/x")
        };
        config.validate().unwrap();
        assert_eq!(config.effective_segment_bytes(), 2048);
        assert_eq!(config.effective_max_record_bytes(), 4096 - 24 - 17);
        assert_eq!(small().effective_segment_bytes(), 4096);
        assert_eq!(small().effective_max_record_bytes(), 1024);
    }
}
