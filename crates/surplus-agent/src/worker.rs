//! The background worker: heartbeats, the instruction long poll, and carrying instructions out.
//!
//! Two loops share the device's state. The *reporter* measures the machine and sends heartbeats
//! on the hub's schedule, and at once when something that decides donation changes: the settings
//! file (consent, quota, pause: edited by `surplus` or the tray app while the worker runs) or the
//! user coming back. The *executor* long-polls the hub for instructions and carries them out one
//! at a time, acknowledging each with its result. Both reconnect with backoff while the hub is
//! away. Instructions are executed idempotently by id: a journal of recent results answers a
//! redelivered instruction without doing it twice.

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use surplus_protocol::{
    Acknowledgement, FailureCode, Instruction, InstructionKind, InstructionResult, Spare,
    StatusReport, UnixMillis, UserActivity, VaultReport,
};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::client::{ClientError, HubClient};
use crate::probe::{Probe, Sample};
use crate::settings::Settings;
use crate::untrusted;
use crate::vault::{Vault, VaultError};

mod garbage;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("no hub is set: log in with `surplus --hub URL login` first")]
    NoHub,
    #[error("this device is not registered: run `surplus device register --name NAME` first")]
    NotRegistered,
    #[error("the hub no longer accepts this device's credential ({0}): register the device again")]
    CredentialRejected(String),
    #[error("another agent is already running on {0}")]
    AlreadyRunning(PathBuf),
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the worker last knew, written to `<data-dir>/agent-state.json` for `surplus status` and
/// the tray app.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    pub connected: bool,
    /// The latest snapshot the agent made on its own: when, and its id.
    #[serde(default)]
    pub last_backup: Option<(UnixMillis, String)>,
    #[serde(default)]
    pub last_backup_error: Option<String>,
    pub last_heartbeat: Option<UnixMillis>,
    pub last_error: Option<String>,
    /// The hub refused this agent as too old (`agent_too_old`): the user must update it.
    #[serde(default)]
    pub update_needed: bool,
    pub spare: Option<Spare>,
    /// While the device hands what it holds for others over (it gave storage up): how far.
    #[serde(default)]
    pub handover: Option<surplus_protocol::Handover>,
    pub vault: Option<VaultReport>,
    pub instructions_done: u64,
    /// Compute tasks this device ran to an end, and how many run now.
    #[serde(default)]
    pub tasks_done: u64,
    #[serde(default)]
    pub tasks_running: u32,
    /// Why running tasks are paused, while they are.
    #[serde(default)]
    pub compute_held: Option<String>,
    /// Tasks stopped in the sandbox by the pause right now.
    #[serde(default)]
    pub tasks_paused: u32,
    /// Milliseconds of compute this device ran to an end, all time (for the tray's chart).
    #[serde(default)]
    pub compute_ms_done: u64,
    pub updated_at: UnixMillis,
}

impl AgentState {
    pub const FILE: &'static str = "agent-state.json";

    pub fn load(data_dir: &Path) -> Option<AgentState> {
        let text = std::fs::read_to_string(data_dir.join(Self::FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn save(&self, data_dir: &Path) {
        let Ok(text) = serde_json::to_vec_pretty(self) else {
            return;
        };
        if let Err(error) = crate::atomic_file::write(
            &data_dir.join(Self::FILE),
            &text,
            crate::atomic_file::Visibility::Ordinary,
        ) {
            tracing::debug!(%error, "writing the agent state");
        }
    }
}

/// Knobs of the worker that are not user settings.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// How long one long poll waits.
    pub poll_wait: Duration,
    /// How often the settings file and the user's activity are looked at.
    pub watch_interval: Duration,
    /// The longest wait between reconnection attempts.
    pub max_backoff: Duration,
    /// How long to wait after a change in a backed-up folder before backing up (changes often
    /// come in bursts).
    pub backup_debounce: Duration,
    /// How often the backed-up folders are scanned without a change being seen.
    pub backup_interval: Duration,
    /// Whether this worker backs the chosen folders up (not while `surplus leave` hands over).
    pub backups: bool,
    /// How to start a compute task's own process (on Unix): the program that embeds the agent,
    /// with an argument that makes it run one task ([`crate::compute::serve_task`]). Without
    /// one, tasks run in the agent's process, with epoch checks.
    pub task_runner: Option<surplus_sandbox::Runner>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            poll_wait: Duration::from_secs(25),
            watch_interval: Duration::from_secs(2),
            max_backoff: Duration::from_secs(30),
            backup_debounce: Duration::from_secs(30),
            backup_interval: Duration::from_secs(3600),
            backups: true,
            task_runner: None,
        }
    }
}

