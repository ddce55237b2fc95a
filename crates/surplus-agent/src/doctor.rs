//! `surplus doctor`: everything a subscriber, or someone helping them, needs to know about why
//! this computer is or is not doing its part, each check with a verdict and a sentence.

use std::time::Duration;

use serde::Serialize;

use crate::client::on_loopback;
use crate::clock::now_ms;
use crate::control::Control;
use crate::credentials::{Backend, BackendChoice, keyring_answers};
use crate::units::format_size;
use crate::worker::{AgentState, WorkerError, lock_data_dir};

/// Clocks further apart than this make audits, sessions and time windows misbehave.
const CLOCK_SKEW_WARNING: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    /// Works, but not as it should: the sentence says what to do.
    Warning,
    /// Does not work.
    Problem,
}

/// One thing looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `hub`, `clock`, `credentials`, `keyring`, `vault`, `agent`, `idle`, `backup`.
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, verdict: Verdict, detail: impl Into<String>) -> Check {
        Check {
            name,
            verdict,
            detail: detail.into(),
        }
    }
}

/// Runs every check, in the order a person would look.
pub async fn examine(control: &Control) -> Vec<Check> {
    let state = AgentState::load(control.data_dir()).unwrap_or_default();
    let mut checks = Vec::new();
    let hub_clock = hub(control, &state, &mut checks).await;
    checks.push(clock(hub_clock));
    checks.extend(credentials(control));
    checks.push(vault(control));
    checks.push(agent(control));
    checks.extend(idle(&state));
    checks.push(backup(control, &state).await);
    checks
}

/// Whether the hub answers, how, and its clock for the next check.
async fn hub(control: &Control, state: &AgentState, checks: &mut Vec<Check>) -> Option<i64> {
    let client = match control.client() {
        Ok(client) => client,
        Err(error) => {
            checks.push(Check::new("hub", Verdict::Problem, error.to_string()));
            return None;
        }
    };
    let sent = now_ms();
    match client.probe().await {
        Ok(probe) => {
            let how = if probe.encrypted {
                "over TLS, its certificate verified"
            } else {
                "over plain HTTP"
            };
            let mut detail = format!(
                "{} answers {how}, in {} ms",
                client.base(),
                probe.round_trip.as_millis()
            );
            if let Some(protocol) = probe.protocol {
                detail.push_str(&format!(", protocol {protocol}"));
            }
            let verdict = if state.update_needed {
                detail
                    .push_str("; it no longer serves this version of Surplus: install the new one");
                Verdict::Problem
            } else if !probe.encrypted && !on_loopback(client.base()) {
                detail.push_str("; passwords and device secrets cross the network readable");
                Verdict::Warning
            } else {
                Verdict::Ok
            };
            checks.push(Check::new("hub", verdict, detail));
            // The hub's clock is read half-way through the round trip, to the second.
            probe.clock.map(|hub| {
                hub - (sent + i64::try_from(probe.round_trip.as_millis() / 2).unwrap_or(0))
            })
        }
        Err(error) => {
            checks.push(Check::new("hub", Verdict::Problem, error.to_string()));
            None
        }
    }
}

fn clock(skew_ms: Option<i64>) -> Check {
    let Some(skew_ms) = skew_ms else {
        return Check::new(
            "clock",
            Verdict::Warning,
            "not compared: the hub did not answer",
        );
    };
    // The hub's clock comes to the second: less than that apart is no measurable skew.
    let seconds = skew_ms / 1000;
    let words = match seconds {
        0 => "this computer's clock agrees with the hub's".to_owned(),
        s if s > 0 => format!("this computer's clock is {s} s behind the hub's"),
        s => format!("this computer's clock is {} s ahead of the hub's", -s),
    };
    if skew_ms.unsigned_abs() > CLOCK_SKEW_WARNING.as_millis() as u64 {
        Check::new(
            "clock",
            Verdict::Warning,
            format!("{words}: set it automatically (NTP), or audits and time windows misbehave"),
        )
    } else {
        Check::new("clock", Verdict::Ok, words)
    }
}

