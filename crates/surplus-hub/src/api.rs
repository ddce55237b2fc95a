//! The HTTP API under `/v1`, plus `/healthz` and `/metrics`.
//!
//! Handlers translate between HTTP and the [`Hub`]; every failure leaves as an [`ApiError`] with
//! a stable code. The OpenAPI document is generated from the annotations here (see `openapi.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use surplus_protocol::{
    Acknowledgement, Allocation, BlobRef, Credentials, Device, DeviceCredentials, ErrorCode,
    HeartbeatResponse, Holder, InstructionBatch, PlaceBlobRequest, Placement, Plan, ProbeRequested,
    RegisterDevice, Session, SessionInfo, SignupAccepted, StatusReport, Subscriber, is_blob_hash,
};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use uuid::Uuid;

use crate::auth::{
    Caller, CurrentSession, DeviceCaller, SubscriberCaller, decoy_hash, hash_password,
    random_secret, require_active, token_hash, verify_password,
};
use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;
use crate::limits::ClientAddress;
use crate::now_ms;
use crate::policy;
use crate::staging::StagingError;
use crate::store::LetGo;

pub(crate) mod compute;

/// A JSON body whose rejections are [`ApiError`]s.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Builds the hub's router.
pub fn router(hub: Arc<Hub>) -> Router {
    let json_limit = hub.settings.max_json_bytes;
    let v1 = Router::new()
        .route("/signup", post(signup))
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/sessions", get(list_sessions).delete(end_all_sessions))
        .route("/sessions/current", delete(end_current_session))
        .route("/sessions/{id}", delete(end_session))
        .route("/devices", get(list_devices).post(register_device))
        .route("/devices/probe", post(probe_all))
        .route("/devices/{id}", get(get_device).delete(revoke_device))
        .route("/devices/{id}/probe", post(probe_device))
        .route("/allocations", get(allocations))
        .route("/device/heartbeat", post(heartbeat))
        .route("/device", delete(leave))
        .route("/device/holdings", get(holdings))
        .route("/device/retain", get(retain))
        .route("/device/instructions", get(poll_instructions))
        .route("/device/instructions/{id}/ack", post(acknowledge))
        .route("/blobs/{hash}", put(upload_blob).get(download_blob))
        .route("/blobs/{hash}/retrieve", post(retrieve_blob))
        .route("/placements", post(place_blob))
        .route(
            "/placements/{hash}",
            get(get_placement).delete(drop_placement),
        )
        .route("/backup/key", put(put_wrapped_key).get(get_wrapped_key))
        .route(
            "/backup/settings",
            get(get_backup_settings).put(put_backup_settings),
        )
        .route("/backup/verify", post(start_verify))
        .route("/backup/verify/{id}", get(get_verify))
        .route("/backup/objects/{kind}", get(list_backup_objects))
        .route("/backup/forgotten", get(get_forgotten))
        .route("/backup/health", get(get_backup_health))
        .route("/backup/forgotten/recover", post(recover_forgotten))
        .route(
            "/backup/objects/{kind}/{name}",
            put(put_backup_object)
                .get(get_backup_object)
                .delete(delete_backup_object),
        )
        .route("/openapi.json", get(openapi))
        .merge(compute::routes());
    Router::new()
        .nest(surplus_protocol::API_PREFIX, v1)
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(json_limit))
        .layer(middleware::from_fn(speak_protocol))
        .layer(middleware::from_fn_with_state(hub.clone(), record_metrics))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                ApiError::internal("a request handler panicked").into_response()
            },
        ))
        .with_state(hub)
}

async fn record_metrics(State(hub): State<Arc<Hub>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    hub.metrics.request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Refuses an agent whose protocol is older than the hub serves (a request without the header,
/// from a script or a browser, is served), and names the hub's own on every answer.
async fn speak_protocol(request: Request, next: Next) -> Response {
    use surplus_protocol::{OLDEST_AGENT_PROTOCOL, PROTOCOL_HEADER, PROTOCOL_VERSION};
    let theirs = request.headers().get(PROTOCOL_HEADER).map(|value| {
        value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
    });
    let mut response = match theirs {
        Some(None) => ApiError::bad_request(format!(
            "the {PROTOCOL_HEADER} header is not a version number"
        ))
        .into_response(),
        Some(Some(version)) if version < OLDEST_AGENT_PROTOCOL => ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            ErrorCode::AgentTooOld,
            format!(
                "this Surplus speaks protocol {version}, and the hub needs {OLDEST_AGENT_PROTOCOL} \
                 or newer: update Surplus on this computer"
            ),
        )
        .into_response(),
        _ => next.run(request).await,
    };
    response.headers_mut().insert(
        PROTOCOL_HEADER,
        axum::http::HeaderValue::from(PROTOCOL_VERSION),
    );
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see /v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this endpoint does not take that method",
    )
}

