//! `surplus status` and `surplus doctor`: how this device is, for a person or a script.

use anyhow::bail;
use surplus_agent::control::Control;
use surplus_agent::units::Size;
use surplus_protocol::PauseState;

use crate::print::{coding_origin, describe_pause, on, print_json, time};

pub(crate) async fn doctor(context: &Control, json: bool) -> anyhow::Result<()> {
    use surplus_agent::doctor::Verdict;
    let checks = surplus_agent::doctor::examine(context).await;
    if json {
        print_json(&checks)?;
    } else {
        for check in &checks {
            let mark = match check.verdict {
                Verdict::Ok => "ok     ",
                Verdict::Warning => "WARNING",
                Verdict::Problem => "PROBLEM",
            };
            println!("{mark}  {:<12} {}", check.name, check.detail);
        }
    }
    let problems = checks
        .iter()
        .filter(|check| check.verdict == Verdict::Problem)
        .count();
    if problems > 0 {
        bail!("{problems} problem(s) found");
    }
    Ok(())
}

pub(crate) async fn status(context: &Control, json: bool) -> anyhow::Result<()> {
    let view = context.status_view().await?;
    if json {
        return print_json(&view);
    }
    println!("hub:          {}", view.hub.as_deref().unwrap_or("not set"));
    println!(
        "account:      {}",
        view.email.as_deref().unwrap_or("not logged in")
    );
    match (view.device_id, &view.device_name) {
        (Some(id), name) => println!(
            "device:       {} ({id})",
            name.as_deref().unwrap_or("unnamed")
        ),
        (None, _) => println!("device:       not registered"),
    }
    println!("credentials:  {}", view.credentials_backend);
    println!(
        "storage:      {}",
        if view.consent.storage {
            format!(
                "donating up to {} in {}",
                Size(view.quota_bytes),
                view.vault_dir.display()
            )
        } else {
            "not donating (no consent)".to_owned()
        }
    );
    println!(
        "compute:      {}",
        if view.consent.compute {
            "donating when idle"
        } else {
            "not donating (no consent)"
        }
    );
    println!("free floor:   {}", Size(view.floor_bytes));
    println!(
        "state:        {}",
        describe_pause(if view.paused {
            view.pause
        } else {
            PauseState::Running
        })
    );
    if view.backup_pause.is_paused(surplus_agent::clock::now_ms()) {
        println!(
            "backups:      {}",
            match view.backup_pause {
                PauseState::Until { until } => format!("paused until {}", time(Some(until))),
                _ => "paused until you run `surplus backup resume`".to_owned(),
            }
        );
    }
    let agent_line = match (&view.agent, view.agent_running) {
        (_, false) => "not running (start it with `surplus agent`)".to_owned(),
        (Some(state), true) if state.update_needed => {
            "running, UPDATE NEEDED: the hub no longer serves this version of Surplus; install \
             the new one"
                .to_owned()
        }
        (Some(state), true) if state.connected => format!(
            "running, connected (last heartbeat {})",
            time(state.last_heartbeat)
        ),
        (Some(state), true) => format!(
            "running, hub unreachable: {}",
            state.last_error.as_deref().unwrap_or("connecting")
        ),
        (None, true) => "running, connecting".to_owned(),
    };
    println!("agent:        {agent_line}");
    if let Some(idle) = view.agent.as_ref().and_then(|state| state.idle.as_ref()) {
        println!("user:         {}", describe_idle(idle));
    }
    if let Some(counts) = view.snapshots.as_ref().filter(|c| !c.is_empty()) {
        let parts: Vec<String> = counts
            .iter()
            .map(|(state, n)| format!("{n} {}", state.replace('_', " ")))
            .collect();
        println!("snapshots:    {}", parts.join(", "));
    }
    if let Some(handover) = view.agent.as_ref().and_then(|a| a.handover) {
        println!(
            "handing over: {} to other PCs, {}% done",
            Size(handover.remaining_bytes + handover.moved_bytes),
            handover.percent()
        );
    }
    if let Some(state) = &view.agent {
        if let Some(vault) = &state.vault {
            println!(
                "vault:        {} held for others, {} reserved",
                Size(vault.used_bytes),
                Size(vault.reserved_bytes)
            );
        }
        if let Some(spare) = &state.spare {
            let storage = spare.storage_reason.map_or_else(
                || format!("{} spare", Size(spare.storage_bytes)),
                |r| r.describe().to_owned(),
            );
            let compute = spare.compute_reason.map_or_else(
                || format!("{} slot(s) spare", spare.compute_slots),
                |r| r.describe().to_owned(),
            );
            println!("hub sees:     storage {storage}; compute {compute}");
        }
        println!("instructions: {} carried out", state.instructions_done);
        let held = state
            .compute_held
            .as_deref()
            .map(|reason| format!(", paused: {reason}"))
            .unwrap_or_default();
        println!(
            "tasks:        {} run here, {} running now{held}",
            state.tasks_done, state.tasks_running
        );
        if let Some((at, snapshot)) = &state.last_backup {
            println!("last backup:  snapshot {snapshot} at {}", time(Some(*at)));
        }
        if let Some(error) = &state.last_backup_error {
            println!("backup error: {error}");
        }
    }
    match &view.backup {
        Some(plan) => {
            println!(
                "backups:      coded {}+{} ({}) over {} eligible holder(s), household mode {}",
                plan.coding.data,
                plan.coding.parity,
                coding_origin(plan),
                plan.eligible_holders,
                on(plan.settings.household)
            );
            if let Some(warning) = &plan.warning {
                println!("warning:      {warning}");
            }
        }
        None if view.email.is_some() || view.device_id.is_some() => {
            println!("backups:      the hub cannot be asked now")
        }
        None => {}
    }
    if let Some(credits) = &view.credits {
        println!(
            "credit:       {:.2} core-seconds ({:.2} earned by {} validated run(s), {:.2} spent, {:.1} granted)",
            credits.balance, credits.earned, credits.runs_done, credits.spent, credits.granted
        );
    }
    Ok(())
}

/// The user's idle time as the agent last read it, and where from.
fn describe_idle(idle: &surplus_agent::worker::IdleReading) -> String {
    let source = &idle.source;
    let at = time(Some(idle.read_at));
    match idle.idle_seconds {
        Some(seconds) => {
            let idle_for = humantime::format_duration(std::time::Duration::from_secs(seconds));
            format!("idle for {idle_for} at {at} (read from {source})")
        }
        None if idle.unknown => format!(
            "idle time unknown at {at} (source: {source}): donated compute waits until it can be read"
        ),
        None => format!("{source} at {at}: counts as idle"),
    }
}
