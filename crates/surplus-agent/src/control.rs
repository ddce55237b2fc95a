//! What a front end asks of the agent core, for the tray app and the `surplus` command alike:
//! joining a hub, the disks a vault may go on, the recovery passphrase, snapshots and restores,
//! and, for the tray, the one-line status and the alerts a person must see.
//!
//! Front ends only translate: every decision about what a setting means, what is shown as the
//! device's state and when the user is told something is made here, where it is tested without a
//! window.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use surplus_backup::repo::{Progress, Repository};
use surplus_protocol::{Credentials, PauseState, SpareReason, UnixMillis};

use crate::backup::{HubStore, KeyError};
use crate::client::{ClientError, HubClient, HubTrust};
use crate::credentials::{CredentialStore, DeviceCredential, SessionCredential};
use crate::passphrase::Request;
use crate::settings::Settings;
use crate::worker::AgentState;

mod status;

pub use status::StatusView;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no hub is set: sign up or log in first")]
    NoHub,
    #[error("not logged in: sign up or log in first")]
    NotLoggedIn,
    #[error("no folders to back up")]
    NoFolders,
    #[error("{0}")]
    Input(String),
    #[error("no snapshot {0}")]
    NoSnapshot(String),
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Backup(#[from] surplus_backup::repo::BackupError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Worker(Box<crate::worker::WorkerError>),
}

impl From<crate::worker::WorkerError> for ControlError {
    fn from(error: crate::worker::WorkerError) -> Self {
        ControlError::Worker(Box::new(error))
    }
}

type Result<T, E = ControlError> = std::result::Result<T, E>;

/// A data directory's settings, credentials and backups, as a front end sees them.
#[derive(Debug, Clone)]
pub struct Control {
    data_dir: PathBuf,
    /// A hub named for this use only, over the one in the settings.
    hub: Option<String>,
    /// What to trust on the way to it, over what the settings say.
    trust: Option<HubTrust>,
    /// Asks for the recovery passphrase when a device without the backup key reads backups.
    passphrase: fn(Request<'_>) -> Option<String>,
}

/// Signing up or logging in, and registering this device if it is not yet.
#[derive(Debug, Clone, Deserialize)]
pub struct Enrollment {
    pub hub: String,
    pub email: String,
    pub password: String,
    pub signup: bool,
    pub device_name: String,
}

/// Who this device belongs to, after [`Control::enroll`].
#[derive(Debug, Clone, Serialize)]
pub struct Enrolled {
    pub email: String,
    pub plan: String,
    pub device_id: uuid::Uuid,
    /// Whether the subscriber already has a backup key at the hub (made on another device): the
    /// recovery passphrase is then typed, not chosen.
    pub has_backup_key: bool,
}

/// A disk the vault may go on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskChoice {
    /// Where it is mounted; the vault goes in a hidden folder there (or, for the disk that holds
    /// the data directory, inside it).
    pub mount_point: PathBuf,
    pub name: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// The free space donation never takes the disk below (the default floor).
    pub floor_bytes: u64,
    /// The largest quota the disk allows now: its free space minus the floor.
    pub max_quota_bytes: u64,
    /// The quota offered if the user does not choose: 10% of the free space, capped.
    pub default_quota_bytes: u64,
    /// Whether the vault is on this disk now.
    pub current: bool,
}

/// What the user chose on a page of the wizard or of the settings; `None` leaves a setting as it
/// is.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Choices {
    pub consent_storage: Option<bool>,
    pub consent_compute: Option<bool>,
    /// The mount point of the disk the vault goes on (one of [`Control::disks`]).
    pub vault_disk: Option<PathBuf>,
    pub quota_bytes: Option<u64>,
    /// The folders backed up: all of them, replacing the list.
    pub folders: Option<Vec<PathBuf>>,
    pub cores_percent: Option<u8>,
}

/// A snapshot, with how well it is protected.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotView {
    pub id: String,
    pub time: UnixMillis,
    pub hostname: String,
    pub files: u64,
    pub bytes: u64,
    /// As well off as its worst pack: `protected`, `uploading`, `repairing` (restorable, shards
    /// being rebuilt), `at_risk` (restorable only if holders away longer than usual come back)
    /// or `lost`.
    pub state: &'static str,
}

/// One entry of a snapshot's tree.
#[derive(Debug, Clone, Serialize)]
pub struct EntryView {
    pub name: String,
    pub kind: &'static str,
    pub size: u64,
    pub mode: String,
    pub mtime: UnixMillis,
}

/// A device that left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    pub vault_dir: PathBuf,
    /// Bytes still in the vault that nobody's allocation claims (a copy that arrived after its
    /// allocation ended, say): the device no longer answers to the hub, so they are the user's
    /// to delete with the folder.
    pub leftover_bytes: u64,
}

impl Control {
    pub fn new(data_dir: &Path) -> Control {
        Control {
            data_dir: data_dir.to_owned(),
            hub: None,
            trust: None,
            passphrase: no_passphrase,
        }
    }

