//! The worker's knobs that are not user settings.

use std::path::PathBuf;
use std::time::Duration;

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
    /// A file whose disk fields the vault believes over the file system's
    /// ([`crate::probe::OverrideGauge`]), as the end-to-end tests' probe does: set from the
    /// environment only in a build with the `test-hooks` feature.
    pub disk_overrides: Option<PathBuf>,
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
            disk_overrides: crate::probe::override_path(),
        }
    }
}
