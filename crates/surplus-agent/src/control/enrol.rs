//! Joining a hub and leaving it: signing up or logging in, registering this device, logging
//! out, and leaving for good.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use surplus_protocol::Credentials;

use crate::client::{ClientError, HubClient};
use crate::credentials::{DeviceCredential, SessionCredential};

use super::{Control, ControlError, Result};

/// The hub a fresh install offers: `SURPLUS_HUB` in the environment, else the one this build was
/// made for (`SURPLUS_DEFAULT_HUB` when it was compiled, which the installers set); `None` when
/// neither names one, and the wizard asks.
pub fn packaged_hub() -> Option<String> {
    std::env::var("SURPLUS_HUB")
        .ok()
        .filter(|hub| !hub.trim().is_empty())
        .or_else(|| {
            option_env!("SURPLUS_DEFAULT_HUB")
                .filter(|hub| !hub.trim().is_empty())
                .map(str::to_owned)
        })
}

/// Signing up or logging in, and registering this device if it is not yet.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Enrollment {
    pub hub: String,
    pub email: String,
    pub password: String,
    pub signup: bool,
    pub device_name: String,
}

/// Who this device belongs to, after [`Control::enroll`].
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Enrolled {
    pub email: String,
    pub plan: String,
    pub device_id: uuid::Uuid,
    /// Whether the subscriber already has a backup key at the hub (made on another device): the
    /// recovery passphrase is then typed, not chosen.
    pub has_backup_key: bool,
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
                    crate::units::format_size(left)
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

    /// Signs up or logs in at `hub`, keeps the session, and registers this machine as a device
    /// unless it already is one at that hub.
    /// Whether a Surplus hub answers at `url`: its `/healthz` answers and names the protocol
    /// it speaks, so that a typo or another web site is caught before signing up there.
    pub async fn check_hub(&self, url: &str) -> Result<()> {
        let url = url.trim().trim_end_matches('/');
        if url.is_empty() {
            return Err(ControlError::Input(
                "enter the address of your Surplus server, such as https://hub.example.com".into(),
            ));
        }
        let probe = HubClient::new(url, &self.trust()?)?.probe().await?;
        if probe.protocol.is_none() {
            return Err(ControlError::Client(ClientError::Unexpected {
                status: reqwest::StatusCode::OK,
                detail: format!("{url}/healthz answers, but names no Surplus protocol"),
            }));
        }
        Ok(())
    }

    pub async fn enroll(&self, enrollment: Enrollment) -> Result<Enrolled> {
        let hub = enrollment.hub.trim().trim_end_matches('/').to_owned();
        if hub.is_empty() {
            return Err(ControlError::Input(
                "enter the address of your Surplus server, such as https://hub.example.com".into(),
            ));
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
}
