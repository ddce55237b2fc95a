//! Blobs through staging (upload, download, asking holders for one back) and their placements
//! on holders.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use surplus_protocol::{BlobRef, ErrorCode, Holder, PlaceBlobRequest, Placement, is_blob_hash};
use uuid::Uuid;

use super::{Json, Path, Query, needs_session};
use crate::auth::{Caller, require_active};
use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;
use crate::now_ms;
use crate::staging::StagingError;
use crate::store::LetGo;

pub(crate) fn check_hash(hash: &str) -> ApiResult<()> {
    if is_blob_hash(hash) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{hash:?} is not a blob hash (64 lower-case hex characters of BLAKE3)"
        )))
    }
}

/// Uploads a blob into staging. The body is the raw content; it must hash (BLAKE3) to `hash`.
#[utoipa::path(put, path = "/v1/blobs/{hash}", params(("hash" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = BlobRef), (status = 400, body = surplus_protocol::ErrorBody, description = "hash mismatch"),
               (status = 413, body = surplus_protocol::ErrorBody)), security(("session" = []), ("device" = [])))]
pub(crate) async fn upload_blob(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
    Path(hash): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<BlobRef>)> {
    check_hash(&hash)?;
    let declared = declared_length(&headers, hub.settings.max_blob_bytes, "blobs")?;
    // A holder sending back what it keeps for someone (a restore, a move) stages it for its
    // owners; it does not become an owner.
    let returning = match caller.device_id() {
        Some(device) => hub.store.device_allocated_blob(device, &hash).await?,
        None => false,
    };
    // A suspended subscriber's account is read-only: nothing new is staged for them (what their
    // device sends back for others still goes).
    if !returning {
        require_active(caller.status())?;
    }
    // What waits in staging counts against the plan, so that nobody can fill the hub's disk.
    let subscriber = hub.store.subscriber(caller.subscriber_id()).await?;
    let allowance = subscriber.plan.limits().stored_bytes;
    let staged = hub.store.staged_bytes(subscriber.id).await?;
    if !returning && staged.saturating_add(declared) > allowance {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::QuotaExceeded,
            format!(
                "the {} plan keeps up to {allowance} bytes waiting at the hub; {staged} are waiting already",
                subscriber.plan.as_str()
            ),
        ));
    }
    let size = stage(&hub, &hash, body, declared).await?;
    if returning {
        hub.store.set_blob_staged(&hash, true, now_ms()).await?;
        hub.blob_staged_back();
    } else {
        hub.store
            .record_blob(
                &hash,
                size,
                caller.subscriber_id(),
                caller.device_id(),
                now_ms(),
            )
            .await?;
    }
    Ok((StatusCode::CREATED, Json(BlobRef { hash, size })))
}

/// The Content-Length an upload declares, at most `limit` bytes (`what` names the upload).
pub(crate) fn declared_length(headers: &HeaderMap, limit: u64, what: &str) -> ApiResult<u64> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| ApiError::bad_request("an upload needs a Content-Length header"))?;
    if declared > limit {
        return Err(ApiError::too_large(format!(
            "{what} may be at most {limit} bytes"
        )));
    }
    Ok(declared)
}

/// Streams an upload into staging under `hash`: the body may not run past what it declared,
/// and must hash to its name. Returns its size.
pub(crate) async fn stage(hub: &Hub, hash: &str, body: Body, declared: u64) -> ApiResult<u64> {
    match hub
        .staging
        .put(hash, body.into_data_stream(), declared)
        .await
    {
        Ok(size) => Ok(size),
        Err(StagingError::TooLarge { limit }) => Err(ApiError::too_large(format!(
            "the body is longer than the {limit} bytes it declared"
        ))),
        Err(StagingError::HashMismatch { actual }) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::HashMismatch,
            format!("the content hashes to {actual}, not {hash}"),
        )),
        Err(StagingError::Interrupted(reason)) => Err(ApiError::bad_request(format!(
            "the upload was cut short: {reason}"
        ))),
        Err(other) => Err(ApiError::internal(other)),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct RetrieveQuery {
    /// Seconds to wait for a holder to send the blob back when it is not staged (default 0:
    /// answer at once; at most the hub's long-poll limit).
    wait: Option<u64>,
}

/// Asks for a blob back: if the hub no longer has it staged, its holders are told to upload it.
/// With `wait`, the answer comes once a holder has sent it (long poll) or when `wait` seconds
/// pass. Download it with `GET /v1/blobs/{hash}` once `staged` is true.
#[utoipa::path(post, path = "/v1/blobs/{hash}/retrieve", params(("hash" = String, Path), RetrieveQuery),
    responses((status = 202, body = surplus_protocol::Retrieval), (status = 404, body = surplus_protocol::ErrorBody)),
    security(("session" = []), ("device" = [])))]
