//! What the tray app's windows are sent beyond the core's own views: the overview every window
//! starts from, and a restore's progress and outcome. Defined here, beside the views they carry,
//! so that the windows' TypeScript types are generated from them with the rest (`ts` feature).

use std::path::PathBuf;

use serde::Serialize;

use crate::settings::Settings;
use crate::worker::AgentState;

use super::TrayStatus;

/// Everything a window shows about the device.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Overview {
    pub registered: bool,
    /// Whether the first-run wizard was finished.
    pub wizard_done: bool,
    /// The subscriber logged in on this device, if any.
    pub email: Option<String>,
    /// The hub this device belongs to, else the one this build or its installer names
    /// ([`super::packaged_hub`]); `None` when the wizard must ask.
    pub hub_url: Option<String>,
    pub device_name: String,
    pub settings: Settings,
    pub state: AgentState,
    pub tray: TrayStatus,
    pub has_backup_key: bool,
    /// Whether the tray starts at login.
    pub autostart: bool,
    pub data_dir: PathBuf,
    /// Where a restore goes unless the user picks another folder.
    pub restore_to: PathBuf,
    /// The user's home folder, where the folder choosers open.
    pub home_dir: PathBuf,
}

/// How far a restore is, sent to the restore window as it goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct RestoreProgress {
    pub files: u64,
    pub bytes: u64,
    pub total_files: u64,
    pub total_bytes: u64,
}

/// What a restore wrote, over every path asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Restored {
    pub files: u64,
    pub bytes: u64,
    /// Files found already in place and not written again.
    pub in_place: u64,
    /// Files that were there, different, and were replaced.
    pub replaced: u64,
    /// Files that were there, different, and were kept, the restored copy put beside them.
    pub kept_both: u64,
}

impl From<surplus_backup::repo::RestoreReport> for Restored {
    fn from(report: surplus_backup::repo::RestoreReport) -> Restored {
        Restored {
            files: report.files,
            bytes: report.bytes,
            in_place: report.in_place,
            replaced: report.replaced,
            kept_both: report.kept_both,
        }
    }
}