/// What a device's credential may not do: destroy or lock away its subscriber's data, so that a
/// stolen device cannot. It takes the subscriber's log-in session.
fn needs_session(what: &str) -> ApiError {
    ApiError::forbidden(format!(
        "{what} takes your log-in session, not a device's credential: log in (`surplus login`) and try again"
    ))
}

/// Liveness and database reachability.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "The hub is up and its database answers")))]
async fn healthz(State(hub): State<Arc<Hub>>) -> ApiResult<&'static str> {
    hub.store.subscribers_count().await?;
    Ok("ok\n")
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format")))]
async fn metrics(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        hub.metrics.render(),
    )
}

#[utoipa::path(get, path = "/v1/openapi.json", responses((status = 200, description = "This document")))]
async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(),
    )
}

fn validate_credentials(credentials: &Credentials) -> ApiResult<()> {
    let email = credentials.email.trim();
    let valid_email = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(char::is_whitespace)
        && surplus_protocol::unsafe_char(email).is_none();
    if !valid_email {
        return Err(ApiError::validation(format!(
            "email {:?} is not an email address",
            credentials.email
        )));
    }
    if credentials.password.chars().count() < 8 || credentials.password.len() > 1024 {
        return Err(ApiError::validation(
            "password must be 8 to 1024 characters long",
        ));
    }
    if let Some(problem) = password_problem(&credentials.password, email) {
        return Err(ApiError::validation(problem));
    }
    Ok(())
}

/// The fewest guesses (as a power of ten) a password must take by zxcvbn's estimate: logins are
/// rate-limited, so this refuses the passwords tried first (`password`, a run of spaces, the
/// email address), not everything an offline attacker could break.
const MIN_PASSWORD_GUESSES_LOG10: f64 = 6.0;

/// Why `password` is too easy to guess for the account `email`, if it is.
fn password_problem(password: &str, email: &str) -> Option<String> {
    let local = email.split('@').next().unwrap_or_default();
    let estimate = zxcvbn::zxcvbn(password, &[email, local, "surplus"]);
    if estimate.guesses_log10() >= MIN_PASSWORD_GUESSES_LOG10 {
        return None;
    }
    let why = estimate
        .feedback()
        .and_then(|feedback| feedback.warning())
        .map(|warning| format!(" ({})", warning.to_string().trim_end_matches('.')))
        .unwrap_or_default();
    Some(format!(
        "the password is too easy to guess{why}: use a longer one, such as a few uncommon words"
    ))
}

async fn new_session(hub: &Hub, subscriber: Subscriber) -> ApiResult<Session> {
    let token = format!(
        "{}{}",
        surplus_protocol::SESSION_TOKEN_PREFIX,
        random_secret()
    );
    let now = now_ms();
    let expires_at = now + crate::millis(hub.settings.session_ttl);
    hub.store
        .create_session(&token_hash(&token), subscriber.id, now, expires_at)
        .await?;
    Ok(Session {
        token,
        expires_at,
        subscriber,
    })
}

/// Signs up a new subscriber on the standard plan. The answer is the same whether or not the
/// email had an account already, and takes as long (a password hash either way), so that signing
/// up tells nobody who has one; the new subscriber logs in next. An email that had an account
/// keeps it as it was.
#[utoipa::path(post, path = "/v1/signup", request_body = Credentials,
    responses((status = 202, body = SignupAccepted),
               (status = 422, body = surplus_protocol::ErrorBody),
               (status = 429, body = surplus_protocol::ErrorBody, description = "too many sign-ups from this address")))]
async fn signup(
    State(hub): State<Arc<Hub>>,
    ClientAddress(address): ClientAddress,
    Json(credentials): Json<Credentials>,
) -> ApiResult<(StatusCode, Json<SignupAccepted>)> {
    hub.limits.signup(address)?;
    validate_credentials(&credentials)?;
    let email = credentials.email.trim().to_lowercase();
    let password = credentials.password;
    let hash = hub
        .limits
        .hash(move || hash_password(&password))
        .await?
        .map_err(ApiError::internal)?;
    match hub
        .store
        .create_subscriber(&email, &hash, Plan::Standard, now_ms())
        .await
    {
        Ok(_) => tracing::info!(email = ?email, "subscriber signed up"),
        Err(crate::store::StoreError::Conflict(_)) => {
            tracing::info!(email = ?email, %address, "a sign-up for an email that has an account");
        }
        Err(other) => return Err(other.into()),
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(SignupAccepted {
            message: "signed up, unless this email has an account already: log in with it".into(),
        }),
    ))
}