/// The state both loops share.
struct Shared {
    data_dir: PathBuf,
    client: HubClient,
    token: String,
    probe: Mutex<Box<dyn Probe>>,
    settings: Mutex<Settings>,
    vault: Mutex<Option<Vault>>,
    state: Mutex<AgentState>,
    journal: Mutex<Journal>,
    /// Wakes the reporter for an immediate heartbeat.
    report_now: Notify,
    /// Asks the settings to be read again at once (rather than at the next watch tick).
    settings_changed: Notify,
    /// Wakes the backup loop for a backup now.
    backup_now: Notify,
    /// Donated compute: the sandbox and the tasks running in it.
    compute: crate::compute::Compute,
    /// Whether the machine ran on battery at the latest full sample.
    on_battery: Mutex<Option<bool>>,
    /// The machine's logical cores at the latest full sample (0 before the first).
    cores: std::sync::atomic::AtomicU32,
    /// Requests that failed to reach the hub: after one, the vault is checked again against what
    /// the hub knows (`garbage`), since a hub restored from a backup was away.
    failures: garbage::Failures,
}

impl Shared {
    fn settings(&self) -> Settings {
        self.settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What a task may ask of this device at most, from the cores last seen and the user's
    /// share of them.
    fn task_ceilings(&self) -> untrusted::TaskCeilings {
        let cores = match self.cores.load(std::sync::atomic::Ordering::Relaxed) {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            seen => usize::try_from(seen).unwrap_or(1),
        };
        untrusted::TaskCeilings::for_device(cores, self.settings().compute.cores_percent)
    }

    fn update_state(&self, change: impl FnOnce(&mut AgentState)) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut state);
        state.updated_at = now_ms();
        state.save(&self.data_dir);
    }

    /// Opens the vault once storage is consented (or when it already exists, to report what it
    /// holds), and keeps its limits in line with the settings and the disk.
    fn sync_vault(&self, settings: &Settings, disk: crate::DiskSpace) -> Result<bool, VaultError> {
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
            let gauge = crate::probe::OverrideGauge::from_env(crate::vault::FilesystemGauge);
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

    fn vault_report(&self) -> Option<VaultReport> {
        self.vault
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(Vault::report)
    }

    /// Measures the machine and builds the report the hub decides from.
    fn report(&self) -> StatusReport {
        let settings = self.settings();
        let vault_dir = settings.vault_dir(&self.data_dir);
        let sample = self
            .probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sample(&vault_dir);
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
        build_report(&settings, &sample, vault)
    }
}

/// Puts the settings and a sample of the machine into the hub's report form.
pub fn build_report(settings: &Settings, sample: &Sample, vault: VaultReport) -> StatusReport {
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
        pause: settings.pause,
    }
}

/// The local time's offset from UTC, now.
pub fn utc_offset_minutes() -> i32 {
    chrono::Local::now().offset().local_minus_utc() / 60
}

pub fn now_ms() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

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
            cores: std::sync::atomic::AtomicU32::new(0),
            failures: garbage::Failures::default(),
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
        let reporter = tokio::spawn(report_loop(
            self.shared.clone(),
            self.options.clone(),
            stopped.clone(),
        ));
        let executor = tokio::spawn(execute_loop(
            self.shared.clone(),
            self.options.clone(),
            stopped.clone(),
        ));
        let backups = if self.options.backups {
            tokio::spawn(backup_loop(
                self.shared.clone(),
                self.options.clone(),
                stopped.clone(),
            ))
        } else {
            tokio::spawn(std::future::pending())
        };
        let guard = tokio::spawn(compute_guard(self.shared.clone(), stopped));
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

