//! `surplus backup ...`, `snapshots`, `ls`, `restore`, `forget`, `forgotten`, `unforget` and
//! `verify`: the subscriber's backups.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail};
use surplus_agent::control::Control;
use surplus_agent::passphrase::Request;
use surplus_agent::units::{self, Size};
use surplus_backup::forget::Retention;
use surplus_protocol::PauseState;

use crate::print::{print_backup_plan, print_json, time, when};
use crate::{BackupCommand, CodingChoice, progress};

/// The recovery passphrase, from the environment or typed at a prompt: `SURPLUS_PASSPHRASE` to
/// unlock the key or to choose one, `SURPLUS_NEW_PASSPHRASE` to replace one that is too weak.
pub(crate) fn passphrase(request: Request<'_>) -> Option<String> {
    let variable = match request {
        Request::Replace { .. } => NEW_PASSPHRASE_VARIABLE,
        Request::Unlock | Request::Choose => "SURPLUS_PASSPHRASE",
    };
    if let Ok(passphrase) = std::env::var(variable) {
        return Some(passphrase);
    }
    if !std::io::stdin().is_terminal() {
        if let Request::Replace { problem } = request {
            eprintln!(
                "surplus: warning: {problem}. Set {NEW_PASSPHRASE_VARIABLE}, or run `surplus \
                 backup passphrase` in a terminal, to choose a better one"
            );
        }
        return None;
    }
    match request {
        Request::Unlock => rpassword::prompt_password("Recovery passphrase: ").ok(),
        Request::Choose => choose_passphrase("Choose a recovery passphrase"),
        Request::Replace { problem } => {
            eprintln!("surplus: {problem}.");
            choose_passphrase("Choose a new recovery passphrase")
        }
    }
}

/// Where `surplus backup passphrase` and a replacement of a weak passphrase read the new one.
pub(crate) const NEW_PASSPHRASE_VARIABLE: &str = "SURPLUS_NEW_PASSPHRASE";

/// A new recovery passphrase typed at the terminal (twice), asked again until it is strong
/// enough; an empty answer makes one, shown once and typed back.
pub(crate) fn choose_passphrase(what: &str) -> Option<String> {
    loop {
        let typed =
            rpassword::prompt_password(format!("{what} (press Enter to have one made for you): "))
                .ok()?;
        if typed.is_empty() {
            let made = surplus_agent::passphrase::generate();
            eprintln!(
                "\nYour recovery passphrase:\n\n    {made}\n\nWrite it down and keep it safe: \
                 without it nobody, not even Surplus, can restore your backups on a new PC.\n"
            );
            if rpassword::prompt_password("Type it to confirm you have it: ").ok()? == made {
                return Some(made);
            }
            eprintln!("surplus: that is not the passphrase shown; try again");
            continue;
        }
        if let Some(problem) = surplus_agent::passphrase::problem(&typed, &[]) {
            eprintln!("surplus: {problem}");
            continue;
        }
        if rpassword::prompt_password("The passphrase again: ").ok()? != typed {
            eprintln!("surplus: the passphrases differ; try again");
            continue;
        }
        return Some(typed);
    }
}

/// Shows the hub's warning that it has too few holders for the coding.
fn warn_on_terminal(warning: &str) {
    eprintln!("surplus: warning: {warning}");
}

