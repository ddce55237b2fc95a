//! How the command line prints: times, sizes, on/off, JSON, and the tables several commands share.

use std::time::Duration;

use surplus_agent::settings::Settings;
use surplus_agent::units::{Size, format_window};
use surplus_protocol::{PauseState, UnixMillis};

pub(crate) fn on(value: bool) -> &'static str {
    if value { "on" } else { "off" }
}

pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A time for a listing: RFC 3339 to the second.
pub(crate) fn when(at: UnixMillis) -> String {
    time(Some(at))
}

pub(crate) fn time(at: Option<UnixMillis>) -> String {
    match at.and_then(|ms| u64::try_from(ms).ok()) {
        Some(ms) => {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms))
                .to_string()
        }
        None => "never".to_owned(),
    }
}

pub(crate) fn describe_pause(pause: PauseState) -> String {
    match pause {
        PauseState::Running => "donating (not paused)".to_owned(),
        PauseState::Indefinitely => "paused until you run `surplus resume`".to_owned(),
        PauseState::Until { until } => format!("paused until {}", time(Some(until))),
    }
}

pub(crate) fn print_limits(settings: &Settings) {
    let c = &settings.compute;
    println!(
        "compute: up to {}% of the cores, after {} idle minutes, while other programs use at most {}% CPU",
        c.cores_percent, c.idle_minutes, c.busy_cpu_percent
    );
    println!(
        "on battery: {}",
        if c.on_battery { "allowed" } else { "never" }
    );
    println!(
        "full screen: {}",
        if c.pause_in_full_screen {
            "compute waits while a full-screen app has the focus"
        } else {
            "compute runs whatever has the focus"
        }
    );
    println!(
        "CPU temperature: {}",
        c.max_cpu_celsius.map_or_else(
            || "no limit".to_owned(),
            |celsius| format!("compute waits above {celsius} °C")
        )
    );
    println!(
        "window: {}",
        c.window
            .map_or_else(|| "any time".to_owned(), format_window)
    );
    println!(
        "bandwidth: {}",
        settings.bandwidth_bytes_per_second.map_or_else(
            || "unlimited".to_owned(),
            |rate| format!("{}/s", Size(rate))
        )
    );
}

/// Whether the coding in use was chosen by the subscriber or follows the holders.
pub(crate) fn coding_origin(plan: &surplus_protocol::BackupPlan) -> &'static str {
    if plan.settings.coding.is_some() {
        "chosen"
    } else {
        "automatic"
    }
}

pub(crate) fn print_backup_plan(plan: &surplus_protocol::BackupPlan) {
    println!(
        "household:    {} ({})",
        on(plan.settings.household),
        if plan.settings.household {
            "your own other devices may hold your shards"
        } else {
            "only other subscribers' devices hold your shards"
        }
    );
    println!(
        "coding:       {}+{} ({}; any {} of {} shards rebuild a pack)",
        plan.coding.data,
        plan.coding.parity,
        coding_origin(plan),
        plan.coding.data,
        plan.coding.shards()
    );
    println!(
        "holders:      {} can take shards now",
        plan.eligible_holders
    );
    if let Some(warning) = &plan.warning {
        println!("warning:      {warning}");
    }
}
