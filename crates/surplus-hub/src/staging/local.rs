//! Staging in a local folder: `<root>/<first two hex digits>/<hash>`, uploads written to
//! `<root>/tmp` and renamed into place once verified. Owner-only, whatever the umask.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{Backend, BlobStream, StagingError, Upload};

#[derive(Debug, Clone)]
pub struct LocalFolder {
    root: PathBuf,
}

impl LocalFolder {
    pub fn open(root: &Path) -> Result<LocalFolder, StagingError> {
        let tmp = root.join("tmp");
        crate::private_dir_all(&tmp).map_err(|source| StagingError::Io { path: tmp, source })?;
        Ok(LocalFolder {
            root: root.to_owned(),
        })
    }

    /// Where a staged blob's file is (whether or not it is there).
    pub fn path_of(&self, hash: &str) -> PathBuf {
        self.root.join(&hash[..2]).join(hash)
    }

    async fn open_file(&self, hash: &str) -> Result<Option<(tokio::fs::File, u64)>, StagingError> {
        let path = self.path_of(hash);
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
}

/// An upload into `<root>/tmp`, renamed to its name on commit.
struct FileUpload {
    file: tokio::fs::File,
    tmp: PathBuf,
    path: PathBuf,
}

impl Upload for FileUpload {
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, Result<(), StagingError>> {
        async move {
            self.file
                .write_all(&chunk)
                .await
                .map_err(|source| StagingError::Io {
                    path: self.tmp.clone(),
                    source,
                })
        }
        .boxed()
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StagingError>> {
        async move {
            let FileUpload { file, tmp, path } = *self;
            let io = |path: &Path| {
                let path = path.to_owned();
                move |source| StagingError::Io { path, source }
            };
            file.sync_all().await.map_err(io(&tmp))?;
            drop(file);
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(io(parent))?;
            }
            tokio::fs::rename(&tmp, &path).await.map_err(io(&path))
        }
        .boxed()
    }

    fn abort(self: Box<Self>) -> BoxFuture<'static, ()> {
        async move {
            drop(self.file);
            let _ = tokio::fs::remove_file(&self.tmp).await;
        }
        .boxed()
    }
}

impl Backend for LocalFolder {
    fn begin<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Box<dyn Upload>, StagingError>> {
        async move {
            let tmp = self
                .root
                .join("tmp")
                .join(uuid::Uuid::new_v4().simple().to_string());
            let file = crate::private_file()
                .truncate(true)
                .open(&tmp)
                .map_err(|source| StagingError::Io {
                    path: tmp.clone(),
                    source,
                })?;
            Ok(Box::new(FileUpload {
                file: tokio::fs::File::from_std(file),
                tmp,
                path: self.path_of(hash),
            }) as Box<dyn Upload>)
        }
        .boxed()
    }

    fn open<'a>(
        &'a self,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<Option<(BlobStream, u64)>, StagingError>> {
        async move {
            Ok(self.open_file(hash).await?.map(|(file, size)| {
                (
                    tokio_util::io::ReaderStream::new(file).boxed() as BlobStream,
                    size,
                )
            }))
        }
        .boxed()
    }

    fn read_range<'a>(
        &'a self,
        hash: &'a str,
        offset: u64,
        length: u64,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, StagingError>> {
        async move {
            let Some((mut file, size)) = self.open_file(hash).await? else {
                return Ok(None);
            };
            let start = offset.min(size);
            let end = offset.saturating_add(length).min(size);
            let path = self.path_of(hash);
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
        .boxed()
    }

    fn delete<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<(), StagingError>> {
        async move {
            let path = self.path_of(hash);
            match tokio::fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(StagingError::Io { path, source }),
            }
        }
        .boxed()
    }
}
