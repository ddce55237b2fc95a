//! The compute endpoints: jobs (`/v1/compute/jobs`), credit (`/v1/credits`), and the upload of a
//! run's output by the device that ran it.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use surplus_protocol::{
    BlobRef, Credits, ErrorCode, Job, JobInput, JobRequest, TASK_OUTPUT_BYTES, is_blob_hash,
};
use uuid::Uuid;

use super::{Json, Path, Query, check_hash};
use crate::auth::{Caller, DeviceCaller, require_active};
use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;
use crate::now_ms;
use crate::store::{OwnedBlob, StoreError};

/// The most replicas a job may ask for.
pub const MAX_REPLICAS: u32 = 8;
/// The longest timeout a job may set, in seconds.
pub const MAX_TIMEOUT_SECONDS: u64 = 24 * 3600;
/// The memory cap's bounds.
pub const MIN_MEMORY_BYTES: u64 = 1 << 20;
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;
/// Arguments: how many, and how long each.
const MAX_ARGS: usize = 256;
const MAX_ARG_BYTES: usize = 4096;

pub fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/compute/jobs", post(submit_job).get(list_jobs))
        .route("/compute/jobs/{id}", get(get_job))
        .route("/compute/jobs/{id}/cancel", post(cancel_job))
        .route("/credits", get(credits))
        .route("/device/runs/{run}/outputs/{hash}", put(upload_output))
}

/// Submits a job: one task per input, each run on other subscribers' idle devices until a
/// quorum of identical outputs agrees. The module and the inputs must be staged first
/// (`PUT /v1/blobs/{hash}`).
#[utoipa::path(post, path = "/v1/compute/jobs", request_body = JobRequest,
    responses((status = 201, body = Job), (status = 400, body = surplus_protocol::ErrorBody),
              (status = 402, body = surplus_protocol::ErrorBody, description = "no compute credit left")),
    security(("session" = []), ("device" = [])))]
#[tracing::instrument(skip_all, fields(job = tracing::field::Empty, tasks = request.inputs.len()))]
pub(crate) async fn submit_job(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
    Json(request): Json<JobRequest>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    require_active(caller.status())?;
    let subscriber = hub.store.subscriber(caller.subscriber_id()).await?;
    check_request(&request, subscriber.plan.limits().max_job_tasks)?;
    // The files must be the caller's, staged, and of the sizes given.
    for (what, blob) in std::iter::once(("the module", request.module.clone())).chain(
        request.inputs.iter().map(|input| {
            (
                "an input",
                BlobRef {
                    hash: input.hash.clone(),
                    size: input.size,
                },
            )
        }),
    ) {
        match hub.store.owned_blob(&blob.hash, subscriber.id).await? {
            Some(OwnedBlob { size, staged: true }) if size == blob.size => {}
            Some(OwnedBlob { size, staged: true }) => {
                return Err(ApiError::validation(format!(
                    "{what} {} is {size} bytes, not {}",
                    blob.hash, blob.size
                )));
            }
            _ => {
                return Err(ApiError::validation(format!(
                    "{what} {} is not staged by you: upload it with PUT /v1/blobs/{{hash}} first",
                    blob.hash
                )));
            }
        }
    }
    check_module(&hub, &request.module.hash).await?;
    let credits = hub.store.credits(subscriber.id).await?;
    if credits.balance <= 0.0 {
        return Err(ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            ErrorCode::InsufficientCredit,
            format!(
                "your compute credit is used up ({:.1} core-seconds): your devices earn more by running others' tasks",
                credits.balance
            ),
        ));
    }
    let id = hub
        .store
        .create_job(subscriber.id, &request, TASK_OUTPUT_BYTES, now_ms())
        .await?;
    tracing::Span::current().record("job", tracing::field::display(id));
    tracing::info!("job submitted");
    hub.kick_scheduler();
    let job = hub.store.job(subscriber.id, id).await?;
    Ok((StatusCode::CREATED, Json(job)))
}

fn check_request(request: &JobRequest, max_tasks: u32) -> ApiResult<()> {
    check_hash(&request.module.hash)?;
    if request.inputs.is_empty() {
        return Err(ApiError::validation(
            "a job needs at least one input: each input is one task",
        ));
    }
    if request.inputs.len() > max_tasks as usize {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::QuotaExceeded,
            format!(
                "a job may have at most {max_tasks} tasks on your plan, not {}",
                request.inputs.len()
            ),
        ));
    }
    let mut names = std::collections::HashSet::new();
    for input in &request.inputs {
        if let Some(problem) = JobInput::name_problem(&input.name) {
            return Err(ApiError::validation(problem));
        }
        if !is_blob_hash(&input.hash) {
            return Err(ApiError::validation(format!(
                "the input {:?} has no blob hash (64 lower-case hex digits)",
                input.name
            )));
        }
        if !names.insert(input.name.as_str()) {
            return Err(ApiError::validation(format!(
                "two inputs are named {:?}: results are written by input name, so names must differ",
                input.name
            )));
        }
    }
    if !(1..=MAX_REPLICAS).contains(&request.replicas) {
        return Err(ApiError::validation(format!(
            "replicas must be 1 to {MAX_REPLICAS}, not {}",
            request.replicas
        )));
    }
    if !(1..=MAX_TIMEOUT_SECONDS).contains(&request.timeout_seconds) {
        return Err(ApiError::validation(format!(
            "the timeout must be 1 second to 24 hours, not {} seconds",
            request.timeout_seconds
        )));
    }
    if !(10..=surplus_protocol::MAX_JOB_DEADLINE_SECONDS).contains(&request.deadline_seconds) {
        return Err(ApiError::validation(format!(
            "the deadline must be 10 seconds to 30 days, not {} seconds",
            request.deadline_seconds
        )));
    }
    if !(MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES).contains(&request.memory_bytes) {
        return Err(ApiError::validation(format!(
            "the memory cap must be 1 MiB to 4 GiB, not {} bytes",
            request.memory_bytes
        )));
    }
    if request.args.len() > MAX_ARGS || request.args.iter().any(|a| a.len() > MAX_ARG_BYTES) {
        return Err(ApiError::validation(format!(
            "at most {MAX_ARGS} arguments of at most {MAX_ARG_BYTES} bytes each"
        )));
    }
    Ok(())
}

