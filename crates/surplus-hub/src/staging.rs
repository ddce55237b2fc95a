//! The hub's staging store: blobs on their way between devices (store-and-forward).
//!
//! Blobs are content-addressed by BLAKE3. An upload is streamed to its backend while it is
//! hashed and counted, and only a complete upload whose hash matches its name is committed, so a
//! reader never sees a partial or wrong blob. Where the bytes rest is a [`Backend`]: a local
//! folder ([`LocalFolder`], the embedded default) or S3-compatible object storage
//! ([`S3Bucket`]).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};

mod local;
mod s3;

pub use local::LocalFolder;
pub use s3::S3Bucket;

#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("the blob is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the content hashes to {actual}, not to the name it was uploaded under")]
    HashMismatch { actual: String },
    #[error("the upload was cut short: {0}")]
    Interrupted(String),
    #[error("staging I/O on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("staging on {0}")]
    Remote(String),
}

/// A staged blob's bytes, as they are read.
pub type BlobStream = BoxStream<'static, std::io::Result<Bytes>>;

/// One upload on its way into a backend: invisible to readers until committed.
pub trait Upload: Send {
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, Result<(), StagingError>>;
    /// Makes the blob readable under its name, durably.
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StagingError>>;
    /// Drops what was written.
    fn abort(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// Where staged blobs rest. Names are BLAKE3 hashes the caller has checked.
pub trait Backend: Send + Sync + std::fmt::Debug {
    fn begin<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Box<dyn Upload>, StagingError>>;
    /// A blob's bytes and size; `None` if it is not staged.
    fn open<'a>(
        &'a self,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<Option<(BlobStream, u64)>, StagingError>>;
    /// Bytes `offset..offset + length` of a blob (fewer at its end); `None` if it is not staged.
    fn read_range<'a>(
        &'a self,
        hash: &'a str,
        offset: u64,
        length: u64,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, StagingError>>;
    /// Drops a blob; dropping one that is not there is not an error.
    fn delete<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<(), StagingError>>;
}

#[derive(Debug, Clone)]
pub struct Staging {
    backend: Arc<dyn Backend>,
}

impl Staging {
    /// Staging in a local folder, created (owner-only) if need be.
    pub async fn open(root: &std::path::Path) -> Result<Staging, StagingError> {
        Ok(Staging::on(Arc::new(LocalFolder::open(root)?)))
    }

    /// Staging at `address`: `s3://BUCKET[/PREFIX]` for S3-compatible storage (configured by the
    /// `AWS_*` variables), anything else a local folder.
    pub async fn at(address: &std::path::Path) -> Result<Staging, StagingError> {
        match address.to_str() {
            Some(url) if url.starts_with("s3://") => {
                Ok(Staging::on(Arc::new(S3Bucket::open(url)?)))
            }
            _ => Staging::open(address).await,
        }
    }

    /// Staging on `backend`.
    pub fn on(backend: Arc<dyn Backend>) -> Staging {
        Staging { backend }
    }

    /// Streams a blob in, verifying its size and hash. Returns its size.
    pub async fn put<S, E>(&self, hash: &str, mut body: S, limit: u64) -> Result<u64, StagingError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut upload = self.backend.begin(hash).await?;
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        let outcome = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| StagingError::Interrupted(e.to_string()))?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(StagingError::TooLarge { limit });
                }
                hasher.update(&chunk);
                upload.write(chunk).await?;
            }
            let actual = hasher.finalize().to_hex().to_string();
            if actual != hash {
                return Err(StagingError::HashMismatch { actual });
            }
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => {
                upload.commit().await?;
                Ok(size)
            }
            Err(error) => {
                upload.abort().await;
                Err(error)
            }
        }
    }

    /// A staged blob's bytes and size; `None` if it is not staged.
    pub async fn open_blob(&self, hash: &str) -> Result<Option<(BlobStream, u64)>, StagingError> {
        self.backend.open(hash).await
    }

    /// Reads a range of a staged blob (for checking a holder's proof while the hub still has it).
    pub async fn read_range(
        &self,
        hash: &str,
        offset: u64,
        length: u64,
    ) -> Result<Option<Vec<u8>>, StagingError> {
        self.backend.read_range(hash, offset, length).await
    }

    /// Drops a staged blob. Dropping one that is not there is not an error.
    pub async fn delete(&self, hash: &str) -> Result<(), StagingError> {
        self.backend.delete(hash).await
    }
}
