//! The profile store on disk: `<dir>/<service>/<from>-<until>-<n>.pb.gz`, one gzip-compressed
//! pprof file per pushed profile. Writes are atomic (a temporary file, synced, then linked
//! under its final name, which never replaces an existing file); the time range is in the
//! name, so listing a range and applying retention read no file.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::Compression;
use flate2::write::GzEncoder;

use super::pprof::{self, Profile};

/// Bounds and retention of a [`ProfileStore`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileStoreConfig {
    /// Hours a profile is kept after the end of its interval.
    pub retention_hours: u64,
    /// Profiles merged by one query at most (the newest are kept).
    pub max_profiles_per_query: usize,
    /// Size of a query's response at most, bytes.
    pub max_response_bytes: usize,
    /// Size of one profile at most once decompressed, bytes.
    pub max_profile_bytes: usize,
}

impl Default for ProfileStoreConfig {
    fn default() -> Self {
        Self {
            retention_hours: 72,
            max_profiles_per_query: 1000,
            max_response_bytes: 32 << 20,
            max_profile_bytes: 64 << 20,
        }
    }
}

impl From<&crate::config::ProfilesSinkConfig> for ProfileStoreConfig {
    fn from(config: &crate::config::ProfilesSinkConfig) -> Self {
        Self {
            retention_hours: config.retention_hours,
            ..Self::default()
        }
    }
}

/// An inclusive range of unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// Start, unix seconds.
    pub from: i64,
    /// End, unix seconds.
    pub until: i64,
}

impl TimeRange {
    /// Whether `[from, until]` overlaps this range.
    pub fn overlaps(&self, from: i64, until: i64) -> bool {
        from <= self.until && until >= self.from
    }
}

/// One stored profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredProfile {
    /// Its file.
    pub path: PathBuf,
    /// Start of the profiled interval, unix seconds.
    pub from: i64,
    /// End of the profiled interval, unix seconds.
    pub until: i64,
}

/// A directory of profiles, per service and time. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct ProfileStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    config: ProfileStoreConfig,
    temp_sequence: AtomicU64,
}

/// A service name as a directory name: characters other than ASCII letters, digits, `-`,
/// `_` and `.` become `_`, so do leading dots (no `..`, no hidden files), at most 128 bytes,
/// never empty. Distinct names may share a directory (`a/b` and `a_b`).
pub fn sanitize_service(service: &str) -> String {
    let mut name: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect();
    let leading_dots = name.len() - name.trim_start_matches('.').len();
    name.replace_range(..leading_dots, &"_".repeat(leading_dots));
    if name.is_empty() {
        name.push('_');
    }
    name
}

fn parse_file_name(name: &str) -> Option<(i64, i64)> {
    let stem = name.strip_suffix(".pb.gz")?;
    let mut parts = stem.splitn(3, '-');
    let from = parts.next()?.parse().ok()?;
    let until = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    Some((from, until))
}