/// Logs in, returning a session token.
#[utoipa::path(post, path = "/v1/login", request_body = Credentials,
    responses((status = 200, body = Session), (status = 401, body = surplus_protocol::ErrorBody),
               (status = 429, body = surplus_protocol::ErrorBody, description = "rate_limited: try again after Retry-After")))]
async fn login(
    State(hub): State<Arc<Hub>>,
    ClientAddress(address): ClientAddress,
    Json(credentials): Json<Credentials>,
) -> ApiResult<Json<Session>> {
    let email = credentials.email.trim().to_lowercase();
    hub.limits.login(address, &email)?;
    let found = hub.store.login(&email).await?;
    let stored = found.as_ref().map_or_else(
        || decoy_hash().to_owned(),
        |login| login.password_hash.clone(),
    );
    let password = credentials.password;
    let matches = hub
        .limits
        .hash(move || verify_password(&password, &stored))
        .await?;
    match found {
        Some(login) if matches => Ok(Json(new_session(&hub, login.subscriber).await?)),
        _ => {
            // `?` escapes control characters: a crafted email cannot write to the operator's
            // terminal through the log.
            tracing::warn!(email = ?email, %address, "failed login");
            hub.metrics.failed_login();
            Err(ApiError::unauthorized("wrong email or password"))
        }
    }
}

/// The subscriber's live sessions, newest first.
#[utoipa::path(get, path = "/v1/sessions", responses((status = 200, body = [SessionInfo])), security(("session" = [])))]
async fn list_sessions(
    State(hub): State<Arc<Hub>>,
    session: CurrentSession,
) -> ApiResult<Json<Vec<SessionInfo>>> {
    let sessions = hub
        .store
        .sessions(session.subscriber.id, now_ms())
        .await?
        .into_iter()
        .map(|row| SessionInfo {
            current: row.token_hash == session.token_hash,
            id: row.token_hash,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
        })
        .collect();
    Ok(Json(sessions))
}

