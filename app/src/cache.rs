//! Read-through cache for patient records, fertility scores and summary pages.
//!
//! Embedded: in-process (moka), shared by the API and the workers of `fertivision up`.
//! Production: Redis only, so that every API instance and worker sees one cache and a write
//! anywhere invalidates it everywhere; while Redis is down the cache is bypassed (reads go to
//! the database) rather than serving entries no one can invalidate.
//!
//! Invalidation happens on every write that changes a cached value: the patient (update,
//! delete), the score (analysis recorded, document analysed, patient deleted), and the summary
//! pages (any of those, or a new patient or document), whose keys carry a generation number
//! that every such write bumps.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use uuid::Uuid;

use crate::redis::Redis;

/// The cache.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    ttl: Duration,
    /// Deadline of a Redis lookup or fill: past it the database answers instead.
    lookup_timeout: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
    local_generation: AtomicU64,
}

enum Backend {
    Off,
    Local(moka::sync::Cache<String, Bytes>),
    Redis(Redis),
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.inner.backend {
            Backend::Off => "off",
            Backend::Local(_) => "local",
            Backend::Redis(_) => "redis",
        };
        write!(f, "Cache({backend})")
    }
}

/// Hit and miss counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CacheStats {
    /// Reads served from the cache.
    pub hits: u64,
    /// Reads that went to the database.
    pub misses: u64,
}

impl Cache {
    /// No caching at all.
    pub fn off() -> Self {
        Self::with(Backend::Off, Duration::ZERO, Duration::ZERO)
    }

