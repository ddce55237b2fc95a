//! The state the worker's loops share: the hub connection, the settings, the vault, the probe.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use surplus_protocol::{ComfortHold, StatusReport, UserActivity, VaultReport};
use tokio::sync::Notify;

use super::journal::Journal;
use super::state::{AgentState, IdleReading};
use crate::client::HubClient;
use crate::clock::{now_ms, utc_offset_minutes};
use crate::compute::ComfortRules;
use crate::probe::{Comfort, Probe, Sample};
use crate::settings::Settings;
use crate::untrusted;
use crate::vault::{Vault, VaultError};

/// The state both loops share.
pub(super) struct Shared {
    pub(super) data_dir: PathBuf,
    pub(super) client: HubClient,
    pub(super) token: String,
    pub(super) probe: Mutex<Box<dyn Probe>>,
    pub(super) settings: Mutex<Settings>,
    pub(super) vault: Mutex<Option<Vault>>,
    pub(super) state: Mutex<AgentState>,
    pub(super) journal: Mutex<Journal>,
    /// Wakes the reporter for an immediate heartbeat.
    pub(super) report_now: Notify,
    /// Asks the settings to be read again at once (rather than at the next watch tick).
    pub(super) settings_changed: Notify,
    /// Wakes the backup loop for a backup now.
    pub(super) backup_now: Notify,
    /// Donated compute: the sandbox and the tasks running in it.
    pub(super) compute: crate::compute::Compute,
    /// Whether the machine ran on battery at the latest full sample.
    pub(super) on_battery: Mutex<Option<bool>>,
    /// The packs of the latest snapshot this agent made, whose states at the hub say how well
    /// off the backup is ([`AgentState::backup_protection`]).
    pub(super) snapshot_packs: Mutex<std::collections::BTreeSet<String>>,
    /// When the hub was last asked how well off the latest backup is.
    pub(super) protection_asked: Mutex<Option<tokio::time::Instant>>,
    /// The user's comfort rules, which the reporter and the compute guard both judge by.
    pub(super) comfort: Mutex<ComfortRules>,
    /// The machine's logical cores at the latest full sample (0 before the first).
    pub(super) cores: std::sync::atomic::AtomicU32,
    /// Requests that failed to reach the hub: after one, the vault is checked again against what
    /// the hub knows (`garbage`), since a hub restored from a backup was away.
    pub(super) failures: Failures,
    /// See [`super::WorkerOptions::disk_overrides`].
    pub(super) disk_overrides: Option<PathBuf>,
}