pub(crate) async fn backup(context: &Control, command: BackupCommand) -> anyhow::Result<()> {
    match command {
        BackupCommand::Add { path } => {
            let path = surplus_agent::control::readable_folder(&std::path::absolute(&path)?)?;
            let settings = context.update(|s| {
                if !s.backup.folders.contains(&path) {
                    s.backup.folders.push(path.clone());
                }
            })?;
            println!("backing up {} folder(s)", settings.backup.folders.len());
        }
        BackupCommand::Remove { path } => {
            let path = std::path::absolute(&path)?;
            let before = context.settings()?.backup.folders.len();
            let settings = context.update(|s| s.backup.folders.retain(|f| *f != path))?;
            if settings.backup.folders.len() == before {
                bail!(
                    "{} is not among the folders backed up (see `surplus backup list`)",
                    path.display()
                );
            }
            println!("no longer backing up {}", path.display());
        }
        BackupCommand::Pause { duration } => {
            let pause = match duration {
                Some(duration) => PauseState::Until {
                    until: surplus_agent::clock::now_ms()
                        + i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2),
                },
                None => PauseState::Indefinitely,
            };
            context.update(|s| s.backup.pause = pause)?;
            match pause {
                PauseState::Until { until } => {
                    println!("backups paused until {}", time(Some(until)));
                }
                _ => println!("backups paused until you run `surplus backup resume`"),
            }
        }
        BackupCommand::Resume => {
            context.update(|s| s.backup.pause = PauseState::Running)?;
            println!("backups resumed");
        }
        BackupCommand::List => {
            for folder in context.settings()?.backup.folders {
                println!("{}", folder.display());
            }
        }
        BackupCommand::Now { json } => {
            let started = std::time::Instant::now();
            let bar = std::sync::Arc::new(progress::LateBar::new("backing up"));
            let report = context
                .back_up_now(bar.clone(), warn_on_terminal, || {
                    eprintln!(
                        "surplus: the agent is backing up this device; waiting for it to finish"
                    );
                })
                .await;
            bar.finish();
            let report = report?;
            let summary = report.snapshot.map(|s| s.summary).unwrap_or_default();
            let seconds = started.elapsed().as_secs_f64();
            if json {
                print_json(&serde_json::json!({
                    "snapshot": report.snapshot_id,
                    "files": summary.files,
                    "bytes": summary.bytes,
                    "new_bytes": summary.new_bytes,
                    "unchanged_files": summary.unchanged_files,
                    "seconds": seconds,
                    "skipped": report.skipped.len(),
                }))?;
            } else {
                println!(
                    "snapshot {}: {} files, {} ({} new, {} files unchanged) in {seconds:.1}s",
                    report.snapshot_id,
                    summary.files,
                    Size(summary.bytes),
                    Size(summary.new_bytes),
                    summary.unchanged_files
                );
            }
            for (path, reason) in &report.skipped {
                eprintln!("surplus: not backed up: {}: {reason}", path.display());
            }
            if !report.skipped.is_empty() {
                bail!("{} path(s) could not be backed up", report.skipped.len());
            }
        }
        BackupCommand::Passphrase => {
            let new = match std::env::var(NEW_PASSPHRASE_VARIABLE) {
                Ok(new) => new,
                Err(_) if std::io::stdin().is_terminal() => {
                    choose_passphrase("Choose a new recovery passphrase")
                        .ok_or_else(|| anyhow!("no new passphrase was chosen"))?
                }
                Err(_) => bail!(
                    "no new passphrase: set {NEW_PASSPHRASE_VARIABLE} or run this in a terminal"
                ),
            };
            context.change_recovery_passphrase(&new).await?;
            println!(
                "the recovery passphrase is changed: the key kept at the hub opens with the new one only"
            );
        }
        BackupCommand::Settings {
            household,
            coding,
            json,
        } => {
            let client = context.client()?;
            let token = context.any_token()?;
            let mut plan = client.backup_plan(&token).await?;
            if household.is_some() || coding.is_some() {
                let mut settings = plan.settings;
                if let Some(household) = household {
                    settings.household = household;
                }
                if let Some(CodingChoice(coding)) = coding {
                    settings.coding = coding;
                }
                plan = client.set_backup_settings(&token, &settings).await?;
            }
            if json {
                return print_json(&plan);
            }
            print_backup_plan(&plan);
        }
    }
    Ok(())
}

pub(crate) async fn snapshots(context: &Control, json: bool) -> anyhow::Result<()> {
    let views = context.snapshots().await?;
    if json {
        return print_json(&views);
    }
    println!(
        "{:<16} {:<20} {:<16} {:>7} {:>10}  STATE",
        "ID", "TIME", "HOST", "FILES", "SIZE"
    );
    for v in views {
        println!(
            "{:<16} {:<20} {:<16} {:>7} {:>10}  {}",
            v.id,
            time(Some(v.time)),
            v.hostname,
            v.files,
            Size(v.bytes).to_string(),
            v.state
        );
    }
    Ok(())
}

pub(crate) async fn ls(
    context: &Control,
    snapshot: &str,
    path: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let entries = context.list(snapshot, path).await?;
    if json {
        return print_json(&entries);
    }
    for e in entries {
        println!(
            "{:<8} {:>5} {:>10} {}  {}",
            e.kind,
            e.mode,
            Size(e.size).to_string(),
            time(Some(e.mtime)),
            e.name
        );
    }
    Ok(())
}

