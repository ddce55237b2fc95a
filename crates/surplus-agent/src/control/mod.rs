//! What a front end asks of the agent core, for the tray app and the `surplus` command alike:
//! joining a hub ([`enrol`]), the disks a vault may go on and the user's choices ([`disks`]),
//! the recovery passphrase, snapshots and restores ([`backups`]), proofs of storage on demand
//! ([`verify`]), compute jobs ([`compute`]), the device's status
//! ([`status`]) and, for the tray, the one-line status and the alerts a person must see
//! ([`tray`]).
//!
//! Front ends only translate: every decision about what a setting means, what is shown as the
//! device's state and when the user is told something is made here, where it is tested without a
//! window.

use std::path::{Path, PathBuf};

use crate::backup::KeyError;
use crate::client::{ClientError, HubClient, HubTrust};
use crate::credentials::{CredentialStore, SessionCredential};
use crate::passphrase::Request;
use crate::settings::Settings;

mod backups;
mod compute;
mod disks;
mod enrol;
mod explain;
mod health;
mod status;
mod tray;
mod verify;
mod window;

pub use backups::{
    EntryView, FileProgress, Found, RestoreTo, SEARCH_LIMIT, SearchResults, SnapshotView,
    find_snapshot, generate_passphrase, readable_folder, save_passphrase,
};
pub use compute::{JobFiles, input_name};
pub use disks::{Choices, DiskChoice};
pub use enrol::{Enrolled, Enrollment, Left, packaged_hub};
pub use explain::{Doing, Problem};
pub use health::{BackupHealth, HealthLevel, backup_health};
pub use status::StatusView;
pub use surplus_backup::repo::{Existing, RestoreReport};
pub use tray::{
    Alert, TrayState, TrayStatus, alerts, default_restore_dir, home_dir, host_name, local_clock,
    pause_until, suggested_folders, tomorrow_morning, tray_status,
};
pub use window::{Overview, RestoreProgress, Restored};

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
    #[error("uploading {}: {source}", .path.display())]
    Upload { path: PathBuf, source: ClientError },
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
    /// Lists the machine's file systems ([`crate::disk::mounts`]).
    mounts: fn() -> Vec<crate::disk::Mount>,
}

impl Control {
    pub fn new(data_dir: &Path) -> Control {
        Control {
            data_dir: data_dir.to_owned(),
            hub: None,
            trust: None,
            passphrase: no_passphrase,
            mounts: crate::disk::mounts,
        }
    }

    /// Lists the machine's disks with `mounts` instead of asking the system (tests give a
    /// machine of their own).
    pub fn with_mounts(mut self, mounts: fn() -> Vec<crate::disk::Mount>) -> Control {
        self.mounts = mounts;
        self
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

    /// The hub's address: the one given with [`Control::with_hub`], else the settings', else
    /// the one this build or its installer names ([`packaged_hub`]).
    pub fn hub_url(&self) -> Result<String> {
        match &self.hub {
            Some(url) => Ok(url.clone()),
            None => self
                .settings()?
                .hub_url
                .or_else(packaged_hub)
                .ok_or(ControlError::NoHub),
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
