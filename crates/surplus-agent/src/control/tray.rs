//! What the tray shows: its icon and status line, and the alerts a person must see.

use std::path::PathBuf;

use serde::Serialize;
use surplus_protocol::{ComfortHold, PauseState, SpareReason, UnixMillis};

use crate::settings::Settings;
use crate::worker::AgentState;

use super::{BackupHealth, ControlError, Result, backup_health};

/// The state the tray icon shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum TrayState {
    Donating,
    Paused,
    Attention,
}

/// The tray's icon and status line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TrayStatus {
    pub state: TrayState,
    pub line: String,
    /// Whether the user paused lending (so the menu offers to resume it).
    pub paused: bool,
    /// Whether the user paused backups (so the menu offers to resume them).
    pub backups_paused: bool,
    /// Whether the user's files are safe: the first thing the tray and the Status window say.
    pub backup: BackupHealth,
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
    let mut status = lending_status(registered, settings, state, now, &clock);
    if registered {
        status.backup = backup_health(settings, state, now, |at| {
            crate::units::format_ago(now - at)
        });
    }
    if registered && settings.backup.pause.is_paused(now) {
        status.backups_paused = true;
        status.line.push_str(&match settings.backup.pause {
            PauseState::Until { until } => format!(" · Backups paused until {}", clock(until)),
            _ => " · Backups paused".to_owned(),
        });
    }
    status
}

/// The status line as lending (and trouble) makes it.
fn lending_status(
    registered: bool,
    settings: &Settings,
    state: &AgentState,
    now: UnixMillis,
    clock: &impl Fn(UnixMillis) -> String,
) -> TrayStatus {
    let attention = |line: String| TrayStatus {
        state: TrayState::Attention,
        line,
        paused: false,
        backups_paused: false,
        backup: BackupHealth::not_set_up(),
    };
    if !registered {
        return attention("Not set up yet: open Settings".into());
    }
    match settings.pause {
        PauseState::Indefinitely => {
            return TrayStatus {
                state: TrayState::Paused,
                line: "Lending paused".into(),
                paused: true,
                backups_paused: false,
                backup: BackupHealth::not_set_up(),
            };
        }
        PauseState::Until { until } if until > now => {
            return TrayStatus {
                state: TrayState::Paused,
                line: format!("Lending paused until {}", clock(until)),
                paused: true,
                backups_paused: false,
                backup: BackupHealth::not_set_up(),
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
                crate::units::format_size(total),
                handover.percent()
            ),
            paused: false,
            backups_paused: false,
            backup: BackupHealth::not_set_up(),
        };
    }
    if !settings.consent.storage && !settings.consent.compute {
        return TrayStatus {
            state: TrayState::Paused,
            line: "Not donating: nothing consented".into(),
            paused: false,
            backups_paused: false,
            backup: BackupHealth::not_set_up(),
        };
    }
    let mut parts = Vec::new();
    if settings.consent.storage {
        let offered = state.vault.as_ref().map_or(0, |v| v.quota_bytes);
        parts.push(format!("Donating {}", crate::units::format_size(offered)));
    } else {
        parts.push("Donating compute".to_owned());
    }
    let tasks = match state.tasks_running {
        1 => "1 task".to_owned(),
        n => format!("{n} tasks"),
    };
    if state.tasks_running > 0 {
        parts.push(match &state.compute_held {
            Some(reason) => format!("{tasks} paused: {reason}"),
            None => format!("{tasks} running"),
        });
    } else if let Some(reason) = state
        .spare
        .and_then(|spare| spare.compute_reason)
        .and_then(comfort_hold)
    {
        // Nothing runs, but the user should know why nothing will while this lasts.
        parts.push(format!(
            "Compute paused: {}",
            crate::compute::describe_comfort(reason)
        ));
    }
    TrayStatus {
        state: TrayState::Donating,
        line: parts.join(" · "),
        paused: false,
        backups_paused: false,
        backup: BackupHealth::not_set_up(),
    }
}

/// The comfort rule behind a reason the hub gave for no spare compute, if it is one.
fn comfort_hold(reason: SpareReason) -> Option<ComfortHold> {
    match reason {
        SpareReason::FullScreen => Some(ComfortHold::FullScreen),
        SpareReason::TooHot => Some(ComfortHold::TooHot),
        _ => None,
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
        "hour" => Ok(crate::clock::now_ms() + 60 * 60 * 1000),
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
    home_dir().join("Restored")
}

/// The user's home folder (the temporary folder on a system that has none).
pub fn home_dir() -> PathBuf {
    dirs::home_dir().unwrap_or_else(std::env::temp_dir)
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
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
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

#[cfg(test)]
mod tests {
    use surplus_protocol::{Spare, VaultReport};

    use super::*;

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
        state.compute_held = Some("you are in a full-screen app".into());
        state.tasks_running = 1;
        assert_eq!(
            tray_status(true, &settings, &state, 0, clock).line,
            "Donating 11.5 GiB · 1 task paused: you are in a full-screen app"
        );
    }

    #[test]
    fn the_status_line_says_why_compute_waits_for_the_users_comfort() {
        let (settings, mut state) = donating();
        state.spare = spare(None, Some(SpareReason::FullScreen));
        assert_eq!(
            tray_status(true, &settings, &state, 0, clock).line,
            "Donating 11.5 GiB · Compute paused: you are in a full-screen app"
        );
        state.spare = spare(None, Some(SpareReason::TooHot));
        assert_eq!(
            tray_status(true, &settings, &state, 0, clock).line,
            "Donating 11.5 GiB · Compute paused: the CPU is too hot"
        );
        // Other reasons are the ordinary course of things, not worth a word in the tray.
        state.spare = spare(None, Some(SpareReason::UserActive));
        assert_eq!(
            tray_status(true, &settings, &state, 0, clock).line,
            "Donating 11.5 GiB"
        );
    }

    #[test]
    fn a_pause_shows_until_when_and_ends_by_itself() {
        let (mut settings, state) = donating();
        settings.pause = PauseState::Until { until: 5_000 };
        let paused = tray_status(true, &settings, &state, 4_999, clock);
        assert_eq!(paused.state, TrayState::Paused);
        assert_eq!(paused.line, "Lending paused until t5000");
        assert!(paused.paused);
        assert_eq!(
            tray_status(true, &settings, &state, 5_000, clock).state,
            TrayState::Donating
        );
        settings.pause = PauseState::Indefinitely;
        assert_eq!(
            tray_status(true, &settings, &state, 0, clock).line,
            "Lending paused"
        );
    }

    #[test]
    fn paused_backups_are_said_beside_what_is_lent() {
        let (mut settings, state) = donating();
        settings.backup.pause = PauseState::Until { until: 5_000 };
        let status = tray_status(true, &settings, &state, 4_999, clock);
        assert!(status.backups_paused && !status.paused);
        assert_eq!(
            status.line,
            "Donating 11.5 GiB · Backups paused until t5000"
        );
        let over = tray_status(true, &settings, &state, 5_000, clock);
        assert!(!over.backups_paused);
        assert_eq!(over.line, "Donating 11.5 GiB");
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
}
