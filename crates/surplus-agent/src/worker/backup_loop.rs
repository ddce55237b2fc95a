//! Continuous backup of the folders the user chose.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use surplus_protocol::{PauseState, UnixMillis};
use tokio::sync::watch;

use super::error::WorkerError;
use super::options::WorkerOptions;
use super::shared::Shared;
use super::state::BackupProgress;
use crate::clock::now_ms;

/// How long a backup that is due waits because the user paused backups: `None` when it runs
/// now (no pause, or the user asked for this backup), else until the pause ends (or the next
/// scheduled scan, for a pause without an end, which is looked at again then).
fn paused_for(
    pause: PauseState,
    asked: bool,
    now: UnixMillis,
    interval: Duration,
) -> Option<Duration> {
    if asked || !pause.is_paused(now) {
        return None;
    }
    Some(match pause {
        PauseState::Until { until } => {
            Duration::from_millis(u64::try_from(until - now).unwrap_or(0))
        }
        _ => interval,
    })
}

/// Continuous backup: the chosen folders are backed up shortly after something in them changes
/// (file-system events, debounced) and at least every `backup_interval`. Keys must exist already
/// (the first `surplus backup now` makes them, asking for the recovery passphrase): the agent
/// never asks for a passphrase.
pub(super) async fn backup_loop(
    shared: Arc<Shared>,
    options: WorkerOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    use notify::Watcher;
    let (changed, mut changes) = tokio::sync::mpsc::unbounded_channel::<()>();
    // Kept alive while watching; replaced when the folders change.
    let mut _watcher: Option<notify::RecommendedWatcher> = None;
    let mut watched: Vec<PathBuf> = Vec::new();
    let mut next_scan = tokio::time::Instant::now() + options.backup_debounce;
    loop {
        let folders = shared.settings().backup.folders;
        if folders != watched {
            let sender = changed.clone();
            let mut fresh =
                notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                    if event.is_ok_and(|e| !e.kind.is_access()) {
                        let _ = sender.send(());
                    }
                })
                .ok();
            for folder in &folders {
                if let Some(watcher) = fresh.as_mut()
                    && let Err(error) = watcher.watch(folder, notify::RecursiveMode::Recursive)
                {
                    tracing::warn!(%error, folder = %folder.display(), "cannot watch a backed-up folder; it is scanned hourly");
                }
            }
            _watcher = fresh;
            watched = folders.clone();
        }
        let (changed_now, asked) = tokio::select! {
            _ = stop.wait_for(|&s| s) => return Ok(()),
            _ = tokio::time::sleep_until(next_scan) => (false, false),
            _ = shared.backup_now.notified() => (false, true),
            Some(()) = changes.recv() => (true, false),
        };
        // Paused by the user: nothing on schedule or on change until the pause ends; a backup
        // asked for now still runs.
        if let Some(wait) = paused_for(
            shared.settings().backup.pause,
            asked,
            now_ms(),
            options.backup_interval,
        ) {
            next_scan = tokio::time::Instant::now() + wait;
            while changes.try_recv().is_ok() {}
            continue;
        }
        if changed_now {
            // Let a burst of changes settle, then take them all in one backup.
            tokio::select! {
                _ = stop.wait_for(|&s| s) => return Ok(()),
                _ = tokio::time::sleep(options.backup_debounce) => {}
            }
            while changes.try_recv().is_ok() {}
        }
        // The folders as the settings name them now, not as they were when this began to wait:
        // the wizard starts the agent at enrolment, chooses the folders, and then asks for the
        // first backup, which would otherwise find none and wait an hour.
        let folders = shared.settings().backup.folders;
        next_scan = tokio::time::Instant::now() + options.backup_interval;
        if folders.is_empty() {
            continue;
        }
        let credentials = crate::credentials::CredentialStore::open(&shared.data_dir)?;
        let Some(key) = credentials.backup_key()? else {
            tracing::info!("backups wait for keys: run `surplus backup now` once to set them up");
            shared.update_state(|state| {
                state.last_backup_error =
                    Some("backups wait for the recovery passphrase to be set".to_owned());
            });
            continue;
        };
        let host = crate::backup::snapshot_host(&shared.settings());
        let (client, token, handle) = (
            shared.client.clone(),
            shared.token.clone(),
            tokio::runtime::Handle::current(),
        );
        let (coding, warning, eligible_holders) = match crate::backup::coding(&client, &token).await
        {
            Ok(advice) => advice,
            Err(error) => {
                tracing::warn!(%error, "cannot ask the hub how to code backups; trying again later");
                next_scan = tokio::time::Instant::now() + Duration::from_secs(60);
                continue;
            }
        };
        if let Some(warning) = &warning {
            tracing::warn!(%warning, "backups are not fully protected");
        }
        let holders_short = warning.is_some().then_some(eligible_holders);
        shared.update_state(|state| state.backing_up_since = Some(now_ms()));
        let rate = shared.settings().bandwidth_bytes_per_second;
        let data_dir = shared.data_dir.clone();
        let tallied = shared.clone();
        let span = tracing::info_span!("backup", folders = folders.len(), changed = changed_now);
        let outcome = tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            let _lock = crate::backup::BackupLock::acquire(&data_dir, || {
                tracing::info!("another backup runs on this data directory; waiting for it");
            })
            .map_err(|source| surplus_backup::repo::BackupError::Io {
                path: data_dir.join("backup.lock"),
                source,
            })?;
            let mut store = crate::backup::HubStore::new(client, token, handle);
            store.upload_rate = rate;
            let key = surplus_backup::keys::MasterKey::from_bytes(key);
            let mut repository = crate::backup::open_repository(store, &key, coding, &data_dir)?;
            repository.set_progress(Arc::new(Tally::start(tallied, &folders)));
            let report = crate::backup::take_snapshot(&mut repository, &folders, &host)?;
            let packs = match &report.snapshot {
                Some(snapshot) => repository.packs_of(snapshot)?,
                None => Default::default(),
            };
            Ok::<_, surplus_backup::repo::BackupError>((report, packs))
        })
        .await
        .map_err(|e| WorkerError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })?;
        let backed_up = outcome.is_ok();
        match outcome {
            Ok((report, packs)) => {
                *shared
                    .snapshot_packs
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = packs;
                let summary = report.snapshot.map(|s| s.summary).unwrap_or_default();
                tracing::info!(snapshot = %report.snapshot_id, files = summary.files, new_bytes = summary.new_bytes, "backed up");
                for (path, reason) in &report.skipped {
                    tracing::warn!(path = %path.display(), %reason, "not backed up");
                }
                shared.update_state(|state| {
                    state.last_backup = Some((now_ms(), report.snapshot_id.clone()));
                    state.last_backup_error = None;
                    state.backing_up_since = None;
                    state.backup_progress = None;
                    state.backup_holders_short = holders_short;
                    state.last_backup_skipped_count = report.skipped.len() as u64;
                    state.last_backup_skipped = report
                        .skipped
                        .iter()
                        .take(super::state::SKIPPED_KEPT)
                        .map(|(path, reason)| super::state::Skipped {
                            path: path.display().to_string(),
                            reason: reason.clone(),
                        })
                        .collect();
                });
            }
            Err(error) => {
                tracing::warn!(%error, "backup failed; trying again later");
                shared.update_state(|state| {
                    state.last_backup_error = Some(error.to_string());
                    state.backing_up_since = None;
                    state.backup_progress = None;
                });
                next_scan = tokio::time::Instant::now()
                    + options.backup_debounce.max(Duration::from_secs(60));
            }
        }
        if backed_up {
            check_protection(&shared, true).await;
        }
    }
}

