//! The partitions of one kind (logs or spans): one tantivy index per UTC day, in
//! `<dir>/<YYYY-MM-DD>/`. Retention drops whole partitions: by age, then the oldest while the
//! kind is over its size budget.
//!
//! Every method here blocks (tantivy commits, reloads and searches do); async callers run them
//! on `spawn_blocking`.
//!
//! **Positions.** [`IndexStore::commit`] commits every partition written since the last commit,
//! reloads their readers (so what was committed is searchable at once), then stores the
//! caller's log position in `<dir>/position.json`. After a crash, the collector replays the log
//! after that position: exactly once, except after a crash between the commits of two
//! partitions (records around midnight UTC), which are then indexed twice in the partition that
//! had committed.
//!
//! **Damage.** A partition that does not open is moved aside to `<YYYY-MM-DD>.damaged-<unix>`,
//! reported ([`IndexStore::damaged`]) and skipped; the rest keep working.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tantivy::schema::Schema;
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::{Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, TantivyDocument};

use crate::doc::IndexDoc;
use crate::schema::Kind;

/// How a kind's partitions are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Days of partitions kept, today included (default 7).
    pub retention_days: u32,
    /// Bytes the kind's partitions may take on disk; past it the oldest are dropped (default
    /// 10 GiB). The newest partition is never dropped for size.
    pub max_bytes: u64,
    /// Memory of one partition's writer before it writes a segment (default 64 MiB).
    pub writer_memory_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            retention_days: 7,
            max_bytes: 10 << 30,
            writer_memory_bytes: 64 << 20,
        }
    }
}

/// An index operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// tantivy failed.
    #[error("{context}: {source}")]
    Tantivy {
        /// What was being done.
        context: String,
        /// The engine's error.
        source: tantivy::TantivyError,
    },
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

