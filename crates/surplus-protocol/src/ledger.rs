//! The allocation ledger: every portion of a device's spare resources given to a subscriber,
//! and what used it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::UnixMillis;

/// One entry of the allocation ledger: a portion of one device's spare resource, given to one
/// subscriber for one purpose, and the instructions that used it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Allocation {
    pub id: Uuid,
    /// The email of the subscriber the resource serves.
    pub subscriber: String,
    /// The device whose spare resource is allocated.
    pub device_id: Uuid,
    pub device_name: String,
    /// The email of the device's owner (the donor).
    pub donor: String,
    pub kind: ResourceKind,
    /// Bytes for storage; for compute, core-milliseconds: the run's time budget while it runs,
    /// the time it used once it ended.
    pub amount: u64,
    /// What it serves, e.g. `blob:<hash>` or `task:<id>`.
    pub purpose: String,
    pub state: AllocationState,
    /// The instructions issued against this allocation, oldest first.
    pub instructions: Vec<Uuid>,
    pub created_at: UnixMillis,
    pub released_at: Option<UnixMillis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Storage,
    Compute,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Storage => "storage",
            Self::Compute => "compute",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "storage" => Some(Self::Storage),
            "compute" => Some(Self::Compute),
            _ => None,
        }
    }
}

/// Where an allocation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AllocationState {
    /// Made; its instruction has not been carried out yet.
    Pending,
    /// In use: the device confirmed it.
    Active,
    /// The device gave the resource up (quota shrunk, consent withdrawn): its data must move.
    Evacuating,
    /// Given back.
    Released,
    /// The device could not carry it out.
    Failed,
    /// Its copy is gone: the holder was counted lost (silent past the hub's `lost_after`,
    /// revoked, disqualified, or a hand-over unfinished by its deadline), or the copy failed an
    /// audit. What it held is rebuilt elsewhere.
    Lost,
}

impl AllocationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Evacuating => "evacuating",
            Self::Released => "released",
            Self::Failed => "failed",
            Self::Lost => "lost",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "active" => Some(Self::Active),
            "evacuating" => Some(Self::Evacuating),
            "released" => Some(Self::Released),
            "failed" => Some(Self::Failed),
            "lost" => Some(Self::Lost),
            _ => None,
        }
    }
}
