//! Backup's side of the API: the wrapped master key, settings and coding, sealed objects,
//! forgetting and recovering, health, and challenge runs.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::{Json, Path, needs_session};
use crate::auth::{Caller, require_active};
use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;
use crate::now_ms;
use crate::policy;

/// Keeps the subscriber's passphrase-wrapped master key. The hub cannot open it: that takes the
/// passphrase, which never leaves the subscriber. A device may keep the first one (its first
/// backup makes the key); replacing one takes the subscriber's session, so that a stolen device
/// cannot lock its owner out of their backups.
#[utoipa::path(put, path = "/v1/backup/key", request_body = surplus_protocol::WrappedKeyBody,
    responses((status = 204), (status = 403, body = surplus_protocol::ErrorBody, description = "a device may not replace the key"),
              (status = 422, body = surplus_protocol::ErrorBody)), security(("session" = []), ("device" = [])))]
pub(crate) async fn put_wrapped_key(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
    Json(body): Json<surplus_protocol::WrappedKeyBody>,
) -> ApiResult<StatusCode> {
    require_active(caller.status())?;
    if body.wrapped.is_empty() || body.wrapped.len() > 4096 {
        return Err(ApiError::validation("wrapped must be 1 to 4096 characters"));
    }
    let replace = matches!(caller, Caller::Subscriber(_));
    if !hub
        .store
        .put_wrapped_key(caller.subscriber_id(), &body.wrapped, now_ms(), replace)
        .await?
    {
        return Err(needs_session("replacing the key kept at the hub"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The subscriber's passphrase-wrapped master key, for restoring on a new device.
#[utoipa::path(get, path = "/v1/backup/key",
    responses((status = 200, body = surplus_protocol::WrappedKeyBody), (status = 404, body = surplus_protocol::ErrorBody)),
    security(("session" = []), ("device" = [])))]
pub(crate) async fn get_wrapped_key(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
) -> ApiResult<Json<surplus_protocol::WrappedKeyBody>> {
    match hub.store.wrapped_key(caller.subscriber_id()).await? {
        Some(wrapped) => Ok(Json(surplus_protocol::WrappedKeyBody { wrapped })),
        None => Err(ApiError::not_found(
            "no key has been escrowed yet: the first backup does that",
        )),
    }
}

/// The coding the caller's next backup uses, from the subscriber's settings and the holders
/// there are now.
async fn backup_plan(hub: &Hub, caller: &Caller) -> ApiResult<surplus_protocol::BackupPlan> {
    let subscriber = caller.subscriber_id();
    let settings = hub.store.backup_settings(subscriber).await?;
    let devices = hub
        .store
        .storage_candidates()
        .await?
        .into_iter()
        .map(|c| (c.device_id, c.subscriber_id));
    let eligible =
        policy::eligible_holders(devices, subscriber, caller.device_id(), settings.household);
    Ok(policy::backup_plan(settings, eligible))
}

/// The subscriber's backup settings, the coding their next backup uses, and how many holders
/// can take their shards now (with a warning when too few).
#[utoipa::path(get, path = "/v1/backup/settings",
    responses((status = 200, body = surplus_protocol::BackupPlan)), security(("session" = []), ("device" = [])))]
pub(crate) async fn get_backup_settings(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
) -> ApiResult<Json<surplus_protocol::BackupPlan>> {
    Ok(Json(backup_plan(&hub, &caller).await?))
}

/// Sets household mode and the erasure coding (`coding: null` for the automatic one).
#[utoipa::path(put, path = "/v1/backup/settings", request_body = surplus_protocol::BackupSettings,
    responses((status = 200, body = surplus_protocol::BackupPlan), (status = 422, body = surplus_protocol::ErrorBody)),
    security(("session" = []), ("device" = [])))]
