//! Devices: registering one under a subscriber, and what the hub knows and decided of each.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{Spare, StatusReport, UnixMillis};

/// Registers a device under the logged-in subscriber.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterDevice {
    /// A name for people (1-64 characters).
    pub name: String,
}

/// A newly registered device and its credential. The secret is shown once and never again.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceCredentials {
    pub device_id: Uuid,
    pub secret: String,
}

/// A device as its owner and the operator see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Device {
    pub id: Uuid,
    pub name: String,
    /// The owner's email.
    pub subscriber: String,
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
    /// When the latest heartbeat arrived; `None` before the first.
    pub last_heartbeat: Option<UnixMillis>,
    /// Whether a heartbeat arrived recently enough to call the device online.
    pub online: bool,
    /// The fraction of the last 7 days the device was online (since registration, if younger).
    pub availability_7d: f64,
    /// The fraction of the last 30 days the device was online (since registration, if younger).
    pub availability_30d: f64,
    pub spare_storage_bytes: u64,
    pub compute_slots: u32,
    pub spare: Spare,
    /// The latest report; `None` before the first heartbeat.
    pub report: Option<StatusReport>,
}

/// The answer to a request for fresh reports.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProbeRequested {
    /// The devices a `report_status` instruction was queued for.
    pub devices: Vec<Uuid>,
    /// The instructions queued, one per device, in the same order.
    pub instructions: Vec<Uuid>,
}
