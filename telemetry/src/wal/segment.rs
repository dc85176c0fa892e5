//! Segment files: the log is a sequence of files `wal/{first_lsn:020}.seg`, each a header
//! followed by frames (see [`super::record`]).
//!
//! The header is 24 bytes, integers little-endian:
//!
//! ```text
//! offset  size  field
//!      0     8  magic "FVWALSEG"
//!      8     2  format version (1)
//!     10     2  reserved, zero
//!     12     8  first lsn (the one in the file name)
//!     20     4  crc32 of bytes 0..20
//! ```
//!
//! Every record in a segment has an LSN at or above the segment's first LSN and below the next
//! segment's first LSN. Only the newest segment is written to; the writer syncs a segment
//! completely before it creates the next one, so older segments never have a torn tail.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::record::{FRAME_HEADER_LEN, Lsn};

/// Bytes of the segment header.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 24;
const MAGIC: [u8; 8] = *b"FVWALSEG";
const VERSION: u16 = 1;
const EXTENSION: &str = "seg";

/// A segment on disk: its first LSN and its length in bytes (for the newest segment, the length
/// up to the last synced frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentFile {
    pub(crate) first_lsn: Lsn,
    pub(crate) len: u64,
}

/// Where in the log a reader or checkpoint stands: a byte offset in the segment that starts
/// at `segment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) segment: Lsn,
    pub(crate) offset: u64,
}

/// The file of the segment whose first record is `first_lsn`.
pub(crate) fn segment_path(wal_dir: &Path, first_lsn: Lsn) -> PathBuf {
    wal_dir.join(format!("{:020}.{EXTENSION}", first_lsn.0))
}

fn parse_segment_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Lsn)
}

/// The segments in `wal_dir`, oldest first. Other files are left alone and logged.
pub(crate) fn list_segments(wal_dir: &Path) -> io::Result<Vec<SegmentFile>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(wal_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(first_lsn) = name.to_str().and_then(parse_segment_name) else {
            tracing::warn!(file = ?entry.path(), "ignoring a file that is not a wal segment");
            continue;
        };
        segments.push(SegmentFile {
            first_lsn,
            len: entry.metadata()?.len(),
        });
    }
    segments.sort_by_key(|segment| segment.first_lsn);
    Ok(segments)
}

/// The header of a segment whose first record is `first_lsn`.
pub(crate) fn encode_header(first_lsn: Lsn) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut header = [0; SEGMENT_HEADER_LEN as usize];
    header[0..8].copy_from_slice(&MAGIC);
    header[8..10].copy_from_slice(&VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&first_lsn.0.to_le_bytes());
    let crc = crc32fast::hash(&header[0..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header
}

/// What a segment header says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderCheck {
    Valid,
    /// The header is intact but written by a format version this code does not know.
    UnsupportedVersion(u16),
    /// Short, wrong magic, wrong CRC or a first LSN other than the file name's.
    Invalid,
}

/// Checks the header at the start of `bytes` for a segment named after `first_lsn`.
pub(crate) fn check_header(bytes: &[u8], first_lsn: Lsn) -> HeaderCheck {
    let Some(header) = bytes.get(..SEGMENT_HEADER_LEN as usize) else {
        return HeaderCheck::Invalid;
    };
    let crc = u32::from_le_bytes(header[20..24].try_into().expect("4 bytes"));
    if header[0..8] != MAGIC || crc32fast::hash(&header[0..20]) != crc {
        return HeaderCheck::Invalid;
    }
    let version = u16::from_le_bytes(header[8..10].try_into().expect("2 bytes"));
    if version != VERSION {
        return HeaderCheck::UnsupportedVersion(version);
    }
    let header_lsn = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
    if header_lsn != first_lsn.0 {
        return HeaderCheck::Invalid;
    }
    HeaderCheck::Valid
}

/// Reads the header of a segment file (fewer bytes if the file is shorter).
pub(crate) fn read_header(path: &Path) -> io::Result<Vec<u8>> {
    let mut header = Vec::with_capacity(SEGMENT_HEADER_LEN as usize);
    File::open(path)?
        .take(SEGMENT_HEADER_LEN)
        .read_to_end(&mut header)?;
    Ok(header)
}

/// Creates the segment file for `first_lsn` with its header, ready for appending. With `sync`,
/// the file and the directory entry are durable when this returns.
pub(crate) fn create_segment(wal_dir: &Path, first_lsn: Lsn, sync: bool) -> io::Result<File> {
    let path = segment_path(wal_dir, first_lsn);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    file.write_all(&encode_header(first_lsn))?;
    if sync {
        file.sync_data()?;
        sync_dir(wal_dir)?;
    }
    Ok(file)
}

