//! One entry of the log: a [`Record`] with its [`Lsn`] and [`Signal`], and the frame that stores
//! it on disk.
//!
//! A frame is a 17-byte header followed by the payload, all integers little-endian:
//!
//! ```text
//! offset  size  field
//!      0     4  crc32 (of bytes 4..17 and the payload)
//!      4     4  payload length
//!      8     8  lsn
//!     16     1  signal (1 traces, 2 metrics, 3 logs, 4 profiles)
//!     17     n  payload
//! ```
//!
//! The CRC covers the length, the LSN and the signal as well as the payload, so a torn write or
//! a flipped bit anywhere in the frame is detected.

use std::fmt;

use bytes::Bytes;

/// Log sequence number: the position of a record in the log.
///
/// Every appended record gets the next number; numbers only grow, across restarts too. `Lsn(0)`
/// is never given to a record: as a checkpoint it means "nothing read yet".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Before the first record: the checkpoint of a sink that has read nothing.
    pub const ZERO: Lsn = Lsn(0);

    /// The number after this one.
    pub fn next(self) -> Lsn {
        Lsn(self.0 + 1)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which OpenTelemetry signal a record carries; stored as one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Signal {
    /// An OTLP `ExportTraceServiceRequest`.
    Traces = 1,
    /// An OTLP `ExportMetricsServiceRequest`.
    Metrics = 2,
    /// An OTLP `ExportLogsServiceRequest`.
    Logs = 3,
    /// A pprof profile.
    Profiles = 4,
}

impl Signal {
    /// Every signal.
    pub const ALL: [Signal; 4] = [
        Signal::Traces,
        Signal::Metrics,
        Signal::Logs,
        Signal::Profiles,
    ];
}

/// A byte that names no [`Signal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown signal byte {0}")]
pub struct UnknownSignal(pub u8);

impl TryFrom<u8> for Signal {
    type Error = UnknownSignal;

    fn try_from(byte: u8) -> Result<Self, Self::Error> {
        match byte {
            1 => Ok(Signal::Traces),
            2 => Ok(Signal::Metrics),
            3 => Ok(Signal::Logs),
            4 => Ok(Signal::Profiles),
            other => Err(UnknownSignal(other)),
        }
    }
}

impl From<Signal> for u8 {
    fn from(signal: Signal) -> u8 {
        signal as u8
    }
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its position in the log.
    pub lsn: Lsn,
    /// The signal its payload carries.
    pub signal: Signal,
    /// The bytes given to `append`, unchanged (the encoded OTLP request).
    pub payload: Bytes,
}

/// Bytes of a frame before its payload.
pub(crate) const FRAME_HEADER_LEN: usize = 17;

/// Bytes a payload of `payload_len` bytes takes on disk.
pub(crate) fn frame_len(payload_len: usize) -> u64 {
    (FRAME_HEADER_LEN + payload_len) as u64
}

/// Appends the frame of one record to `buf`.
pub(crate) fn encode_frame(buf: &mut Vec<u8>, lsn: Lsn, signal: Signal, payload: &[u8]) {
    let payload_len = u32::try_from(payload.len()).expect("payload length checked by append");
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&payload_len.to_le_bytes());
    buf.extend_from_slice(&lsn.0.to_le_bytes());
    buf.push(signal.into());
    buf.extend_from_slice(payload);
    let crc = crc32fast::hash(&buf[start + 4..]);
    buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// What is found where a frame should start.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// A whole, valid frame of `frame_len` bytes.
    Frame { record: Record, frame_len: usize },
    /// The bytes end before the frame does: the frame would need `needed` bytes in all (as far
    /// as its header, which the CRC has not checked yet, tells).
    Incomplete { needed: usize },
    /// The frame is all there but its CRC or signal byte is wrong.
    Corrupt,
}

/// Reads the frame at the start of `buf`; the payload shares `buf`'s memory.
pub(crate) fn decode_frame(buf: &Bytes) -> Decoded {
    let Some(header) = buf.get(..FRAME_HEADER_LEN) else {
        return Decoded::Incomplete {
            needed: FRAME_HEADER_LEN,
        };
    };
    let stored_crc = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let payload_len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
    let lsn = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    let signal_byte = header[16];
    let needed = FRAME_HEADER_LEN + payload_len;
    if buf.len() < needed {
        return Decoded::Incomplete { needed };
    }
    if crc32fast::hash(&buf[4..needed]) != stored_crc {
        return Decoded::Corrupt;
    }
    let Ok(signal) = Signal::try_from(signal_byte) else {
        return Decoded::Corrupt;
    };
    Decoded::Frame {
        record: Record {
            lsn: Lsn(lsn),
            signal,
            payload: buf.slice(FRAME_HEADER_LEN..needed),
        },
        frame_len: needed,
    }
}

