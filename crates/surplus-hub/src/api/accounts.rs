//! Signing up, logging in and out, and the subscriber's sessions.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use surplus_protocol::{Credentials, Plan, Session, SessionInfo, SignupAccepted, Subscriber};

use super::{Json, Path};
use crate::auth::{
    CurrentSession, SubscriberCaller, decoy_hash, hash_password, random_secret, token_hash,
    verify_password,
};
use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;
use crate::limits::ClientAddress;
use crate::now_ms;

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
pub(crate) async fn signup(
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
pub(crate) async fn login(
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
pub(crate) async fn list_sessions(
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
pub(crate) async fn end_current_session(
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
pub(crate) async fn end_session(
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
pub(crate) async fn end_all_sessions(
    State(hub): State<Arc<Hub>>,
    session: CurrentSession,
) -> ApiResult<StatusCode> {
    let ended = hub.store.end_sessions(session.subscriber.id, None).await?;
    tracing::info!(email = ?session.subscriber.email, ended, "logged out everywhere");
    Ok(StatusCode::NO_CONTENT)
}

/// The logged-in subscriber.
#[utoipa::path(get, path = "/v1/me", responses((status = 200, body = Subscriber)), security(("session" = [])))]
pub(crate) async fn me(SubscriberCaller(subscriber): SubscriberCaller) -> Json<Subscriber> {
    Json(subscriber)
}