pub(crate) async fn restore(
    context: &Control,
    snapshot: &str,
    path: Option<PathBuf>,
    target: Option<&std::path::Path>,
    replace: bool,
) -> anyhow::Result<()> {
    use surplus_agent::control::{Existing, RestoreTo};
    let (to, existing) = match target {
        Some(target) => (
            RestoreTo::Folder(std::path::absolute(target)?),
            Existing::Replace,
        ),
        None if replace => (RestoreTo::Original, Existing::Replace),
        None => (RestoreTo::Original, Existing::KeepBoth),
    };
    let bar = std::sync::Arc::new(progress::LateBar::new("restoring"));
    let report = context
        .restore(snapshot, path, to.clone(), existing, bar.clone())
        .await;
    bar.finish();
    let report = report?;
    let place = match &to {
        RestoreTo::Folder(target) => format!("under {}", target.display()),
        RestoreTo::Original => "where they were".to_owned(),
    };
    println!(
        "restored {} files, {} {place}",
        report.files,
        Size(report.bytes)
    );
    if report.in_place > 0 {
        println!(
            "{} files were there already, unchanged, and were kept",
            report.in_place
        );
    }
    if report.kept_both > 0 {
        println!(
            "{} files had changed since the snapshot: they were kept, and the restored copies put beside them as \"NAME (restored).EXT\"",
            report.kept_both
        );
    }
    if report.replaced > 0 {
        println!(
            "{} files that were there were replaced by the snapshot's copies",
            report.replaced
        );
    }
    Ok(())
}

pub(crate) async fn verify(context: &Control, wait: Duration, json: bool) -> anyhow::Result<()> {
    let run = context.verify(wait).await?;
    if json {
        print_json(&run)?;
    } else if run.challenged == 0 {
        println!("no shard of yours is on a holder yet: nothing to verify");
    } else {
        println!(
            "challenged {} shards: {} passed, {} failed, {} not answered yet",
            run.challenged, run.passed, run.failed, run.waiting
        );
        for failure in &run.failures {
            println!(
                "  shard {} on device {}: {}",
                // The hub's text: shortened where it can be, never sliced blindly.
                failure.hash.get(..16).unwrap_or(&failure.hash),
                failure.device_id,
                failure.reason
            );
        }
        if run.failed > 0 {
            println!("failed shards are routed around on restore; their placements reopen");
        }
        if run.waiting > 0 {
            println!(
                "holders that are offline answer when back: `surplus verify` again later to see"
            );
        }
    }
    if run.failed > 0 {
        bail!("{} shard(s) failed their challenge", run.failed);
    }
    if run.waiting > 0 {
        bail!(
            "{} shard(s) not answered within {}",
            run.waiting,
            humantime::format_duration(wait)
        );
    }
    Ok(())
}

/// Forgets snapshots beyond what `retention` keeps, and lets go of the packs only they needed.
pub async fn forget(context: &Control, retention: Retention) -> anyhow::Result<()> {
    if retention.keeps_nothing() {
        bail!("say what to keep: --keep-last, --keep-daily, --keep-weekly and/or --keep-monthly");
    }
    let offset = surplus_agent::clock::utc_offset_minutes();
    let (forgotten, packs) = context.forget(retention, offset).await?;
    for id in &forgotten {
        println!("forgot snapshot {id}");
    }
    println!(
        "{} snapshot(s) forgotten; {packs} pack(s) no longer needed, let go",
        forgotten.len()
    );
    if !forgotten.is_empty() || packs > 0 {
        let kept = context.forgotten().await?;
        println!(
            "The hub keeps them for {}, until {}: `surplus unforget` brings them back.",
            humantime::format_duration(Duration::from_secs(kept.grace_seconds)),
            when(surplus_agent::clock::now_ms().saturating_add(
                i64::try_from(kept.grace_seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
            )),
        );
    }
    Ok(())
}

/// What was forgotten and is still kept, and until when.
pub async fn forgotten(context: &Control, json: bool) -> anyhow::Result<()> {
    let kept = context.forgotten().await?;
    if json {
        return print_json(&kept);
    }
    let snapshots: Vec<_> = kept
        .objects
        .iter()
        .filter(|o| o.kind == "snapshot")
        .collect();
    if snapshots.is_empty() && kept.shards == 0 {
        println!("nothing forgotten is kept");
        return Ok(());
    }
    println!("{:<18} {:<21} GONE FOR GOOD", "SNAPSHOT", "FORGOTTEN");
    for object in &snapshots {
        println!(
            "{:<18} {:<21} {}",
            object.name,
            when(object.forgotten_at),
            when(object.purged_at)
        );
    }
    if let Some(from) = kept.shards_purged_from {
        println!(
            "{} shard(s) ({}) still held, deleted from {}",
            kept.shards,
            units::format_size(kept.shard_bytes),
            when(from)
        );
    }
    println!("`surplus unforget` brings them all back");
    Ok(())
}

/// Brings back everything forgotten that is still kept.
pub async fn unforget(context: &Control) -> anyhow::Result<()> {
    let back = context.unforget().await?;
    println!(
        "{} snapshot(s) and {} shard(s) brought back",
        back.snapshots, back.shards
    );
    Ok(())
}