pub(crate) async fn retrieve_blob(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
    Path(hash): Path<String>,
    Query(query): Query<RetrieveQuery>,
) -> ApiResult<(StatusCode, Json<surplus_protocol::Retrieval>)> {
    check_hash(&hash)?;
    let subscriber = caller.subscriber_id();
    // Watched from before the first look, so that a blob staged meanwhile is not missed.
    let mut staged_back = hub.staged_back_changes();
    let Some(owned) = hub.store.owned_blob(&hash, subscriber).await? else {
        return Err(ApiError::not_found(format!("no blob {hash} of yours")));
    };
    let mut staged = owned.staged;
    let mut requested_from = Vec::new();
    if !staged {
        for allocation in hub.store.blob_allocations(&hash, subscriber).await? {
            use surplus_protocol::AllocationState::{Active, Evacuating};
            if !matches!(allocation.state, Active | Evacuating) {
                continue;
            }
            let device = allocation.device_id;
            if !hub.store.upload_requested(device, &hash).await? {
                let kind = surplus_protocol::InstructionKind::UploadBlob { hash: hash.clone() };
                let now = now_ms();
                let expires = hub.settings.instruction_expiry(now);
                hub.store
                    .enqueue(device, Some(allocation.id), &kind, now, expires)
                    .await?;
                hub.metrics.instructions_queued(kind.name());
                hub.wake(device);
            }
            requested_from.push(device);
        }
        if requested_from.is_empty() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                format!("no holder keeps {hash} any more, and the hub has no copy"),
            ));
        }
        let wait = Duration::from_secs(query.wait.unwrap_or(0)).min(hub.settings.max_long_poll);
        let deadline = tokio::time::Instant::now() + wait;
        // Woken when a holder sends a blob back to this hub; the database is read again twice a
        // second as well, for a holder that sent it to another replica.
        let recheck = hub
            .settings
            .long_poll_recheck
            .min(Duration::from_millis(500));
        while !staged && tokio::time::Instant::now() < deadline && !hub.shutdown.is_cancelled() {
            let until = (tokio::time::Instant::now() + recheck).min(deadline);
            tokio::select! {
                _ = tokio::time::timeout_at(until, staged_back.changed()) => {}
                _ = hub.shutdown.cancelled() => {}
            }
            staged = hub
                .store
                .owned_blob(&hash, subscriber)
                .await?
                .is_some_and(|owned| owned.staged);
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(surplus_protocol::Retrieval {
            hash,
            staged,
            requested_from,
        }),
    ))
}

/// Downloads a staged blob: its owner's devices and session, a device asked to hold it, or a
/// device running a task that needs it.
#[utoipa::path(get, path = "/v1/blobs/{hash}", params(("hash" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 404, body = surplus_protocol::ErrorBody)),
    security(("session" = []), ("device" = [])))]
pub(crate) async fn download_blob(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
    Path(hash): Path<String>,
) -> ApiResult<Response> {
    check_hash(&hash)?;
    let owned = hub
        .store
        .owned_blob(&hash, caller.subscriber_id())
        .await?
        .is_some();
    // A holder asked to keep it, or a device running a task that needs it (module or input).
    let holder = match caller.device_id() {
        Some(device) if !owned => {
            hub.store.device_allocated_blob(device, &hash).await?
                || hub.store.device_runs_with(device, &hash).await?
        }
        _ => false,
    };
    // A blob the caller may not see answers exactly like one that does not exist.
    if !owned && !holder {
        return Err(ApiError::not_found(format!(
            "no staged blob {hash} for you"
        )));
    }
    let Some((bytes, size)) = hub
        .staging
        .open_blob(&hash)
        .await
        .map_err(ApiError::internal)?
    else {
        return Err(ApiError::not_found(format!(
            "blob {hash} is no longer staged"
        )));
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::from_stream(bytes),
    )
        .into_response())
}

