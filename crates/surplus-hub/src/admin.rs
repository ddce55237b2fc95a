//! The operator's commands: `surplus-hub admin ...`.
//!
//! They act on the database directly, so they work whether or not a hub is serving; what they
//! queue reaches devices through the serving hubs, which watch the database for new instructions.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use surplus_protocol::{Allocation, Device, InstructionResult, Plan, Subscriber, SubscriberStatus};
use uuid::Uuid;

use crate::hub::Hub;
use crate::scheduler::{self, NewAllocation};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no subscriber with email {0}")]
    NoSuchSubscriber(String),
    #[error("{email} is {status}: the service is not started for an inactive subscriber")]
    Inactive { email: String, status: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Backup(#[from] crate::backup_db::BackupError),
}

impl AdminError {
    /// The process exit code: 2 for a wrong argument, 3 for a refusal, 1 for a fault.
    pub fn exit_code(&self) -> i32 {
        match self {
            AdminError::NoSuchSubscriber(_) => 2,
            AdminError::Inactive { .. } => 3,
            AdminError::Backup(crate::backup_db::BackupError::Exists(_)) => 2,
            AdminError::Store(_) | AdminError::Backup(_) => 1,
        }
    }
}

pub async fn subscribers(hub: &Hub) -> Result<Vec<Subscriber>, AdminError> {
    Ok(hub.store.subscribers().await?)
}

pub async fn set_status(
    hub: &Hub,
    email: &str,
    status: SubscriberStatus,
) -> Result<Subscriber, AdminError> {
    let email = email.trim().to_lowercase();
    match hub.store.set_subscriber_status(&email, status).await {
        Err(StoreError::NotFound) => Err(AdminError::NoSuchSubscriber(email)),
        other => Ok(other?),
    }
}

pub async fn set_plan(hub: &Hub, email: &str, plan: Plan) -> Result<Subscriber, AdminError> {
    let email = email.trim().to_lowercase();
    match hub.store.set_subscriber_plan(&email, plan).await {
        Err(StoreError::NotFound) => Err(AdminError::NoSuchSubscriber(email)),
        other => Ok(other?),
    }
}

pub async fn devices(hub: &Hub) -> Result<Vec<Device>, AdminError> {
    let mut devices = Vec::new();
    for row in hub.store.devices(None).await? {
        devices.push(hub.device_view(row).await?);
    }
    Ok(devices)
}

pub async fn ledger(
    hub: &Hub,
    email: Option<&str>,
    limit: i64,
) -> Result<Vec<Allocation>, AdminError> {
    let subscriber = match email {
        Some(email) => Some(subscriber_by_email(hub, email).await?.id),
        None => None,
    };
    Ok(hub.store.ledger(subscriber, limit).await?)
}

async fn subscriber_by_email(hub: &Hub, email: &str) -> Result<Subscriber, AdminError> {
    let email = email.trim().to_lowercase();
    hub.store
        .login(&email)
        .await?
        .map(|login| login.subscriber)
        .ok_or(AdminError::NoSuchSubscriber(email))
}

/// What `start` did.
#[derive(Debug, Serialize)]
pub struct Started {
    pub subscriber: String,
    pub devices: Vec<StartedDevice>,
    pub allocations: Vec<StartedAllocation>,
}

#[derive(Debug, Serialize)]
pub struct StartedDevice {
    pub id: Uuid,
    pub name: String,
    /// Whether the device answered the request for a fresh report in time.
    pub reached: bool,
    pub spare_storage_bytes: u64,
    pub compute_slots: u32,
    /// Why storage is not spare, when it is not.
    pub storage_reason: Option<String>,
    pub compute_reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StartedAllocation {
    pub allocation_id: Uuid,
    pub instruction_id: Uuid,
    pub device_id: Uuid,
    pub purpose: String,
    pub bytes: u64,
}

impl From<NewAllocation> for StartedAllocation {
    fn from(made: NewAllocation) -> Self {
        StartedAllocation {
            allocation_id: made.allocation_id,
            instruction_id: made.instruction_id,
            device_id: made.device_id,
            purpose: format!("blob:{}", made.hash),
            bytes: made.size,
        }
    }
}

/// Starts the service for a subscriber: checks their standing, asks every one of
/// their devices for a fresh report, waits up to `wait` for the answers, then allocates from
/// what those devices have spare. Devices that are offline keep their request queued.
pub async fn start(hub: &Hub, email: &str, wait: Duration) -> Result<Started, AdminError> {
    let subscriber = subscriber_by_email(hub, email).await?;
    if subscriber.status != SubscriberStatus::Active {
        return Err(AdminError::Inactive {
            email: subscriber.email,
            status: subscriber.status.as_str(),
        });
    }
    let devices: Vec<_> = hub
        .store
        .devices(Some(subscriber.id))
        .await?
        .into_iter()
        .filter(|d| d.revoked_at.is_none())
        .collect();
    let ids: Vec<Uuid> = devices.iter().map(|d| d.id).collect();
    let probes = hub.probe(&ids).await?;
    let mut reached: HashMap<Uuid, bool> = ids.iter().map(|&id| (id, false)).collect();
    let deadline = tokio::time::Instant::now() + wait;
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    loop {
        for probe in &probes {
            let row = hub.store.instruction(probe.id).await?;
            let answered = row.state == crate::store::InstructionState::Done
                && row
                    .result
                    .as_deref()
                    .and_then(|r| serde_json::from_str::<InstructionResult>(r).ok())
                    .is_some_and(|r| matches!(r, InstructionResult::Reported { .. }));
            reached.insert(row.device_id, answered);
        }
        if reached.values().all(|&r| r) || tokio::time::Instant::now() >= deadline {
            break;
        }
        ticker.tick().await;
    }
    let made = scheduler::place_pending(
        hub,
        scheduler::Scope {
            donors: Some(&ids),
            ..Default::default()
        },
    )
    .await?;
    let mut report = Vec::with_capacity(devices.len());
    for id in ids {
        let row = hub.store.device(id).await?;
        report.push(StartedDevice {
            id,
            name: row.name,
            reached: reached.get(&id).copied().unwrap_or(false),
            spare_storage_bytes: row.spare.storage_bytes,
            compute_slots: row.spare.compute_slots,
            storage_reason: row.spare.storage_reason.map(|r| r.describe().to_owned()),
            compute_reason: row.spare.compute_reason.map(|r| r.describe().to_owned()),
        });
    }
    Ok(Started {
        subscriber: subscriber.email,
        devices: report,
        allocations: made.into_iter().map(StartedAllocation::from).collect(),
    })
}