/// Pauses running tasks as soon as the machine is not free for them (the user is back, donation
/// paused or consent withdrawn, on battery, outside the window) and resumes them when it is again.
/// The user's activity is read every [`crate::compute::GUARD_INTERVAL`] while tasks run, so that a
/// task is paused well within a second of the user's return; while none runs, the guard sleeps
/// until one is admitted, so an idle agent is not woken five times a second.
async fn compute_guard(
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let mut tick = tokio::time::interval(crate::compute::GUARD_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Other programs' CPU use, smoothed, and whether it holds the work now.
    let mut busy: Option<f32> = None;
    let mut busy_held = false;
    loop {
        tokio::select! {
            _ = stop.wait_for(|&s| s) => return Ok(()),
            _ = tick.tick() => {}
        }
        if shared.compute.running() == 0 && !shared.compute.is_paused() {
            busy = None;
            busy_held = false;
            tokio::select! {
                _ = stop.wait_for(|&s| s) => return Ok(()),
                () = shared.compute.admitted() => {}
            }
            // A task that starts is judged at once, then every interval.
            tick.reset_immediately();
            continue;
        }
        let settings = shared.settings();
        let (user, reading) = {
            let mut probe = shared.probe.lock().unwrap_or_else(PoisonError::into_inner);
            (probe.user(), probe.busy())
        };
        let smoothed = busy.map_or(reading, |before| {
            before + (reading - before) * crate::compute::BUSY_SMOOTHING
        });
        busy = Some(smoothed);
        busy_held =
            crate::compute::busy_holds(settings.compute.busy_cpu_percent, smoothed, busy_held);
        let on_battery = *shared
            .on_battery
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let held = crate::compute::hold_reason(
            &settings,
            user,
            on_battery,
            now_ms(),
            crate::compute::local_minute(),
        )
        .or(busy_held.then_some("other programs are busy"));
        if shared.compute.set_paused(held.is_some()) {
            match held {
                Some(reason) => {
                    tracing::info!(reason, tasks = shared.compute.running(), "compute paused")
                }
                None => tracing::info!(tasks = shared.compute.running(), "compute resumed"),
            }
            shared.update_state(|state| state.compute_held = held.map(str::to_owned));
        }
        let paused = u32::try_from(shared.compute.paused_tasks()).unwrap_or(u32::MAX);
        if shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tasks_paused
            != paused
        {
            shared.update_state(|state| state.tasks_paused = paused);
        }
    }
}

/// Continuous backup: the chosen folders are backed up shortly after something in them changes
/// (file-system events, debounced) and at least every `backup_interval`. Keys must exist already
/// (the first `surplus backup now` makes them, asking for the recovery passphrase): the agent
/// never asks for a passphrase.
async fn backup_loop(
    shared: Arc<Shared>,
    options: WorkerOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    use notify::Watcher;
    let (changed, mut changes) = tokio::sync::mpsc::unbounded_channel::<()>();
    // Kept alive while watching; replaced when the folders change.
    let mut _watcher: Option<notify::RecommendedWatcher> = None;
    let mut watched: Vec<PathBuf> = Vec::new();
    let mut next_scan = tokio::time::Instant::now() + options.backup_debounce;
    loop {
        let folders = shared.settings().backup.folders;
        if folders != watched {
            let sender = changed.clone();
            let mut fresh =
                notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                    if event.is_ok_and(|e| !e.kind.is_access()) {
                        let _ = sender.send(());
                    }
                })
                .ok();
            for folder in &folders {
                if let Some(watcher) = fresh.as_mut()
                    && let Err(error) = watcher.watch(folder, notify::RecursiveMode::Recursive)
                {
                    tracing::warn!(%error, folder = %folder.display(), "cannot watch a backed-up folder; it is scanned hourly");
                }
            }
            _watcher = fresh;
            watched = folders.clone();
        }
        let changed_now = tokio::select! {
            _ = stop.wait_for(|&s| s) => return Ok(()),
            _ = tokio::time::sleep_until(next_scan) => false,
            _ = shared.backup_now.notified() => false,
            Some(()) = changes.recv() => true,
        };
        if changed_now {
            // Let a burst of changes settle, then take them all in one backup.
            tokio::select! {
                _ = stop.wait_for(|&s| s) => return Ok(()),
                _ = tokio::time::sleep(options.backup_debounce) => {}
            }
            while changes.try_recv().is_ok() {}
        }
        next_scan = tokio::time::Instant::now() + options.backup_interval;
        if folders.is_empty() {
            continue;
        }
        let credentials = crate::credentials::CredentialStore::open(&shared.data_dir)?;
        let Some(key) = credentials.backup_key()? else {
            tracing::info!("backups wait for keys: run `surplus backup now` once to set them up");
            shared.update_state(|state| {
                state.last_backup_error =
                    Some("backups wait for the recovery passphrase to be set".to_owned());
            });
            continue;
        };
        let host = crate::backup::snapshot_host(&shared.settings());
        let (client, token, handle) = (
            shared.client.clone(),
            shared.token.clone(),
            tokio::runtime::Handle::current(),
        );
        let (coding, warning) = match crate::backup::coding(&client, &token).await {
            Ok(advice) => advice,
            Err(error) => {
                tracing::warn!(%error, "cannot ask the hub how to code backups; trying again later");
                next_scan = tokio::time::Instant::now() + Duration::from_secs(60);
                continue;
            }
        };
        if let Some(warning) = warning {
            tracing::warn!(%warning, "backups are not fully protected");
        }
        let rate = shared.settings().bandwidth_bytes_per_second;
        let data_dir = shared.data_dir.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let _lock = crate::backup::BackupLock::acquire(&data_dir, || {
                tracing::info!("another backup runs on this data directory; waiting for it");
            })
            .map_err(|source| surplus_backup::repo::BackupError::Io {
                path: data_dir.join("backup.lock"),
                source,
            })?;
            let mut store = crate::backup::HubStore::new(client, token, handle);
            store.upload_rate = rate;
            let key = surplus_backup::keys::MasterKey::from_bytes(key);
            let mut repository = crate::backup::open_repository(store, &key, coding, &data_dir)?;
            crate::backup::take_snapshot(&mut repository, &folders, &host)
        })
        .await
        .map_err(|e| WorkerError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })?;
        match outcome {
            Ok(report) => {
                let summary = report.snapshot.map(|s| s.summary).unwrap_or_default();
                tracing::info!(snapshot = %report.snapshot_id, files = summary.files, new_bytes = summary.new_bytes, "backed up");
                for (path, reason) in &report.skipped {
                    tracing::warn!(path = %path.display(), %reason, "not backed up");
                }
                shared.update_state(|state| {
                    state.last_backup = Some((now_ms(), report.snapshot_id.clone()));
                    state.last_backup_error = None;
                });
            }
            Err(error) => {
                tracing::warn!(%error, "backup failed; trying again later");
                shared.update_state(|state| state.last_backup_error = Some(error.to_string()));
                next_scan = tokio::time::Instant::now()
                    + options.backup_debounce.max(Duration::from_secs(60));
            }
        }
    }
}