/// Keeps a running backup's progress in the agent state, for the tray's headline and the Status
/// window's bar: written at most every [`Tally::EVERY`], not at each file.
struct Tally {
    shared: Arc<Shared>,
    files_total: u64,
    bytes_total: u64,
    files: AtomicU64,
    bytes: AtomicU64,
    written: Mutex<Instant>,
}

impl Tally {
    const EVERY: Duration = Duration::from_secs(1);

    /// Counts what `folders` hold (a walk of their directories, no file read) and says so.
    fn start(shared: Arc<Shared>, folders: &[PathBuf]) -> Tally {
        let (files_total, bytes_total) = surplus_backup::repo::scan_totals(folders);
        let tally = Tally {
            shared,
            files_total,
            bytes_total,
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            written: Mutex::new(Instant::now()),
        };
        tally.write();
        tally
    }

    fn write(&self) {
        let progress = BackupProgress {
            files: self.files.load(Ordering::Relaxed),
            files_total: self.files_total,
            bytes: self.bytes.load(Ordering::Relaxed),
            bytes_total: self.bytes_total,
        };
        self.shared
            .update_state(|state| state.backup_progress = Some(progress));
    }

    fn maybe_write(&self) {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if written.elapsed() >= Self::EVERY {
            *written = Instant::now();
            drop(written);
            self.write();
        }
    }
}

impl surplus_backup::repo::Progress for Tally {
    fn bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.maybe_write();
    }

    fn file(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.maybe_write();
    }
}

/// How often the hub is asked how well off the latest backup is: often while its packs are on
/// their way to holders (minutes), seldom once they are all placed (holders come and go slowly).
const PROTECTION_WHILE_SPREADING: Duration = Duration::from_secs(10);
const PROTECTION_ONCE_PROTECTED: Duration = Duration::from_secs(10 * 60);

/// Asks the hub how well off the latest snapshot's packs are, when it is due (`now`: at once),
/// and keeps the answer as [`super::AgentState::backup_protection`], the "fully protected" of
/// the tray's headline. Called after each backup and after each heartbeat.
pub(super) async fn check_protection(shared: &Arc<Shared>, now: bool) {
    let packs = shared
        .snapshot_packs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if packs.is_empty() {
        return;
    }
    let protected = shared
        .state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .backup_protection
        .as_deref()
        == Some("protected");
    let every = if protected {
        PROTECTION_ONCE_PROTECTED
    } else {
        PROTECTION_WHILE_SPREADING
    };
    {
        let mut asked = shared
            .protection_asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !now && asked.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        *asked = Some(tokio::time::Instant::now());
    }
    match shared.client.backup_health(&shared.token).await {
        Ok(health) => {
            let state = crate::backup::snapshot_state(&packs, &crate::backup::pack_states(&health));
            shared.update_state(|s| s.backup_protection = Some(state.to_owned()));
        }
        Err(error) => tracing::debug!(%error, "cannot ask the hub how well off the backup is"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_pause_holds_scheduled_backups_until_it_ends_but_not_one_asked_for() {
        let until = PauseState::Until { until: 10_000 };
        assert_eq!(
            paused_for(until, false, 4_000, HOUR),
            Some(Duration::from_millis(6_000))
        );
        assert_eq!(paused_for(until, true, 4_000, HOUR), None);
        assert_eq!(paused_for(until, false, 10_000, HOUR), None);
        assert_eq!(paused_for(PauseState::Running, false, 0, HOUR), None);
        assert_eq!(
            paused_for(PauseState::Indefinitely, false, 0, HOUR),
            Some(HOUR)
        );
        assert_eq!(paused_for(PauseState::Indefinitely, true, 0, HOUR), None);
    }
}