/// Where the credentials are, whether this computer is registered, and the keyring.
fn credentials(control: &Control) -> Vec<Check> {
    let store = match control.credentials() {
        Ok(store) => store,
        Err(error) => {
            return vec![Check::new(
                "credentials",
                Verdict::Problem,
                error.to_string(),
            )];
        }
    };
    let backend = store.backend();
    let mut checks = vec![match (store.device(), store.session()) {
        (Ok(Some(device)), session) => Check::new(
            "credentials",
            Verdict::Ok,
            format!(
                "device {} registered{}; kept in the {backend}",
                device.device_id,
                match session {
                    Ok(Some(session)) => format!(", logged in as {}", session.email),
                    _ => ", not logged in (the device works without it)".to_owned(),
                }
            ),
        ),
        (Ok(None), _) => Check::new(
            "credentials",
            Verdict::Problem,
            "this computer is not registered: run `surplus login` and `surplus device register`",
        ),
        (Err(error), _) => Check::new("credentials", Verdict::Problem, error.to_string()),
    }];
    let keyring = match BackendChoice::from_env() {
        Ok(BackendChoice::File) => Check::new(
            "keyring",
            Verdict::Ok,
            "not used: SURPLUS_CREDENTIALS=file keeps credentials in a private file",
        ),
        _ => match (keyring_answers(), &backend) {
            (Ok(()), _) => Check::new("keyring", Verdict::Ok, "the OS keyring answers"),
            (Err(reason), Backend::File(_)) => Check::new(
                "keyring",
                Verdict::Warning,
                format!(
                    "the OS keyring does not answer ({reason}): credentials are in a private file instead"
                ),
            ),
            (Err(reason), Backend::Keyring) => Check::new(
                "keyring",
                Verdict::Problem,
                format!("the OS keyring holds the credentials but does not answer: {reason}"),
            ),
        },
    };
    checks.push(keyring);
    checks
}

fn vault(control: &Control) -> Check {
    let settings = match control.settings() {
        Ok(settings) => settings,
        Err(error) => return Check::new("vault", Verdict::Problem, error.to_string()),
    };
    if !settings.consent.storage {
        return Check::new("vault", Verdict::Ok, "not lending storage");
    }
    let dir = settings.vault_dir(control.data_dir());
    let disk = match crate::disk::disk_space(&dir) {
        Ok(disk) => disk,
        Err(error) => {
            return Check::new(
                "vault",
                Verdict::Problem,
                format!("cannot measure the disk of {}: {error}", dir.display()),
            );
        }
    };
    let limits = settings.vault_limits(disk);
    let held = crate::vault::held_bytes(&dir).unwrap_or(0);
    let detail = format!(
        "{}: holds {} of up to {}, and keeps {} free on a disk with {} free",
        dir.display(),
        format_size(held),
        format_size(limits.quota_bytes),
        format_size(limits.floor_bytes),
        format_size(disk.free_bytes)
    );
    if disk.free_bytes < limits.floor_bytes {
        Check::new(
            "vault",
            Verdict::Warning,
            format!("{detail}: the disk is below the floor, so the vault gives space back"),
        )
    } else {
        Check::new("vault", Verdict::Ok, detail)
    }
}

fn agent(control: &Control) -> Check {
    match lock_data_dir(control.data_dir()) {
        Err(WorkerError::AlreadyRunning(_)) => {
            let service = systemd_service();
            Check::new(
                "agent",
                Verdict::Ok,
                match service {
                    Some(unit) => format!("running, as the systemd service {unit}"),
                    None => "running".to_owned(),
                },
            )
        }
        Ok(_unlocked) => Check::new(
            "agent",
            Verdict::Problem,
            "not running: nothing is lent or backed up until it is (start the tray app, or `surplus agent`)",
        ),
        Err(error) => Check::new("agent", Verdict::Problem, error.to_string()),
    }
}