async fn placement_view(hub: &Hub, hash: &str, subscriber_id: Uuid) -> ApiResult<Placement> {
    let placement = hub
        .store
        .placement(hash, subscriber_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no placement of {hash} for you")))?;
    let holders = hub
        .store
        .blob_allocations(hash, subscriber_id)
        .await?
        .into_iter()
        .map(|allocation| Holder {
            device_id: allocation.device_id,
            allocation_id: allocation.id,
            state: allocation.state,
        })
        .collect();
    Ok(Placement {
        hash: hash.to_owned(),
        size: placement.size,
        copies: placement.copies,
        created_at: placement.created_at,
        holders,
        staged: placement.staged,
    })
}

/// Asks the hub to keep a staged blob on `copies` other devices' vaults. The hub allocates
/// spare storage for it and instructs the holders.
#[utoipa::path(post, path = "/v1/placements", request_body = PlaceBlobRequest,
    responses((status = 202, body = Placement), (status = 403, body = surplus_protocol::ErrorBody, description = "subscriber not active"),
               (status = 404, body = surplus_protocol::ErrorBody), (status = 422, body = surplus_protocol::ErrorBody)),
    security(("session" = []), ("device" = [])))]
pub(crate) async fn place_blob(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
    Json(request): Json<PlaceBlobRequest>,
) -> ApiResult<(StatusCode, Json<Placement>)> {
    check_hash(&request.hash)?;
    if let Some(pack) = &request.pack
        && !surplus_protocol::is_object_name(pack)
    {
        return Err(ApiError::validation(format!(
            "pack {pack:?} is not 1 to 64 lower-case hex digits"
        )));
    }
    require_active(caller.status())?;
    let subscriber = hub.store.subscriber(caller.subscriber_id()).await?;
    let max = subscriber.plan.limits().max_copies;
    if request.copies == 0 || request.copies > max {
        return Err(ApiError::validation(format!(
            "copies {} must be between 1 and {max}",
            request.copies
        )));
    }
    if hub
        .store
        .owned_blob(&request.hash, subscriber.id)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "no staged blob {} for you: upload it first",
            request.hash
        )));
    }
    // A shard says where it belongs in its pack: read from its header while it is staged.
    let shard = match &request.pack {
        Some(_) => hub
            .staging
            .read_range(&request.hash, 0, surplus_backup::erasure::HEADER_LEN as u64)
            .await
            .map_err(ApiError::internal)?
            .and_then(|header| surplus_backup::erasure::shard_info(&header)),
        None => None,
    };
    hub.store
        .upsert_placement(
            &request.hash,
            subscriber.id,
            caller.device_id(),
            request.copies,
            request.pack.as_deref().map(|pack| (pack, shard)),
            now_ms(),
        )
        .await?;
    let scope = crate::scheduler::Scope {
        blob: Some((&request.hash, subscriber.id)),
        ..Default::default()
    };
    crate::scheduler::place_pending(&hub, scope).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(placement_view(&hub, &request.hash, subscriber.id).await?),
    ))
}

/// Where a blob is kept.
#[utoipa::path(get, path = "/v1/placements/{hash}", params(("hash" = String, Path)),
    responses((status = 200, body = Placement), (status = 404, body = surplus_protocol::ErrorBody)),
    security(("session" = []), ("device" = [])))]
pub(crate) async fn get_placement(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
    Path(hash): Path<String>,
) -> ApiResult<Json<Placement>> {
    check_hash(&hash)?;
    Ok(Json(
        placement_view(&hub, &hash, caller.subscriber_id()).await?,
    ))
}

/// Lets a blob go. It takes the subscriber's session. A placed blob is kept at its holders for
/// the hub's grace period, recoverable (`POST /v1/backup/forgotten/recover`); then its holders
/// are told to delete it, their allocations are released, and the hub drops its staged copy
/// unless another owner still needs it. A blob uploaded but never placed goes at once.
#[utoipa::path(delete, path = "/v1/placements/{hash}", params(("hash" = String, Path)),
    responses((status = 204), (status = 403, body = surplus_protocol::ErrorBody, description = "a device may not delete data"),
              (status = 404, body = surplus_protocol::ErrorBody)), security(("session" = [])))]
pub(crate) async fn drop_placement(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
    Path(hash): Path<String>,
) -> ApiResult<StatusCode> {
    if !matches!(caller, Caller::Subscriber(_)) {
        return Err(needs_session("deleting data from its holders"));
    }
    check_hash(&hash)?;
    let subscriber = caller.subscriber_id();
    if hub.store.owned_blob(&hash, subscriber).await?.is_none() {
        return Err(ApiError::not_found(format!("no blob {hash} of yours")));
    }
    let now = now_ms();
    if hub
        .store
        .let_go_of_placement(&hash, subscriber, now)
        .await?
        == LetGo::NotPlaced
    {
        hub.store.drop_placement(&hash, subscriber).await?;
        if !hub.store.blob_still_needed_in_staging(&hash).await? {
            crate::scheduler::unstage(&hub, &hash, now).await?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