/// Where the first valid frame after the damaged one at `bad_at` starts, if any.
///
/// Used to step over a corrupted frame whose length can no longer be trusted: every byte
/// position after `bad_at` is tried. `after` is the LSN of the last good record before it (or
/// the one before the segment's first). Within a segment LSNs are consecutive and a frame takes
/// at least [`FRAME_HEADER_LEN`] bytes, so a frame `d` bytes further on has an LSN of at most
/// `after + 1 + d / FRAME_HEADER_LEN`; together with the CRC this keeps stale or random bytes
/// from passing for a record, and keeps the search cheap (few positions get a CRC computed).
pub(crate) fn find_next_frame(buf: &Bytes, bad_at: usize, after: Lsn) -> Option<usize> {
    let last_start = buf.len().saturating_sub(FRAME_HEADER_LEN - 1);
    (bad_at + 1..last_start).find(|&offset| {
        let header = &buf[offset..offset + FRAME_HEADER_LEN];
        let lsn = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        let payload_len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
        let highest_possible = after.0 + 1 + ((offset - bad_at) / FRAME_HEADER_LEN) as u64;
        lsn > after.0
            && lsn <= highest_possible
            && Signal::try_from(header[16]).is_ok()
            && offset + FRAME_HEADER_LEN + payload_len <= buf.len()
            && matches!(decode_frame(&buf.slice(offset..)), Decoded::Frame { .. })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(lsn: u64, signal: Signal, payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_frame(&mut buf, Lsn(lsn), signal, payload);
        buf
    }

    #[test]
    fn signal_bytes_round_trip_and_reject_unknown() {
        for signal in [
            Signal::Traces,
            Signal::Metrics,
            Signal::Logs,
            Signal::Profiles,
        ] {
            assert_eq!(Signal::try_from(u8::from(signal)), Ok(signal));
        }
        assert_eq!(u8::from(Signal::Traces), 1);
        assert_eq!(u8::from(Signal::Profiles), 4);
        assert_eq!(Signal::try_from(0), Err(UnknownSignal(0)));
        assert_eq!(Signal::try_from(5), Err(UnknownSignal(5)));
    }

    #[test]
    fn frame_round_trips() {
        let bytes = Bytes::from(frame(42, Signal::Logs, b"hello"));
        assert_eq!(bytes.len() as u64, frame_len(5));
        let Decoded::Frame { record, frame_len } = decode_frame(&bytes) else {
            panic!("expected a frame");
        };
        assert_eq!(frame_len, bytes.len());
        assert_eq!(record.lsn, Lsn(42));
        assert_eq!(record.signal, Signal::Logs);
        assert_eq!(record.payload, Bytes::from_static(b"hello"));
    }

    #[test]
    fn empty_payload_is_a_valid_frame() {
        let bytes = Bytes::from(frame(1, Signal::Metrics, b""));
        assert!(matches!(
            decode_frame(&bytes),
            Decoded::Frame {
                frame_len: FRAME_HEADER_LEN,
                ..
            }
        ));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let good = frame(7, Signal::Traces, b"payload bytes");
        for byte in 0..good.len() {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[byte] ^= 1 << bit;
                let decoded = decode_frame(&Bytes::from(bad));
                assert!(
                    !matches!(decoded, Decoded::Frame { .. }),
                    "flip of bit {bit} in byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn truncated_frames_are_incomplete() {
        let good = frame(7, Signal::Traces, b"payload bytes");
        for cut in 0..good.len() {
            let decoded = decode_frame(&Bytes::copy_from_slice(&good[..cut]));
            assert!(
                matches!(decoded, Decoded::Incomplete { .. }),
                "cut at {cut}: {decoded:?}"
            );
        }
        assert_eq!(
            decode_frame(&Bytes::copy_from_slice(&good[..20])),
            Decoded::Incomplete { needed: good.len() }
        );
    }

    #[test]
    fn find_next_frame_steps_over_garbage() {
        let mut buf = frame(1, Signal::Traces, b"first");
        let second_at = buf.len();
        buf.extend(frame(2, Signal::Traces, b"second"));
        buf[10] ^= 0xff; // corrupt the first frame's LSN
        let buf = Bytes::from(buf);
        assert_eq!(decode_frame(&buf), Decoded::Corrupt);
        assert_eq!(find_next_frame(&buf, 0, Lsn(0)), Some(second_at));
        // A frame whose LSN is not above the last good one is not taken.
        assert_eq!(find_next_frame(&buf, 0, Lsn(2)), None);
        assert_eq!(find_next_frame(&buf, second_at, Lsn(0)), None);
    }

    #[test]
    fn find_next_frame_ignores_lsns_too_far_ahead() {
        // A valid frame, but its LSN cannot follow record 1 this closely in one segment.
        let mut buf = vec![0xee; 20];
        let far_at = buf.len();
        buf.extend(frame(1000, Signal::Logs, b"stale"));
        let near_at = buf.len();
        buf.extend(frame(2, Signal::Logs, b"next"));
        let buf = Bytes::from(buf);
        assert_eq!(find_next_frame(&buf, 0, Lsn(1)), Some(near_at));
        assert_eq!(find_next_frame(&buf, 0, Lsn(999)), Some(far_at));
    }
}