impl ProfileStore {
    /// Opens (creating it when missing) the store in `dir`.
    pub fn open(dir: impl Into<PathBuf>, config: ProfileStoreConfig) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                config,
                temp_sequence: AtomicU64::new(0),
            }),
        })
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Its settings.
    pub fn config(&self) -> &ProfileStoreConfig {
        &self.inner.config
    }

    fn service_dir(&self, service: &str) -> PathBuf {
        self.inner.dir.join(sanitize_service(service))
    }

    /// Stores one profile of `service` for `[from, until]`. `pprof` is the profile as pushed:
    /// gzip bytes are written as they are, others are compressed first. Blocking; returns
    /// once the file is synced and visible under its final name.
    pub fn put(&self, service: &str, from: i64, until: i64, pprof: &[u8]) -> io::Result<PathBuf> {
        let dir = self.service_dir(service);
        fs::create_dir_all(&dir)?;
        let temp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            self.inner.temp_sequence.fetch_add(1, Ordering::Relaxed)
        ));
        let result =
            write_synced(&temp, pprof).and_then(|()| link_unique(&temp, &dir, from, until));
        let _ = fs::remove_file(&temp);
        let path = result?;
        sync_dir(&dir)?;
        Ok(path)
    }

    /// The services with a directory, sorted (their sanitized names).
    pub fn services(&self) -> io::Result<Vec<String>> {
        let mut services = Vec::new();
        for entry in fs::read_dir(&self.inner.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir()
                && let Some(name) = entry.file_name().to_str()
            {
                services.push(name.to_owned());
            }
        }
        services.sort();
        Ok(services)
    }

    /// Whether `service` has a directory.
    pub fn has_service(&self, service: &str) -> bool {
        self.service_dir(service).is_dir()
    }

    /// The profiles of `service` overlapping `range`, oldest first; `None` for an unknown
    /// service.
    pub fn list(&self, service: &str, range: TimeRange) -> io::Result<Option<Vec<StoredProfile>>> {
        let dir = self.service_dir(service);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some((from, until)) = name.to_str().and_then(parse_file_name) else {
                continue;
            };
            if range.overlaps(from, until) {
                found.push(StoredProfile {
                    path: entry.path(),
                    from,
                    until,
                });
            }
        }
        found.sort_by(|a, b| (a.from, a.until, &a.path).cmp(&(b.from, b.until, &b.path)));
        Ok(Some(found))
    }

    /// Reads and decodes one stored profile.
    pub fn read(&self, stored: &StoredProfile) -> io::Result<Profile> {
        let bytes = fs::read(&stored.path)?;
        pprof::decode(&bytes, self.inner.config.max_profile_bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Deletes the profiles whose interval ended more than `retention_hours` before `now`
    /// (unix seconds), temporary files left by a crash, and service directories left empty.
    /// Returns the number of profiles deleted.
    pub fn cleanup(&self, now: i64) -> io::Result<usize> {
        let retention_secs = i64::try_from(self.inner.config.retention_hours)
            .unwrap_or(i64::MAX / 3600)
            .saturating_mul(3600);
        let cutoff = now.saturating_sub(retention_secs);
        let mut deleted = 0;
        for service in self.services()? {
            let dir = self.inner.dir.join(&service);
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                match parse_file_name(name) {
                    Some((_, until)) if until < cutoff => {
                        fs::remove_file(entry.path())?;
                        deleted += 1;
                    }
                    None if name.starts_with(".tmp-") && is_stale(&entry) => {
                        let _ = fs::remove_file(entry.path());
                    }
                    _ => {}
                }
            }
            // Fails, harmlessly, when the directory is not empty.
            let _ = fs::remove_dir(&dir);
        }
        Ok(deleted)
    }
}

fn is_stale(entry: &fs::DirEntry) -> bool {
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| modified.elapsed().ok())
        .is_some_and(|age| age.as_secs() > 3600)
}

fn write_synced(path: &Path, pprof: &[u8]) -> io::Result<()> {
    let mut file = fs::File::create(path)?;
    if pprof::is_gzip(pprof) {
        file.write_all(pprof)?;
    } else {
        let mut encoder = GzEncoder::new(&mut file, Compression::fast());
        encoder.write_all(pprof)?;
        encoder.finish()?;
    }
    file.sync_all()
}

/// Links `temp` as `<from>-<until>-<n>.pb.gz` with the first free `n`; a link never
/// replaces an existing file, so concurrent writers cannot overwrite each other.
fn link_unique(temp: &Path, dir: &Path, from: i64, until: i64) -> io::Result<PathBuf> {
    for n in 0u32..10_000 {
        let path = dir.join(format!("{from}-{until}-{n}.pb.gz"));
        match fs::hard_link(temp, &path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("too many profiles with the same interval"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_service_names_cannot_leave_the_store() {
        assert_eq!(sanitize_service("../x"), "___x");
        assert_eq!(sanitize_service(".."), "__");
        assert_eq!(sanitize_service(""), "_");
        assert_eq!(sanitize_service("/etc/passwd"), "_etc_passwd");
        assert_eq!(sanitize_service("fertivision-api"), "fertivision-api");
        assert_eq!(sanitize_service("a.b_c"), "a.b_c");
        assert_eq!(sanitize_service(&"x".repeat(300)).len(), 128);
    }

    #[test]
    fn profiles_file_names_parse() {
        assert_eq!(parse_file_name("10-20-0.pb.gz"), Some((10, 20)));
        assert_eq!(parse_file_name("-5-20-3.pb.gz"), None);
        assert_eq!(parse_file_name(".tmp-1-2"), None);
        assert_eq!(parse_file_name("10-20.pb.gz"), None);
    }
}
