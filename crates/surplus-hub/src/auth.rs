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
    if !token.starts_with(SESSION_TOKEN_PREFIX) {
        return Err(ApiError::unauthorized(
            "this request needs a subscriber's session token: log in first",
        ));
    }
    hub.store
        .session_subscriber(&token_hash(token), now_ms())
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized("the session token is unknown or has expired: log in again")
        })
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
        .store
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

/// Refuses new allocations for a subscriber who is not active, saying why (claim 3).
pub fn require_active(status: SubscriberStatus) -> Result<(), ApiError> {
    match status {
        SubscriberStatus::Active => Ok(()),
        SubscriberStatus::Suspended => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::SubscriberSuspended,
            "the subscription is suspended: no new allocations are made until it is resumed",
        )),
        SubscriberStatus::Cancelled => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::SubscriberCancelled,
            "the subscription is cancelled: no new allocations are made",
        )),
    }
}
