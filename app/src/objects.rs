//! Object storage for uploaded documents, through the `object_store` crate: local disk by
//! default, any S3-compatible bucket (AWS, MinIO) by configuration.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};

use crate::config::{Config, StorageConfig};

/// A handle on the configured object store.
#[derive(Debug, Clone)]
pub struct Objects {
    inner: Arc<dyn ObjectStore>,
}

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
        Ok(Self { inner })
    }

    fn local(root: &Path) -> anyhow::Result<LocalFileSystem> {
        std::fs::create_dir_all(root)?;
        Ok(LocalFileSystem::new_with_prefix(root)?)
    }

    /// Wraps any object store (tests use the in-memory one).
    pub fn from_store(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner }
    }

    /// Starts a streamed upload to `key`.
    pub async fn start_upload(&self, key: &str) -> object_store::Result<Upload> {
        let upload = self.inner.put_multipart(&ObjectPath::from(key)).await?;
        Ok(Upload {
            writer: WriteMultipart::new(upload),
        })
    }

    /// The bytes of `key`, as a stream.
    pub async fn get(
        &self,
        key: &str,
    ) -> object_store::Result<BoxStream<'static, object_store::Result<Bytes>>> {
        Ok(self.inner.get(&ObjectPath::from(key)).await?.into_stream())
    }

    /// The whole content of `key` (documents are at most a few MB).
    pub async fn get_bytes(&self, key: &str) -> object_store::Result<Bytes> {
        self.inner.get(&ObjectPath::from(key)).await?.bytes().await
    }

    /// Stores `bytes` under `key`, replacing what was there.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> object_store::Result<()> {
        self.inner
            .put(&ObjectPath::from(key), bytes.into())
            .await
            .map(|_| ())
    }

    /// Removes `key`; a missing object is not an error.
    pub async fn delete(&self, key: &str) -> object_store::Result<()> {
        match self.inner.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Checks that the store answers (a listing of its root).
    pub async fn ping(&self) -> object_store::Result<()> {
        self.inner.list_with_delimiter(None).await.map(|_| ())
    }
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
        self.writer.finish().await.map(|_| ())
    }

    /// Drops everything written so far.
    pub async fn abort(self) -> object_store::Result<()> {
        self.writer.abort().await
    }
}
