//! The hub's staging store: blobs on their way between devices (store-and-forward).
//!
//! Blobs are content-addressed by BLAKE3: an upload is streamed to a temporary file while it is
//! hashed and counted, and only a complete upload whose hash matches its name is renamed into
//! place, so a reader never sees a partial or wrong blob. This is the local-folder store, the
//! embedded default; an S3-compatible store takes the same four operations.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

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
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct Staging {
    root: PathBuf,
}

impl Staging {
    pub async fn open(root: &Path) -> Result<Staging, StagingError> {
        let tmp = root.join("tmp");
        crate::private_dir_all(&tmp).map_err(|source| StagingError::Io { path: tmp, source })?;
        Ok(Staging {
            root: root.to_owned(),
        })
    }

    /// Where a staged blob's file is (whether or not it is there).
    pub fn path_of(&self, hash: &str) -> PathBuf {
        self.path(hash)
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.root.join(&hash[..2]).join(hash)
    }

    /// Streams a blob in, verifying its size and hash. Returns its size.
    pub async fn put<S, E>(&self, hash: &str, mut body: S, limit: u64) -> Result<u64, StagingError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let tmp = self
            .root
            .join("tmp")
            .join(uuid::Uuid::new_v4().simple().to_string());
        let io = |source| StagingError::Io {
            path: tmp.clone(),
            source,
        };
        let mut file = tokio::fs::File::from_std(
            crate::private_file()
                .truncate(true)
                .open(&tmp)
                .map_err(io)?,
        );
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
                file.write_all(&chunk).await.map_err(io)?;
            }
            let actual = hasher.finalize().to_hex().to_string();
            if actual != hash {
                return Err(StagingError::HashMismatch { actual });
            }
            file.sync_all().await.map_err(io)?;
            Ok(())
        }
        .await;
        drop(file);
        if let Err(error) = outcome {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(error);
        }
        let path = self.path(hash);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|source| StagingError::Io {
                    path: parent.to_owned(),
                    source,
                })?;
        }
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|source| StagingError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(size)
    }

    /// Opens a staged blob for reading, with its size; `None` if it is not staged.
    pub async fn open_blob(
        &self,
        hash: &str,
    ) -> Result<Option<(tokio::fs::File, u64)>, StagingError> {
        let path = self.path(hash);
        match tokio::fs::File::open(&path).await {
            Ok(file) => {
                let size = file
                    .metadata()
                    .await
                    .map_err(|source| StagingError::Io { path, source })?
                    .len();
                Ok(Some((file, size)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StagingError::Io { path, source }),
        }
    }

    /// Reads a range of a staged blob (for checking a holder's proof while the hub still has it).
    pub async fn read_range(
        &self,
        hash: &str,
        offset: u64,
        length: u64,
    ) -> Result<Option<Vec<u8>>, StagingError> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let Some((mut file, size)) = self.open_blob(hash).await? else {
            return Ok(None);
        };
        let start = offset.min(size);
        let end = offset.saturating_add(length).min(size);
        let path = self.path(hash);
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|source| StagingError::Io {
                path: path.clone(),
                source,
            })?;
        let mut buffer = vec![0; usize::try_from(end - start).unwrap_or(0)];
        file.read_exact(&mut buffer)
            .await
            .map_err(|source| StagingError::Io { path, source })?;
        Ok(Some(buffer))
    }

    /// Drops a staged blob. Dropping one that is not there is not an error.
    pub async fn delete(&self, hash: &str) -> Result<(), StagingError> {
        let path = self.path(hash);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StagingError::Io { path, source }),
        }
    }
}