fn tantivy_error(context: impl Into<String>) -> impl FnOnce(tantivy::TantivyError) -> IndexError {
    let context = context.into();
    move |source| IndexError::Tantivy { context, source }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> IndexError + '_ {
    move |source| IndexError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One day of one kind.
pub struct Partition {
    /// The UTC day its records fall in.
    pub day: NaiveDate,
    dir: PathBuf,
    index: Index,
    reader: IndexReader,
    writer: Mutex<Option<IndexWriter>>,
    dirty: AtomicBool,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("day", &self.day)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Partition {
    /// A searcher over what was committed and reloaded.
    pub fn searcher(&self) -> tantivy::Searcher {
        self.reader.searcher()
    }

    /// The partition's index (for its schema and tokenizers).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Bytes on disk.
    pub fn size_bytes(&self) -> u64 {
        dir_size(&self.dir)
    }
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredPosition {
    lsn: u64,
}

/// The partitions of one kind.
#[derive(Debug)]
pub struct IndexStore {
    kind: Kind,
    dir: PathBuf,
    schema: Schema,
    config: StoreConfig,
    partitions: RwLock<BTreeMap<NaiveDate, Arc<Partition>>>,
    damaged: Mutex<Vec<String>>,
    position: Mutex<Option<u64>>,
    /// The next `seq`: starts at a random point, so that records indexed by different runs do
    /// not share one.
    seq: AtomicU64,
    seq_field: tantivy::schema::Field,
}

fn day_of(ts_ns: i64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp_nanos(ts_ns).date_naive()
}

/// The start of `day` in ns since the epoch.
pub fn day_start_ns(day: NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp_nanos_opt()
        .unwrap_or(i64::MAX)
}

impl IndexStore {
    /// Opens the partitions under `dir` (creating it), moving aside the ones that do not open.
    pub fn open(
        dir: &Path,
        kind: Kind,
        schema: Schema,
        config: StoreConfig,
    ) -> Result<Self, IndexError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let seq_field = schema
            .get_field("seq")
            .map_err(tantivy_error("schema without seq"))?;
        let store = Self {
            kind,
            dir: dir.to_owned(),
            schema,
            config,
            partitions: RwLock::new(BTreeMap::new()),
            damaged: Mutex::new(Vec::new()),
            position: Mutex::new(None),
            seq: AtomicU64::new(first_seq()),
            seq_field,
        };
        let position_path = dir.join("position.json");
        match fs::read(&position_path) {
            Ok(bytes) => {
                let stored: StoredPosition =
                    serde_json::from_slice(&bytes).map_err(|e| IndexError::Io {
                        path: position_path.clone(),
                        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                    })?;
                *store.position.lock().expect("lock") = Some(stored.lsn);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&position_path)(e)),
        }
        let mut partitions = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(io_error(dir))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(day) = NaiveDate::parse_from_str(&name, "%Y-%m-%d") else {
                continue;
            };
            match open_partition(&entry.path(), day) {
                Ok(partition) => {
                    partitions.insert(day, Arc::new(partition));
                }
                Err(error) => store.set_aside(&entry.path(), &name, &error.to_string()),
            }
        }
        *store.partitions.write().expect("lock") = partitions;
        Ok(store)
    }

    fn set_aside(&self, path: &Path, name: &str, reason: &str) {
        let stamp = Utc::now().timestamp();
        let aside = self.dir.join(format!("{name}.damaged-{stamp}"));
        let moved = fs::rename(path, &aside);
        tracing::error!(
            kind = self.kind.dir_name(),
            partition = name,
            reason,
            moved_to = %aside.display(),
            moved = moved.is_ok(),
            "index partition does not open; skipped"
        );
        self.damaged
            .lock()
            .expect("lock")
            .push(format!("{name}: {reason}"));
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The schema of every partition.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Partitions that did not open, with why.
    pub fn damaged(&self) -> Vec<String> {
        self.damaged.lock().expect("lock").clone()
    }

    /// The log position stored by the last [`IndexStore::commit`] that had one.
    pub fn position(&self) -> Option<u64> {
        *self.position.lock().expect("lock")
    }

    /// The partitions whose day may hold records in `[start, end]` (ns; `None`: open), newest
    /// first. The oldest and newest partitions are always candidates (records outside the
    /// retention window or ahead of the clock are kept in them).
    pub fn partitions_newest_first(
        &self,
        start: Option<i64>,
        end: Option<i64>,
    ) -> Vec<Arc<Partition>> {
        let partitions = self.partitions.read().expect("lock");
        let first = partitions.keys().next().copied();
        let last = partitions.keys().next_back().copied();
        partitions
            .values()
            .rev()
            .filter(|p| {
                let edge = Some(p.day) == first || Some(p.day) == last;
                let from = day_start_ns(p.day);
                let until = day_start_ns(p.day + Days::new(1));
                edge || (start.is_none_or(|s| s < until) && end.is_none_or(|e| e >= from))
            })
            .cloned()
            .collect()
    }

    /// Every partition, oldest first.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .expect("lock")
            .values()
            .cloned()
            .collect()
    }

    /// The day a record at `ts` is kept in: its own, but no older than the retention window
    /// and no newer than tomorrow, so that a wrong clock cannot create partitions without end.
    fn partition_day(&self, ts: i64, today: NaiveDate) -> NaiveDate {
        let oldest = today - Days::new(u64::from(self.config.retention_days.saturating_sub(1)));
        day_of(ts).clamp(oldest, today + Days::new(1))
    }

    fn partition(&self, day: NaiveDate) -> Result<Arc<Partition>, IndexError> {
        if let Some(partition) = self.partitions.read().expect("lock").get(&day) {
            return Ok(Arc::clone(partition));
        }
        let mut partitions = self.partitions.write().expect("lock");
        if let Some(partition) = partitions.get(&day) {
            return Ok(Arc::clone(partition));
        }
        let dir = self.dir.join(day.format("%Y-%m-%d").to_string());
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let settings = IndexSettings {
            docstore_compression: Compressor::Zstd(ZstdCompressor {
                compression_level: Some(1),
            }),
            ..IndexSettings::default()
        };
        let index = Index::builder()
            .schema(self.schema.clone())
            .settings(settings)
            .create_in_dir(&dir)
            .map_err(tantivy_error(format!("create {}", dir.display())))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(tantivy_error(format!("reader of {}", dir.display())))?;
        let partition = Arc::new(Partition {
            day,
            dir,
            index,
            reader,
            writer: Mutex::new(None),
            dirty: AtomicBool::new(false),
        });
        partitions.insert(day, Arc::clone(&partition));
        Ok(partition)
    }

    /// Adds documents to their partitions (not searchable before [`IndexStore::commit`]).
    pub fn add(&self, docs: Vec<IndexDoc>) -> Result<(), IndexError> {
        let today = Utc::now().date_naive();
        for IndexDoc { ts, mut doc } in docs {
            let partition = self.partition(self.partition_day(ts, today))?;
            doc.add_u64(self.seq_field, self.seq.fetch_add(1, Ordering::Relaxed));
            let mut writer = partition.writer.lock().expect("lock");
            if writer.is_none() {
                let new: IndexWriter<TantivyDocument> = partition
                    .index
                    .writer_with_num_threads(1, self.config.writer_memory_bytes.max(15_000_000))
                    .map_err(tantivy_error(format!(
                        "writer of {}",
                        partition.dir.display()
                    )))?;
                new.set_merge_policy(Box::new(tantivy::merge_policy::LogMergePolicy::default()));
                *writer = Some(new);
            }
            writer
                .as_ref()
                .expect("just set")
                .add_document(doc)
                .map_err(tantivy_error("add document"))?;
            partition.dirty.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Commits every partition written since the last commit and makes it searchable, then
    /// stores `position` (if given) as the log position everything up to which is indexed.
    /// Writers of partitions older than yesterday are closed after their commit.
    pub fn commit(&self, position: Option<u64>) -> Result<(), IndexError> {
        let yesterday = Utc::now().date_naive() - Days::new(1);
        let payload = position.map(|lsn| serde_json::json!({ "lsn": lsn }).to_string());
        for partition in self.partitions() {
            if !partition.dirty.swap(false, Ordering::AcqRel) {
                continue;
            }
            let mut writer = partition.writer.lock().expect("lock");
            let Some(w) = writer.as_mut() else { continue };
            let committed = (|| {
                let mut prepared = w.prepare_commit()?;
                if let Some(payload) = &payload {
                    prepared.set_payload(payload);
                }
                prepared.commit()?;
                partition.reader.reload()
            })();
            if let Err(source) = committed {
                partition.dirty.store(true, Ordering::Relaxed);
                return Err(IndexError::Tantivy {
                    context: format!("commit {}", partition.dir.display()),
                    source,
                });
            }
            if partition.day < yesterday
                && let Some(old) = writer.take()
            {
                let _ = old.wait_merging_threads();
            }
        }
        if let Some(lsn) = position {
            let path = self.dir.join("position.json");
            let tmp = self.dir.join("position.json.tmp");
            let bytes = serde_json::to_vec(&StoredPosition { lsn }).expect("encodes");
            write_synced(&tmp, &bytes).map_err(io_error(&tmp))?;
            fs::rename(&tmp, &path).map_err(io_error(&path))?;
            if let Ok(dir) = fs::File::open(&self.dir) {
                let _ = dir.sync_all();
            }
            *self.position.lock().expect("lock") = Some(lsn);
        }
        Ok(())
    }

    /// Drops the partitions past the retention window, then the oldest while the kind takes
    /// more than its size budget (never the newest). Searches running on a dropped partition
    /// finish on what they hold; new ones no longer see it. Returns the days dropped.
    pub fn apply_retention(&self, today: NaiveDate) -> Vec<NaiveDate> {
        let oldest_kept =
            today - Days::new(u64::from(self.config.retention_days.saturating_sub(1)));
        // Sizes are read once: dropping a partition frees exactly its own.
        let mut partitions: Vec<(NaiveDate, u64)> = self
            .partitions()
            .iter()
            .map(|p| (p.day, p.size_bytes()))
            .collect();
        let mut total: u64 = partitions.iter().map(|(_, size)| size).sum();
        let mut dropped = Vec::new();
        while let [(day, size), rest @ ..] = partitions.as_slice() {
            let too_old = *day < oldest_kept;
            let too_big = total > self.config.max_bytes && !rest.is_empty();
            if !(too_old || too_big) {
                break;
            }
            let (day, size) = (*day, *size);
            self.drop_partition(day);
            dropped.push(day);
            total -= size;
            partitions.remove(0);
        }
        dropped
    }

    fn drop_partition(&self, day: NaiveDate) {
        let Some(partition) = self.partitions.write().expect("lock").remove(&day) else {
            return;
        };
        if let Some(writer) = partition.writer.lock().expect("lock").take() {
            let _ = writer.wait_merging_threads();
        }
        let trash = self
            .dir
            .join(format!(".dropped-{}", day.format("%Y-%m-%d")));
        let removed = fs::rename(&partition.dir, &trash).and_then(|()| fs::remove_dir_all(&trash));
        match removed {
            Ok(()) => tracing::info!(kind = self.kind.dir_name(), %day, "index partition dropped"),
            Err(error) => {
                tracing::warn!(kind = self.kind.dir_name(), %day, %error, "index partition not removed from disk")
            }
        }
    }

    /// The `seq` given to the newest record added so far (a tail starts after it).
    pub fn last_seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed).saturating_sub(1)
    }

    /// Bytes on disk of every partition.
    pub fn size_bytes(&self) -> u64 {
        self.partitions().iter().map(|p| p.size_bytes()).sum()
    }

    /// Documents searchable now.
    pub fn num_docs(&self) -> u64 {
        self.partitions()
            .iter()
            .map(|p| p.searcher().num_docs())
            .sum()
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn open_partition(dir: &Path, day: NaiveDate) -> Result<Partition, IndexError> {
    let index =
        Index::open_in_dir(dir).map_err(tantivy_error(format!("open {}", dir.display())))?;
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .map_err(tantivy_error(format!("reader of {}", dir.display())))?;
    Ok(Partition {
        day,
        dir: dir.to_owned(),
        index,
        reader,
        writer: Mutex::new(None),
        dirty: AtomicBool::new(false),
    })
}

/// The first `seq` of this run: the start time in ns, so that runs (which index far fewer than
/// one record per nanosecond between them) never hand out the same one.
fn first_seq() -> u64 {
    Utc::now().timestamp_nanos_opt().unwrap_or_default().max(0) as u64
}