/// Where the running agent reads the user's idle time from, once it has reported.
fn idle(state: &AgentState) -> Option<Check> {
    let idle = state.idle.as_ref()?;
    Some(if idle.unknown {
        Check::new(
            "idle",
            Verdict::Warning,
            format!(
                "the user's idle time cannot be read ({}): donated compute never starts; on \
                 Wayland the agent asks the compositor (ext-idle-notify-v1), GNOME's Mutter, the \
                 freedesktop ScreenSaver and logind, so run it inside the desktop session",
                idle.source
            ),
        )
    } else {
        Check::new(
            "idle",
            Verdict::Ok,
            format!("the user's idle time comes from: {}", idle.source),
        )
    })
}

/// The systemd unit the agent runs as, if one is active (the packages ship
/// `surplus-agent.service` for a user and for the system).
fn systemd_service() -> Option<String> {
    for scope in [&["--user"][..], &[][..]] {
        let active = std::process::Command::new("systemctl")
            .args(scope)
            .args(["is-active", "--quiet", "surplus-agent.service"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if active {
            let which = if scope.is_empty() { "system" } else { "user" };
            return Some(format!("surplus-agent.service ({which})"));
        }
    }
    None
}

async fn backup(control: &Control, state: &AgentState) -> Check {
    let settings = control.settings().unwrap_or_default();
    if settings.backup.folders.is_empty() {
        return Check::new("backup", Verdict::Ok, "no folders chosen for backup");
    }
    if let Some(error) = &state.last_backup_error {
        return Check::new(
            "backup",
            Verdict::Problem,
            format!("the last backup failed: {error}"),
        );
    }
    let Some((at, _)) = &state.last_backup else {
        return Check::new("backup", Verdict::Warning, "no backup made yet");
    };
    let ago = format!("last backup {}", ago(now_ms() - at));
    let health = match (control.client(), control.any_token()) {
        (Ok(client), Ok(token)) => client.backup_health(&token).await.ok(),
        _ => None,
    };
    let Some(health) = health else {
        return Check::new(
            "backup",
            Verdict::Warning,
            format!("{ago}; its health is unknown (the hub did not answer)"),
        );
    };
    let count = |state: &str| health.packs.iter().filter(|p| p.state == state).count();
    let (at_risk, lost, uploading) = (count("at_risk"), count("lost"), count("uploading"));
    if lost > 0 {
        Check::new(
            "backup",
            Verdict::Problem,
            format!("{ago}; {lost} pack(s) lost: back up again"),
        )
    } else if at_risk > 0 {
        Check::new(
            "backup",
            Verdict::Warning,
            format!("{ago}; {at_risk} pack(s) at risk while their holders are away"),
        )
    } else if uploading > 0 {
        Check::new(
            "backup",
            Verdict::Warning,
            format!("{ago}; {uploading} pack(s) still reaching other PCs"),
        )
    } else {
        Check::new("backup", Verdict::Ok, format!("{ago}; fully protected"))
    }
}

fn ago(ms: i64) -> String {
    let minutes = ms.max(0) / 60_000;
    match minutes {
        0 => "less than a minute ago".to_owned(),
        1..=119 => format!("{minutes} min ago"),
        _ if minutes < 48 * 60 => format!("{} h ago", minutes / 60),
        _ => format!("{} days ago", minutes / (24 * 60)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_apart_by_more_than_a_minute_are_a_warning() {
        assert_eq!(clock(Some(400)).verdict, Verdict::Ok);
        assert!(clock(Some(400)).detail.contains("agrees"));
        assert_eq!(clock(Some(-59_000)).verdict, Verdict::Ok);
        let behind = clock(Some(125_000));
        assert_eq!(behind.verdict, Verdict::Warning);
        assert!(behind.detail.contains("125 s behind"), "{}", behind.detail);
        assert!(clock(Some(-90_000)).detail.contains("90 s ahead"));
        assert_eq!(clock(None).verdict, Verdict::Warning);
    }

    #[test]
    fn loopback_hubs_are_told_apart() {
        assert!(on_loopback("http://127.0.0.1:7420"));
        assert!(on_loopback("http://[::1]:7420"));
        assert!(on_loopback("http://localhost:7420"));
        assert!(!on_loopback("http://192.168.1.10:7420"));
        assert!(!on_loopback("not a url"));
    }
}
