//! Whether the user's files are safe, in one sentence: the headline of the tray's tooltip and of
//! the Status window ("Backed up 5 min ago", "Backing up...", "Some files could not be read (3):
//! see Status").

use serde::Serialize;
use surplus_protocol::{PauseState, UnixMillis};

use crate::settings::Settings;
use crate::worker::{AgentState, BackupProgress};

/// How well off the backups are, for the colour of the headline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum HealthLevel {
    /// Backed up, with nothing to worry about that this PC knows of.
    Good,
    /// A backup runs now.
    Working,
    /// Backed up, but not all of it, or not yet safe from this PC's loss.
    Warning,
    /// The last backup failed.
    Trouble,
    /// Nothing to back up yet, or not set up.
    Idle,
}

/// The backups' headline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct BackupHealth {
    pub level: HealthLevel,
    pub sentence: String,
}

impl BackupHealth {
    /// A device that has not joined a hub yet.
    pub fn not_set_up() -> BackupHealth {
        BackupHealth {
            level: HealthLevel::Idle,
            sentence: "Not set up yet".into(),
        }
    }
}

/// The backups' headline for a device with `settings` whose worker last knew `state`, at `now`;
/// `ago` says how long ago a moment was ("5 min ago").
pub fn backup_health(
    settings: &Settings,
    state: &AgentState,
    now: UnixMillis,
    ago: impl Fn(UnixMillis) -> String,
) -> BackupHealth {
    let said = |level, sentence: String| BackupHealth { level, sentence };
    if settings.backup.folders.is_empty() {
        return said(
            HealthLevel::Idle,
            "No folders are backed up yet: choose some in Settings".into(),
        );
    }
    if let Some(since) = state.backing_up_since {
        return said(
            HealthLevel::Working,
            backing_up(state.backup_progress, now - since),
        );
    }
    if state.last_backup_error.is_some() {
        return said(
            HealthLevel::Trouble,
            "The last backup failed: see Status".into(),
        );
    }
    let paused = match settings.backup.pause {
        PauseState::Until { until } if until > now => " (backups paused)",
        PauseState::Indefinitely => " (backups paused)",
        _ => "",
    };
    let Some((at, _)) = &state.last_backup else {
        return said(HealthLevel::Idle, format!("Not backed up yet{paused}"));
    };
    let when = ago(*at);
    if state.last_backup_skipped_count > 0 {
        return said(
            HealthLevel::Warning,
            format!(
                "Backed up {when}, but some files could not be read ({}): see Status{paused}",
                state.last_backup_skipped_count
            ),
        );
    }
    match state.backup_holders_short {
        Some(0) => said(
            HealthLevel::Warning,
            format!(
                "Backed up {when}, but no other PC holds it yet: not safe if this PC is lost{paused}"
            ),
        ),
        Some(holders) => said(
            HealthLevel::Warning,
            format!(
                "Backed up {when}, but only {holders} other PC{} can hold it yet: not safe if this PC is lost{paused}",
                if holders == 1 { "" } else { "s" }
            ),
        ),
        None => match state.backup_protection.as_deref() {
            Some("protected") => said(
                HealthLevel::Good,
                format!("Backed up {when} · fully protected{paused}"),
            ),
            Some("uploading") => said(
                HealthLevel::Working,
                format!("Backed up {when} · being spread to other PCs{paused}"),
            ),
            Some("repairing") => said(
                HealthLevel::Warning,
                format!("Backed up {when} · being repaired, restorable meanwhile{paused}"),
            ),
            Some("at_risk") => said(
                HealthLevel::Warning,
                format!(
                    "Backed up {when}, but at risk: restorable only if PCs that are away come back{paused}"
                ),
            ),
            Some(_) => said(
                HealthLevel::Trouble,
                format!(
                    "The backup from {when} can no longer be restored: too few copies are left{paused}"
                ),
            ),
            None => said(HealthLevel::Good, format!("Backed up {when}{paused}")),
        },
    }
}

