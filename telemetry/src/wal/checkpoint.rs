//! Sink checkpoints: the last LSN a sink has finished, one file per sink under
//! `checkpoints/{sink}`.
//!
//! A checkpoint file is 20 bytes, integers little-endian: the magic `FVWALCKP` (8), the LSN
//! (8) and a crc32 of the first 16 bytes (4). It is replaced atomically: the new content goes
//! to `{sink}.tmp`, which is synced, renamed over the old file, and the directory is synced.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::error::WalError;
use super::record::Lsn;

const MAGIC: [u8; 8] = *b"FVWALCKP";
const FILE_LEN: usize = 20;
const TMP_SUFFIX: &str = ".tmp";
const MAX_SINK_NAME_LEN: usize = 64;

/// A sink name becomes a file name, so it is kept to `[A-Za-z0-9_-]`, 1 to 64 characters.
pub(crate) fn validate_sink_name(name: &str) -> Result<(), WalError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_SINK_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(WalError::InvalidConfig(format!(
            "sink name {name:?} must be 1 to {MAX_SINK_NAME_LEN} characters of A-Z, a-z, 0-9, _ and -"
        )))
    }
}

fn checkpoint_path(dir: &Path, sink: &str) -> PathBuf {
    dir.join(sink)
}

fn encode(lsn: Lsn) -> [u8; FILE_LEN] {
    let mut bytes = [0; FILE_LEN];
    bytes[0..8].copy_from_slice(&MAGIC);
    bytes[8..16].copy_from_slice(&lsn.0.to_le_bytes());
    let crc = crc32fast::hash(&bytes[0..16]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Option<Lsn> {
    if bytes.len() != FILE_LEN || bytes[0..8] != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[0..16]) != crc {
        return None;
    }
    Some(Lsn(u64::from_le_bytes(
        bytes[8..16].try_into().expect("8 bytes"),
    )))
}

/// The saved checkpoint of `sink`: `None` if it has none. A damaged file is logged and
/// treated as none, so the sink reads again from the oldest retained record (duplicates rather
/// than loss).
pub(crate) fn read(dir: &Path, sink: &str) -> io::Result<Option<Lsn>> {
    let path = checkpoint_path(dir, sink);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let lsn = decode(&bytes);
    if lsn.is_none() {
        tracing::warn!(sink, file = ?path, "damaged wal checkpoint, the sink reads from the oldest retained record");
    }
    Ok(lsn)
}

/// Saves `lsn` as the checkpoint of `sink`, atomically; durable on return when `sync`.
pub(crate) fn write(dir: &Path, sink: &str, lsn: Lsn, sync: bool) -> io::Result<()> {
    let path = checkpoint_path(dir, sink);
    let tmp_path = dir.join(format!("{sink}{TMP_SUFFIX}"));
    let mut tmp = File::create(&tmp_path)?;
    tmp.write_all(&encode(lsn))?;
    if sync {
        tmp.sync_data()?;
    }
    drop(tmp);
    fs::rename(&tmp_path, &path)?;
    if sync {
        super::segment::sync_dir(dir)?;
    }
    Ok(())
}

/// Removes the temporary files of checkpoint writes that a crash interrupted.
pub(crate) fn remove_leftovers(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_names_are_safe_file_names() {
        for good in ["prometheus", "span_index", "otlp-forward", "A1"] {
            assert!(validate_sink_name(good).is_ok(), "{good}");
        }
        let too_long = "x".repeat(65);
        for bad in [
            "",
            "../etc",
            "a/b",
            "a.tmp",
            "spaced name",
            too_long.as_str(),
        ] {
            assert!(validate_sink_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn write_then_read_and_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path(), "sink").unwrap(), None);
        write(dir.path(), "sink", Lsn(5), true).unwrap();
        assert_eq!(read(dir.path(), "sink").unwrap(), Some(Lsn(5)));
        write(dir.path(), "sink", Lsn(9), false).unwrap();
        assert_eq!(read(dir.path(), "sink").unwrap(), Some(Lsn(9)));
        assert!(!dir.path().join("sink.tmp").exists());
    }

    #[test]
    fn damaged_file_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "sink", Lsn(5), true).unwrap();
        let path = dir.path().join("sink");
        let mut bytes = fs::read(&path).unwrap();
        bytes[9] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(read(dir.path(), "sink").unwrap(), None);
        fs::write(&path, b"short").unwrap();
        assert_eq!(read(dir.path(), "sink").unwrap(), None);
    }

    #[test]
    fn leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "sink", Lsn(5), true).unwrap();
        fs::write(dir.path().join("other.tmp"), b"half").unwrap();
        remove_leftovers(dir.path()).unwrap();
        assert!(!dir.path().join("other.tmp").exists());
        assert_eq!(read(dir.path(), "sink").unwrap(), Some(Lsn(5)));
    }
}