/// A credential the hub no longer accepts ends the worker: retrying cannot help.
fn fatal(error: &ClientError) -> Option<WorkerError> {
    use surplus_protocol::ErrorCode;
    match error.code() {
        Some(code @ (ErrorCode::Unauthorized | ErrorCode::DeviceRevoked)) => {
            Some(WorkerError::CredentialRejected(code.to_string()))
        }
        _ => None,
    }
}

/// Exponential backoff with jitter, for reconnecting while the hub is away.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Backoff {
        Backoff {
            next: Duration::from_millis(250),
            max,
        }
    }

    fn reset(&mut self) {
        self.next = Duration::from_millis(250);
    }

    fn step(&mut self) -> Duration {
        let jitter = Duration::from_millis(u64::from(rand::random::<u8>()));
        let wait = self.next + jitter;
        self.next = (self.next * 2).min(self.max);
        wait.min(self.max)
    }
}

/// Which user activity counts as "away" under the current limits: a change of it is worth an
/// immediate heartbeat, so donated work stops within seconds when the user comes back.
fn user_away(user: UserActivity, settings: &Settings) -> bool {
    match user {
        UserActivity::None => true,
        UserActivity::Unknown => false,
        UserActivity::Idle { idle_seconds } => {
            idle_seconds >= u64::from(settings.compute.idle_minutes) * 60
        }
    }
}

async fn report_loop(
    shared: Arc<Shared>,
    options: WorkerOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let mut backoff = Backoff::new(options.max_backoff);
    let mut interval = Duration::from_secs(30);
    let mut last_stamp = settings_stamp(&shared.data_dir);
    let mut away = None;
    let mut next_heartbeat = tokio::time::Instant::now();
    let mut history_at: Option<UnixMillis> = None;
    // When the vault is next checked against what the hub knows.
    let mut collection = garbage::Due::default();
    let mut watch = tokio::time::interval(options.watch_interval);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|&s| s) => return Ok(()),
            _ = tokio::time::sleep_until(next_heartbeat) => {}
            _ = shared.report_now.notified() => {}
            _ = shared.settings_changed.notified() => {
                match Settings::load(&shared.data_dir) {
                    Ok(settings) => {
                        last_stamp = settings_stamp(&shared.data_dir);
                        *shared.settings.lock().unwrap_or_else(PoisonError::into_inner) = settings;
                    }
                    Err(error) => tracing::warn!(%error, "the settings file is not valid; keeping the previous settings"),
                }
            }
            _ = watch.tick() => {
                let stamp = settings_stamp(&shared.data_dir);
                let mut changed = false;
                if stamp != last_stamp {
                    last_stamp = stamp;
                    match Settings::load(&shared.data_dir) {
                        Ok(settings) => {
                            tracing::info!("settings changed; reporting to the hub");
                            *shared.settings.lock().unwrap_or_else(PoisonError::into_inner) = settings;
                            changed = true;
                        }
                        Err(error) => tracing::warn!(%error, "the settings file is not valid; keeping the previous settings"),
                    }
                }
                let settings = shared.settings();
                let sample = shared.probe.lock().unwrap_or_else(PoisonError::into_inner).sample(&settings.vault_dir(&shared.data_dir));
                *shared.on_battery.lock().unwrap_or_else(PoisonError::into_inner) = sample.on_battery;
                let user = sample.user;
                let now_away = user_away(user, &settings);
                if away.is_some_and(|was| was != now_away) {
                    tracing::info!(away = now_away, "user activity changed; reporting to the hub");
                    changed = true;
                }
                away = Some(now_away);
                if !changed {
                    continue;
                }
            }
        }
        let report = {
            let shared = shared.clone();
            tokio::task::spawn_blocking(move || shared.report())
                .await
                .map_err(|e| WorkerError::Io {
                    path: PathBuf::new(),
                    source: std::io::Error::other(e),
                })?
        };
        let failed_before = shared.failures.so_far();
        match shared.client.heartbeat(&shared.token, &report).await {
            Ok(response) => {
                backoff.reset();
                interval = Duration::from_secs(u64::from(response.next_heartbeat_seconds.max(1)));
                next_heartbeat = tokio::time::Instant::now() + interval;
                shared.update_state(|state| {
                    state.connected = true;
                    state.last_heartbeat = Some(now_ms());
                    state.last_error = None;
                    state.update_needed = false;
                    state.spare = Some(response.spare);
                    state.handover = response.handover;
                    state.vault = Some(report.vault.clone());
                });
                if collection.answered(failed_before, tokio::time::Instant::now()) {
                    tokio::spawn(garbage::collect(shared.clone()));
                }
                // The chart's history takes a point a quarter of an hour: the file is only
                // read and written when one is due, not on every heartbeat.
                let now = now_ms();
                if history_at.is_none_or(|at| now - at >= crate::control::history::HISTORY_STEP_MS)
                {
                    history_at = Some(now);
                    let compute_ms = shared
                        .state
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .compute_ms_done;
                    crate::control::history::record(
                        &shared.data_dir,
                        crate::control::history::Point {
                            at: now,
                            stored_bytes: report.vault.used_bytes,
                            compute_ms,
                        },
                    );
                }
            }
            Err(error) => {
                if let Some(fatal) = fatal(&error) {
                    return Err(fatal);
                }
                shared.failures.count();
                let wait = backoff.step().min(interval);
                tracing::warn!(%error, retry_in = ?wait, "heartbeat failed");
                next_heartbeat = tokio::time::Instant::now() + wait;
                let too_old = error.code() == Some(surplus_protocol::ErrorCode::AgentTooOld);
                shared.update_state(|state| {
                    state.connected = false;
                    state.last_error = Some(error.to_string());
                    state.update_needed = too_old;
                });
            }
        }
    }
}

