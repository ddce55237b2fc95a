//! `surplus consent`, `quota`, `limits`, `pause` and `resume`: what this device lends, and when.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use surplus_agent::control::Control;
use surplus_agent::units::{self, Size};
use surplus_protocol::PauseState;

use crate::LimitsArgs;
use crate::print::{describe_pause, on, print_limits};

pub(crate) fn limits(context: &Control, args: LimitsArgs) -> anyhow::Result<()> {
    let window = match args.window.as_deref() {
        None => None,
        Some("none") => Some(None),
        Some(text) => Some(Some(units::parse_window(text)?)),
    };
    let bandwidth = match args.bandwidth.as_deref() {
        None => None,
        Some("none") => Some(None),
        Some(text) => Some(Some(units::parse_rate(text)?)),
    };
    let max_celsius = match args.max_cpu_temperature.as_deref() {
        None => None,
        Some("none") => Some(None),
        Some(text) => Some(Some(units::parse_celsius(text)?)),
    };
    let settings = context.update(|s| {
        if let Some(cores) = args.cores {
            s.compute.cores_percent = cores;
        }
        if let Some(minutes) = args.idle_minutes {
            s.compute.idle_minutes = minutes;
        }
        if let Some(busy) = args.busy_cpu {
            s.compute.busy_cpu_percent = busy;
        }
        if let Some(on_battery) = args.on_battery {
            s.compute.on_battery = on_battery;
        }
        if let Some(window) = window {
            s.compute.window = window;
        }
        if let Some(bandwidth) = bandwidth {
            s.bandwidth_bytes_per_second = bandwidth;
        }
        if let Some(pause) = args.pause_in_full_screen {
            s.compute.pause_in_full_screen = pause;
        }
        if let Some(celsius) = max_celsius {
            s.compute.max_cpu_celsius = celsius;
        }
    })?;
    print_limits(&settings);
    Ok(())
}

pub fn consent(
    context: &Control,
    storage: Option<bool>,
    compute: Option<bool>,
) -> anyhow::Result<()> {
    if storage.is_none() && compute.is_none() {
        bail!("say what to change: --storage on|off and/or --compute on|off");
    }
    let settings = context.update(|s| {
        if let Some(storage) = storage {
            s.consent.storage = storage;
        }
        if let Some(compute) = compute {
            s.consent.compute = compute;
        }
    })?;
    println!("storage donation: {}", on(settings.consent.storage));
    println!("compute donation: {}", on(settings.consent.compute));
    if storage == Some(false) {
        println!(
            "the hub is told: what this vault holds for others moves elsewhere, then it is deleted here"
        );
    }
    Ok(())
}

pub fn quota(
    context: &Control,
    storage: Option<u64>,
    floor: Option<u64>,
    path: Option<PathBuf>,
) -> anyhow::Result<()> {
    if storage.is_none() && floor.is_none() && path.is_none() {
        bail!("say what to change: --storage SIZE, --floor SIZE and/or --path DIR");
    }
    let path = path.map(|p| std::path::absolute(&p).unwrap_or(p));
    let vault_dir = match &path {
        Some(path) => Some(context.vault_move(path)?),
        None => None,
    };
    let settings = context.update(|s| {
        if storage.is_some() {
            s.storage.quota_bytes = storage;
        }
        if floor.is_some() {
            s.storage.floor_bytes = floor;
        }
        if let Some(dir) = vault_dir {
            context.put_vault(s, dir);
        }
    })?;
    let vault_dir = settings.vault_dir(context.data_dir());
    let disk = surplus_agent::disk::disk_space(&vault_dir)?;
    println!("vault: {}", vault_dir.display());
    println!("quota: {}", Size(settings.effective_quota(disk)));
    println!(
        "floor: {} (the disk has {} free)",
        Size(settings.effective_floor(disk)),
        Size(disk.free_bytes)
    );
    Ok(())
}

pub fn pause(context: &Control, duration: Option<Duration>) -> anyhow::Result<()> {
    let pause = match duration {
        Some(duration) => PauseState::Until {
            until: surplus_agent::clock::now_ms()
                + i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2),
        },
        None => PauseState::Indefinitely,
    };
    context.update(|s| s.pause = pause)?;
    println!("{}", describe_pause(pause));
    Ok(())
}

pub fn resume(context: &Control) -> anyhow::Result<()> {
    context.update(|s| s.pause = PauseState::Running)?;
    println!("donation resumed");
    Ok(())
}
