//! The HTTP API under `/v1`, plus `/healthz` and `/metrics`.
//!
//! Handlers translate between HTTP and the [`Hub`]; every failure leaves as an [`ApiError`] with
//! a stable code. The OpenAPI document is generated from their annotations (see `openapi.rs`).
//! This module holds the router, the extractors and middleware every handler shares; the
//! handlers are grouped by concern: `accounts` (sign-up, sessions), `devices` (a subscriber's
//! devices and ledger), `device` (what a device asks with its own credential), `blobs` (staging
//! and placements), `backup` and `compute`.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use surplus_protocol::ErrorCode;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;

mod accounts;
mod backup;
mod blobs;
pub(crate) mod compute;
mod device;
mod devices;

// The handlers as `crate::api::*`, which is how the OpenAPI document names (and tags) them.
pub(crate) use accounts::*;
pub(crate) use backup::*;
pub(crate) use blobs::*;
pub(crate) use device::*;
pub(crate) use devices::*;

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