    /// Asks `passphrase` for the recovery passphrase when this device has no backup key yet (a
    /// terminal can ask; the tray app sets the key up in its wizard instead).
    pub fn with_passphrase(mut self, passphrase: fn(Request<'_>) -> Option<String>) -> Control {
        self.passphrase = passphrase;
        self
    }

    /// Speaks to `hub` (when given) instead of the hub in the settings.
    pub fn with_hub(mut self, hub: Option<String>) -> Control {
        self.hub = hub;
        self
    }

    /// Trusts `trust` (when given) on the way to the hub instead of what the settings say.
    pub fn with_trust(mut self, trust: Option<HubTrust>) -> Control {
        self.trust = trust;
        self
    }

    /// What to trust on the way to the hub: given, else remembered, and the environment's.
    pub fn trust(&self) -> Result<HubTrust> {
        let trust = match &self.trust {
            Some(trust) => trust.clone(),
            None => self.settings()?.hub_trust,
        };
        Ok(trust.with_environment())
    }

    /// The hub given for this use ([`Control::with_hub`]), over the settings', if any.
    pub fn hub(&self) -> Option<&str> {
        self.hub.as_deref()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn settings(&self) -> Result<Settings> {
        Ok(Settings::load(&self.data_dir)?)
    }

    /// Changes the settings, refusing a change that leaves them invalid. A running worker picks
    /// the file up within its watch interval.
    pub fn update(&self, change: impl FnOnce(&mut Settings)) -> Result<Settings> {
        let mut settings = self.settings()?;
        change(&mut settings);
        settings.validate()?;
        self.create_dir()?;
        settings.save(&self.data_dir)?;
        Ok(settings)
    }

    pub fn credentials(&self) -> Result<CredentialStore> {
        self.create_dir()?;
        Ok(CredentialStore::open(&self.data_dir)?)
    }

    fn create_dir(&self) -> Result<()> {
        crate::private_fs::dir_all(&self.data_dir).map_err(|source| ControlError::Io {
            path: self.data_dir.clone(),
            source,
        })
    }

    /// The hub's address: the one given with [`Control::with_hub`], else the settings'.
    pub fn hub_url(&self) -> Result<String> {
        match &self.hub {
            Some(url) => Ok(url.clone()),
            None => self.settings()?.hub_url.ok_or(ControlError::NoHub),
        }
    }

    pub fn client(&self) -> Result<HubClient> {
        Ok(HubClient::new(&self.hub_url()?, &self.trust()?)?)
    }

    pub fn session(&self) -> Result<SessionCredential> {
        self.credentials()?
            .session()?
            .ok_or(ControlError::NotLoggedIn)
    }

    /// Logs out: ends this computer's session at the hub, or with `everywhere` every session of
    /// the account, and forgets it here. The device keeps its own credential, so backups and
    /// donating go on; what takes the session (forgetting snapshots, a new passphrase) asks for a
    /// log-in again.
    pub async fn logout(&self, everywhere: bool) -> Result<()> {
        let credentials = self.credentials()?;
        let session = credentials.session()?.ok_or(ControlError::NotLoggedIn)?;
        match self.client()?.logout(&session.token, everywhere).await {
            Ok(()) => {}
            // Expired already: it only needs forgetting here.
            Err(error) if error.code() == Some(surplus_protocol::ErrorCode::Unauthorized) => {
                if everywhere {
                    return Err(ControlError::Input(
                        "the session here has expired: log in again to log out everywhere".into(),
                    ));
                }
            }
            Err(error) => return Err(error.into()),
        }
        credentials.clear_session()?;
        Ok(())
    }

    /// Leaves for good: stops donating (storage and compute consent withdrawn), hands everything
    /// this device holds for others over to other holders, then deregisters the device at the
    /// hub and forgets its credential here. Nothing is deleted from the vault before its new
    /// copy is confirmed elsewhere. The running agent carries the hand-over out; when none runs,
    /// a worker (with `probe`, and no backups) runs here meanwhile. `progress` hears how far it
    /// is, about every second. Waits at most `wait`: what is left then stays here, the device
    /// stays registered, and leaving again carries on.
    pub async fn leave(
        &self,
        wait: std::time::Duration,
        probe: Box<dyn crate::probe::Probe>,
        mut progress: impl FnMut(&surplus_protocol::Holdings),
    ) -> Result<Left> {
        use crate::worker::{Worker, WorkerError, WorkerOptions, lock_data_dir};
        let credentials = self.credentials()?;
        let Some(device) = credentials.device()? else {
            return Err(ControlError::Input(
                "this computer is not registered as a device: there is nothing to leave".into(),
            ));
        };
        let token = device.bearer_token();
        let client = self.client()?;
        self.update(|settings| {
            settings.consent.storage = false;
            settings.consent.compute = false;
        })?;
        let local = match lock_data_dir(&self.data_dir) {
            Ok(lock) => {
                drop(lock);
                let options = WorkerOptions {
                    backups: false,
                    ..WorkerOptions::default()
                };
                match Worker::new(&self.data_dir, self.hub.as_deref(), probe, options) {
                    Ok(worker) => {
                        let (stop, stopped) = tokio::sync::watch::channel(false);
                        Some((stop, tokio::spawn(worker.run(stopped))))
                    }
                    // An agent started in the meantime: it carries the hand-over out.
                    Err(WorkerError::AlreadyRunning(_)) => None,
                    Err(error) => return Err(error.into()),
                }
            }
            Err(WorkerError::AlreadyRunning(_)) => None,
            Err(error) => return Err(error.into()),
        };
        let stop_local = |local: Option<(tokio::sync::watch::Sender<bool>, _)>| async move {
            if let Some((stop, running)) = local {
                let _ = stop.send(true);
                let _: std::result::Result<std::result::Result<(), WorkerError>, _> = running.await;
            }
        };
        let vault_dir = self.settings()?.vault_dir(&self.data_dir);
        let give_up_at = tokio::time::Instant::now() + wait;
        let outcome = loop {
            let holdings = match client.holdings(&token).await {
                Ok(holdings) => holdings,
                Err(error) => break Err(ControlError::from(error)),
            };
            progress(&holdings);
            if holdings.held_blobs == 0 {
                break Ok(());
            }
            if tokio::time::Instant::now() >= give_up_at {
                let left = holdings.held_bytes;
                break Err(ControlError::Input(format!(
                    "{} held for others is not handed over yet: this device stays registered \
                     and keeps it until it is; run `surplus leave` again to carry on",
                    crate::settings::format_size(left)
                )));
            }
            // Progress, polled: the hand-over is the hub's and the worker's, not this loop's.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        };
        stop_local(local).await;
        outcome?;
        client.leave(&token).await?;
        credentials.clear_device()?;
        Ok(Left {
            leftover_bytes: crate::vault::held_bytes(&vault_dir).unwrap_or(0),
            vault_dir,
        })
    }

    /// The device credential if this machine is registered, else the session: for requests
    /// either may make.
    pub fn any_token(&self) -> Result<String> {
        if let Some(device) = self.credentials()?.device()? {
            return Ok(device.bearer_token());
        }
        Ok(self.session()?.token)
    }

    /// Whether this machine is registered as a device.
    pub fn registered(&self) -> bool {
        self.credentials()
            .and_then(|c| Ok(c.device()?))
            .is_ok_and(|d| d.is_some())
    }

    /// Signs up or logs in at `hub`, keeps the session, and registers this machine as a device
    /// unless it already is one at that hub.
    pub async fn enroll(&self, enrollment: Enrollment) -> Result<Enrolled> {
        let hub = enrollment.hub.trim().trim_end_matches('/').to_owned();
        if hub.is_empty() {
            return Err(ControlError::Input("the hub address is empty".into()));
        }
        let name = enrollment.device_name.trim().to_owned();
        if name.is_empty() {
            return Err(ControlError::Input("give this device a name".into()));
        }
        let trust = self.trust()?;
        let client = HubClient::new(&hub, &trust)?;
        let credentials = Credentials {
            email: enrollment.email.trim().to_owned(),
            password: enrollment.password,
        };
        let session = if enrollment.signup {
            client.signup(&credentials).await?
        } else {
            client.login(&credentials).await?
        };
        let store = self.credentials()?;
        store.set_session(&SessionCredential {
            token: session.token.clone(),
            email: session.subscriber.email.clone(),
        })?;
        // The device stays registered if it is this subscriber's at this hub; a device of another
        // hub or another subscriber is registered anew.
        let previous_hub = self.settings()?.hub_url;
        let kept = match store.device()? {
            Some(device) if previous_hub.as_deref() == Some(hub.as_str()) => {
                let theirs = client.devices(&session.token).await?;
                theirs
                    .iter()
                    .any(|d| d.id == device.device_id && d.revoked_at.is_none())
                    .then_some(device)
            }
            _ => None,
        };
        let device = match kept {
            Some(device) => device,
            None => {
                let registered = client.register_device(&session.token, &name).await?;
                let device = DeviceCredential {
                    device_id: registered.device_id,
                    secret: registered.secret,
                };
                store.set_device(&device)?;
                device
            }
        };
        self.update(|s| {
            s.hub_url = Some(hub);
            s.hub_trust = trust;
            s.device_name = Some(name);
        })?;
        let has_backup_key = client.wrapped_key(&session.token).await?.is_some();
        Ok(Enrolled {
            email: session.subscriber.email,
            plan: session.subscriber.plan.as_str().to_owned(),
            device_id: device.device_id,
            has_backup_key,
        })
    }

    /// The disks the vault may go on, with the limits each allows.
    pub fn disks(&self) -> Result<Vec<DiskChoice>> {
        let settings = self.settings()?;
        let vault_dir = settings.vault_dir(&self.data_dir);
        // The probe's override file (tests) speaks for every disk, as it does for the agent.
        let overrides = crate::probe::OverrideFile::from_env().read();
        let mut disks = sysinfo::Disks::new_with_refreshed_list()
            .iter()
            .filter(|disk| usable_disk(disk.file_system().to_string_lossy().as_ref()))
            .map(|disk| {
                let space = crate::DiskSpace {
                    total_bytes: disk.total_space(),
                    free_bytes: disk.available_space(),
                };
                (
                    disk.mount_point().to_owned(),
                    disk.name().to_string_lossy().into_owned(),
                    space,
                )
            })
            .collect::<Vec<_>>();
        // The disk of the data directory is always offered, even where sysinfo sees no disks.
        if let Ok(space) = crate::probe::disk_space(&self.data_dir)
            && !disks
                .iter()
                .any(|(mount, _, _)| self.data_dir.starts_with(mount))
        {
            disks.push((self.data_dir.clone(), "data folder".to_owned(), space));
        }
        disks.sort_by(|a, b| a.0.cmp(&b.0));
        disks.dedup_by(|a, b| a.0 == b.0);
        if let Some(overrides) = &overrides {
            for (_, _, space) in &mut disks {
                overrides.apply_disk(space);
            }
        }
        let current_mount = disks
            .iter()
            .filter(|(mount, _, _)| vault_dir.starts_with(mount))
            .max_by_key(|(mount, _, _)| mount.as_os_str().len())
            .map(|(mount, _, _)| mount.clone());
        let defaults = Settings::default();
        Ok(disks
            .into_iter()
            .map(|(mount_point, name, space)| {
                let floor = defaults.effective_floor(space);
                DiskChoice {
                    current: current_mount.as_ref() == Some(&mount_point),
                    name,
                    total_bytes: space.total_bytes,
                    free_bytes: space.free_bytes,
                    floor_bytes: floor,
                    max_quota_bytes: space.free_bytes.saturating_sub(floor),
                    default_quota_bytes: defaults.effective_quota(space),
                    mount_point,
                }
            })
            .collect())
    }

    /// Applies the user's choices, refusing (and changing nothing) when one of them cannot be
    /// honoured: a folder that is not there, a disk that is not offered, a quota over what the
    /// disk allows, a vault moved while it holds others' data.
    pub fn apply(&self, choices: Choices) -> Result<Settings> {
        let settings = self.settings()?;
        if let Some(folders) = &choices.folders {
            for folder in folders {
                if !folder.is_absolute() {
                    return Err(ControlError::Input(format!(
                        "{} is not a full path",
                        folder.display()
                    )));
                }
                if !folder.is_dir() {
                    return Err(ControlError::Input(format!(
                        "{} is not a folder on this PC",
                        folder.display()
                    )));
                }
            }
        }
        let current_dir = settings.vault_dir(&self.data_dir);
        let vault_dir = match &choices.vault_disk {
            Some(mount) => Some(self.vault_move(mount)?),
            None => None,
        };
        if let Some(quota) = choices.quota_bytes {
            let mount = match &choices.vault_disk {
                Some(mount) => mount.clone(),
                None => current_dir.clone(),
            };
            let disk = self
                .disks()?
                .into_iter()
                .filter(|d| mount.starts_with(&d.mount_point))
                .max_by_key(|d| d.mount_point.as_os_str().len())
                .ok_or_else(|| {
                    ControlError::Input(format!("{} is not a disk on this PC", mount.display()))
                })?;
            // What the vault already takes on its disk is free for it.
            let own = if disk.current {
                crate::vault::held_bytes(&current_dir).unwrap_or(0)
            } else {
                0
            };
            let most = disk.max_quota_bytes + own;
            if quota > most {
                return Err(ControlError::Input(format!(
                    "a quota of {} leaves less than {} free on {}: at most {} fits",
                    crate::settings::format_size(quota),
                    crate::settings::format_size(disk.floor_bytes),
                    disk.mount_point.display(),
                    crate::settings::format_size(most)
                )));
            }
        }
        self.update(|s| {
            if let Some(storage) = choices.consent_storage {
                s.consent.storage = storage;
            }
            if let Some(compute) = choices.consent_compute {
                s.consent.compute = compute;
            }
            if let Some(dir) = vault_dir {
                self.put_vault(s, dir);
            }
            if let Some(quota) = choices.quota_bytes {
                s.storage.quota_bytes = Some(quota);
            }
            if let Some(folders) = choices.folders {
                s.backup.folders = folders;
            }
            if let Some(cores) = choices.cores_percent {
                s.compute.cores_percent = cores;
            }
        })
    }

    /// Where the vault goes when the user puts it in `folder`: a disk's top from the tray's list
    /// of disks, or any folder from `surplus quota --path`. Inside the data directory when
    /// `folder` is the top of the disk the data directory is on (or the data directory itself);
    /// else a hidden folder inside `folder`. One rule, whichever front end asks.
    pub fn vault_dir_in(&self, folder: &Path) -> PathBuf {
        let data_mount = self
            .disks()
            .ok()
            .and_then(|disks| {
                disks
                    .into_iter()
                    .filter(|d| self.data_dir.starts_with(&d.mount_point))
                    .max_by_key(|d| d.mount_point.as_os_str().len())
            })
            .map(|d| d.mount_point);
        if data_mount.as_deref() == Some(folder) || folder == self.data_dir {
            self.data_dir.join(crate::settings::DEFAULT_VAULT_DIR)
        } else {
            folder.join(crate::settings::VAULT_DIR_NAME)
        }
    }

    /// The vault's new place for a move into `folder` ([`Control::vault_dir_in`]), refused while
    /// the vault holds data for others: it must be handed over first.
    pub fn vault_move(&self, folder: &Path) -> Result<PathBuf> {
        let current = self.settings()?.vault_dir(&self.data_dir);
        let target = self.vault_dir_in(folder);
        if target != current {
            let held = crate::vault::held_bytes(&current).unwrap_or(0);
            if held > 0 {
                return Err(ControlError::Input(format!(
                    "the vault in {} holds {} for others: withdraw storage consent, wait until \
                     it is empty, then move it",
                    current.display(),
                    crate::settings::format_size(held)
                )));
            }
        }
        Ok(target)
    }

    /// Records `dir` as the vault's place in `settings` (none when it is the default one).
    pub fn put_vault(&self, settings: &mut Settings, dir: PathBuf) {
        settings.storage.vault_path =
            (dir != self.data_dir.join(crate::settings::DEFAULT_VAULT_DIR)).then_some(dir);
    }

    /// Sets up the backup key with the recovery passphrase: unlocks the key kept at the hub (made
    /// on another device), or makes the key and keeps a copy at the hub locked with it. A new
    /// passphrase must pass [`crate::passphrase::problem`]; an old one that would not still
    /// unlocks the key, and what is wrong with it is returned: the shell then asks for a better
    /// one and hands it to [`Control::change_recovery_passphrase`].
    pub async fn set_recovery_passphrase(&self, passphrase: &str) -> Result<Option<String>> {
        let client = self.client()?;
        let token = self.any_token()?;
        let credentials = self.credentials()?;
        let typed = passphrase.to_owned();
        let mut too_weak = None;
        crate::backup::master_key(&credentials, &client, &token, |request| match request {
            Request::Unlock | Request::Choose => Some(typed.clone()),
            Request::Replace { problem } => {
                too_weak = Some(problem.to_owned());
                None
            }
        })
        .await?;
        Ok(too_weak)
    }

    /// What is wrong with `passphrase` as a new recovery passphrase for this subscriber
    /// ([`crate::passphrase::problem`], with their email as words an attacker tries first).
    pub fn passphrase_problem(&self, passphrase: &str) -> Option<String> {
        let email = self
            .credentials()
            .ok()
            .and_then(|c| c.session().ok().flatten())
            .map(|s| s.email)
            .unwrap_or_default();
        crate::passphrase::problem(passphrase, &[&email])
    }

    /// Wraps the backup key held on this device under a new recovery passphrase, which must pass
    /// [`crate::passphrase::problem`], and replaces the copy kept at the hub.
    pub async fn change_recovery_passphrase(&self, new: &str) -> Result<()> {
        if let Some(problem) = self.passphrase_problem(new) {
            return Err(ControlError::Key(KeyError::WeakPassphrase(problem)));
        }
        let credentials = self.credentials()?;
        let key = credentials.backup_key()?.ok_or_else(|| {
            ControlError::Input(
                "this device does not hold the backup key yet: set the recovery passphrase up first"
                    .into(),
            )
        })?;
        let client = self.client()?;
        // Replacing the key kept at the hub takes the subscriber's session, never a device's.
        let token = self.session()?.token;
        crate::backup::escrow(
            &client,
            &token,
            &surplus_backup::keys::MasterKey::from_bytes(key),
            new.to_owned(),
        )
        .await?;
        Ok(())
    }

    /// Whether this device holds the backup key (so backups can run).
    pub fn has_backup_key(&self) -> bool {
        self.credentials()
            .and_then(|c| Ok(c.backup_key()?))
            .is_ok_and(|k| k.is_some())
    }

    /// Forgets the snapshots `retention` does not keep and deletes the packs only they needed,
    /// from their holders. It takes the subscriber's session: a device's credential may add to
    /// backups but not destroy them.
    pub async fn forget(
        &self,
        retention: surplus_backup::forget::Retention,
        utc_offset_minutes: i32,
    ) -> Result<(Vec<String>, usize)> {
        let token = self.session()?.token;
        let data_dir = self.data_dir.clone();
        self.with_repository_as(token, self.passphrase, ignore, move |repository, _, _| {
            let _lock = crate::backup::BackupLock::acquire(&data_dir, || {
                tracing::info!("waiting for the backup running on this device to finish");
            })
            .map_err(|source| ControlError::Io {
                path: data_dir.clone(),
                source,
            })?;
            Ok(repository.forget(retention, utc_offset_minutes)?)
        })
        .await
    }

    /// What the subscriber forgot that the hub still keeps, and when each part goes for good.
    pub async fn forgotten(&self) -> Result<surplus_protocol::Forgotten> {
        let token = self.any_token()?;
        Ok(self.client()?.forgotten(&token).await?)
    }

    /// Brings back every snapshot forgotten within the hub's grace period, with the shards they
    /// need. A device's credential may do it: it only undoes a deletion.
    pub async fn unforget(&self) -> Result<surplus_protocol::Recovered> {
        let token = self.any_token()?;
        Ok(self.client()?.recover_forgotten(&token).await?)
    }

    /// Opens the subscriber's backup repository over the hub and runs `work` on it, off the async
    /// runtime. `passphrase` is asked only when this device has no key yet; `warn` is told when
    /// the hub has too few holders for the coding.
    pub async fn with_repository<T: Send + 'static, E: From<ControlError> + Send + 'static>(
        &self,
        passphrase: impl FnMut(Request<'_>) -> Option<String>,
        warn: impl FnOnce(&str),
        work: impl FnOnce(&mut Repository<HubStore>, &HubClient, &str) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        let token = self.any_token()?;
        self.with_repository_as(token, passphrase, warn, work).await
    }

    /// [`Control::with_repository`] with the hub's requests made with `token`.
    async fn with_repository_as<T: Send + 'static, E: From<ControlError> + Send + 'static>(
        &self,
        token: String,
        passphrase: impl FnMut(Request<'_>) -> Option<String>,
        warn: impl FnOnce(&str),
        work: impl FnOnce(&mut Repository<HubStore>, &HubClient, &str) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        let client = self.client()?;
        let credentials = self.credentials()?;
        let key = crate::backup::master_key(&credentials, &client, &token, passphrase)
            .await
            .map_err(ControlError::from)?;
        let (coding, warning) = crate::backup::coding(&client, &token)
            .await
            .map_err(ControlError::from)?;
        if let Some(warning) = warning {
            warn(&warning);
        }
        let rate = self.settings()?.bandwidth_bytes_per_second;
        let handle = tokio::runtime::Handle::current();
        let data_dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = HubStore::new(client.clone(), token.clone(), handle);
            store.upload_rate = rate;
            let mut repository = crate::backup::open_repository(store, &key, coding, &data_dir)
                .map_err(ControlError::from)?;
            work(&mut repository, &client, &token)
        })
        .await
        .map_err(|error| {
            E::from(ControlError::Io {
                path: self.data_dir.clone(),
                source: std::io::Error::other(error),
            })
        })?
    }

    /// Every snapshot, oldest first, each as well off as its worst pack: `uploading`,
    /// `protected`, `repairing`, `at_risk` or `lost`, as the hub sees the packs' shards (a pack
    /// the hub has no shard of yet is still uploading).
    pub async fn snapshots(&self) -> Result<Vec<SnapshotView>> {
        let handle = tokio::runtime::Handle::current();
        self.with_repository(self.passphrase, ignore, move |repository, client, token| {
            let health = handle.block_on(client.backup_health(token))?;
            let states: HashMap<String, &'static str> = health
                .packs
                .into_iter()
                .map(|p| (p.pack, pack_state(&p.state)))
                .collect();
            let mut views = Vec::new();
            for (id, snapshot) in repository.snapshots()? {
                let mut state = "protected";
                for pack in repository.packs_of(&snapshot)? {
                    let of_pack = states.get(&pack).copied().unwrap_or("uploading");
                    if severity(of_pack) > severity(state) {
                        state = of_pack;
                    }
                }
                views.push(SnapshotView {
                    id,
                    time: snapshot.time,
                    hostname: snapshot.hostname,
                    files: snapshot.summary.files,
                    bytes: snapshot.summary.bytes,
                    state,
                });
            }
            Ok(views)
        })
        .await
    }

    /// The entries of one folder of a snapshot (its top when `path` is `None`).
    pub async fn list(&self, snapshot: &str, path: Option<PathBuf>) -> Result<Vec<EntryView>> {
        let wanted = snapshot.to_owned();
        let nodes = self
            .with_repository(self.passphrase, ignore, move |repository, _, _| {
                let snapshot = find_snapshot(repository, &wanted)?;
                Ok::<_, ControlError>(repository.list(&snapshot, path.as_deref())?)
            })
            .await?;
        Ok(nodes.iter().map(entry_view).collect())
    }

    /// Restores a snapshot, or one file or folder of it, under `target`, telling `progress` as it
    /// goes.
    pub async fn restore(
        &self,
        snapshot: &str,
        path: Option<PathBuf>,
        target: &Path,
        progress: Arc<dyn FileProgress>,
    ) -> Result<surplus_backup::repo::RestoreReport> {
        if !target.is_absolute() {
            return Err(ControlError::Input(format!(
                "restore to a full path, not {}",
                target.display()
            )));
        }
        let wanted = snapshot.to_owned();
        let target = target.to_owned();
        self.with_repository(self.passphrase, ignore, move |repository, _, _| {
            let snapshot = find_snapshot(repository, &wanted)?;
            let (files, bytes) = match path.as_deref() {
                Some(only) => repository.totals(&snapshot, Some(only))?,
                None => (snapshot.summary.files, snapshot.summary.bytes),
            };
            progress.start(files, bytes);
            repository.set_progress(Arc::new(Forward(progress)));
            Ok(repository.restore(&snapshot, &target, path.as_deref())?)
        })
        .await
    }

    /// Takes a snapshot of the backed-up folders now, with `progress`, by the same rule as the
    /// worker's loop ([`crate::backup::take_snapshot`]). A backup already running on this data
    /// directory is waited for, and `waiting` told so; `warn` is told when the hub has too few
    /// holders for the coding.
    pub async fn back_up_now(
        &self,
        progress: Arc<dyn FileProgress>,
        warn: impl FnOnce(&str),
        waiting: fn(),
    ) -> Result<surplus_backup::repo::BackupReport> {
        let settings = self.settings()?;
        if settings.backup.folders.is_empty() {
            return Err(ControlError::NoFolders);
        }
        let host = crate::backup::snapshot_host(&settings);
        let folders = settings.backup.folders;
        let data_dir = self.data_dir.clone();
        self.with_repository(self.passphrase, warn, move |repository, _, _| {
            let _lock =
                crate::backup::BackupLock::acquire(&data_dir, waiting).map_err(|source| {
                    ControlError::Io {
                        path: data_dir.join("backup.lock"),
                        source,
                    }
                })?;
            let (files, bytes) = surplus_backup::repo::scan_totals(&folders);
            progress.start(files, bytes);
            repository.set_progress(Arc::new(Forward(progress)));
            Ok(crate::backup::take_snapshot(repository, &folders, &host)?)
        })
        .await
    }

    /// The subscriber's compute credit.
    pub async fn credits(&self) -> Result<surplus_protocol::Credits> {
        let client = self.client()?;
        Ok(client.credits(&self.any_token()?).await?)
    }
}

/// For operations that need the key to exist already.
fn no_passphrase(_: Request<'_>) -> Option<String> {
    None
}

/// For operations that only read backups, which the coding's warning is not about.
fn ignore(_: &str) {}

/// Filesystems that are not disks a person would put a vault on.
fn usable_disk(file_system: &str) -> bool {
    !matches!(
        file_system,
        "tmpfs" | "devtmpfs" | "overlay" | "squashfs" | "proc" | "sysfs" | "ramfs" | "efivarfs"
    )
}

/// The snapshot `wanted` names: `latest`, or an id or a prefix of one.
pub fn find_snapshot(
    repository: &mut Repository<HubStore>,
    wanted: &str,
) -> Result<surplus_backup::tree::Snapshot> {
    let mut snapshots = repository.snapshots()?;
    let found = if wanted == "latest" {
        snapshots.pop()
    } else {
        snapshots.into_iter().find(|(id, _)| id.starts_with(wanted))
    };
    found
        .map(|(_, s)| s)
        .ok_or_else(|| ControlError::NoSnapshot(wanted.to_owned()))
}

fn entry_view(node: &surplus_backup::tree::Node) -> EntryView {
    use surplus_backup::tree::NodeKind;
    let (kind, size) = match &node.kind {
        NodeKind::File { size, .. } => ("file", *size),
        NodeKind::Dir { .. } => ("dir", 0),
        NodeKind::Symlink { .. } => ("symlink", 0),
    };
    EntryView {
        name: node.name.display(),
        kind,
        size,
        mode: format!("{:o}", node.mode),
        mtime: node.mtime_ns / 1_000_000,
    }
}

/// What a restore tells its front end.
pub trait FileProgress: Send + Sync {
    /// The work covers `files` files of `bytes` bytes in all.
    fn start(&self, files: u64, bytes: u64);
    fn bytes(&self, bytes: u64);
    fn file(&self);
}

struct Forward(Arc<dyn FileProgress>);

impl Progress for Forward {
    fn bytes(&self, bytes: u64) {
        self.0.bytes(bytes);
    }

    fn file(&self) {
        self.0.file();
    }
}

/// A recovery passphrase made for the user (see [`crate::passphrase::generate`]).
pub fn generate_passphrase() -> String {
    crate::passphrase::generate()
}

/// The state the tray icon shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrayState {
    Donating,
    Paused,
    Attention,
}

/// The tray's icon and status line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrayStatus {
    pub state: TrayState,
    pub line: String,
    /// Whether the user paused donation (so the menu offers Resume).
    pub paused: bool,
}

/// What the tray shows for a device with `settings`, whose worker last knew `state`, at `now`.
/// `registered` says whether the device has joined a hub; `clock` formats a time of day.
pub fn tray_status(
    registered: bool,
    settings: &Settings,
    state: &AgentState,
    now: UnixMillis,
    clock: impl Fn(UnixMillis) -> String,
) -> TrayStatus {
    let attention = |line: String| TrayStatus {
        state: TrayState::Attention,
        line,
        paused: false,
    };
    if !registered {
        return attention("Not set up yet: open Settings".into());
    }
    match settings.pause {
        PauseState::Indefinitely => {
            return TrayStatus {
                state: TrayState::Paused,
                line: "Paused".into(),
                paused: true,
            };
        }
        PauseState::Until { until } if until > now => {
            return TrayStatus {
                state: TrayState::Paused,
                line: format!("Paused until {}", clock(until)),
                paused: true,
            };
        }
        _ => {}
    }
    if state.update_needed {
        return attention("Update needed: the hub no longer serves this version".into());
    }
    if !state.connected && state.last_error.is_some() {
        return attention("Cannot reach the hub".into());
    }
    if state.last_backup_error.is_some() {
        return attention("Backup failed: see Status".into());
    }
    if let Some(handover) = &state.handover {
        let total = handover
            .remaining_bytes
            .saturating_add(handover.moved_bytes);
        return TrayStatus {
            state: TrayState::Donating,
            line: format!(
                "Handing over {} to other PCs: {}%",
                crate::settings::format_size(total),
                handover.percent()
            ),
            paused: false,
        };
    }
    if !settings.consent.storage && !settings.consent.compute {
        return TrayStatus {
            state: TrayState::Paused,
            line: "Not donating: nothing consented".into(),
            paused: false,
        };
    }
    let mut parts = Vec::new();
    if settings.consent.storage {
        let offered = state.vault.as_ref().map_or(0, |v| v.quota_bytes);
        parts.push(format!(
            "Donating {}",
            crate::settings::format_size(offered)
        ));
    } else {
        parts.push("Donating compute".to_owned());
    }
    if state.tasks_running > 0 {
        let tasks = if state.tasks_running == 1 {
            "1 task running".to_owned()
        } else {
            format!("{} tasks running", state.tasks_running)
        };
        parts.push(match &state.compute_held {
            Some(reason) => format!("{tasks}, held ({reason})"),
            None => tasks,
        });
    }
    TrayStatus {
        state: TrayState::Donating,
        line: parts.join(" · "),
        paused: false,
    }
}

/// A time for the status line, in local time: `18:00` today, else `Thu 08:00`.
pub fn local_clock(at: UnixMillis) -> String {
    use chrono::TimeZone;
    let Some(then) = chrono::Local.timestamp_millis_opt(at).single() else {
        return String::new();
    };
    if then.date_naive() == chrono::Local::now().date_naive() {
        then.format("%H:%M").to_string()
    } else {
        then.format("%a %H:%M").to_string()
    }
}

/// When a pause the tray offers ends: `hour` (an hour from now) or `tomorrow` (see
/// [`tomorrow_morning`]).
pub fn pause_until(how_long: &str) -> Result<UnixMillis> {
    match how_long {
        "hour" => Ok(crate::worker::now_ms() + 60 * 60 * 1000),
        "tomorrow" => Ok(tomorrow_morning(chrono::Local::now())),
        other => Err(ControlError::Input(format!("no pause called {other}"))),
    }
}

/// The usual folders of a home that exist here (documents, pictures, desktop), for the wizard to
/// offer for backup.
pub fn suggested_folders() -> Vec<PathBuf> {
    [
        dirs::document_dir(),
        dirs::picture_dir(),
        dirs::desktop_dir(),
    ]
    .into_iter()
    .flatten()
    .filter(|dir| dir.is_dir())
    .collect()
}

/// Where a restore goes unless the user says otherwise: `Restored` in the home folder.
pub fn default_restore_dir() -> PathBuf {
    dirs::home_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("Restored")
}

/// This machine's name, the device's name unless the user gives another.
pub fn host_name() -> String {
    sysinfo::System::host_name()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "My PC".to_owned())
}

