//! What a device asks with its own credential: heartbeats, its instruction queue and
//! acknowledgements, what it holds, and leaving.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use surplus_protocol::{Acknowledgement, HeartbeatResponse, InstructionBatch, StatusReport};
use uuid::Uuid;

use super::{Json, Path, Query};
use crate::auth::DeviceCaller;
use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;
use crate::now_ms;

fn validate_report(report: &StatusReport) -> ApiResult<()> {
    let cpu = report.cpu.busy_percent;
    if !(0.0..=100.0).contains(&cpu) {
        return Err(ApiError::validation(format!(
            "cpu.busy_percent {cpu} is not between 0 and 100"
        )));
    }
    for (name, value) in [
        ("limits.cores_percent", report.limits.cores_percent),
        ("limits.busy_cpu_percent", report.limits.busy_cpu_percent),
    ] {
        if value > 100 {
            return Err(ApiError::validation(format!(
                "{name} {value} is not between 0 and 100"
            )));
        }
    }
    if let Some(window) = report.limits.window
        && (window.start_minute >= 1440 || window.end_minute >= 1440)
    {
        return Err(ApiError::validation(
            "limits.window minutes must be below 1440",
        ));
    }
    if report.utc_offset_minutes.unsigned_abs() > 14 * 60 {
        return Err(ApiError::validation(format!(
            "utc_offset_minutes {} is not a real offset",
            report.utc_offset_minutes
        )));
    }
    if report.agent_version.len() > 64 || report.os.len() > 64 {
        return Err(ApiError::validation(
            "agent_version and os must be at most 64 characters",
        ));
    }
    Ok(())
}

/// A device's heartbeat: its operating information. The answer says what the hub counts as spare.
#[utoipa::path(post, path = "/v1/device/heartbeat", request_body = StatusReport,
    responses((status = 200, body = HeartbeatResponse), (status = 401, body = surplus_protocol::ErrorBody),
               (status = 422, body = surplus_protocol::ErrorBody), (status = 429, body = surplus_protocol::ErrorBody, description = "rate_limited: try again after Retry-After")), security(("device" = [])))]
pub(crate) async fn heartbeat(
    State(hub): State<Arc<Hub>>,
    DeviceCaller(device): DeviceCaller,
    crate::limits::ClientAddress(address): crate::limits::ClientAddress,
    Json(report): Json<StatusReport>,
) -> ApiResult<Json<HeartbeatResponse>> {
    hub.limits.heartbeat(device.device_id)?;
    validate_report(&report)?;
    let giving_up = report.gives_storage_up();
    let spare = hub
        .heartbeat_from(device.device_id, Some(address), device.status, report)
        .await?;
    // Only a device giving storage up has a hand-over to follow: the others cost no query.
    let handover = if giving_up {
        hub.holdings(device.device_id).await?.handover
    } else {
        None
    };
    Ok(Json(HeartbeatResponse {
        spare,
        next_heartbeat_seconds: u32::try_from(hub.settings.heartbeat_interval.as_secs())
            .unwrap_or(30)
            .max(1),
        server_time: now_ms(),
        handover,
    }))
}

/// A device leaving for good deregisters itself (`surplus leave`, once it handed over what it
/// held): its credential stops working, as when its owner revokes it. Anything it still held
/// for others is counted lost at once, and rebuilt elsewhere.
#[utoipa::path(delete, path = "/v1/device",
    responses((status = 204), (status = 401, body = surplus_protocol::ErrorBody)), security(("device" = [])))]
pub(crate) async fn leave(
    State(hub): State<Arc<Hub>>,
    DeviceCaller(device): DeviceCaller,
) -> ApiResult<StatusCode> {
    hub.store
        .revoke_device(device.subscriber_id, device.device_id, now_ms())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What the device holds for others, and how far its hand-over is once it gave storage up:
/// `surplus leave` waits on this until nothing is left.
#[utoipa::path(get, path = "/v1/device/holdings",
    responses((status = 200, body = surplus_protocol::Holdings), (status = 401, body = surplus_protocol::ErrorBody)),
    security(("device" = [])))]
pub(crate) async fn holdings(
    State(hub): State<Arc<Hub>>,
    DeviceCaller(device): DeviceCaller,
) -> ApiResult<Json<surplus_protocol::Holdings>> {
    Ok(Json(hub.holdings(device.device_id).await?))
}

/// Every blob the hub records the device holding for someone: the device may let go of the
/// others (what a hub restored from an older backup no longer knows about).
#[utoipa::path(get, path = "/v1/device/retain",
    responses((status = 200, body = surplus_protocol::RetainList), (status = 401, body = surplus_protocol::ErrorBody)),
    security(("device" = [])))]
pub(crate) async fn retain(
    State(hub): State<Arc<Hub>>,
    DeviceCaller(device): DeviceCaller,
) -> ApiResult<Json<surplus_protocol::RetainList>> {
    let hashes = hub.store.blobs_to_retain(device.device_id).await?;
    Ok(Json(surplus_protocol::RetainList { hashes }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct PollQuery {
    /// Seconds to wait for an instruction when none is queued (default 25; at most the hub's limit).
    wait: Option<u64>,
}

/// The device's instructions. Waits (long poll) until one is queued or `wait` seconds pass.
#[utoipa::path(get, path = "/v1/device/instructions", params(PollQuery),
    responses((status = 200, body = InstructionBatch)), security(("device" = [])))]
pub(crate) async fn poll_instructions(
    State(hub): State<Arc<Hub>>,
    DeviceCaller(device): DeviceCaller,
    Query(query): Query<PollQuery>,
) -> ApiResult<Json<InstructionBatch>> {
    let wait = Duration::from_secs(query.wait.unwrap_or(25)).min(hub.settings.max_long_poll);
    let deadline = tokio::time::Instant::now() + wait;
    let lease = crate::millis(hub.settings.instruction_lease);
    let waiter = hub.waiter(device.device_id);
    loop {
        let instructions = hub
            .store
            .take_deliverable(device.device_id, now_ms(), lease, 32)
            .await?;
        if !instructions.is_empty()
            || tokio::time::Instant::now() >= deadline
            || hub.shutdown.is_cancelled()
        {
            return Ok(Json(InstructionBatch { instructions }));
        }
        // Woken by a new instruction or by shutdown; otherwise look again now and then for
        // leases running out.
        let recheck = (tokio::time::Instant::now() + hub.settings.long_poll_recheck).min(deadline);
        tokio::select! {
            _ = tokio::time::timeout_at(recheck, waiter.notified()) => {}
            _ = hub.shutdown.cancelled() => {}
        }
    }
}

/// Acknowledges one instruction with its result. Acknowledging twice changes nothing.
#[utoipa::path(post, path = "/v1/device/instructions/{id}/ack", params(("id" = Uuid, Path)), request_body = Acknowledgement,
    responses((status = 204), (status = 404, body = surplus_protocol::ErrorBody)), security(("device" = [])))]
pub(crate) async fn acknowledge(
    State(hub): State<Arc<Hub>>,
    DeviceCaller(device): DeviceCaller,
    Path(id): Path<Uuid>,
    Json(ack): Json<Acknowledgement>,
) -> ApiResult<StatusCode> {
    if let surplus_protocol::InstructionResult::Reported { report } = &ack.result {
        validate_report(report)?;
    }
    match hub
        .acknowledge(device.device_id, device.status, id, ack)
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(crate::store::StoreError::NotFound) => Err(ApiError::not_found(format!(
            "no instruction {id} for this device"
        ))),
        Err(other) => Err(other.into()),
    }
}
