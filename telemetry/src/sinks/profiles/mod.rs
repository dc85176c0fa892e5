//! The `profiles` sink: pushed pprof profiles are kept on disk per service and time, and
//! merged on demand into flamegraphs.
//!
//! - [`ProfilesSink`] takes each [`Batch::Profile`], checks that it decodes as pprof
//!   (gunzipped first when gzipped, bounded by `max_profile_bytes`) and writes it to the
//!   [`ProfileStore`]: `<dir>/<service>/<from>-<until>-<n>.pb.gz`, atomically, synced before
//!   the batch is acknowledged. A profile that does not decode is dropped with a
//!   non-retryable error and counted; a failed write is retryable. Other batches are ignored.
//!   Every ten minutes of writes, profiles older than `retention_hours` are deleted.
//! - Queries ([`ProfileStore::collapsed`], [`ProfileStore::flamegraph`],
//!   [`ProfileStore::merged_pprof_gz`]) merge the newest `max_profiles_per_query` profiles of
//!   a service overlapping a time range, and refuse answers past `max_response_bytes`.
//! - [`router`] serves them over HTTP (routes in `api.rs`).
//!
//! ```
//! use telemetry::sinks::profiles::{ProfileStore, ProfileStoreConfig, ProfilesSink, TimeRange};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = ProfileStore::open(dir.path(), ProfileStoreConfig::default()).unwrap();
//! let sink = ProfilesSink::new(store.clone()); // run by the pipeline on profile inputs
//! let app = telemetry::sinks::profiles::router(store.clone()); // on the query port
//! assert!(store.services().unwrap().is_empty());
//! # drop((sink, app));
//! ```

mod api;
pub mod pprof;
mod query;
mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use api::{DEFAULT_RANGE_SECS, router};
pub use query::{
    MergedProfile, QueryError, collapsed_stacks, encode_gzip, flamegraph_svg, merge_profiles,
    sample_type_index,
};
pub use store::{ProfileStore, ProfileStoreConfig, StoredProfile, TimeRange, sanitize_service};

use super::{BoxFuture, Sink, SinkError};
use crate::batch::{Batch, Profile};
use crate::wal::Signal;

/// How often the sink applies retention.
const CLEANUP_EVERY: Duration = Duration::from_secs(600);

/// What the sink did.
#[derive(Debug, Default)]
pub struct ProfilesSinkStats {
    /// Profiles stored.
    pub stored: AtomicU64,
    /// Profiles dropped because they are not valid pprof.
    pub invalid: AtomicU64,
    /// Profiles whose write failed (retried).
    pub write_failures: AtomicU64,
    /// Non-profile batches ignored.
    pub ignored: AtomicU64,
    /// Profiles deleted by retention.
    pub expired: AtomicU64,
}

/// The profiles sink.
#[derive(Debug)]
pub struct ProfilesSink {
    store: ProfileStore,
    stats: Arc<ProfilesSinkStats>,
    last_cleanup: Option<Instant>,
}

impl ProfilesSink {
    /// A sink writing into `store`.
    pub fn new(store: ProfileStore) -> Self {
        Self {
            store,
            stats: Arc::default(),
            last_cleanup: None,
        }
    }

    /// Its counts, shared.
    pub fn stats(&self) -> Arc<ProfilesSinkStats> {
        Arc::clone(&self.stats)
    }

    /// Its store.
    pub fn store(&self) -> &ProfileStore {
        &self.store
    }
}

fn now_unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Checks and stores one profile (blocking).
fn store_profile(
    store: &ProfileStore,
    stats: &ProfilesSinkStats,
    profile: &Profile,
) -> Result<(), SinkError> {
    let refuse = |message: String| {
        stats.invalid.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(service = %profile.service, error = %message, "profile dropped");
        SinkError {
            message,
            retryable: false,
        }
    };
    if profile.from < 0 || profile.until < profile.from {
        return Err(refuse(format!(
            "profile interval {}..{} is not a valid range of unix seconds",
            profile.from, profile.until
        )));
    }
    if let Err(error) = pprof::decode(&profile.pprof, store.config().max_profile_bytes) {
        return Err(refuse(format!("profile is not valid pprof: {error}")));
    }
    store
        .put(
            &profile.service,
            profile.from,
            profile.until,
            &profile.pprof,
        )
        .map_err(|error| {
            stats.write_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(service = %profile.service, %error, "profile write failed");
            SinkError {
                message: format!("profile store: {error}"),
                retryable: true,
            }
        })?;
    stats.stored.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

impl Sink for ProfilesSink {
    fn write(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let Batch::Profile(profile) = batch else {
                self.stats.ignored.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            };
            let cleanup_due = self
                .last_cleanup
                .is_none_or(|last| last.elapsed() >= CLEANUP_EVERY);
            if cleanup_due {
                self.last_cleanup = Some(Instant::now());
            }
            let store = self.store.clone();
            let stats = Arc::clone(&self.stats);
            tokio::task::spawn_blocking(move || {
                if cleanup_due {
                    match store.cleanup(now_unix_secs()) {
                        Ok(deleted) => {
                            stats.expired.fetch_add(deleted as u64, Ordering::Relaxed);
                        }
                        Err(error) => tracing::warn!(%error, "profile retention failed"),
                    }
                }
                store_profile(&store, &stats, &profile)
            })
            .await
            .map_err(|e| SinkError {
                message: format!("profile write task: {e}"),
                retryable: true,
            })?
        })
    }

    fn takes(&self, signal: Signal) -> bool {
        signal == Signal::Profiles
    }
}
