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
pub mod backup_db;
pub mod challenge;
pub mod compute;
pub mod config;
pub mod error;
pub mod health;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod policy;
pub mod repair;
pub mod scheduler;
pub mod settings;
pub mod staging;
pub mod store;
pub mod transport;
pub mod validation;

pub use hub::{Hub, Settings};

/// The current time in milliseconds since the Unix epoch.
pub fn now_ms() -> surplus_protocol::UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A duration in milliseconds, as times are counted: at most `i64::MAX / 2`, so that adding one
/// to a time cannot overflow (whatever a setting says).
pub fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).map_or(i64::MAX / 2, |ms| ms.min(i64::MAX / 2))
}

/// Makes the folder `path` and its missing parents, each new one open to the hub's user only
/// (0700 on Unix): the database and staging are nobody else's business on the machine.
pub(crate) fn private_dir_all(path: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Options that create a file open to the hub's user only (0600 on Unix).
pub(crate) fn private_file() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}