impl Shared {
    pub(super) fn settings(&self) -> Settings {
        self.settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The comfort rule that holds compute after reading `comfort` now, if any.
    pub(super) fn comfort_hold(
        &self,
        settings: &Settings,
        comfort: Comfort,
    ) -> Option<ComfortHold> {
        self.comfort
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .judge(&settings.compute, comfort, now_ms())
    }

    /// What a task may ask of this device at most, from the cores last seen and the user's
    /// share of them.
    pub(super) fn task_ceilings(&self) -> untrusted::TaskCeilings {
        let cores = match self.cores.load(std::sync::atomic::Ordering::Relaxed) {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            seen => usize::try_from(seen).unwrap_or(1),
        };
        untrusted::TaskCeilings::for_device(cores, self.settings().compute.cores_percent)
    }

    pub(super) fn update_state(&self, change: impl FnOnce(&mut AgentState)) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut state);
        state.updated_at = now_ms();
        state.save(&self.data_dir);
    }

    /// Opens the vault once storage is consented (or when it already exists, to report what it
    /// holds), and keeps its limits in line with the settings and the disk.
    pub(super) fn sync_vault(
        &self,
        settings: &Settings,
        disk: crate::DiskSpace,
    ) -> Result<bool, VaultError> {
        let mut vault = self.vault.lock().unwrap_or_else(PoisonError::into_inner);
        let dir = settings.vault_dir(&self.data_dir);
        // The user moved the vault: an empty one moves at once (its reservation given back); one
        // that holds others' data stays where it is until that data has moved away.
        if let Some(open) = vault.as_ref()
            && open.dir() != dir
        {
            if open.used_bytes() == 0 {
                let old = open.dir().to_owned();
                *vault = None;
                if let Err(error) = std::fs::remove_dir_all(&old) {
                    tracing::warn!(%error, dir = %old.display(), "removing the old, empty vault");
                }
                tracing::info!(from = %old.display(), to = %dir.display(), "vault moved");
            } else {
                tracing::warn!(
                    dir = %open.dir().display(),
                    "the vault holds data for others; it stays where it is until that data has moved"
                );
            }
        }
        if vault.is_none() && (settings.consent.storage || dir.exists()) {
            let limits = self.limits(settings, disk, None);
            let gauge = crate::probe::OverrideGauge::new(
                crate::disk::FilesystemGauge,
                self.disk_overrides.clone(),
            );
            *vault = Some(Vault::open_with_gauge(&dir, limits, Box::new(gauge))?);
        }
        let Some(vault) = vault.as_mut() else {
            return Ok(false);
        };
        let limits = self.limits(settings, disk, Some(vault));
        if limits != vault.limits() {
            vault.set_limits(limits)?;
        }
        vault.reconcile(disk)
    }

    /// Without consent the vault's quota is zero: it reserves nothing and takes nothing new, and
    /// what it holds is reported as over quota so that the hub moves it away.
    fn limits(
        &self,
        settings: &Settings,
        disk: crate::DiskSpace,
        vault: Option<&Vault>,
    ) -> crate::vault::VaultLimits {
        let disk = vault.map_or(disk, |v| v.disk_without_vault(disk));
        let mut limits = settings.vault_limits(disk);
        if !settings.consent.storage {
            limits.quota_bytes = 0;
        }
        limits
    }

    pub(super) fn vault_report(&self) -> Option<VaultReport> {
        self.vault
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(Vault::report)
    }

    /// Measures the machine and builds the report the hub decides from.
    pub(super) fn report(&self) -> StatusReport {
        let settings = self.settings();
        let vault_dir = settings.vault_dir(&self.data_dir);
        let (sample, idle_source) = {
            let mut probe = self.probe.lock().unwrap_or_else(PoisonError::into_inner);
            let sample = probe.sample(&vault_dir);
            (sample, probe.idle_source())
        };
        // Saved with the heartbeat's outcome, which follows.
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .idle = idle_source.map(|source| IdleReading {
            source: source.to_string(),
            idle_seconds: match sample.user {
                UserActivity::Idle { idle_seconds } => Some(idle_seconds),
                UserActivity::None | UserActivity::Unknown => None,
            },
            unknown: sample.user == UserActivity::Unknown,
            read_at: now_ms(),
        });
        *self
            .on_battery
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = sample.on_battery;
        self.cores
            .store(sample.cores, std::sync::atomic::Ordering::Relaxed);
        match self.sync_vault(&settings, sample.disk) {
            Ok(true) => tracing::warn!(
                "the disk is filling: the vault's reservation shrank to keep the free-space floor"
            ),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "keeping the vault in line with the settings"),
        }
        let vault = self.vault_report().unwrap_or(VaultReport {
            quota_bytes: 0,
            used_bytes: 0,
            reserved_bytes: 0,
            floor_bytes: settings.effective_floor(sample.disk),
        });
        let comfort = self.comfort_hold(&settings, sample.comfort);
        build_report(&settings, &sample, vault, comfort)
    }
}

/// Runs `work` on the vault in a blocking thread. `None` when there is no vault.
pub(super) async fn with_vault<T: Send + 'static>(
    shared: &Arc<Shared>,
    work: impl FnOnce(&mut Vault) -> T + Send + 'static,
) -> Option<T> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let mut vault = shared.vault.lock().unwrap_or_else(PoisonError::into_inner);
        vault.as_mut().map(work)
    })
    .await
    .ok()
    .flatten()
}

/// Puts the settings and a sample of the machine into the hub's report form.
pub fn build_report(
    settings: &Settings,
    sample: &Sample,
    vault: VaultReport,
    comfort: Option<ComfortHold>,
) -> StatusReport {
    StatusReport {
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        os: std::env::consts::OS.to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        utc_offset_minutes: utc_offset_minutes(),
        cpu: surplus_protocol::CpuReport {
            cores: sample.cores,
            busy_percent: sample.busy_percent.clamp(0.0, 100.0),
        },
        memory: sample.memory.clone(),
        user: sample.user,
        on_battery: sample.on_battery,
        disk: surplus_protocol::DiskReport {
            total_bytes: sample.disk.total_bytes,
            free_bytes: sample.disk.free_bytes,
        },
        vault,
        consent: settings.consent,
        limits: settings.compute_limits(),
        upload_bytes_per_second: settings.bandwidth_bytes_per_second,
        pause: settings.pause,
        comfort,
    }
}

/// Requests that failed to reach the hub, counted: the agent's loops count each failure, and
/// the report loop reads the count before each heartbeat it sends.
#[derive(Debug, Default)]
pub(super) struct Failures(AtomicU64);

impl Failures {
    /// A request failed to reach the hub (or a collection could not ask it).
    pub(super) fn count(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn so_far(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