/// Logs out: ends the session the request came with.
#[utoipa::path(delete, path = "/v1/sessions/current", responses((status = 204)), security(("session" = [])))]
async fn end_current_session(
    State(hub): State<Arc<Hub>>,
    session: CurrentSession,
) -> ApiResult<StatusCode> {
    hub.store
        .end_sessions(session.subscriber.id, Some(&session.token_hash))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends one of the subscriber's sessions (on another computer, say).
#[utoipa::path(delete, path = "/v1/sessions/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = surplus_protocol::ErrorBody)), security(("session" = [])))]
async fn end_session(
    State(hub): State<Arc<Hub>>,
    session: CurrentSession,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    match hub
        .store
        .end_sessions(session.subscriber.id, Some(&id))
        .await?
    {
        0 => Err(ApiError::not_found(format!("no session {id} of yours"))),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

/// Logs out everywhere: ends every session of the subscriber's, this one included. Devices keep
/// their own credentials (revoke a device to end those).
#[utoipa::path(delete, path = "/v1/sessions", responses((status = 204)), security(("session" = [])))]
async fn end_all_sessions(
    State(hub): State<Arc<Hub>>,
    session: CurrentSession,
) -> ApiResult<StatusCode> {
    let ended = hub.store.end_sessions(session.subscriber.id, None).await?;
    tracing::info!(email = ?session.subscriber.email, ended, "logged out everywhere");
    Ok(StatusCode::NO_CONTENT)
}

/// The logged-in subscriber.
#[utoipa::path(get, path = "/v1/me", responses((status = 200, body = Subscriber)), security(("session" = [])))]
async fn me(SubscriberCaller(subscriber): SubscriberCaller) -> Json<Subscriber> {
    Json(subscriber)
}

/// The subscriber's devices.
#[utoipa::path(get, path = "/v1/devices", responses((status = 200, body = [Device])), security(("session" = [])))]
async fn list_devices(
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
async fn register_device(
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
async fn get_device(
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
async fn revoke_device(
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
async fn probe_device(
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
async fn probe_all(
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
struct LedgerQuery {
    /// At most this many entries, newest first (default 1000, at most 10000).
    limit: Option<u32>,
}

/// The subscriber's part of the allocation ledger: allocations serving them and allocations of
/// their devices' resources.
#[utoipa::path(get, path = "/v1/allocations", params(LedgerQuery), responses((status = 200, body = [Allocation])), security(("session" = [])))]
async fn allocations(
    State(hub): State<Arc<Hub>>,
    SubscriberCaller(subscriber): SubscriberCaller,
    Query(query): Query<LedgerQuery>,
) -> ApiResult<Json<Vec<Allocation>>> {
    let limit = i64::from(query.limit.unwrap_or(1000).min(10_000));
    Ok(Json(hub.store.ledger(Some(subscriber.id), limit).await?))
}

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
async fn heartbeat(
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
async fn leave(
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
async fn holdings(
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
async fn retain(
    State(hub): State<Arc<Hub>>,
    DeviceCaller(device): DeviceCaller,
) -> ApiResult<Json<surplus_protocol::RetainList>> {
    let hashes = hub.store.blobs_to_retain(device.device_id).await?;
    Ok(Json(surplus_protocol::RetainList { hashes }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct PollQuery {
    /// Seconds to wait for an instruction when none is queued (default 25; at most the hub's limit).
    wait: Option<u64>,
}

/// The device's instructions. Waits (long poll) until one is queued or `wait` seconds pass.
#[utoipa::path(get, path = "/v1/device/instructions", params(PollQuery),
    responses((status = 200, body = InstructionBatch)), security(("device" = [])))]
async fn poll_instructions(
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
async fn acknowledge(
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
async fn upload_blob(
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
struct RetrieveQuery {
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
async fn retrieve_blob(
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
async fn download_blob(
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
async fn place_blob(
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
async fn get_placement(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
    Path(hash): Path<String>,
) -> ApiResult<Json<Placement>> {
    check_hash(&hash)?;
    Ok(Json(
        placement_view(&hub, &hash, caller.subscriber_id()).await?,
    ))
}

/// Keeps the subscriber's passphrase-wrapped master key. The hub cannot open it: that takes the
/// passphrase, which never leaves the subscriber. A device may keep the first one (its first
/// backup makes the key); replacing one takes the subscriber's session, so that a stolen device
/// cannot lock its owner out of their backups.
#[utoipa::path(put, path = "/v1/backup/key", request_body = surplus_protocol::WrappedKeyBody,
    responses((status = 204), (status = 403, body = surplus_protocol::ErrorBody, description = "a device may not replace the key"),
              (status = 422, body = surplus_protocol::ErrorBody)), security(("session" = []), ("device" = [])))]
async fn put_wrapped_key(
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
async fn get_wrapped_key(
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
async fn get_backup_settings(
    State(hub): State<Arc<Hub>>,
    caller: Caller,
) -> ApiResult<Json<surplus_protocol::BackupPlan>> {
    Ok(Json(backup_plan(&hub, &caller).await?))
}

/// Sets household mode and the erasure coding (`coding: null` for the automatic one).
#[utoipa::path(put, path = "/v1/backup/settings", request_body = surplus_protocol::BackupSettings,
    responses((status = 200, body = surplus_protocol::BackupPlan), (status = 422, body = surplus_protocol::ErrorBody)),
    security(("session" = []), ("device" = [])))]
async fn put_backup_settings(
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
async fn start_verify(
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
async fn get_verify(
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
async fn put_backup_object(
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
async fn get_backup_object(
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
async fn list_backup_objects(
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
async fn delete_backup_object(
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
async fn get_backup_health(
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
async fn get_forgotten(
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
async fn recover_forgotten(
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

/// Lets a blob go. It takes the subscriber's session. A placed blob is kept at its holders for
/// the hub's grace period, recoverable (`POST /v1/backup/forgotten/recover`); then its holders
/// are told to delete it, their allocations are released, and the hub drops its staged copy
/// unless another owner still needs it. A blob uploaded but never placed goes at once.
#[utoipa::path(delete, path = "/v1/placements/{hash}", params(("hash" = String, Path)),
    responses((status = 204), (status = 403, body = surplus_protocol::ErrorBody, description = "a device may not delete data"),
              (status = 404, body = surplus_protocol::ErrorBody)), security(("session" = [])))]
async fn drop_placement(
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