pub(crate) async fn put_backup_settings(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
    Json(settings): Json<surplus_protocol::BackupSettings>,
) -> ApiResult<Json<surplus_protocol::BackupPlan>> {
    require_active(caller.status())?;
    if let Some(problem) = settings.coding.and_then(|c| c.problem()) {
        return Err(ApiError::validation(format!("coding: {problem}")));
    }
    hub.store
        .set_backup_settings(caller.subscriber_id(), settings)
        .await?;
    Ok(Json(backup_plan(&hub, &caller).await?))
}

/// Challenges every shard of the subscriber's at its holder; follow the answers with
/// `GET /v1/backup/verify/{id}`.
#[utoipa::path(post, path = "/v1/backup/verify",
    responses((status = 202, body = surplus_protocol::VerifyRun)), security(("session" = []), ("device" = [])))]
pub(crate) async fn start_verify(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
) -> ApiResult<(StatusCode, Json<surplus_protocol::VerifyRun>)> {
    require_active(caller.status())?;
    let run = crate::challenge::start(&hub, caller.subscriber_id()).await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

/// A challenge run: how many shards passed, failed, or still wait for their holder.
#[utoipa::path(get, path = "/v1/backup/verify/{id}", params(("id" = Uuid, Path)),
    responses((status = 200, body = surplus_protocol::VerifyRun), (status = 404, body = surplus_protocol::ErrorBody)),
    security(("session" = []), ("device" = [])))]
pub(crate) async fn get_verify(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<surplus_protocol::VerifyRun>> {
    match hub.store.verify_run(caller.subscriber_id(), id).await {
        Ok(run) => Ok(Json(run)),
        Err(crate::store::StoreError::NotFound) => {
            Err(ApiError::not_found(format!("no verify run {id} of yours")))
        }
        Err(other) => Err(other.into()),
    }
}

fn check_object(kind: &str, name: Option<&str>) -> ApiResult<()> {
    if !surplus_protocol::BACKUP_OBJECT_KINDS.contains(&kind) {
        return Err(ApiError::bad_request(format!(
            "{kind:?} is not a kind of backup object (index, snapshot)"
        )));
    }
    if let Some(name) = name
        && !surplus_protocol::is_object_name(name)
    {
        return Err(ApiError::bad_request(format!(
            "{name:?} is not an object name (1 to 64 lower-case hex digits)"
        )));
    }
    Ok(())
}

/// The largest sealed backup object the hub keeps.
const MAX_OBJECT_BYTES: usize = 16 << 20;

/// Keeps one of the subscriber's sealed backup objects (an index or a snapshot).
#[utoipa::path(put, path = "/v1/backup/objects/{kind}/{name}", params(("kind" = String, Path), ("name" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 204), (status = 413, body = surplus_protocol::ErrorBody)), security(("session" = []), ("device" = [])))]
pub(crate) async fn put_backup_object(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
    Path((kind, name)): Path<(String, String)>,
    body: Body,
) -> ApiResult<StatusCode> {
    require_active(caller.status())?;
    check_object(&kind, Some(&name))?;
    let bytes = axum::body::to_bytes(body, MAX_OBJECT_BYTES)
        .await
        .map_err(|_| {
            ApiError::too_large(format!(
                "backup objects may be at most {MAX_OBJECT_BYTES} bytes"
            ))
        })?;
    // Objects are written once, whoever sends them: a stolen device or session cannot overwrite
    // a snapshot (sending one again is answered as if kept, and brings back a forgotten one).
    hub.store
        .put_backup_object(caller.subscriber_id(), &kind, &name, &bytes, now_ms())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One of the subscriber's sealed backup objects.
#[utoipa::path(get, path = "/v1/backup/objects/{kind}/{name}", params(("kind" = String, Path), ("name" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 404, body = surplus_protocol::ErrorBody)),
    security(("session" = []), ("device" = [])))]
pub(crate) async fn get_backup_object(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
    Path((kind, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    check_object(&kind, Some(&name))?;
    match hub
        .store
        .backup_object(caller.subscriber_id(), &kind, &name)
        .await?
    {
        Some(bytes) => {
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
        }
        None => Err(ApiError::not_found(format!("no {kind} {name} of yours"))),
    }
}

/// The names of the subscriber's backup objects of one kind.
#[utoipa::path(get, path = "/v1/backup/objects/{kind}", params(("kind" = String, Path)),
    responses((status = 200, body = [String])), security(("session" = []), ("device" = [])))]
