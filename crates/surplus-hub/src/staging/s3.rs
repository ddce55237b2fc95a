//! Staging on S3-compatible object storage (`--staging s3://BUCKET[/PREFIX]`), through
//! `object_store`. The endpoint, region and keys come from the usual `AWS_ENDPOINT_URL`,
//! `AWS_REGION`, `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`. Blobs are
//! `PREFIX/<first two hex digits>/<hash>`; a blob smaller than one part is one PUT, a larger one
//! a multipart upload streamed part by part. Either becomes visible only once complete, and an
//! upload that fails its hash is aborted, so no reader sees a partial or wrong blob.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload, WriteMultipart};

use super::{Backend, BlobStream, StagingError, Upload};

/// The size of a multipart upload's parts (S3's least is 5 MiB).
const PART: usize = 8 << 20;
/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

#[derive(Debug, Clone)]
pub struct S3Bucket {
    store: Arc<AmazonS3>,
    prefix: Path,
    url: String,
}

fn remote(what: &str, error: impl std::fmt::Display) -> StagingError {
    StagingError::Remote(format!("{what}: {error}"))
}

impl S3Bucket {
    /// The bucket and prefix of `s3://BUCKET[/PREFIX]`, configured from the environment. Plain
    /// `http://` endpoints are accepted on loopback only, unless `AWS_ALLOW_HTTP=true`.
    pub fn open(url: &str) -> Result<S3Bucket, StagingError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| remote(url, "not an s3://BUCKET[/PREFIX] address"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(remote(url, "no bucket named"));
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = builder.get_config_value(&AmazonS3ConfigKey::Endpoint) {
            let loopback = host_of(&endpoint).is_some_and(|host| {
                host == "localhost"
                    || host
                        .trim_matches(|c| c == '[' || c == ']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            });
            if loopback && endpoint.starts_with("http://") {
                builder = builder.with_allow_http(true);
            }
        }
        let store = builder.build().map_err(|error| remote(url, error))?;
        Ok(S3Bucket {
            store: Arc::new(store),
            prefix: Path::from(prefix.trim_matches('/')),
            url: url.to_owned(),
        })
    }

    fn key(&self, hash: &str) -> Path {
        self.prefix.child(&hash[..2]).child(hash)
    }
}

/// The host of `scheme://host[:port][/...]`.
fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    Some(match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    })
}

/// An upload: buffered until it fills a part, then a multipart upload.
struct S3Upload {
    bucket: S3Bucket,
    key: Path,
    buffer: BytesMut,
    multipart: Option<WriteMultipart>,
}

impl Upload for S3Upload {
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, Result<(), StagingError>> {
        async move {
            if let Some(multipart) = &mut self.multipart {
                multipart
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|error| remote(&self.bucket.url, error))?;
                multipart.put(chunk);
                return Ok(());
            }
            self.buffer.extend_from_slice(&chunk);
            if self.buffer.len() >= PART {
                let upload = self
                    .bucket
                    .store
                    .put_multipart(&self.key)
                    .await
                    .map_err(|error| remote(&self.bucket.url, error))?;
                let mut multipart = WriteMultipart::new_with_chunk_size(upload, PART);
                multipart.put(self.buffer.split().freeze());
                self.multipart = Some(multipart);
            }
            Ok(())
        }
        .boxed()
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StagingError>> {
        async move {
            let S3Upload {
                bucket,
                key,
                buffer,
                multipart,
            } = *self;
            match multipart {
                Some(multipart) => multipart.finish().await.map(drop),
                None => bucket
                    .store
                    .put(&key, PutPayload::from(buffer.freeze()))
                    .await
                    .map(drop),
            }
            .map_err(|error| remote(&bucket.url, error))
        }
        .boxed()
    }

    fn abort(self: Box<Self>) -> BoxFuture<'static, ()> {
        async move {
            if let Some(multipart) = self.multipart
                && let Err(error) = multipart.abort().await
            {
                tracing::warn!(%error, key = %self.key, "aborting a multipart upload");
            }
        }
        .boxed()
    }
}

impl Backend for S3Bucket {
    fn begin<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Box<dyn Upload>, StagingError>> {
        async move {
            Ok(Box::new(S3Upload {
                bucket: self.clone(),
                key: self.key(hash),
                buffer: BytesMut::new(),
                multipart: None,
            }) as Box<dyn Upload>)
        }
        .boxed()
    }

    fn open<'a>(
        &'a self,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<Option<(BlobStream, u64)>, StagingError>> {
        async move {
            match self.store.get(&self.key(hash)).await {
                Ok(got) => {
                    let size = got.meta.size;
                    let bytes = got.into_stream().map_err(std::io::Error::other).boxed();
                    Ok(Some((bytes as BlobStream, size)))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(error) => Err(remote(&self.url, error)),
            }
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
            let key = self.key(hash);
            let size = match self.store.head(&key).await {
                Ok(meta) => meta.size,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(error) => return Err(remote(&self.url, error)),
            };
            let start = offset.min(size);
            let end = offset.saturating_add(length).min(size);
            if start == end {
                return Ok(Some(Vec::new()));
            }
            match self.store.get_range(&key, start..end).await {
                Ok(bytes) => Ok(Some(bytes.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(error) => Err(remote(&self.url, error)),
            }
        }
        .boxed()
    }

    fn delete<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<(), StagingError>> {
        async move {
            match self.store.delete(&self.key(hash)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(error) => Err(remote(&self.url, error)),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_on_loopback_are_told_apart() {
        assert_eq!(host_of("http://127.0.0.1:9000"), Some("127.0.0.1"));
        assert_eq!(host_of("http://localhost/"), Some("localhost"));
        assert_eq!(host_of("https://s3.example.org"), Some("s3.example.org"));
        assert_eq!(host_of("http://[::1]:9000"), Some("[::1]"));
        assert_eq!(host_of("no scheme"), None);
    }

    #[test]
    fn an_address_that_is_not_a_bucket_is_refused() {
        assert!(S3Bucket::open("https://bucket").is_err());
        assert!(S3Bucket::open("s3://").is_err());
    }
}