async fn execute_loop(
    shared: Arc<Shared>,
    options: WorkerOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    // Transfers (fetching blobs) run one at a time beside the poll, so that a long download
    // never holds up a request for a fresh report or a proof of storage.
    let (transfer_queue, mut transfers) = tokio::sync::mpsc::unbounded_channel::<Instruction>();
    let in_flight: Arc<Mutex<std::collections::HashSet<Uuid>>> = Arc::default();
    let mut transfer_task = tokio::spawn({
        let shared = shared.clone();
        let in_flight = in_flight.clone();
        async move {
            while let Some(instruction) = transfers.recv().await {
                let id = instruction.id;
                let outcome = carry_out(&shared, instruction).await;
                in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
                outcome?;
            }
            Ok::<(), WorkerError>(())
        }
    });
    let mut backoff = Backoff::new(options.max_backoff);
    loop {
        let batch = tokio::select! {
            _ = stop.wait_for(|&s| s) => {
                transfer_task.abort();
                return Ok(());
            }
            finished = &mut transfer_task => return finished.unwrap_or(Ok(())),
            batch = shared.client.poll(&shared.token, options.poll_wait) => batch,
        };
        let instructions = match batch {
            Ok(instructions) => {
                backoff.reset();
                instructions
            }
            Err(error) => {
                if let Some(fatal) = fatal(&error) {
                    transfer_task.abort();
                    return Err(fatal);
                }
                shared.failures.count();
                let wait = backoff.step();
                tracing::warn!(%error, retry_in = ?wait, "polling for instructions failed");
                tokio::select! {
                    _ = stop.wait_for(|&s| s) => {
                        transfer_task.abort();
                        return Ok(());
                    }
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        for instruction in instructions {
            if *stop.borrow() {
                transfer_task.abort();
                return Ok(());
            }
            if matches!(instruction.kind, InstructionKind::RunTask { .. }) {
                // Tasks run beside everything else, each on a thread of its own; one already
                // running here is not started twice when the hub sends it again.
                if in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(instruction.id)
                {
                    let shared = shared.clone();
                    let in_flight = in_flight.clone();
                    tokio::spawn(async move {
                        let id = instruction.id;
                        if let Err(error) = carry_out(&shared, instruction).await {
                            tracing::warn!(%error, "a task's answer was refused");
                        }
                        in_flight
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .remove(&id);
                    });
                }
            } else if matches!(
                instruction.kind,
                InstructionKind::StoreBlob { .. } | InstructionKind::UploadBlob { .. }
            ) {
                // Redelivered while still queued or running here: nothing to add.
                if in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(instruction.id)
                {
                    let _ = transfer_queue.send(instruction);
                }
            } else {
                carry_out(&shared, instruction).await?;
            }
        }
    }
}

/// Executes one instruction (or recalls its result) and acknowledges it.
#[tracing::instrument(skip_all, fields(id = %instruction.id, kind = instruction.kind.name()))]
async fn carry_out(shared: &Arc<Shared>, instruction: Instruction) -> Result<(), WorkerError> {
    let recalled = shared
        .journal
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(instruction.id);
    let result = match recalled {
        Some(result) => result,
        None => {
            let Some(result) = execute(shared, &instruction).await else {
                // A passing fault (the hub away mid-download): leave it unacknowledged; the hub
                // delivers it again when its lease runs out.
                return Ok(());
            };
            shared
                .journal
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(instruction.id, &result);
            result
        }
    };
    if let InstructionResult::Failed { code, message } = &result {
        tracing::info!(code = code.as_str(), %message, "instruction failed");
    }
    let ack = Acknowledgement {
        result,
        vault: shared.vault_report(),
    };
    match shared
        .client
        .acknowledge(&shared.token, instruction.id, &ack)
        .await
    {
        Ok(()) => {
            shared.update_state(|state| {
                state.instructions_done += 1;
                if ack.vault.is_some() {
                    state.vault = ack.vault.clone();
                }
            });
            Ok(())
        }
        Err(error) => match fatal(&error) {
            Some(fatal) => Err(fatal),
            None => {
                // The result is in the journal; the redelivered instruction is answered from it.
                tracing::warn!(%error, "acknowledging failed; the hub will deliver the instruction again");
                Ok(())
            }
        },
    }
}

fn failed(code: FailureCode, message: impl Into<String>) -> InstructionResult {
    InstructionResult::Failed {
        code,
        message: message.into(),
    }
}

/// Carries an instruction out. `None` means a passing fault worth another try later.
async fn execute(shared: &Arc<Shared>, instruction: &Instruction) -> Option<InstructionResult> {
    if instruction.expires_at <= now_ms() {
        return Some(failed(
            FailureCode::Expired,
            "the instruction expired before it ran",
        ));
    }
    // The hub is untrusted: nothing it names is used before it passed the device's own rules.
    let ceilings = shared.task_ceilings();
    if let Err(refusal) = untrusted::check_instruction(&instruction.kind, &ceilings) {
        tracing::warn!(kind = instruction.kind.name(), %refusal, "refused an instruction from the hub");
        return Some(failed(FailureCode::Refused, refusal.to_string()));
    }
    match &instruction.kind {
        InstructionKind::ReportStatus => {
            let shared = shared.clone();
            let report = tokio::task::spawn_blocking(move || shared.report())
                .await
                .ok()?;
            Some(InstructionResult::Reported {
                report: Box::new(report),
            })
        }
        InstructionKind::StoreBlob { blob, .. } => store_blob(shared, &blob.hash, blob.size).await,
        InstructionKind::DeleteBlob { hash, .. } => {
            let owned_hash = hash.clone();
            let outcome = with_vault(shared, move |vault| vault.delete(&owned_hash)).await;
            Some(match outcome {
                Some(Ok(_)) | None => InstructionResult::Deleted { hash: hash.clone() },
                Some(Err(error)) => failed(error.failure_code(), error.to_string()),
            })
        }
        InstructionKind::VerifyBlob {
            hash,
            offset,
            length,
        } => {
            let (offset, length) = (*offset, *length);
            let hash_for_vault = hash.clone();
            let outcome = with_vault(shared, move |vault| {
                vault.prove(&hash_for_vault, offset, length)
            })
            .await;
            Some(match outcome {
                Some(Ok(slice)) => InstructionResult::Verified {
                    hash: hash.clone(),
                    proof: hex::encode(slice),
                },
                Some(Err(error)) => failed(error.failure_code(), error.to_string()),
                None => failed(FailureCode::NotFound, "this device has no vault"),
            })
        }
        InstructionKind::UploadBlob { hash } => upload_blob(shared, hash).await,
        InstructionKind::RunTask {
            run,
            module,
            input,
            args,
            seed,
            limits,
            floats,
        } => {
            let settings = shared.settings();
            if !settings.consent.compute {
                return Some(failed(
                    FailureCode::NoConsent,
                    "the user has not consented to donate compute",
                ));
            }
            if settings.pause.is_paused(now_ms()) {
                return Some(failed(
                    FailureCode::Paused,
                    "donation is paused on this device",
                ));
            }
            let order = crate::compute::TaskOrder {
                run: *run,
                module: module.clone(),
                input: input.clone(),
                args: args.clone(),
                seed: *seed,
                limits: *limits,
                floats: *floats,
                deadline: instruction.expires_at,
            };
            shared.update_state(|state| state.tasks_running += 1);
            let result = shared
                .compute
                .run(
                    &shared.client,
                    &shared.token,
                    order,
                    ceilings.concurrent_tasks,
                )
                .await;
            shared.update_state(|state| {
                state.tasks_running = state.tasks_running.saturating_sub(1);
                if let Some(InstructionResult::Ran { running_ms, .. }) = &result {
                    state.tasks_done += 1;
                    state.compute_ms_done += running_ms;
                }
            });
            result
        }
        InstructionKind::CancelTask { run } => {
            shared.compute.cancel(*run);
            Some(InstructionResult::Cancelled { run: *run })
        }
        InstructionKind::Unsupported => Some(failed(
            FailureCode::Unsupported,
            "this agent does not know that instruction; update it",
        )),
    }
}

/// Runs `work` on the vault in a blocking thread. `None` when there is no vault.
async fn with_vault<T: Send + 'static>(
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

/// Fetches a blob from the hub's staging store into the vault, streaming, within the bandwidth
/// cap; the vault verifies size and hash and refuses what would break its quota or floor.
async fn store_blob(shared: &Arc<Shared>, hash: &str, size: u64) -> Option<InstructionResult> {
    let settings = shared.settings();
    if !settings.consent.storage {
        return Some(failed(
            FailureCode::NoConsent,
            "the user has not consented to donate storage",
        ));
    }
    if settings.pause.is_paused(now_ms()) {
        return Some(failed(
            FailureCode::Paused,
            "donation is paused on this device",
        ));
    }
    // Make sure the vault is open with current limits, and refuse early what cannot fit.
    let refresh = shared.clone();
    if let Err(error) = tokio::task::spawn_blocking(move || refresh.report()).await {
        tracing::warn!(%error, "refreshing the vault's report");
    }
    let owned_hash = hash.to_owned();
    match with_vault(shared, move |vault| {
        (vault.contains(&owned_hash), vault.report())
    })
    .await
    {
        None => return Some(failed(FailureCode::NoConsent, "this device has no vault")),
        Some((true, _)) => {
            return Some(InstructionResult::Stored {
                hash: hash.to_owned(),
                size,
            });
        }
        Some((false, vault)) if vault.used_bytes.saturating_add(size) > vault.quota_bytes => {
            return Some(failed(
                FailureCode::QuotaExceeded,
                format!(
                    "{size} more bytes would exceed the vault's quota of {} bytes",
                    vault.quota_bytes
                ),
            ));
        }
        Some((false, _)) => {}
    }
    // Download without holding the vault, so heartbeats and other instructions go on meanwhile;
    // then the vault verifies and admits the file under its own rules.
    let incoming = match download(shared, hash, size, settings.bandwidth_bytes_per_second).await {
        Ok(Some(path)) => path,
        Ok(None) => {
            return Some(failed(
                FailureCode::NotFound,
                "the hub no longer has that blob",
            ));
        }
        Err(error) => {
            tracing::warn!(%error, "fetching a blob failed; will try again");
            return None;
        }
    };
    let owned_hash = hash.to_owned();
    let source = incoming.clone();
    let outcome = with_vault(shared, move |vault| {
        let file = std::fs::File::open(&source).map_err(|source_error| VaultError::Io {
            path: source.clone(),
            source: source_error,
        })?;
        vault.put(&owned_hash, std::io::BufReader::new(file), size)
    })
    .await;
    let _ = tokio::fs::remove_file(&incoming).await;
    match outcome {
        Some(Ok(stored)) => Some(InstructionResult::Stored {
            hash: stored.hash,
            size: stored.size,
        }),
        Some(Err(error)) => Some(failed(error.failure_code(), error.to_string())),
        None => Some(failed(FailureCode::NoConsent, "this device has no vault")),
    }
}

/// Sends a blob the vault keeps back to the hub's staging store. The vault verifies it first: a
/// blob altered on this disk is reported as corrupt, never sent.
async fn upload_blob(shared: &Arc<Shared>, hash: &str) -> Option<InstructionResult> {
    let owned_hash = hash.to_owned();
    let opened = with_vault(shared, move |vault| vault.open_verified(&owned_hash)).await;
    let file = match opened {
        Some(Ok(file)) => file,
        Some(Err(error)) => return Some(failed(error.failure_code(), error.to_string())),
        None => return Some(failed(FailureCode::NotFound, "this device has no vault")),
    };
    let size = match file.metadata() {
        Ok(meta) => meta.len(),
        Err(error) => return Some(failed(FailureCode::Io, error.to_string())),
    };
    let mut file = tokio::fs::File::from_std(file);
    if let Err(error) = tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start(0)).await
    {
        return Some(failed(FailureCode::Io, error.to_string()));
    }
    let rate = shared.settings().bandwidth_bytes_per_second;
    let stream = crate::client::throttle(tokio_util::io::ReaderStream::new(file), rate);
    match shared
        .client
        .upload_blob(
            &shared.token,
            hash,
            size,
            reqwest::Body::wrap_stream(stream),
        )
        .await
    {
        Ok(_) => Some(InstructionResult::Uploaded {
            hash: hash.to_owned(),
        }),
        Err(error) => {
            tracing::warn!(%error, "uploading a blob failed; will try again");
            None
        }
    }
}

/// Streams a blob from the hub into `<data-dir>/incoming`, within the bandwidth cap. `Ok(None)`
/// when the hub no longer has it; an error for faults worth another try.
async fn download(
    shared: &Arc<Shared>,
    hash: &str,
    size: u64,
    rate: Option<u64>,
) -> Result<Option<PathBuf>, String> {
    use tokio::io::AsyncWriteExt;
    let stream = match shared.client.download_blob(&shared.token, hash).await {
        Ok(stream) => stream,
        Err(ClientError::Hub { body, .. })
            if body.error == surplus_protocol::ErrorCode::NotFound =>
        {
            return Ok(None);
        }
        Err(error) => return Err(error.to_string()),
    };
    let dir = shared.data_dir.join("incoming");
    untrusted::private_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // The hash passed `untrusted::blob_hash`, so this stays in `incoming`; a partial file left by
    // an interrupted download is replaced, and nothing else there is followed.
    let name = format!(
        "{}.part",
        untrusted::blob_hash(hash).map_err(|e| e.to_string())?
    );
    let path = dir.join(&name);
    let _ = std::fs::remove_file(&path);
    let mut file = untrusted::create_new(&dir, &name)
        .map(tokio::fs::File::from_std)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut stream = crate::client::throttle(stream, rate);
    let mut received = 0u64;
    let outcome = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("the download broke off: {e}"))?;
            received += chunk.len() as u64;
            if received > size {
                return Err(format!("the hub sent more than the {size} bytes announced"));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        file.flush()
            .await
            .map_err(|e| format!("{}: {e}", path.display()))
    }
    .await;
    if let Err(error) = outcome {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(error);
    }
    Ok(Some(path))
}

/// Recent instruction results by id, kept in `<data-dir>/journal.jsonl` so that a redelivered
/// instruction is answered, not executed again, even across a restart.
struct Journal {
    path: PathBuf,
    results: HashMap<Uuid, InstructionResult>,
    order: VecDeque<Uuid>,
}

#[derive(Serialize, Deserialize)]
struct JournalEntry {
    id: Uuid,
    result: InstructionResult,
}

impl Journal {
    const KEEP: usize = 1000;

    fn open(data_dir: &Path) -> Journal {
        let path = data_dir.join("journal.jsonl");
        let mut journal = Journal {
            path,
            results: HashMap::new(),
            order: VecDeque::new(),
        };
        if let Ok(text) = std::fs::read_to_string(&journal.path) {
            for entry in text
                .lines()
                .filter_map(|line| serde_json::from_str::<JournalEntry>(line).ok())
            {
                journal.remember(entry.id, entry.result);
            }
            if journal.order.len() < text.lines().count() {
                journal.compact();
            }
        }
        journal
    }

    fn remember(&mut self, id: Uuid, result: InstructionResult) {
        if self.results.insert(id, result).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > Self::KEEP {
            if let Some(old) = self.order.pop_front() {
                self.results.remove(&old);
            }
        }
    }

    fn get(&self, id: Uuid) -> Option<InstructionResult> {
        self.results.get(&id).cloned()
    }

    fn record(&mut self, id: Uuid, result: &InstructionResult) {
        self.remember(id, result.clone());
        let entry = JournalEntry {
            id,
            result: result.clone(),
        };
        // Never an empty line in place of a result that cannot be written down.
        let appended = serde_json::to_string(&entry)
            .map_err(std::io::Error::from)
            .and_then(|line| {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?;
                writeln!(file, "{line}")?;
                file.sync_data()
            });
        if let Err(error) = appended {
            tracing::warn!(%error, "writing the instruction journal");
        }
        if self.order.len() == Self::KEEP {
            self.compact();
        }
    }

    fn compact(&self) {
        let mut text = String::new();
        for id in &self.order {
            if let Some(result) = self.results.get(id)
                && let Ok(line) = serde_json::to_string(&JournalEntry {
                    id: *id,
                    result: result.clone(),
                })
            {
                text.push_str(&line);
                text.push('\n');
            }
        }
        if let Err(error) = crate::atomic_file::write(
            &self.path,
            text.as_bytes(),
            crate::atomic_file::Visibility::Ordinary,
        ) {
            tracing::warn!(%error, "compacting the instruction journal");
        }
    }
}

fn settings_stamp(data_dir: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(Settings::path(data_dir)).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_answers_a_redelivered_instruction_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = Uuid::now_v7();
        let result = InstructionResult::Deleted {
            hash: "ab".repeat(32),
        };
        Journal::open(dir.path()).record(id, &result);
        let reopened = Journal::open(dir.path());
        assert_eq!(reopened.get(id), Some(result));
        assert_eq!(reopened.get(Uuid::now_v7()), None);
    }

    #[test]
    fn the_journal_keeps_only_recent_results() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut journal = Journal::open(dir.path());
        let ids: Vec<Uuid> = (0..Journal::KEEP + 5).map(|_| Uuid::now_v7()).collect();
        for id in &ids {
            journal.record(
                *id,
                &InstructionResult::Deleted {
                    hash: String::new(),
                },
            );
        }
        let reopened = Journal::open(dir.path());
        assert_eq!(reopened.get(ids[0]), None);
        assert!(reopened.get(ids[ids.len() - 1]).is_some());
        assert!(reopened.order.len() <= Journal::KEEP);
    }

    #[test]
    fn backoff_grows_to_its_ceiling() {
        let mut backoff = Backoff::new(Duration::from_secs(4));
        let waits: Vec<Duration> = (0..8).map(|_| backoff.step()).collect();
        assert!(waits[0] < Duration::from_secs(1));
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(4)));
        assert_eq!(waits[7], Duration::from_secs(4));
        backoff.reset();
        assert!(backoff.step() < Duration::from_secs(1));
    }
}