/// When "Pause until tomorrow" ends: eight in the morning of the next day, local time.
pub fn tomorrow_morning<Tz: chrono::TimeZone>(now: chrono::DateTime<Tz>) -> UnixMillis {
    let day = now.date_naive().succ_opt().unwrap_or(now.date_naive());
    let morning = day.and_hms_opt(8, 0, 0).unwrap_or_default();
    match now.timezone().from_local_datetime(&morning).earliest() {
        Some(at) => at.timestamp_millis(),
        // A morning the clocks skip (a daylight-saving jump): an hour later.
        None => (now + chrono::Duration::hours(24)).timestamp_millis(),
    }
}

/// Something the user must be told, as an OS notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub title: String,
    pub body: String,
}

/// What changed between two readings of the worker's state that the user must know: a backup
/// failed, the vault gave space back because the disk is filling, compute stopped for the
/// battery. Each is told once, when it starts.
pub fn alerts(before: &AgentState, after: &AgentState) -> Vec<Alert> {
    let mut alerts = Vec::new();
    if let Some(error) = &after.last_backup_error
        && before.last_backup_error.as_ref() != Some(error)
    {
        alerts.push(Alert {
            title: "Backup failed".into(),
            body: format!("{error}. Surplus tries again shortly."),
        });
    }
    let reason = |state: &AgentState, pick: fn(&surplus_protocol::Spare) -> Option<SpareReason>| {
        state.spare.as_ref().and_then(pick)
    };
    let storage = |s: &surplus_protocol::Spare| s.storage_reason;
    let compute = |s: &surplus_protocol::Spare| s.compute_reason;
    if reason(after, storage) == Some(SpareReason::DiskFloor)
        && reason(before, storage) != Some(SpareReason::DiskFloor)
    {
        alerts.push(Alert {
            title: "Vault made smaller".into(),
            body: "Your disk is filling up, so Surplus gave back the space it had set aside. \
                   Others' data moves elsewhere as needed."
                .into(),
        });
    }
    if reason(after, compute) == Some(SpareReason::OnBattery)
        && reason(before, compute) != Some(SpareReason::OnBattery)
    {
        alerts.push(Alert {
            title: "Compute paused on battery".into(),
            body: "Donated compute resumes when this PC is plugged in.".into(),
        });
    }
    alerts
}