    /// In-process, at most `capacity` entries, each kept at most `ttl`.
    pub fn local(capacity: u64, ttl: Duration) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttl)
            .build();
        Self::with(Backend::Local(cache), ttl, Duration::ZERO)
    }

    /// In Redis, entries expiring after `ttl`. A lookup or a fill gives up after
    /// `lookup_timeout` (the read goes to the database); invalidations keep Redis' own command
    /// timeout, since a lost one would leave a stale entry.
    pub fn redis(redis: Redis, ttl: Duration, lookup_timeout: Duration) -> Self {
        Self::with(Backend::Redis(redis), ttl, lookup_timeout)
    }

    fn with(backend: Backend, ttl: Duration, lookup_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend,
                ttl,
                lookup_timeout,
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                local_generation: AtomicU64::new(0),
            }),
        }
    }

    /// Hits and misses so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.inner.hits.load(Ordering::Relaxed),
            misses: self.inner.misses.load(Ordering::Relaxed),
        }
    }

    /// The JSON of the value cached under `key`, or of `load()`'s value, which is then cached.
    ///
    /// The cache holds what the API answers, so a hit is answered with the stored bytes as
    /// they are, neither parsed nor written again (that was a third of a cached read's
    /// work). A change to a cached type's JSON reaches clients as its entries expire
    /// (`cache.ttl_secs`).
    pub async fn json_or_load<T, E, F>(&self, key: &str, load: F) -> Result<Bytes, E>
    where
        T: Serialize,
        E: From<serde_json::Error>,
        F: Future<Output = Result<T, E>>,
    {
        if let Some(bytes) = self.get(key).await {
            self.inner.hits.fetch_add(1, Ordering::Relaxed);
            crate::otel::metrics().cache_requests.add(1.0, &["hit"]);
            return Ok(bytes);
        }
        self.inner.misses.fetch_add(1, Ordering::Relaxed);
        crate::otel::metrics().cache_requests.add(1.0, &["miss"]);
        let value = load.await?;
        let bytes = Bytes::from(serde_json::to_vec(&value)?);
        self.put(key, bytes.clone()).await;
        Ok(bytes)
    }

    async fn get(&self, key: &str) -> Option<Bytes> {
        match &self.inner.backend {
            Backend::Off => None,
            Backend::Local(cache) => cache.get(key),
            Backend::Redis(redis) => match redis
                .command_within(
                    "GET",
                    vec![redis.key(&format!("cache:{key}")).into()],
                    self.inner.lookup_timeout,
                )
                .await
            {
                Ok(value) => value.as_bytes().map(Bytes::copy_from_slice),
                Err(_) => None,
            },
        }
    }

    async fn put(&self, key: &str, bytes: Bytes) {
        match &self.inner.backend {
            Backend::Off => {}
            Backend::Local(cache) => cache.insert(key.to_owned(), bytes),
            Backend::Redis(redis) => {
                let args = vec![
                    redis.key(&format!("cache:{key}")).into(),
                    bytes.into(),
                    "PX".into(),
                    (self.inner.ttl.as_millis() as i64).into(),
                ];
                let _ = redis
                    .command_within("SET", args, self.inner.lookup_timeout)
                    .await;
            }
        }
    }

    /// Drops `keys`.
    pub async fn invalidate(&self, keys: &[String]) {
        match &self.inner.backend {
            Backend::Off => {}
            Backend::Local(cache) => {
                for key in keys {
                    cache.invalidate(key);
                }
            }
            Backend::Redis(redis) => {
                let args = keys
                    .iter()
                    .map(|k| redis.key(&format!("cache:{k}")).into())
                    .collect();
                if let Err(error) = redis.command("DEL", args).await {
                    // Entries expire after the TTL; say so, since readers may see them until then.
                    tracing::warn!(%error, "cache invalidation failed; entries expire with their ttl");
                }
            }
        }
    }

    /// The current generation of the summary pages.
    pub async fn summary_generation(&self) -> u64 {
        match &self.inner.backend {
            Backend::Redis(redis) => redis
                .command_within(
                    "GET",
                    vec![redis.key("cache:summaries:generation").into()],
                    self.inner.lookup_timeout,
                )
                .await
                .ok()
                .and_then(|v| v.as_u64())
                .unwrap_or(0),
            _ => self.inner.local_generation.load(Ordering::SeqCst),
        }
    }

    /// Invalidates every summary page at once.
    pub async fn bump_summaries(&self) {
        match &self.inner.backend {
            Backend::Redis(redis) => {
                let _ = redis
                    .command("INCR", vec![redis.key("cache:summaries:generation").into()])
                    .await;
            }
            _ => {
                self.inner.local_generation.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// After a write that changed a patient's score (and so their summary).
    pub async fn score_changed(&self, patient_id: Uuid) {
        self.invalidate(&[score_key(patient_id)]).await;
        self.bump_summaries().await;
    }
}

/// Key of a patient record.
pub fn patient_key(id: Uuid) -> String {
    format!("patient:{id}")
}

/// Key of a patient's fertility score.
pub fn score_key(id: Uuid) -> String {
    format!("score:{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A load's failure, or the value's JSON failing.
    #[derive(Debug, PartialEq)]
    enum LoadError {
        Down,
        Json,
    }

    impl From<serde_json::Error> for LoadError {
        fn from(_: serde_json::Error) -> Self {
            LoadError::Json
        }
    }

    #[tokio::test]
    async fn reads_through_counts_and_invalidates() {
        let cache = Cache::local(100, Duration::from_secs(60));
        let loads = AtomicU64::new(0);
        let load = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, LoadError>(vec![1, 2, 3])
        };
        let json = Bytes::from_static(b"[1,2,3]");
        assert_eq!(cache.json_or_load("k", load()).await, Ok(json.clone()));
        assert_eq!(cache.json_or_load("k", load()).await, Ok(json));
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(cache.stats(), CacheStats { hits: 1, misses: 1 });
        cache.invalidate(&["k".to_owned()]).await;
        cache.json_or_load("k", load()).await.unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 2);

        let generation = cache.summary_generation().await;
        cache.bump_summaries().await;
        assert_eq!(cache.summary_generation().await, generation + 1);
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let cache = Cache::local(100, Duration::from_secs(60));
        let r = cache
            .json_or_load("e", async { Err::<u8, _>(LoadError::Down) })
            .await;
        assert_eq!(r, Err(LoadError::Down));
        // A map with non-string keys has no JSON: an error, and nothing cached.
        let unwritable = std::collections::HashMap::from([((1, 2), 3)]);
        let r = cache
            .json_or_load("e", async { Ok::<_, LoadError>(unwritable) })
            .await;
        assert_eq!(r, Err(LoadError::Json));
        assert_eq!(
            cache
                .json_or_load("e", async { Ok::<u8, LoadError>(7) })
                .await,
            Ok(Bytes::from_static(b"7"))
        );
    }
}
