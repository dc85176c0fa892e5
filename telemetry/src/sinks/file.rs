//! `file`: appends every batch as one line of OTLP/JSON (the encoding of OTLP/HTTP JSON, as the
//! OpenTelemetry Collector's file exporter writes it) to a file, exactly once across crashes.
//!
//! Beside the data file `F` the sink keeps `F.position`: the log position it has stored and the
//! length of `F` at that point, written atomically (temporary file, sync, rename) after `F` is
//! synced. On start, bytes of `F` past that length were written after the last commit and are
//! cut off, and the pipeline skips the records up to the stored position; the records after it
//! are replayed from the log and written again, once.
//!
//! Lines: `{"resourceSpans":[...]}`, `{"resourceMetrics":[...]}`, `{"resourceLogs":[...]}`, or
//! `{"profile":{"service":..,"labels":[[k,v],..],"from":..,"until":..,"pprof":"<base64>"}}`.
//!
//! The file is not rotated: it is for archives, tests and debugging, not a store of record.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{BoxFuture, Sink, SinkError};
use crate::batch::Batch;
use crate::wal::Lsn;

/// Encoded lines are written to the file once this many bytes wait, and at every commit.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// The file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileSinkError {
    /// An I/O error on one of the sink's files.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The data file has content but no position file: it is not this sink's (or its position
    /// was deleted), and cutting it back could destroy data.
    #[error(
        "{} holds {bytes} bytes but has no {}; move it away or delete it",
        path.display(),
        position.display()
    )]
    NotOurs {
        /// The data file.
        path: PathBuf,
        /// The missing position file.
        position: PathBuf,
        /// Its length.
        bytes: u64,
    },
    /// The data file is shorter than its position file says: it was cut or replaced.
    #[error("{} is {actual} bytes, shorter than the {stored} bytes its position file records", path.display())]
    Shorter {
        /// The data file.
        path: PathBuf,
        /// Its length.
        actual: u64,
        /// The committed length.
        stored: u64,
    },
    /// The position file does not parse.
    #[error("{}: {reason}", path.display())]
    BadPosition {
        /// The position file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// What `F.position` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stored {
    /// The newest log record whose output is in the file.
    lsn: u64,
    /// The file's length after it.
    bytes: u64,
}

/// The file sink.
#[derive(Debug)]
pub struct FileSink {
    inner: Arc<Mutex<Inner>>,
    /// Lines encoded and not yet written to the file.
    pending: Vec<u8>,
    stored: Option<Lsn>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    position_path: PathBuf,
    file: File,
    /// Bytes of the file that hold whole lines.
    len: u64,
}

impl FileSink {
    /// Opens (or creates) the file and its position, cutting off what was written after the
    /// last commit.
    pub fn open(path: &Path) -> Result<Self, FileSinkError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| FileSinkError::Io { path, source }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let position_path = position_path(path);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .append(true)
            .open(path)
            .map_err(io(path))?;
        let actual = file.metadata().map_err(io(path))?.len();
        let stored = match fs::read(&position_path) {
            Ok(bytes) => Some(serde_json::from_slice::<Stored>(&bytes).map_err(|e| {
                FileSinkError::BadPosition {
                    path: position_path.clone(),
                    reason: e.to_string(),
                }
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&position_path)(e)),
        };
        let committed = match stored {
            Some(stored) => stored.bytes,
            None if actual > 0 => {
                return Err(FileSinkError::NotOurs {
                    path: path.to_owned(),
                    position: position_path,
                    bytes: actual,
                });
            }
            None => 0,
        };
        if actual < committed {
            return Err(FileSinkError::Shorter {
                path: path.to_owned(),
                actual,
                stored: committed,
            });
        }
        if actual > committed {
            tracing::info!(
                file = %path.display(),
                bytes = actual - committed,
                "cutting off lines written after the last commit; they are replayed from the log"
            );
            file.set_len(committed).map_err(io(path))?;
            file.sync_all().map_err(io(path))?;
        }
        let mut inner = Inner {
            path: path.to_owned(),
            position_path,
            file,
            len: committed,
        };
        if stored.is_none() {
            // Claim the new file at once, so that lines written before the first commit are
            // known to be ours after a crash.
            inner.commit(Lsn::ZERO).map_err(io(path))?;
        }
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
            pending: Vec::new(),
            stored: stored.map(|s| Lsn(s.lsn)).filter(|lsn| *lsn > Lsn::ZERO),
        })
    }

    /// Writes the pending lines on a blocking thread; with `position`, then syncs and stores
    /// the position.
    async fn flush(&mut self, position: Option<Lsn>) -> Result<(), SinkError> {
        let lines = std::mem::take(&mut self.pending);
        let inner = Arc::clone(&self.inner);
        let outcome = tokio::task::spawn_blocking(move || {
            let mut inner = inner.lock().expect("file sink lock poisoned");
            inner.append(&lines)?;
            if let Some(position) = position {
                inner.commit(position)?;
            }
            Ok::<(), io::Error>(())
        })
        .await;
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(SinkError {
                message: format!("{}: {error}", self.path().display()),
                retryable: true,
            }),
            Err(join) => Err(SinkError {
                message: format!("file sink task failed: {join}"),
                retryable: false,
            }),
        }
    }

    fn path(&self) -> PathBuf {
        self.inner
            .lock()
            .expect("file sink lock poisoned")
            .path
            .clone()
    }
}

