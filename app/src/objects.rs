//! Object storage for uploaded documents, through the `object_store` crate: local disk by
//! default, any S3-compatible bucket (AWS, MinIO) by configuration.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};
use tracing::Instrument;

use crate::config::{Config, StorageConfig};
use crate::resilience::{Breaker, BreakerConfig, BreakerState, Guarded};

/// A handle on the configured object store. Every call runs under a timeout and the object
/// storage circuit breaker; reads, which are idempotent, are retried once after a short pause.
#[derive(Debug, Clone)]
pub struct Objects {
    inner: Arc<dyn ObjectStore>,
    breaker: Arc<Breaker>,
    timeout: Duration,
}

/// How long one object storage call may take (a 10 MB part on a slow link included).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause before the one retry of a failed read.
const READ_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// An upload in progress: bytes go out in parts as they arrive; nothing is visible under the
/// key until [`Upload::finish`], and [`Upload::abort`] leaves nothing behind.
pub struct Upload {
    writer: WriteMultipart,
}

impl Objects {
    /// Opens the store the configuration names, creating the local directory when needed.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let inner: Arc<dyn ObjectStore> = match &config.storage {
            StorageConfig::Local { path } => {
                let root = if path.as_os_str().is_empty() {
                    config.data_dir.join("objects")
                } else {
                    path.clone()
                };
                Arc::new(Self::local(&root)?)
            }
            StorageConfig::S3 {
                bucket,
                endpoint,
                region,
                access_key_id,
                secret_access_key,
                allow_http,
            } => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_allow_http(*allow_http);
                if !endpoint.is_empty() {
                    builder = builder.with_endpoint(endpoint);
                }
                if !access_key_id.is_empty() {
                    builder = builder
                        .with_access_key_id(access_key_id)
                        .with_secret_access_key(secret_access_key);
                }
                Arc::new(builder.build()?)
            }
        };
        Ok(Self::from_store(inner))
    }

    fn local(root: &Path) -> anyhow::Result<LocalFileSystem> {
        std::fs::create_dir_all(root)?;
        Ok(LocalFileSystem::new_with_prefix(root)?)
    }

    /// Wraps any object store (tests use the in-memory one).
    pub fn from_store(inner: Arc<dyn ObjectStore>) -> Self {
        let breaker = BreakerConfig {
            enabled: true,
            failure_threshold: 5,
            open_for: Duration::from_secs(10),
        };
        Self {
            inner,
            breaker: Arc::new(Breaker::new("object_storage", breaker)),
            timeout: CALL_TIMEOUT,
        }
    }

    /// The breaker of object storage.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// One call under the breaker and the timeout. A missing object is an answer, not an
    /// outage.
    async fn guarded<T>(
        &self,
        call: impl Future<Output = object_store::Result<T>>,
    ) -> object_store::Result<T> {
        let healthy = |e: &object_store::Error| {
            matches!(
                e,
                object_store::Error::NotFound { .. } | object_store::Error::AlreadyExists { .. }
            )
        };
        match self.breaker.call(self.timeout, call, healthy).await {
            Ok(value) => Ok(value),
            Err(Guarded::Failed(e)) => Err(e),
            Err(other) => Err(object_store::Error::Generic {
                store: "object storage",
                source: other.to_string().into(),
            }),
        }
    }

    /// A read: guarded, and retried once unless the object is missing or the breaker is open.
    async fn read<T, F, Fut>(&self, call: F) -> object_store::Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        match self.guarded(call()).await {
            Err(object_store::Error::NotFound { path, source }) => {
                Err(object_store::Error::NotFound { path, source })
            }
            Err(_) if self.breaker.state() == BreakerState::Closed => {
                tokio::time::sleep(READ_RETRY_PAUSE).await;
                self.guarded(call()).await
            }
            other => other,
        }
    }

    /// Starts a streamed upload to `key`.
    pub async fn start_upload(&self, key: &str) -> object_store::Result<Upload> {
        let path = ObjectPath::from(key);
        let upload = traced(
            "put_multipart",
            self.guarded(self.inner.put_multipart(&path)),
        )
        .await?;
        Ok(Upload {
            writer: WriteMultipart::new(upload),
        })
    }

    /// The bytes of `key`, as a stream.
    pub async fn get(
        &self,
        key: &str,
    ) -> object_store::Result<BoxStream<'static, object_store::Result<Bytes>>> {
        let path = ObjectPath::from(key);
        Ok(traced("get", self.read(|| self.inner.get(&path)))
            .await?
            .into_stream())
    }

    /// The whole content of `key` (documents are at most a few MB).
    pub async fn get_bytes(&self, key: &str) -> object_store::Result<Bytes> {
        let path = ObjectPath::from(key);
        traced(
            "get",
            self.read(|| async { self.inner.get(&path).await?.bytes().await }),
        )
        .await
    }

    /// Stores `bytes` under `key`, replacing what was there.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> object_store::Result<()> {
        let path = ObjectPath::from(key);
        let payload: object_store::PutPayload = bytes.into();
        // A put of the whole object replaces it: idempotent, so it is retried like a read.
        traced("put", self.read(|| self.inner.put(&path, payload.clone())))
            .await
            .map(|_| ())
    }

    /// Removes `key`; a missing object is not an error.
    pub async fn delete(&self, key: &str) -> object_store::Result<()> {
        let path = ObjectPath::from(key);
        match traced("delete", self.read(|| self.inner.delete(&path))).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Checks that the store answers (a listing of its root).
    pub async fn ping(&self) -> object_store::Result<()> {
        self.guarded(self.inner.list_with_delimiter(None))
            .await
            .map(|_| ())
    }
}

/// Runs one object storage call in a client span named after its operation. Keys are not
/// recorded: a span names what was done, not to which document.
async fn traced<T>(
    operation: &'static str,
    call: impl Future<Output = object_store::Result<T>>,
) -> object_store::Result<T> {
    let span = tracing::info_span!(
        "object storage",
        otel.name = %format!("object_store {operation}"),
        otel.kind = "client",
        object_store.operation = operation,
        otel.status_code = tracing::field::Empty,
    );
    let outcome = call.instrument(span.clone()).await;
    if matches!(&outcome, Err(e) if !matches!(e, object_store::Error::NotFound { .. })) {
        span.record("otel.status_code", "error");
    }
    outcome
}

impl Upload {
    /// Appends bytes (sent as parts in the background, with back-pressure).
    pub async fn write(&mut self, bytes: &[u8]) -> object_store::Result<()> {
        self.writer.wait_for_capacity(4).await?;
        self.writer.write(bytes);
        Ok(())
    }

    /// Makes the object visible.
    pub async fn finish(self) -> object_store::Result<()> {
        traced("complete_multipart", self.writer.finish())
            .await
            .map(|_| ())
    }

    /// Drops everything written so far.
    pub async fn abort(self) -> object_store::Result<()> {
        self.writer.abort().await
    }
}
