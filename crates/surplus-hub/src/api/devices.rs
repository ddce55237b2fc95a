//! A subscriber's devices (registering, listing, revoking, probing them) and their part of the
//! allocation ledger.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use surplus_protocol::{
    Allocation, Device, DeviceCredentials, ErrorCode, ProbeRequested, RegisterDevice, Subscriber,
};
use uuid::Uuid;

use super::{Json, Path, Query};
use crate::auth::{SubscriberCaller, random_secret, require_active, token_hash};
use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;
use crate::now_ms;

/// The subscriber's devices.
#[utoipa::path(get, path = "/v1/devices", responses((status = 200, body = [Device])), security(("session" = [])))]
pub(crate) async fn list_devices(
    State(hub): State<Arc<Hub>>,
    SubscriberCaller(subscriber): SubscriberCaller,
) -> ApiResult<Json<Vec<Device>>> {
    let mut devices = Vec::new();
    for row in hub.store.devices(Some(subscriber.id)).await? {
        devices.push(hub.device_view(row).await?);
    }
    Ok(Json(devices))
}

/// Registers a device and returns its credential, once.
#[utoipa::path(post, path = "/v1/devices", request_body = RegisterDevice,
    responses((status = 201, body = DeviceCredentials), (status = 403, body = surplus_protocol::ErrorBody, description = "plan's device limit reached"),
               (status = 422, body = surplus_protocol::ErrorBody), (status = 429, body = surplus_protocol::ErrorBody, description = "rate_limited: try again after Retry-After")), security(("session" = [])))]
pub(crate) async fn register_device(
    State(hub): State<Arc<Hub>>,
    SubscriberCaller(subscriber): SubscriberCaller,
    Json(request): Json<RegisterDevice>,
) -> ApiResult<(StatusCode, Json<DeviceCredentials>)> {
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 64 || surplus_protocol::unsafe_char(name).is_some()
    {
        return Err(ApiError::validation(format!(
            "device name {:?} must be 1 to 64 printable characters, with no control or invisible ones",
            request.name
        )));
    }
    hub.limits.registration(subscriber.id)?;
    require_active(subscriber.status)?;
    let limit = subscriber.plan.limits().devices;
    if hub.store.count_live_devices(subscriber.id).await? >= limit {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::QuotaExceeded,
            format!(
                "the {} plan allows {limit} devices; revoke one first",
                subscriber.plan.as_str()
            ),
        ));
    }
    let secret = random_secret();
    let device_id = hub
        .store
        .create_device(subscriber.id, name, &token_hash(&secret), now_ms())
        .await?;
    tracing::info!(%device_id, email = ?subscriber.email, "device registered");
    Ok((
        StatusCode::CREATED,
        Json(DeviceCredentials { device_id, secret }),
    ))
}

async fn owned_device(
    hub: &Hub,
    subscriber: &Subscriber,
    id: Uuid,
) -> ApiResult<crate::store::DeviceRow> {
    match hub.store.device(id).await {
        Ok(row) if row.subscriber_id == subscriber.id => Ok(row),
        Ok(_) | Err(crate::store::StoreError::NotFound) => {
            Err(ApiError::not_found(format!("no device {id} of yours")))
        }
        Err(other) => Err(other.into()),
    }
}

/// One of the subscriber's devices, with its latest report.
#[utoipa::path(get, path = "/v1/devices/{id}", params(("id" = Uuid, Path)),
    responses((status = 200, body = Device), (status = 404, body = surplus_protocol::ErrorBody)), security(("session" = [])))]
pub(crate) async fn get_device(
    State(hub): State<Arc<Hub>>,
    SubscriberCaller(subscriber): SubscriberCaller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Device>> {
    let row = owned_device(&hub, &subscriber, id).await?;
    Ok(Json(hub.device_view(row).await?))
}

/// Revokes a device: its credential stops working and its pending instructions are cancelled.
#[utoipa::path(delete, path = "/v1/devices/{id}", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = surplus_protocol::ErrorBody)), security(("session" = [])))]
pub(crate) async fn revoke_device(
    State(hub): State<Arc<Hub>>,
    SubscriberCaller(subscriber): SubscriberCaller,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    match hub.store.revoke_device(subscriber.id, id, now_ms()).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(crate::store::StoreError::NotFound) => {
            Err(ApiError::not_found(format!("no device {id} of yours")))
        }
        Err(other) => Err(other.into()),
    }
}

/// Asks one device for a fresh status report now.
#[utoipa::path(post, path = "/v1/devices/{id}/probe", params(("id" = Uuid, Path)),
    responses((status = 202, body = ProbeRequested), (status = 404, body = surplus_protocol::ErrorBody)), security(("session" = [])))]
pub(crate) async fn probe_device(
    State(hub): State<Arc<Hub>>,
    SubscriberCaller(subscriber): SubscriberCaller,
    Path(id): Path<Uuid>,
) -> ApiResult<(StatusCode, Json<ProbeRequested>)> {
    let row = owned_device(&hub, &subscriber, id).await?;
    if row.revoked_at.is_some() {
        return Err(ApiError::conflict(format!("device {id} is revoked")));
    }
    let queued = hub.probe(&[id]).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ProbeRequested {
            devices: vec![id],
            instructions: queued.iter().map(|i| i.id).collect(),
        }),
    ))
}

/// Asks every device of the subscriber for a fresh status report now.
#[utoipa::path(post, path = "/v1/devices/probe", responses((status = 202, body = ProbeRequested)), security(("session" = [])))]
pub(crate) async fn probe_all(
    State(hub): State<Arc<Hub>>,
    SubscriberCaller(subscriber): SubscriberCaller,
) -> ApiResult<(StatusCode, Json<ProbeRequested>)> {
    let devices: Vec<Uuid> = hub
        .store
        .devices(Some(subscriber.id))
        .await?
        .into_iter()
        .filter(|d| d.revoked_at.is_none())
        .map(|d| d.id)
        .collect();
    let queued = hub.probe(&devices).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ProbeRequested {
            devices,
            instructions: queued.iter().map(|i| i.id).collect(),
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct LedgerQuery {
    /// At most this many entries, newest first (default 1000, at most 10000).
    limit: Option<u32>,
}

/// The subscriber's part of the allocation ledger: allocations serving them and allocations of
/// their devices' resources.
#[utoipa::path(get, path = "/v1/allocations", params(LedgerQuery), responses((status = 200, body = [Allocation])), security(("session" = [])))]
pub(crate) async fn allocations(
    State(hub): State<Arc<Hub>>,
    SubscriberCaller(subscriber): SubscriberCaller,
    Query(query): Query<LedgerQuery>,
) -> ApiResult<Json<Vec<Allocation>>> {
    let limit = i64::from(query.limit.unwrap_or(1000).min(10_000));
    Ok(Json(hub.store.ledger(Some(subscriber.id), limit).await?))
}
