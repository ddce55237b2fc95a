//! Blobs through the hub's staging store: uploads, downloads, retrievals from holders, and their placements.

use super::*;

impl HubClient {
    /// Streams a blob out of the hub's staging store.
    pub async fn download_blob(
        &self,
        token: &str,
        hash: &str,
    ) -> Result<impl Stream<Item = std::io::Result<Bytes>> + use<>> {
        let response = self
            .send(self.request(Method::GET, &format!("/v1/blobs/{hash}"), Some(token)))
            .await?;
        Ok(response.bytes_stream().map_err(std::io::Error::other))
    }

    /// Uploads a blob into the hub's staging store, streaming it from `body`.
    pub async fn upload_blob(
        &self,
        token: &str,
        hash: &str,
        size: u64,
        body: reqwest::Body,
    ) -> Result<BlobRef> {
        let request = self
            .request(Method::PUT, &format!("/v1/blobs/{hash}"), Some(token))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(body);
        self.json(request).await
    }

    /// Uploads a file into the hub's staging store, streaming it within `rate` bytes per
    /// second (unlimited without one). The file is read twice: once to name it by its hash,
    /// once to send it.
    pub async fn upload_file(
        &self,
        token: &str,
        path: &std::path::Path,
        rate: Option<u64>,
    ) -> Result<BlobRef> {
        let io = |error: std::io::Error| ClientError::File {
            path: path.to_owned(),
            source: error,
        };
        let hashing = path.to_owned();
        let (hash, size) = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&hashing)?;
            let mut hasher = blake3::Hasher::new();
            let size = std::io::copy(&mut std::io::BufReader::new(file), &mut hasher)?;
            Ok::<_, std::io::Error>((hasher.finalize().to_hex().to_string(), size))
        })
        .await
        .map_err(|e| io(std::io::Error::other(e)))?
        .map_err(io)?;
        let file = tokio::fs::File::open(path).await.map_err(io)?;
        let stream = throttle(tokio_util::io::ReaderStream::new(file), rate);
        self.upload_blob(token, &hash, size, reqwest::Body::wrap_stream(stream))
            .await
    }

    /// A whole blob from staging, in memory (for shards, a few MiB each).
    /// A staged blob of `size` bytes, whole, in memory. A hub that sends more is cut off with an
    /// error at the first byte past `size`, so it cannot make this device hold more than it
    /// asked for.
    pub async fn download_bytes(&self, token: &str, hash: &str, size: u64) -> Result<Vec<u8>> {
        self.get_bytes(&format!("/v1/blobs/{hash}"), token, size)
            .await
    }

    /// A whole response body of a GET, of at most `max` bytes: a longer one is an error.
    pub(super) async fn get_bytes(&self, path: &str, token: &str, max: u64) -> Result<Vec<u8>> {
        let response = self
            .send(self.request(Method::GET, path, Some(token)))
            .await?;
        let mut stream = response.bytes_stream();
        let mut bytes = Vec::with_capacity(usize::try_from(max.min(1 << 20)).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| ClientError::Transport {
                url: self.base.clone(),
                error: source,
            })?;
            if bytes.len() as u64 + chunk.len() as u64 > max {
                return Err(ClientError::Unexpected {
                    status: StatusCode::OK,
                    detail: format!("the hub sent more than the {max} bytes expected from {path}"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// Asks for a blob back (its holders upload it when the hub no longer has it).
    pub async fn retrieve_blob(
        &self,
        token: &str,
        hash: &str,
        wait: Duration,
    ) -> Result<surplus_protocol::Retrieval> {
        let path = match wait.as_secs() {
            0 => format!("/v1/blobs/{hash}/retrieve"),
            seconds => format!("/v1/blobs/{hash}/retrieve?wait={seconds}"),
        };
        self.json(self.request(Method::POST, &path, Some(token)))
            .await
    }

    /// Asks for a blob back and waits until a holder has sent it to the hub (long polls of up
    /// to [`RETRIEVE_POLL`]), or until `deadline`. Whether it is staged. A hub that answers at
    /// once (one from before long polls) is asked again after a growing pause.
    pub async fn until_staged(
        &self,
        token: &str,
        hash: &str,
        deadline: tokio::time::Instant,
    ) -> Result<bool> {
        let mut pause = Duration::from_millis(200);
        loop {
            let asked = tokio::time::Instant::now();
            let wait = deadline.saturating_duration_since(asked).min(RETRIEVE_POLL);
            if self.retrieve_blob(token, hash, wait).await?.staged {
                return Ok(true);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            if now - asked < wait / 2 {
                tokio::time::sleep(pause.min(deadline - now)).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }

    /// Gets a blob back into `path`: asks for it, waits up to `wait` for a holder to send it to
    /// the hub, downloads it and checks its hash. The file appears only once it is whole.
    pub async fn fetch_blob_to(
        &self,
        token: &str,
        hash: &str,
        path: &std::path::Path,
        wait: Duration,
    ) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let deadline = tokio::time::Instant::now() + wait;
        if !self.until_staged(token, hash, deadline).await? {
            return Err(ClientError::Unexpected {
                status: StatusCode::GATEWAY_TIMEOUT,
                detail: format!(
                    "no holder of {hash} sent it back within {}s; its holders may be offline",
                    wait.as_secs()
                ),
            });
        }
        let io = |error: std::io::Error| ClientError::File {
            path: path.to_owned(),
            source: error,
        };
        let temp = path.with_extension("surplus-part");
        let mut stream = self.download_blob(token, hash).await?;
        // Written anew, never through a link left under the temporary name; then renamed over
        // `path`, which replaces a link there rather than writing where it points.
        let _ = std::fs::remove_file(&temp);
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .await
            .map_err(io)?;
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(io)?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.sync_all().await.map_err(io)?;
        if hasher.finalize().to_hex().as_str() != hash {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(ClientError::Unexpected {
                status: StatusCode::OK,
                detail: format!("what came back does not hash to {hash}"),
            });
        }
        tokio::fs::rename(&temp, path).await.map_err(io)?;
        Ok(size)
    }

    pub async fn place_blob(&self, token: &str, hash: &str, copies: u32) -> Result<Placement> {
        self.place(token, hash, copies, None).await
    }

    /// Places a blob as a shard of `pack`: on another subscriber's device than any other shard.
    pub async fn place_shard(&self, token: &str, hash: &str, pack: &str) -> Result<Placement> {
        self.place(token, hash, 1, Some(pack)).await
    }

    pub(super) async fn place(
        &self,
        token: &str,
        hash: &str,
        copies: u32,
        pack: Option<&str>,
    ) -> Result<Placement> {
        self.post(
            "/v1/placements",
            Some(token),
            &PlaceBlobRequest {
                hash: hash.to_owned(),
                copies,
                pack: pack.map(str::to_owned),
            },
        )
        .await
    }

    pub async fn placement(&self, token: &str, hash: &str) -> Result<Placement> {
        self.json(self.request(Method::GET, &format!("/v1/placements/{hash}"), Some(token)))
            .await
    }

    /// Lets a blob go: when the hub's grace period ends, holders delete it and allocations are
    /// released (until then [`HubClient::recover_forgotten`] brings it back).
    pub async fn drop_placement(&self, token: &str, hash: &str) -> Result<()> {
        self.send(self.request(
            Method::DELETE,
            &format!("/v1/placements/{hash}"),
            Some(token),
        ))
        .await?;
        Ok(())
    }
}