impl Inner {
    /// Appends whole lines; on failure cuts the file back so that no half line stays.
    fn append(&mut self, lines: &[u8]) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let written = self.file.write_all(lines);
        match written {
            Ok(()) => {
                self.len += lines.len() as u64;
                Ok(())
            }
            Err(error) => {
                let _ = self.file.set_len(self.len);
                Err(error)
            }
        }
    }

    /// Syncs the file, then stores `position` with its length.
    fn commit(&mut self, position: Lsn) -> io::Result<()> {
        self.file.sync_data()?;
        let stored = Stored {
            lsn: position.0,
            bytes: self.len,
        };
        let tmp = self.position_path.with_extension("position.tmp");
        {
            let mut out = File::create(&tmp)?;
            out.write_all(&serde_json::to_vec(&stored).expect("position encodes"))?;
            out.sync_all()?;
        }
        fs::rename(&tmp, &self.position_path)?;
        if let Some(dir) = self.position_path.parent() {
            // The rename is durable once the directory is synced.
            if let Ok(dir) = File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }) {
                dir.sync_all()?;
            }
        }
        Ok(())
    }
}

fn position_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".position");
    path.with_file_name(name)
}

/// One batch as one JSON line.
fn encode_line(batch: &Batch, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match batch {
        Batch::Traces(request) => serde_json::to_writer(&mut *out, request)?,
        Batch::Metrics(request) => serde_json::to_writer(&mut *out, request)?,
        Batch::Logs(request) => serde_json::to_writer(&mut *out, request)?,
        Batch::Profile(profile) => serde_json::to_writer(
            &mut *out,
            &serde_json::json!({
                "profile": {
                    "service": profile.service,
                    "labels": profile.labels,
                    "from": profile.from,
                    "until": profile.until,
                    "pprof": base64::engine::general_purpose::STANDARD.encode(&profile.pprof),
                }
            }),
        )?,
    }
    out.push(b'\n');
    Ok(())
}

impl Sink for FileSink {
    fn write(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let before = self.pending.len();
            if let Err(error) = encode_line(&batch, &mut self.pending) {
                self.pending.truncate(before);
                return Err(SinkError {
                    message: format!("batch does not encode as JSON: {error}"),
                    retryable: false,
                });
            }
            if self.pending.len() >= WRITE_BUFFER_BYTES {
                self.flush(None).await?;
            }
            Ok(())
        })
    }

    fn commit(&mut self, position: Lsn) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(self.flush(Some(position)))
    }

    fn durable_position(&self) -> Option<Lsn> {
        self.stored
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    use super::*;

    fn logs(body: &str) -> Batch {
        Batch::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(body.to_owned())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test]
    async fn commit_stores_the_position_and_reopening_cuts_what_came_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/archive.jsonl");
        let mut sink = FileSink::open(&path).unwrap();
        assert_eq!(sink.durable_position(), None);
        sink.write(logs("one")).await.unwrap();
        sink.write(logs("two")).await.unwrap();
        sink.commit(Lsn(7)).await.unwrap();
        // Written but not committed, as if the process died before the next commit.
        sink.write(logs("three")).await.unwrap();
        sink.flush(None).await.unwrap();
        assert_eq!(lines(&path).len(), 3);
        drop(sink);

        let sink = FileSink::open(&path).unwrap();
        assert_eq!(sink.durable_position(), Some(Lsn(7)));
        let kept = lines(&path);
        assert_eq!(kept.len(), 2, "{kept:?}");
        let line: serde_json::Value = serde_json::from_str(&kept[1]).unwrap();
        assert_eq!(
            line["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["body"]["stringValue"],
            "two"
        );
    }

    #[tokio::test]
    async fn a_foreign_file_is_refused_and_a_short_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        fs::write(&path, "someone else's data\n").unwrap();
        let error = FileSink::open(&path).unwrap_err();
        assert!(
            matches!(error, FileSinkError::NotOurs { bytes: 20, .. }),
            "{error}"
        );
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "someone else's data\n",
            "left alone"
        );

        let path = dir.path().join("cut.jsonl");
        let mut sink = FileSink::open(&path).unwrap();
        sink.write(logs("one")).await.unwrap();
        sink.commit(Lsn(1)).await.unwrap();
        drop(sink);
        fs::write(&path, "").unwrap();
        let error = FileSink::open(&path).unwrap_err();
        assert!(matches!(error, FileSinkError::Shorter { .. }), "{error}");
    }

    #[tokio::test]
    async fn profiles_are_lines_with_the_pprof_in_base64() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        let mut sink = FileSink::open(&path).unwrap();
        sink.write(Batch::Profile(crate::batch::Profile {
            service: "api".into(),
            labels: vec![("kind".into(), "cpu".into())],
            from: 10,
            until: 20,
            pprof: bytes::Bytes::from_static(b"\x1f\x8b pprof"),
        }))
        .await
        .unwrap();
        sink.commit(Lsn(3)).await.unwrap();
        let line: serde_json::Value = serde_json::from_str(&lines(&path)[0]).unwrap();
        assert_eq!(line["profile"]["service"], "api");
        assert_eq!(line["profile"]["labels"][0][1], "cpu");
        let pprof = base64::engine::general_purpose::STANDARD
            .decode(line["profile"]["pprof"].as_str().unwrap())
            .unwrap();
        assert_eq!(pprof, b"\x1f\x8b pprof");
    }
}