/// Makes the creation, renaming and removal of files in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads `len` bytes at `offset`.
pub(crate) fn read_at(file: &mut File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}

/// The offset, in the segment `segment`, of the first frame with an LSN above `lsn`, or the
/// end of the segment's `len` bytes.
///
/// Walks the frame headers without reading payloads or checking CRCs: the answer only feeds
/// the lag statistics, and readers always start from a segment's beginning.
pub(crate) fn offset_after(wal_dir: &Path, segment: SegmentFile, lsn: Lsn) -> io::Result<u64> {
    let file = match File::open(segment_path(wal_dir, segment.first_lsn)) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(segment.len),
        Err(error) => return Err(error),
    };
    let mut file = BufReader::new(file);
    file.seek(SeekFrom::Start(SEGMENT_HEADER_LEN))?;
    let mut offset = SEGMENT_HEADER_LEN;
    let mut header = [0; FRAME_HEADER_LEN];
    while offset + FRAME_HEADER_LEN as u64 <= segment.len {
        file.read_exact(&mut header)?;
        let payload_len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        let frame_lsn = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        if frame_lsn > lsn.0 {
            return Ok(offset);
        }
        let end = offset + FRAME_HEADER_LEN as u64 + u64::from(payload_len);
        if end > segment.len {
            break;
        }
        file.seek_relative(i64::from(payload_len))?;
        offset = end;
    }
    Ok(segment.len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::record::{Signal, encode_frame};

    #[test]
    fn names_are_zero_padded_and_parse_back() {
        let path = segment_path(Path::new("/x"), Lsn(42));
        assert_eq!(path, Path::new("/x/00000000000000000042.seg"));
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_segment_name(name), Some(Lsn(42)));
        assert_eq!(parse_segment_name("42.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.seg"), None);
        assert_eq!(parse_segment_name("00000000000000000042.seg.tmp"), None);
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let header = encode_header(Lsn(7));
        assert_eq!(check_header(&header, Lsn(7)), HeaderCheck::Valid);
        assert_eq!(check_header(&header, Lsn(8)), HeaderCheck::Invalid);
        assert_eq!(check_header(&header[..10], Lsn(7)), HeaderCheck::Invalid);
        let mut flipped = header;
        flipped[14] ^= 1;
        assert_eq!(check_header(&flipped, Lsn(7)), HeaderCheck::Invalid);
        let mut newer = header;
        newer[8..10].copy_from_slice(&2u16.to_le_bytes());
        let crc = crc32fast::hash(&newer[0..20]);
        newer[20..24].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            check_header(&newer, Lsn(7)),
            HeaderCheck::UnsupportedVersion(2)
        );
    }

    #[test]
    fn list_segments_sorts_and_skips_strangers() {
        let dir = tempfile::tempdir().unwrap();
        create_segment(dir.path(), Lsn(100), true).unwrap();
        create_segment(dir.path(), Lsn(1), true).unwrap();
        fs::write(dir.path().join("notes.txt"), b"hi").unwrap();
        let segments = list_segments(dir.path()).unwrap();
        assert_eq!(
            segments,
            vec![
                SegmentFile {
                    first_lsn: Lsn(1),
                    len: SEGMENT_HEADER_LEN
                },
                SegmentFile {
                    first_lsn: Lsn(100),
                    len: SEGMENT_HEADER_LEN
                },
            ]
        );
        assert!(create_segment(dir.path(), Lsn(1), true).is_err());
    }

    #[test]
    fn offset_after_finds_frame_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = create_segment(dir.path(), Lsn(10), false).unwrap();
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        for lsn in 10..13 {
            encode_frame(&mut buf, Lsn(lsn), Signal::Logs, &vec![b'x'; lsn as usize]);
            ends.push(SEGMENT_HEADER_LEN + buf.len() as u64);
        }
        file.write_all(&buf).unwrap();
        let segment = SegmentFile {
            first_lsn: Lsn(10),
            len: ends[2],
        };
        assert_eq!(
            offset_after(dir.path(), segment, Lsn(0)).unwrap(),
            SEGMENT_HEADER_LEN
        );
        assert_eq!(offset_after(dir.path(), segment, Lsn(10)).unwrap(), ends[0]);
        assert_eq!(offset_after(dir.path(), segment, Lsn(11)).unwrap(), ends[1]);
        assert_eq!(offset_after(dir.path(), segment, Lsn(12)).unwrap(), ends[2]);
        assert_eq!(offset_after(dir.path(), segment, Lsn(99)).unwrap(), ends[2]);
    }
}
