//! The background worker: heartbeats, the instruction long poll, and carrying instructions out.
//!
//! Four loops share the device's state ([`shared`]). The *reporter* ([`report`]) measures the
//! machine and sends heartbeats on the hub's schedule, and at once when something that decides
//! donation changes: the settings file (consent, quota, pause: edited by `surplus` or the tray
//! app while the worker runs) or the user coming back. The *executor* ([`execute`]) long-polls
//! the hub for instructions, [`decide`]s what each asks against the user's choices and the
//! device's own limits, and carries it out, acknowledging each with its result; blobs move in
//! [`transfer`]. The *guard* ([`guard`]) pauses running tasks the moment the machine is not free
//! for them, and the *backup loop* ([`backup_loop`]) backs the chosen folders up. The reporter
//! and the executor reconnect with backoff while the hub is away. Instructions are executed
//! idempotently by id: a [`journal`] of recent results answers a redelivered instruction without
//! doing it twice.
//!
//! The submodules depend on each other in one direction (`tests/modules.rs` checks it): the
//! loops on [`shared`], [`shared`] on [`state`] and [`journal`]; none of them on this module.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::client::HubClient;
use crate::probe::Probe;
use crate::settings::Settings;

mod backoff;
mod backup_loop;
mod decide;
mod error;
mod execute;
mod garbage;
mod guard;
mod journal;
mod options;
mod report;
mod shared;
mod state;
mod transfer;

pub use error::WorkerError;
pub use options::WorkerOptions;
pub use shared::build_report;
pub use state::{AgentState, BackupProgress, IdleReading};

use journal::Journal;
use shared::Shared;

/// The device's worker.
pub struct Worker {
    shared: Arc<Shared>,
    options: WorkerOptions,
    _lock: std::fs::File,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("data_dir", &self.shared.data_dir)
            .finish_non_exhaustive()
    }
}

/// Takes the data directory's agent lock: one worker per data directory.
pub fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, WorkerError> {
    let path = data_dir.join("agent.lock");
    let io = |source| WorkerError::Io {
        path: path.clone(),
        source,
    };
    crate::private_fs::dir_all(data_dir).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(WorkerError::AlreadyRunning(data_dir.to_owned()))
        }
        Err(std::fs::TryLockError::Error(source)) => Err(io(source)),
    }
}

impl Worker {
    /// Prepares a worker for the device registered in `data_dir`.
    pub fn new(
        data_dir: &Path,
        hub_override: Option<&str>,
        probe: Box<dyn Probe>,
        options: WorkerOptions,
    ) -> Result<Worker, WorkerError> {
        // `surplus status` takes the lock for an instant to see whether an agent runs: try for a
        // moment before concluding that another agent holds it.
        let mut attempts = 0;
        let lock = loop {
            match lock_data_dir(data_dir) {
                Err(WorkerError::AlreadyRunning(_)) if attempts < 40 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(25));
                }
                other => break other?,
            }
        };
        // Transfers cut short by a crash start over: their partial files are of no use.
        let _ = std::fs::remove_dir_all(data_dir.join("incoming"));
        let settings = Settings::load(data_dir)?;
        let hub = hub_override
            .map(str::to_owned)
            .or_else(|| settings.hub_url.clone())
            .ok_or(WorkerError::NoHub)?;
        let credentials = crate::credentials::CredentialStore::open(data_dir)?;
        let device = credentials.device()?.ok_or(WorkerError::NotRegistered)?;
        let shared = Arc::new(Shared {
            data_dir: data_dir.to_owned(),
            client: HubClient::new(&hub, &settings.hub_trust.clone().with_environment())?,
            token: device.bearer_token(),
            probe: Mutex::new(probe),
            settings: Mutex::new(settings),
            vault: Mutex::new(None),
            state: Mutex::new(AgentState::load(data_dir).unwrap_or_default()),
            journal: Mutex::new(Journal::open(data_dir)),
            report_now: Notify::new(),
            settings_changed: Notify::new(),
            backup_now: Notify::new(),
            compute: crate::compute::Compute::new(data_dir, options.task_runner.clone()),
            on_battery: Mutex::new(None),
            comfort: Mutex::new(crate::compute::ComfortRules::default()),
            snapshot_packs: Mutex::new(Default::default()),
            protection_asked: Mutex::new(None),
            cores: std::sync::atomic::AtomicU32::new(0),
            failures: shared::Failures::default(),
            disk_overrides: options.disk_overrides.clone(),
        });
        tracing::info!(device_id = %device.device_id, %hub, "agent starting");
        Ok(Worker {
            shared,
            options,
            _lock: lock,
        })
    }

    /// A handle for a front end in the same process to nudge the running worker.
    pub fn handle(&self) -> WorkerHandle {
        WorkerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Runs until `shutdown` resolves, or the hub rejects the device's credential.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), WorkerError> {
        let (stop, stopped) = watch::channel(false);
        let reporter = tokio::spawn(report::report_loop(
            self.shared.clone(),
            self.options.clone(),
            stopped.clone(),
        ));
        let executor = tokio::spawn(execute::execute_loop(
            self.shared.clone(),
            self.options.clone(),
            stopped.clone(),
        ));
        let backups = if self.options.backups {
            tokio::spawn(backup_loop::backup_loop(
                self.shared.clone(),
                self.options.clone(),
                stopped.clone(),
            ))
        } else {
            tokio::spawn(std::future::pending())
        };
        let guard = tokio::spawn(guard::compute_guard(self.shared.clone(), stopped));
        let outcome = tokio::select! {
            _ = shutdown.wait_for(|&down| down) => Ok(()),
            result = flatten(reporter) => result,
            result = flatten(executor) => result,
            result = flatten(backups) => result,
            result = flatten(guard) => result,
        };
        let _ = stop.send(true);
        self.shared.update_state(|state| state.connected = false);
        tracing::info!("agent stopped");
        outcome
    }
}

/// Nudges a running worker from the front end that runs it (the tray app).
#[derive(Clone)]
pub struct WorkerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHandle").finish_non_exhaustive()
    }
}

impl WorkerHandle {
    /// The settings file changed: read it and report to the hub now, so that a pause or a
    /// withdrawn consent takes effect at once.
    pub fn settings_changed(&self) {
        self.shared.settings_changed.notify_one();
    }

    /// Back up the chosen folders now.
    pub fn back_up_now(&self) {
        self.shared.backup_now.notify_one();
    }
}

async fn flatten(
    handle: tokio::task::JoinHandle<Result<(), WorkerError>>,
) -> Result<(), WorkerError> {
    match handle.await {
        Ok(result) => result,
        Err(error) => Err(WorkerError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(error),
        }),
    }
}
