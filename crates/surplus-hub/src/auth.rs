//! Who is calling: a subscriber with a session token, or a device with its credential.
//!
//! Passwords are hashed with Argon2id (slow on purpose). Session tokens and device secrets are
//! 256-bit random values, so a fast hash (BLAKE3) of them is enough to store and costs
//! microseconds per request instead of Argon2's tens of milliseconds.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use rand::RngCore;
use surplus_protocol::{
    ErrorCode, SESSION_TOKEN_PREFIX, Subscriber, SubscriberStatus, parse_device_token,
};
use uuid::Uuid;

use crate::error::ApiError;
use crate::hub::Hub;
use crate::now_ms;
use crate::store::DeviceAuth;

/// A fresh random token: 32 bytes, hex.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The stored form of a session token or device secret.
pub fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A hash to verify against when the email is unknown, so that a wrong email takes as long to
/// refuse as a wrong password and log-in does not reveal who has signed up.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&random_secret()).unwrap_or_default())
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized("this request needs an Authorization: Bearer header")
    })?;
    header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be 'Bearer TOKEN'"))
}

/// A logged-in subscriber.
#[derive(Debug, Clone)]
pub struct SubscriberCaller(pub Subscriber);

impl FromRequestParts<Arc<Hub>> for SubscriberCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        subscriber(hub, token).await.map(SubscriberCaller)
    }
}

async fn subscriber(hub: &Hub, token: &str) -> Result<Subscriber, ApiError> {
    current_session(hub, token).await.map(|s| s.subscriber)
}

/// How often at most a session's expiry is moved on as it is used (a write to the database).
const RENEW_EVERY_MS: i64 = 3_600_000;

/// The live session `token` names, renewed: a session lasts `session_ttl` after its last use,
/// and never longer than `session_max_age` after it began.
async fn current_session(hub: &Hub, token: &str) -> Result<CurrentSession, ApiError> {
    if !token.starts_with(SESSION_TOKEN_PREFIX) {
        return Err(ApiError::unauthorized(
            "this request needs a subscriber's session token: log in first",
        ));
    }
    let hash = token_hash(token);
    let now = now_ms();
    let session = hub
        .store
        .session_subscriber(&hash, now)
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized("the session token is unknown or has expired: log in again")
        })?;
    let ttl = crate::millis(hub.settings.session_ttl);
    let max_age = crate::millis(hub.settings.session_max_age);
    if let Some(renewed) = renewed_expiry(now, session.created_at, session.expires_at, ttl, max_age)
    {
        hub.store.renew_session(&hash, renewed, now).await?;
    }
    Ok(CurrentSession {
        subscriber: session.subscriber,
        token_hash: hash,
    })
}

/// The new expiry of a session used at `now`, when it is worth writing: `ttl` after this use,
/// but never past `max_age` after the session began. `None` when the expiry would move by less
/// than an hour (or half the ttl), so that a busy session costs one write an hour, not one per
/// request.
pub fn renewed_expiry(
    now: i64,
    created_at: i64,
    expires_at: i64,
    ttl: i64,
    max_age: i64,
) -> Option<i64> {
    let renewed = now
        .saturating_add(ttl)
        .min(created_at.saturating_add(max_age));
    (renewed - expires_at >= RENEW_EVERY_MS.min(ttl / 2)).then_some(renewed)
}

/// A logged-in subscriber and the session they came with, for the endpoints about sessions.
#[derive(Debug, Clone)]
pub struct CurrentSession {
    pub subscriber: Subscriber,
    pub token_hash: String,
}

impl FromRequestParts<Arc<Hub>> for CurrentSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        current_session(hub, token).await
    }
}

/// An authenticated, unrevoked device.
#[derive(Debug, Clone)]
pub struct DeviceCaller(pub DeviceAuth);

impl FromRequestParts<Arc<Hub>> for DeviceCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        device(hub, token).await.map(DeviceCaller)
    }
}

async fn device(hub: &Hub, token: &str) -> Result<DeviceAuth, ApiError> {
    let (device_id, secret) = parse_device_token(token)
        .ok_or_else(|| ApiError::unauthorized("this request needs a device credential"))?;
    let auth = hub
        .device_auth(device_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown device credential"))?;
    // Compare hashes as blake3::Hash values: their equality is constant-time.
    let presented = blake3::hash(secret.as_bytes());
    let stored = blake3::Hash::from_hex(&auth.secret_hash).map_err(ApiError::internal)?;
    if presented != stored {
        return Err(ApiError::unauthorized("unknown device credential"));
    }
    if auth.revoked {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::DeviceRevoked,
            "this device has been revoked by its owner; register it again",
        ));
    }
    Ok(auth)
}

/// Either kind of caller, for endpoints both may use (blob upload and download, placements).
#[derive(Debug, Clone)]
pub enum Caller {
    Subscriber(Subscriber),
    Device(DeviceAuth),
}

impl Caller {
    pub fn subscriber_id(&self) -> Uuid {
        match self {
            Caller::Subscriber(s) => s.id,
            Caller::Device(d) => d.subscriber_id,
        }
    }

    pub fn status(&self) -> SubscriberStatus {
        match self {
            Caller::Subscriber(s) => s.status,
            Caller::Device(d) => d.status,
        }
    }

    pub fn device_id(&self) -> Option<Uuid> {
        match self {
            Caller::Subscriber(_) => None,
            Caller::Device(d) => Some(d.device_id),
        }
    }
}

impl FromRequestParts<Arc<Hub>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if token.starts_with(SESSION_TOKEN_PREFIX) {
            subscriber(hub, token).await.map(Caller::Subscriber)
        } else {
            device(hub, token).await.map(Caller::Device)
        }
    }
}

/// Refuses new data for a subscriber who is not active, saying why. A suspended or
/// cancelled account is read-only: its owner may still list, download and restore what is
/// theirs, and delete it, but nothing new is staged, placed, kept or run for them.
pub fn require_active(status: SubscriberStatus) -> Result<(), ApiError> {
    match status {
        SubscriberStatus::Active => Ok(()),
        SubscriberStatus::Suspended => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::SubscriberSuspended,
            "the subscription is suspended: your backups can be restored, but nothing new is kept or run until it is resumed",
        )),
        SubscriberStatus::Cancelled => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::SubscriberCancelled,
            "the subscription is cancelled: your backups can be restored, but nothing new is kept or run",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    #[test]
    fn a_session_lives_a_week_after_its_last_use_and_a_month_at_most() {
        let (ttl, max_age) = (7 * DAY, 30 * DAY);
        // Made at 0, it expires at 7 days. Used after 2 hours: renewed to 7 days from then.
        assert_eq!(
            renewed_expiry(2 * HOUR, 0, 7 * DAY, ttl, max_age),
            Some(2 * HOUR + 7 * DAY)
        );
        // Used again a minute later: not worth a write.
        assert_eq!(
            renewed_expiry(2 * HOUR + 60_000, 0, 2 * HOUR + 7 * DAY, ttl, max_age),
            None
        );
        // Used every day, it still ends 30 days after it began.
        assert_eq!(renewed_expiry(29 * DAY, 0, 35 * DAY, ttl, max_age), None);
        assert_eq!(
            renewed_expiry(25 * DAY, 0, 29 * DAY, ttl, max_age),
            Some(30 * DAY)
        );
    }
}