/// Where the chart of donated storage and CPU reads from: one point per
/// [`HISTORY_STEP_MS`], the last [`HISTORY_SPAN_MS`] kept.
pub mod history {
    use super::*;

    pub const FILE: &str = "history.json";
    /// A point every quarter of an hour.
    pub const HISTORY_STEP_MS: i64 = 15 * 60 * 1000;
    /// A week of points.
    pub const HISTORY_SPAN_MS: i64 = 7 * 24 * 60 * 60 * 1000;

    /// The device's donation at one moment.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Point {
        pub at: UnixMillis,
        /// Bytes held for others.
        pub stored_bytes: u64,
        /// Milliseconds of donated compute run to an end, all time.
        pub compute_ms: u64,
    }

    pub fn load(data_dir: &Path) -> Vec<Point> {
        std::fs::read(data_dir.join(FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Adds `point` unless the latest is younger than a step; drops points older than the span.
    /// Returns whether the points changed.
    pub fn add(points: &mut Vec<Point>, point: Point) -> bool {
        if points
            .last()
            .is_some_and(|last| point.at - last.at < HISTORY_STEP_MS)
        {
            return false;
        }
        points.push(point);
        points.retain(|p| point.at - p.at <= HISTORY_SPAN_MS);
        true
    }

    /// Records `point` in the data directory's history file.
    pub fn record(data_dir: &Path, point: Point) {
        let mut points = load(data_dir);
        if !add(&mut points, point) {
            return;
        }
        let Ok(bytes) = serde_json::to_vec(&points) else {
            return;
        };
        if let Err(error) = crate::atomic_file::write(
            &data_dir.join(FILE),
            &bytes,
            crate::atomic_file::Visibility::Ordinary,
        ) {
            tracing::debug!(%error, "writing the donation history");
        }
    }
}

/// The snapshot states, best first.
const SNAPSHOT_STATES: [&str; 5] = ["protected", "uploading", "repairing", "at_risk", "lost"];

/// A pack's state as the hub named it (an unknown name reads as `lost`, never as better).
fn pack_state(name: &str) -> &'static str {
    SNAPSHOT_STATES
        .iter()
        .copied()
        .find(|s| *s == name)
        .unwrap_or("lost")
}

fn severity(state: &str) -> usize {
    SNAPSHOT_STATES
        .iter()
        .position(|s| *s == state)
        .unwrap_or(SNAPSHOT_STATES.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use surplus_protocol::{Spare, VaultReport};

    fn clock(at: UnixMillis) -> String {
        format!("t{at}")
    }

    fn donating() -> (Settings, AgentState) {
        let mut settings = Settings::default();
        settings.consent.storage = true;
        settings.consent.compute = true;
        let state = AgentState {
            connected: true,
            vault: Some(VaultReport {
                quota_bytes: 12_400_000_000,
                used_bytes: 0,
                reserved_bytes: 0,
                floor_bytes: 0,
            }),
            ..AgentState::default()
        };
        (settings, state)
    }

    #[test]
    fn the_status_line_names_the_offer_and_the_tasks() {
        let (settings, mut state) = donating();
        let status = tray_status(true, &settings, &state, 0, clock);
        assert_eq!(status.state, TrayState::Donating);
        assert_eq!(status.line, "Donating 11.5 GiB");
        state.tasks_running = 2;
        assert_eq!(
            tray_status(true, &settings, &state, 0, clock).line,
            "Donating 11.5 GiB · 2 tasks running"
        );
        state.compute_held = Some("user active".into());
        state.tasks_running = 1;
        assert_eq!(
            tray_status(true, &settings, &state, 0, clock).line,
            "Donating 11.5 GiB · 1 task running, held (user active)"
        );
    }

    #[test]
    fn a_pause_shows_until_when_and_ends_by_itself() {
        let (mut settings, state) = donating();
        settings.pause = PauseState::Until { until: 5_000 };
        let paused = tray_status(true, &settings, &state, 4_999, clock);
        assert_eq!(paused.state, TrayState::Paused);
        assert_eq!(paused.line, "Paused until t5000");
        assert!(paused.paused);
        assert_eq!(
            tray_status(true, &settings, &state, 5_000, clock).state,
            TrayState::Donating
        );
        settings.pause = PauseState::Indefinitely;
        assert_eq!(
            tray_status(true, &settings, &state, 0, clock).line,
            "Paused"
        );
    }

    #[test]
    fn trouble_asks_for_attention() {
        let (settings, mut state) = donating();
        assert_eq!(
            tray_status(false, &settings, &state, 0, clock).state,
            TrayState::Attention
        );
        state.last_backup_error = Some("disk gone".into());
        assert_eq!(
            tray_status(true, &settings, &state, 0, clock).line,
            "Backup failed: see Status"
        );
        state.connected = false;
        state.last_error = Some("connection refused".into());
        assert_eq!(
            tray_status(true, &settings, &state, 0, clock).line,
            "Cannot reach the hub"
        );
    }

    #[test]
    fn nothing_consented_is_not_donating() {
        let (mut settings, state) = donating();
        settings.consent.storage = false;
        settings.consent.compute = false;
        let status = tray_status(true, &settings, &state, 0, clock);
        assert_eq!(status.state, TrayState::Paused);
        assert_eq!(status.line, "Not donating: nothing consented");
    }

    fn spare(storage: Option<SpareReason>, compute: Option<SpareReason>) -> Option<Spare> {
        Some(Spare {
            storage_bytes: 0,
            compute_slots: 0,
            storage_reason: storage,
            compute_reason: compute,
        })
    }

    #[test]
    fn alerts_are_told_once_when_they_start() {
        let calm = AgentState::default();
        let mut failing = calm.clone();
        failing.last_backup_error = Some("the hub refused".into());
        let told = alerts(&calm, &failing);
        assert_eq!(told.len(), 1);
        assert_eq!(told[0].title, "Backup failed");
        assert!(told[0].body.starts_with("the hub refused"));
        assert!(alerts(&failing, &failing).is_empty(), "told again");

        let mut filling = calm.clone();
        filling.spare = spare(Some(SpareReason::DiskFloor), Some(SpareReason::OnBattery));
        let titles: Vec<_> = alerts(&calm, &filling)
            .into_iter()
            .map(|a| a.title)
            .collect();
        assert_eq!(titles, ["Vault made smaller", "Compute paused on battery"]);
        assert!(alerts(&filling, &filling).is_empty());
    }

    #[test]
    fn history_keeps_a_point_per_step_for_a_week() {
        let mut points = Vec::new();
        let point = |at| history::Point {
            at,
            stored_bytes: 1,
            compute_ms: 2,
        };
        assert!(history::add(&mut points, point(0)));
        assert!(!history::add(
            &mut points,
            point(history::HISTORY_STEP_MS - 1)
        ));
        assert!(history::add(&mut points, point(history::HISTORY_STEP_MS)));
        let late = history::HISTORY_SPAN_MS + history::HISTORY_STEP_MS;
        assert!(history::add(&mut points, point(late)));
        assert_eq!(
            points.iter().map(|p| p.at).collect::<Vec<_>>(),
            [history::HISTORY_STEP_MS, late]
        );
    }

    #[test]
    fn tomorrow_is_the_next_morning() {
        use chrono::TimeZone;
        let late = chrono::Utc
            .with_ymd_and_hms(2026, 11, 25, 23, 30, 0)
            .unwrap();
        let early = chrono::Utc
            .with_ymd_and_hms(2026, 11, 25, 0, 10, 0)
            .unwrap();
        let expected = chrono::Utc.with_ymd_and_hms(2026, 11, 26, 8, 0, 0).unwrap();
        assert_eq!(tomorrow_morning(late), expected.timestamp_millis());
        assert_eq!(tomorrow_morning(early), expected.timestamp_millis());
    }

    #[test]
    fn choices_that_cannot_be_honoured_change_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let control = Control::new(dir.path());
        let missing = dir.path().join("not-there");
        let error = control
            .apply(Choices {
                consent_storage: Some(true),
                folders: Some(vec![missing.clone()]),
                ..Choices::default()
            })
            .expect_err("a missing folder is refused");
        assert!(error.to_string().contains("not a folder"), "{error}");
        let error = control
            .apply(Choices {
                folders: Some(vec![PathBuf::from("relative/path")]),
                ..Choices::default()
            })
            .expect_err("a relative folder is refused");
        assert!(error.to_string().contains("not a full path"), "{error}");
        let error = control
            .apply(Choices {
                consent_storage: Some(true),
                quota_bytes: Some(u64::MAX / 2),
                ..Choices::default()
            })
            .expect_err("a quota beyond the disk is refused");
        assert!(error.to_string().contains("at most"), "{error}");
        assert_eq!(control.settings().expect("settings"), Settings::default());
    }

    #[test]
    fn choices_are_saved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let control = Control::new(dir.path());
        let settings = control
            .apply(Choices {
                consent_storage: Some(true),
                consent_compute: Some(false),
                folders: Some(vec![dir.path().to_owned()]),
                cores_percent: Some(30),
                ..Choices::default()
            })
            .expect("applied");
        assert_eq!(control.settings().expect("settings"), settings);
        assert!(settings.consent.storage && !settings.consent.compute);
        assert_eq!(settings.backup.folders, [dir.path().to_owned()]);
        assert_eq!(settings.compute.cores_percent, 30);
        let disks = control.disks().expect("disks");
        let home = disks
            .iter()
            .find(|d| d.current)
            .expect("the data directory's disk is offered and holds the vault");
        assert_eq!(
            home.max_quota_bytes,
            home.free_bytes.saturating_sub(home.floor_bytes)
        );
    }

    #[test]
    fn pseudo_filesystems_are_not_offered() {
        assert!(usable_disk("ext4"));
        assert!(!usable_disk("tmpfs"));
        assert!(!usable_disk("overlay"));
    }
}
