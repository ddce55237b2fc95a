//! Moving blobs between the hub's staging store and the vault, streamed, within the bandwidth cap.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use surplus_protocol::{FailureCode, InstructionResult};

use super::decide::failed;
use super::shared::{Shared, with_vault};
use crate::client::ClientError;
use crate::untrusted;
use crate::vault::VaultError;

/// Fetches a blob from the hub's staging store into the vault, streaming, within the bandwidth
/// cap; the vault verifies size and hash and refuses what would break its quota or floor.
pub(super) async fn fetch(
    shared: &Arc<Shared>,
    hash: &str,
    size: u64,
    rate: Option<u64>,
) -> Option<InstructionResult> {
    // Download without holding the vault, so heartbeats and other instructions go on meanwhile;
    // then the vault verifies and admits the file under its own rules.
    let incoming = match download(shared, hash, size, rate).await {
        Ok(Some(path)) => path,
        Ok(None) => {
            return Some(failed(
                FailureCode::NotFound,
                "the hub no longer has that blob",
            ));
        }
        Err(error) => {
            tracing::warn!(%error, "fetching a blob failed; will try again");
            return None;
        }
    };
    let owned_hash = hash.to_owned();
    let source = incoming.clone();
    let outcome = with_vault(shared, move |vault| {
        let file = std::fs::File::open(&source).map_err(|source_error| VaultError::Io {
            path: source.clone(),
            source: source_error,
        })?;
        vault.put(&owned_hash, std::io::BufReader::new(file), size)
    })
    .await;
    let _ = tokio::fs::remove_file(&incoming).await;
    match outcome {
        Some(Ok(stored)) => Some(InstructionResult::Stored {
            hash: stored.hash,
            size: stored.size,
        }),
        Some(Err(error)) => Some(failed(error.failure_code(), error.to_string())),
        None => Some(failed(FailureCode::NoConsent, "this device has no vault")),
    }
}

/// Sends a blob the vault keeps back to the hub's staging store. The vault verifies it first: a
/// blob altered on this disk is reported as corrupt, never sent.
pub(super) async fn send(
    shared: &Arc<Shared>,
    hash: &str,
    rate: Option<u64>,
) -> Option<InstructionResult> {
    let owned_hash = hash.to_owned();
    let opened = with_vault(shared, move |vault| vault.open_verified(&owned_hash)).await;
    let file = match opened {
        Some(Ok(file)) => file,
        Some(Err(error)) => return Some(failed(error.failure_code(), error.to_string())),
        None => return Some(failed(FailureCode::NotFound, "this device has no vault")),
    };
    let size = match file.metadata() {
        Ok(meta) => meta.len(),
        Err(error) => return Some(failed(FailureCode::Io, error.to_string())),
    };
    let mut file = tokio::fs::File::from_std(file);
    if let Err(error) = tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start(0)).await
    {
        return Some(failed(FailureCode::Io, error.to_string()));
    }
    let stream = crate::client::throttle(tokio_util::io::ReaderStream::new(file), rate);
    match shared
        .client
        .upload_blob(
            &shared.token,
            hash,
            size,
            reqwest::Body::wrap_stream(stream),
        )
        .await
    {
        Ok(_) => Some(InstructionResult::Uploaded {
            hash: hash.to_owned(),
        }),
        Err(error) => {
            tracing::warn!(%error, "uploading a blob failed; will try again");
            None
        }
    }
}

/// Streams a blob from the hub into `<data-dir>/incoming`, within the bandwidth cap. `Ok(None)`
/// when the hub no longer has it; an error for faults worth another try.
async fn download(
    shared: &Arc<Shared>,
    hash: &str,
    size: u64,
    rate: Option<u64>,
) -> Result<Option<PathBuf>, String> {
    use tokio::io::AsyncWriteExt;
    let stream = match shared.client.download_blob(&shared.token, hash).await {
        Ok(stream) => stream,
        Err(ClientError::Hub { body, .. })
            if body.error == surplus_protocol::ErrorCode::NotFound =>
        {
            return Ok(None);
        }
        Err(error) => return Err(error.to_string()),
    };
    let dir = shared.data_dir.join("incoming");
    untrusted::private_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // The hash passed `untrusted::blob_hash`, so this stays in `incoming`; a partial file left by
    // an interrupted download is replaced, and nothing else there is followed.
    let name = format!(
        "{}.part",
        untrusted::blob_hash(hash).map_err(|e| e.to_string())?
    );
    let path = dir.join(&name);
    let _ = std::fs::remove_file(&path);
    let mut file = untrusted::create_new(&dir, &name)
        .map(tokio::fs::File::from_std)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut stream = crate::client::throttle(stream, rate);
    let mut received = 0u64;
    let outcome = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("the download broke off: {e}"))?;
            received += chunk.len() as u64;
            if received > size {
                return Err(format!("the hub sent more than the {size} bytes announced"));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        file.flush()
            .await
            .map_err(|e| format!("{}: {e}", path.display()))
    }
    .await;
    if let Err(error) = outcome {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(error);
    }
    Ok(Some(path))
}
