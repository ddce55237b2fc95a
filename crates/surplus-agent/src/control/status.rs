//! What `surplus status` shows of a device, gathered in one place: the settings, the running
//! agent's state, and what the hub says of backups, credit and snapshots when it answers quickly.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use surplus_protocol::{BackupPlan, ComputeLimits, Consent, Credits, PauseState};
use uuid::Uuid;

use super::{Control, Result, no_passphrase};
use crate::clock::now_ms;
use crate::worker::{AgentState, WorkerError, lock_data_dir};

/// How long the status waits for the hub before leaving its parts out.
const HUB_WAIT: Duration = Duration::from_secs(5);

/// A device's status, for a person or a script.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct StatusView {
    pub data_dir: PathBuf,
    pub hub: Option<String>,
    pub email: Option<String>,
    pub device_id: Option<Uuid>,
    pub device_name: Option<String>,
    pub credentials_backend: String,
    pub consent: Consent,
    pub pause: PauseState,
    pub paused: bool,
    /// Whether backups are paused (`surplus backup pause`), apart from lending.
    pub backup_pause: PauseState,
    pub vault_dir: PathBuf,
    /// What the vault may hold now: the quota, or 0 without storage consent.
    pub quota_bytes: u64,
    pub floor_bytes: u64,
    pub limits: ComputeLimits,
    pub bandwidth_bytes_per_second: Option<u64>,
    pub agent: Option<AgentState>,
    /// Whether an agent is running on this data directory now.
    pub agent_running: bool,
    /// How backups are spread, as the hub sees it (absent when it cannot be asked).
    pub backup: Option<BackupPlan>,
    /// Compute credit, earned and spent (absent when the hub cannot be asked).
    pub credits: Option<Credits>,
    /// Snapshots per state (`protected`, `uploading`, `repairing`, `at_risk`, `lost`); absent
    /// when the hub cannot be asked or this device has no backup key.
    pub snapshots: Option<BTreeMap<&'static str, u64>>,
}

impl Control {
    /// The device's status. What needs the hub is left out when it does not answer within
    /// [`HUB_WAIT`]; the status never asks for the recovery passphrase.
    pub async fn status_view(&self) -> Result<StatusView> {
        let settings = self.settings()?;
        let credentials = self.credentials()?;
        let device = credentials.device()?;
        let session = credentials.session()?;
        let vault_dir = settings.vault_dir(&self.data_dir);
        let disk =
            crate::disk::disk_space(&vault_dir).map_err(|source| super::ControlError::Io {
                path: vault_dir.clone(),
                source,
            })?;
        let agent_running = matches!(
            lock_data_dir(&self.data_dir),
            Err(WorkerError::AlreadyRunning(_))
        );
        let (backup, credits, snapshots) = match (self.client(), self.any_token()) {
            (Ok(client), Ok(token)) => {
                let quiet = Control {
                    passphrase: no_passphrase,
                    ..self.clone()
                };
                let ask = async {
                    tokio::join!(
                        client.backup_plan(&token),
                        client.credits(&token),
                        quiet.snapshots()
                    )
                };
                match tokio::time::timeout(HUB_WAIT, ask).await {
                    Ok((backup, credits, snapshots)) => (
                        backup.ok(),
                        credits.ok(),
                        snapshots.ok().map(|snapshots| {
                            let mut counts = BTreeMap::new();
                            for snapshot in snapshots {
                                *counts.entry(snapshot.state).or_insert(0) += 1;
                            }
                            counts
                        }),
                    ),
                    Err(_) => (None, None, None),
                }
            }
            _ => (None, None, None),
        };
        Ok(StatusView {
            data_dir: self.data_dir.clone(),
            hub: self.hub.clone().or(settings.hub_url.clone()),
            email: session.map(|s| s.email),
            device_id: device.map(|d| d.device_id),
            device_name: settings.device_name.clone(),
            credentials_backend: credentials.backend().to_string(),
            consent: settings.consent,
            pause: settings.pause,
            paused: settings.pause.is_paused(now_ms()),
            backup_pause: settings.backup.pause,
            quota_bytes: if settings.consent.storage {
                settings.effective_quota(disk)
            } else {
                0
            },
            floor_bytes: settings.effective_floor(disk),
            vault_dir,
            limits: settings.compute_limits(),
            bandwidth_bytes_per_second: settings.bandwidth_bytes_per_second,
            agent: AgentState::load(&self.data_dir),
            agent_running,
            backup,
            credits,
            snapshots,
        })
    }
}