/// A module must at least be WebAssembly: the first bytes tell, before any donor fetches it.
async fn check_module(hub: &Hub, hash: &str) -> ApiResult<()> {
    let Some(read) = hub
        .staging
        .read_range(hash, 0, 8)
        .await
        .map_err(ApiError::internal)?
    else {
        return Err(ApiError::validation(format!(
            "the module {hash} is no longer staged"
        )));
    };
    if read.len() < 8 || read[..4] != *b"\0asm" || read[4..8] != [1, 0, 0, 0] {
        return Err(ApiError::validation(
            "the module is not a WebAssembly core module (a WASI preview 1 command is expected)",
        ));
    }
    Ok(())
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub(crate) struct ListJobs {
    /// The most jobs to list, newest first.
    limit: Option<i64>,
}

/// The caller's jobs, newest first, without their tasks.
#[utoipa::path(get, path = "/v1/compute/jobs", params(ListJobs),
    responses((status = 200, body = Vec<Job>)), security(("session" = []), ("device" = [])))]
pub(crate) async fn list_jobs(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
    Query(query): Query<ListJobs>,
) -> ApiResult<Json<Vec<Job>>> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(hub.store.jobs(caller.subscriber_id(), limit).await?))
}

/// One of the caller's jobs, with its tasks and their runs.
#[utoipa::path(get, path = "/v1/compute/jobs/{id}", params(("id" = Uuid, Path)),
    responses((status = 200, body = Job), (status = 404, body = surplus_protocol::ErrorBody)),
    security(("session" = []), ("device" = [])))]
pub(crate) async fn get_job(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Job>> {
    job_of(&hub, caller.subscriber_id(), id).await.map(Json)
}

/// Cancels a job: tasks not yet done are cancelled and devices running them stop.
#[utoipa::path(post, path = "/v1/compute/jobs/{id}/cancel", params(("id" = Uuid, Path)),
    responses((status = 200, body = Job), (status = 404, body = surplus_protocol::ErrorBody),
              (status = 409, body = surplus_protocol::ErrorBody, description = "the job had already ended")),
    security(("session" = []), ("device" = [])))]
pub(crate) async fn cancel_job(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Job>> {
    let subscriber = caller.subscriber_id();
    let job = job_of(&hub, subscriber, id).await?;
    if !crate::compute::cancel_job(&hub, subscriber, id).await? {
        return Err(ApiError::conflict(format!(
            "job {id} has already ended ({})",
            job.state.as_str()
        )));
    }
    job_of(&hub, subscriber, id).await.map(Json)
}

async fn job_of(hub: &Hub, subscriber: Uuid, id: Uuid) -> ApiResult<Job> {
    match hub.store.job(subscriber, id).await {
        Ok(job) => Ok(job),
        Err(StoreError::NotFound) => Err(ApiError::not_found(format!("no job {id} of yours"))),
        Err(other) => Err(other.into()),
    }
}

/// The caller's compute credit, in core-seconds.
#[utoipa::path(get, path = "/v1/credits",
    responses((status = 200, body = Credits)), security(("session" = []), ("device" = [])))]
pub(crate) async fn credits(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
) -> ApiResult<Json<Credits>> {
    Ok(Json(hub.store.credits(caller.subscriber_id()).await?))
}

/// The output of a run, uploaded by the device that ran it, before it acknowledges the run. It
/// is staged for the job's submitter, within the job's output cap; a run has one output.
#[utoipa::path(put, path = "/v1/device/runs/{run}/outputs/{hash}",
    params(("run" = Uuid, Path), ("hash" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = BlobRef), (status = 404, body = surplus_protocol::ErrorBody),
              (status = 409, body = surplus_protocol::ErrorBody, description = "the run uploaded another output already"),
              (status = 413, body = surplus_protocol::ErrorBody)), security(("device" = [])))]
pub(crate) async fn upload_output(
    State(hub): State<Arc<Hub>>,
    DeviceCaller(device): DeviceCaller,
    Path((run, hash)): Path<(Uuid, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<BlobRef>)> {
    check_hash(&hash)?;
    let owner = hub.store.run_owner(run).await?.filter(|owner| {
        owner.device_id == device.device_id && owner.state == surplus_protocol::RunState::Assigned
    });
    let Some(owner) = owner else {
        return Err(ApiError::not_found(format!(
            "no run {run} is out on this device"
        )));
    };
    let (submitter, cap) = (owner.submitter, owner.output_bytes);
    let cap = cap.min(hub.settings.max_blob_bytes);
    let declared = super::declared_length(&headers, cap, "a task's output")?;
    if !hub.store.claim_output(run, device.device_id, &hash).await? {
        return Err(ApiError::conflict(format!(
            "run {run} already uploaded another output: a run has one output"
        )));
    }
    let size = super::stage(&hub, &hash, body, declared).await?;
    hub.store
        .record_blob(&hash, size, submitter, None, now_ms())
        .await?;
    Ok((StatusCode::CREATED, Json(BlobRef { hash, size })))
}
