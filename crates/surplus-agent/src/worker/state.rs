//! What the worker last knew, for `surplus status` and the tray app.

use std::path::Path;

use serde::{Deserialize, Serialize};
use surplus_protocol::{Spare, UnixMillis, VaultReport};

/// What the worker last knew, written to `<data-dir>/agent-state.json` for `surplus status` and
/// the tray app.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AgentState {
    pub connected: bool,
    /// The latest snapshot the agent made on its own: when, and its id.
    #[serde(default)]
    pub last_backup: Option<(UnixMillis, String)>,
    #[serde(default)]
    pub last_backup_error: Option<String>,
    /// When the backup running now started; `None` while none runs.
    #[serde(default)]
    pub backing_up_since: Option<UnixMillis>,
    /// How far the backup running now is; `None` while none runs.
    #[serde(default)]
    pub backup_progress: Option<BackupProgress>,
    /// What the latest backup could not read (the first [`SKIPPED_KEPT`] of them), and how many
    /// there were in all.
    #[serde(default)]
    pub last_backup_skipped: Vec<Skipped>,
    #[serde(default)]
    pub last_backup_skipped_count: u64,
    /// Set when, at the latest backup, the hub said holders are too few for its coding: how many
    /// other PCs may hold its shards now. The backup is then not yet safe from this PC's loss.
    #[serde(default)]
    pub backup_holders_short: Option<u32>,
    /// How well off the latest backup is, as the hub's pack states last said: `protected`,
    /// `uploading`, `repairing`, `at_risk` or `lost`; `None` until the hub was asked.
    #[serde(default)]
    #[cfg_attr(
        feature = "ts",
        ts(type = r#""protected" | "uploading" | "repairing" | "at_risk" | "lost" | null"#)
    )]
    pub backup_protection: Option<String>,
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
    /// The user's idle time at the latest heartbeat, and where it was read.
    #[serde(default)]
    pub idle: Option<IdleReading>,
    pub updated_at: UnixMillis,
}

/// One reading of the user's idle time, as `surplus status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct IdleReading {
    /// Where it was read: "GNOME Mutter IdleMonitor", "no user session", "none readable"...
    /// (`probe::IdleSource`).
    pub source: String,
    /// Seconds since the user's last input; absent when there is no user session or it cannot
    /// be read.
    pub idle_seconds: Option<u64>,
    /// There is a user session but its idle time could not be read: donated compute waits.
    pub unknown: bool,
    /// When it was read.
    pub read_at: UnixMillis,
}

/// How far a running backup is: files and bytes of file content done (read, or recognised as
/// unchanged), of the totals counted as it began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct BackupProgress {
    pub files: u64,
    pub files_total: u64,
    pub bytes: u64,
    pub bytes_total: u64,
}

impl BackupProgress {
    /// How long the rest will take, in milliseconds, at the pace of the `elapsed_ms` so far;
    /// `None` while too little is done to tell.
    pub fn left_ms(&self, elapsed_ms: i64) -> Option<i64> {
        const TOO_SOON_MS: i64 = 5_000;
        if self.bytes == 0 || elapsed_ms < TOO_SOON_MS {
            return None;
        }
        let left = self.bytes_total.saturating_sub(self.bytes);
        let pace = elapsed_ms as f64 / self.bytes as f64;
        Some((left as f64 * pace) as i64)
    }
}

/// How many unreadable paths the state keeps: enough to show, not a log.
pub const SKIPPED_KEPT: usize = 20;

/// A file or folder a backup could not read, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

impl AgentState {
    pub const FILE: &'static str = "agent-state.json";

    pub fn load(data_dir: &Path) -> Option<AgentState> {
        let text = std::fs::read_to_string(data_dir.join(Self::FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub(super) fn save(&self, data_dir: &Path) {
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
