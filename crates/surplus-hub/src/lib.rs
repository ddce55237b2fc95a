//! The Surplus hub: the hosted service that knows every subscriber and device.
//!
//! From the devices' heartbeats it decides which resources are spare ([`policy`]), allocates
//! portions of them and records every allocation in a ledger ([`store`]), and instructs devices
//! through per-device queues that they long-poll ([`api`], [`hub`]). Blobs travel between devices
//! through its staging store ([`staging`]): home PCs are often off and behind NAT, so the hub
//! stores and forwards, and never connects to a device. Operators drive it with `surplus-hub
//! admin ...` ([`admin`]).
//!
//! The hub shares only `surplus-protocol` with the agent.

pub mod admin;
pub mod api;
pub mod auth;
pub mod challenge;
pub mod compute;
pub mod config;
pub mod error;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod policy;
pub mod scheduler;
pub mod staging;
pub mod store;
pub mod validation;

pub use hub::{Hub, Settings};

/// The current time in milliseconds since the Unix epoch.
pub fn now_ms() -> surplus_protocol::UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