/// "Backing up: 1,204 of 3,000 files, 2 min left", as far as the running backup (`elapsed_ms`
/// old) can tell yet.
fn backing_up(progress: Option<BackupProgress>, elapsed_ms: i64) -> String {
    use crate::units::{format_count, format_left};
    let Some(progress) = progress.filter(|p| p.files_total > 0) else {
        return "Backing up...".into();
    };
    let files = format!(
        "Backing up: {} of {} files",
        format_count(progress.files.min(progress.files_total)),
        format_count(progress.files_total)
    );
    match progress.left_ms(elapsed_ms) {
        Some(left) => format!("{files}, {}", format_left(left)),
        None => files,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn backed_up() -> (Settings, AgentState) {
        let mut settings = Settings::default();
        settings.backup.folders = vec![PathBuf::from("/home/ann/Photos")];
        let state = AgentState {
            last_backup: Some((1_000, "abc".into())),
            ..AgentState::default()
        };
        (settings, state)
    }

    fn ago(at: UnixMillis) -> String {
        format!("at t{at}")
    }

    #[test]
    fn a_good_backup_says_when() {
        let (settings, state) = backed_up();
        assert_eq!(
            backup_health(&settings, &state, 5_000, ago),
            BackupHealth {
                level: HealthLevel::Good,
                sentence: "Backed up at t1000".into()
            }
        );
    }

    #[test]
    fn fully_protected_only_when_the_hub_says_every_pack_is() {
        let (settings, mut state) = backed_up();
        let said = |protection: &str, state: &mut AgentState| {
            state.backup_protection = Some(protection.to_owned());
            backup_health(&settings, state, 5_000, ago)
        };
        assert_eq!(
            said("protected", &mut state),
            BackupHealth {
                level: HealthLevel::Good,
                sentence: "Backed up at t1000 · fully protected".into()
            }
        );
        assert_eq!(said("uploading", &mut state).level, HealthLevel::Working);
        assert_eq!(said("repairing", &mut state).level, HealthLevel::Warning);
        assert!(said("at_risk", &mut state).sentence.contains("at risk"));
        assert_eq!(said("lost", &mut state).level, HealthLevel::Trouble);
        // Too few holders is said first: the hub's placing cannot protect it yet.
        state.backup_holders_short = Some(1);
        assert!(
            said("uploading", &mut state)
                .sentence
                .contains("only 1 other PC can hold it yet")
        );
    }

    #[test]
    fn too_few_holders_are_not_called_safe() {
        let (settings, mut state) = backed_up();
        state.backup_holders_short = Some(1);
        let health = backup_health(&settings, &state, 5_000, ago);
        assert_eq!(health.level, HealthLevel::Warning);
        assert_eq!(
            health.sentence,
            "Backed up at t1000, but only 1 other PC can hold it yet: not safe if this PC is lost"
        );
        state.backup_holders_short = Some(0);
        assert!(
            backup_health(&settings, &state, 5_000, ago)
                .sentence
                .contains("no other PC holds it yet")
        );
    }

    #[test]
    fn unreadable_files_running_backups_and_failures_come_first() {
        let (settings, mut state) = backed_up();
        state.last_backup_skipped_count = 3;
        state.backup_holders_short = Some(1);
        assert_eq!(
            backup_health(&settings, &state, 5_000, ago).sentence,
            "Backed up at t1000, but some files could not be read (3): see Status"
        );
        state.last_backup_error = Some("the hub refused".into());
        assert_eq!(
            backup_health(&settings, &state, 5_000, ago).level,
            HealthLevel::Trouble
        );
        state.backing_up_since = Some(4_000);
        assert_eq!(
            backup_health(&settings, &state, 5_000, ago),
            BackupHealth {
                level: HealthLevel::Working,
                sentence: "Backing up...".into()
            }
        );
    }

    #[test]
    fn a_running_backup_counts_files_and_tells_the_time_left_once_it_can() {
        let (settings, mut state) = backed_up();
        state.backing_up_since = Some(0);
        state.backup_progress = Some(BackupProgress {
            files: 1_204,
            files_total: 3_000,
            bytes: 100,
            bytes_total: 300,
        });
        // Too soon to tell the pace.
        assert_eq!(
            backup_health(&settings, &state, 4_000, ago).sentence,
            "Backing up: 1,204 of 3,000 files"
        );
        // A third done in a minute: two minutes to go.
        assert_eq!(
            backup_health(&settings, &state, 60_000, ago).sentence,
            "Backing up: 1,204 of 3,000 files, 2 min left"
        );
        // Files that appeared since the count do not make it more than all.
        state.backup_progress = Some(BackupProgress {
            files: 3_001,
            files_total: 3_000,
            bytes: 300,
            bytes_total: 300,
        });
        assert_eq!(
            backup_health(&settings, &state, 60_000, ago).sentence,
            "Backing up: 3,000 of 3,000 files, less than a minute left"
        );
    }

    #[test]
    fn nothing_chosen_nothing_yet_and_a_pause_are_said() {
        let (mut settings, mut state) = backed_up();
        settings.backup.pause = PauseState::Until { until: 9_000 };
        assert_eq!(
            backup_health(&settings, &state, 5_000, ago).sentence,
            "Backed up at t1000 (backups paused)"
        );
        state.last_backup = None;
        assert_eq!(
            backup_health(&settings, &state, 5_000, ago).sentence,
            "Not backed up yet (backups paused)"
        );
        settings.backup.folders.clear();
        assert_eq!(
            backup_health(&settings, &state, 5_000, ago).level,
            HealthLevel::Idle
        );
    }
}
