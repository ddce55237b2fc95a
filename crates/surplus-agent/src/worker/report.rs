//! The reporter: measures the machine and sends heartbeats on the hub's schedule, and at once
//! when the settings file changes or the user comes back.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use surplus_protocol::UnixMillis;
use tokio::sync::watch;

use super::backoff::Backoff;
use super::error::{WorkerError, fatal};
use super::garbage;
use super::options::WorkerOptions;
use super::shared::Shared;
use crate::clock::now_ms;
use crate::settings::Settings;

/// Sends heartbeats until `stop`, reading the settings again when they change.
pub(super) async fn report_loop(
    shared: Arc<Shared>,
    options: WorkerOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let mut backoff = Backoff::new(options.max_backoff);
    let mut interval = Duration::from_secs(30);
    let mut last_stamp = settings_stamp(&shared.data_dir);
    let mut away = None;
    let mut comfort = None;
    let mut next_heartbeat = tokio::time::Instant::now();
    let mut history_at: Option<UnixMillis> = None;
    // When the vault is next checked against what the hub knows.
    let mut collection = garbage::Due::default();
    let mut watch = tokio::time::interval(options.watch_interval);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|&s| s) => return Ok(()),
            _ = tokio::time::sleep_until(next_heartbeat) => {}
            _ = shared.report_now.notified() => {}
            _ = shared.settings_changed.notified() => {
                match Settings::load(&shared.data_dir) {
                    Ok(settings) => {
                        last_stamp = settings_stamp(&shared.data_dir);
                        *shared.settings.lock().unwrap_or_else(PoisonError::into_inner) = settings;
                    }
                    Err(error) => tracing::warn!(%error, "the settings file is not valid; keeping the previous settings"),
                }
            }
            _ = watch.tick() => {
                let stamp = settings_stamp(&shared.data_dir);
                let mut changed = false;
                if stamp != last_stamp {
                    last_stamp = stamp;
                    match Settings::load(&shared.data_dir) {
                        Ok(settings) => {
                            tracing::info!("settings changed; reporting to the hub");
                            *shared.settings.lock().unwrap_or_else(PoisonError::into_inner) = settings;
                            changed = true;
                        }
                        Err(error) => tracing::warn!(%error, "the settings file is not valid; keeping the previous settings"),
                    }
                }
                let settings = shared.settings();
                let sample = shared.probe.lock().unwrap_or_else(PoisonError::into_inner).sample(&settings.vault_dir(&shared.data_dir));
                *shared.on_battery.lock().unwrap_or_else(PoisonError::into_inner) = sample.on_battery;
                let user = sample.user;
                let now_away = crate::compute::user_holds(user, &settings).is_none();
                if away.is_some_and(|was| was != now_away) {
                    tracing::info!(away = now_away, "user activity changed; reporting to the hub");
                    changed = true;
                }
                away = Some(now_away);
                let now_comfort = shared.comfort_hold(&settings, sample.comfort);
                if comfort.is_some_and(|was| was != now_comfort) {
                    tracing::info!(hold = ?now_comfort, "comfort rules changed; reporting to the hub");
                    changed = true;
                }
                comfort = Some(now_comfort);
                if !changed {
                    continue;
                }
            }
        }
        let report = {
            let shared = shared.clone();
            tokio::task::spawn_blocking(move || shared.report())
                .await
                .map_err(|e| WorkerError::Io {
                    path: PathBuf::new(),
                    source: std::io::Error::other(e),
                })?
        };
        let failed_before = shared.failures.so_far();
        match shared.client.heartbeat(&shared.token, &report).await {
            Ok(response) => {
                backoff.reset();
                interval = Duration::from_secs(u64::from(response.next_heartbeat_seconds.max(1)));
                next_heartbeat = tokio::time::Instant::now() + interval;
                shared.update_state(|state| {
                    state.connected = true;
                    state.last_heartbeat = Some(now_ms());
                    state.last_error = None;
                    state.update_needed = false;
                    state.spare = Some(response.spare);
                    state.handover = response.handover;
                    state.vault = Some(report.vault.clone());
                });
                let checking = shared.clone();
                tokio::spawn(async move {
                    super::backup_loop::check_protection(&checking, false).await;
                });
                if collection.answered(failed_before, tokio::time::Instant::now()) {
                    tokio::spawn(garbage::collect(shared.clone()));
                }
                // The chart's history takes a point a quarter of an hour: the file is only
                // read and written when one is due, not on every heartbeat.
                let now = now_ms();
                if history_at.is_none_or(|at| now - at >= crate::history::HISTORY_STEP_MS) {
                    history_at = Some(now);
                    let compute_ms = shared
                        .state
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .compute_ms_done;
                    crate::history::record(
                        &shared.data_dir,
                        crate::history::Point {
                            at: now,
                            stored_bytes: report.vault.used_bytes,
                            compute_ms,
                        },
                    );
                }
            }
            Err(error) => {
                if let Some(fatal) = fatal(&error) {
                    return Err(fatal);
                }
                shared.failures.count();
                let wait = backoff.step().min(interval);
                tracing::warn!(%error, retry_in = ?wait, "heartbeat failed");
                next_heartbeat = tokio::time::Instant::now() + wait;
                let too_old = error.code() == Some(surplus_protocol::ErrorCode::AgentTooOld);
                shared.update_state(|state| {
                    state.connected = false;
                    state.last_error = Some(error.to_string());
                    state.update_needed = too_old;
                });
            }
        }
    }
}

fn settings_stamp(data_dir: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(Settings::path(data_dir)).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