pub(crate) async fn list_backup_objects(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
    Path(kind): Path<String>,
) -> ApiResult<Json<Vec<String>>> {
    check_object(&kind, None)?;
    Ok(Json(
        hub.store
            .backup_object_names(caller.subscriber_id(), &kind)
            .await?,
    ))
}

/// Forgets one of the subscriber's backup objects. It takes the subscriber's session. The object
/// is kept, recoverable, for the hub's grace period (`GET /v1/backup/forgotten`), then deleted.
#[utoipa::path(delete, path = "/v1/backup/objects/{kind}/{name}", params(("kind" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 403, body = surplus_protocol::ErrorBody, description = "a device may not delete backup objects"),
              (status = 404, body = surplus_protocol::ErrorBody)), security(("session" = [])))]
pub(crate) async fn delete_backup_object(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
    Path((kind, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    if !matches!(caller, Caller::Subscriber(_)) {
        return Err(needs_session("forgetting snapshots and their indexes"));
    }
    check_object(&kind, Some(&name))?;
    if hub
        .store
        .forget_backup_object(caller.subscriber_id(), &kind, &name, now_ms())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no {kind} {name} of yours")))
    }
}

/// Where each of the subscriber's packs stands: uploading, protected, repairing, at risk or lost
/// (`surplus_rules::health::placed_pack_state`).
#[utoipa::path(get, path = "/v1/backup/health",
    responses((status = 200, body = surplus_protocol::BackupHealth)), security(("session" = []), ("device" = [])))]
pub(crate) async fn get_backup_health(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
) -> ApiResult<Json<surplus_protocol::BackupHealth>> {
    let packs = crate::health::pack_states(&hub, Some(caller.subscriber_id()), now_ms())
        .await?
        .into_iter()
        .map(|(_, pack, state)| surplus_protocol::PackStateView {
            pack,
            state: state.as_str().to_owned(),
        })
        .collect();
    Ok(Json(surplus_protocol::BackupHealth { packs }))
}

/// What the subscriber forgot that is still kept, and when each goes for good.
#[utoipa::path(get, path = "/v1/backup/forgotten",
    responses((status = 200, body = surplus_protocol::Forgotten)), security(("session" = []), ("device" = [])))]
pub(crate) async fn get_forgotten(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
) -> ApiResult<Json<surplus_protocol::Forgotten>> {
    let rows = hub.store.forgotten(caller.subscriber_id()).await?;
    let grace_ms = crate::millis(hub.settings.forget_grace);
    Ok(Json(surplus_protocol::Forgotten {
        grace_seconds: hub.settings.forget_grace.as_secs(),
        objects: rows
            .objects
            .into_iter()
            .map(|object| surplus_protocol::ForgottenObject {
                purged_at: object.forgotten_at.saturating_add(grace_ms),
                kind: object.kind,
                name: object.name,
                forgotten_at: object.forgotten_at,
            })
            .collect(),
        shards: rows.shards,
        shard_bytes: rows.shard_bytes,
        shards_purged_from: rows.first_dropped_at.map(|at| at.saturating_add(grace_ms)),
    }))
}

/// Brings back every snapshot, index and shard the subscriber forgot that is still kept. A
/// device may do it too: it only undoes a deletion.
#[utoipa::path(post, path = "/v1/backup/forgotten/recover",
    responses((status = 200, body = surplus_protocol::Recovered)), security(("session" = []), ("device" = [])))]
pub(crate) async fn recover_forgotten(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
) -> ApiResult<Json<surplus_protocol::Recovered>> {
    let recovered = hub.store.recover_forgotten(caller.subscriber_id()).await?;
    if recovered.shards > 0 {
        // A recovered placement that was waiting for holders waits again.
        hub.kick_scheduler();
    }
    Ok(Json(recovered))
}
