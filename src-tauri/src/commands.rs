//! The commands the windows call. Each hands over to the agent core and reports its errors as
//! the text a person reads.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use surplus_agent::clock::now_ms;
use surplus_agent::control::{
    self, Choices, ControlError, DiskChoice, Doing, Enrolled, Enrollment, EntryView, Existing,
    Overview, Problem, RestoreProgress, RestoreTo, Restored, SearchResults, SnapshotView,
};
use surplus_agent::settings::Settings;
use surplus_desktop::link::Message;
use surplus_desktop::{Pausable, autostart};
use tauri::{AppHandle, Emitter, Manager, State};

use crate::Shell;

type Answer<T> = Result<T, Problem>;

fn text(error: ControlError) -> Problem {
    error.explain(Doing::Other)
}

pub fn handler() -> impl Fn(tauri::ipc::Invoke) -> bool + Send + Sync + 'static {
    tauri::generate_handler![
        overview,
        disks,
        suggested_folders,
        enroll,
        check_hub,
        apply,
        generate_passphrase,
        passphrase_problem,
        set_recovery_passphrase,
        change_recovery_passphrase,
        log_out_everywhere,
        finish_wizard,
        set_autostart,
        pause,
        resume,
        back_up_now,
        snapshots,
        list_snapshot,
        search_snapshot,
        check_folder,
        save_passphrase,
        restore,
        credits,
        history,
        open_window,
        close_window,
    ]
}

#[tauri::command]
fn overview(shell: State<'_, Shell>) -> Answer<Overview> {
    Ok(overview_of(&shell))
}

/// Everything the windows show of this device, as the core knows it now.
pub fn overview_of(shell: &Shell) -> Overview {
    let (tray, state, settings) = shell.status();
    let email = shell
        .control
        .credentials()
        .ok()
        .and_then(|c| c.session().ok().flatten())
        .map(|s| s.email);
    Overview {
        registered: shell.registered.load(std::sync::atomic::Ordering::SeqCst),
        wizard_done: surplus_desktop::wizard_done(shell.data_dir()),
        email,
        hub_url: settings.hub_url.clone().or_else(control::packaged_hub),
        device_name: settings
            .device_name
            .clone()
            .unwrap_or_else(control::host_name),
        has_backup_key: shell.control.has_backup_key(),
        autostart: autostart::is_enabled(),
        data_dir: shell.control.data_dir().to_owned(),
        restore_to: control::default_restore_dir(),
        home_dir: control::home_dir(),
        settings,
        state,
        tray,
    }
}

#[tauri::command]
fn disks(shell: State<'_, Shell>) -> Answer<Vec<DiskChoice>> {
    shell.control.disks().map_err(text)
}

/// The usual folders of a home, those that exist, for the wizard to offer.
#[tauri::command]
fn suggested_folders() -> Vec<PathBuf> {
    control::suggested_folders()
}

#[tauri::command]
async fn enroll(shell: State<'_, Shell>, enrollment: Enrollment) -> Answer<Enrolled> {
    let doing = if enrollment.signup {
        Doing::SigningUp
    } else {
        Doing::LoggingIn
    };
    let enrolled = shell
        .control
        .enroll(enrollment)
        .await
        .map_err(|error| error.explain(doing))?;
    shell.registered.store(true, Ordering::SeqCst);
    shell.tell_if_running(&Message::Enrolled);
    Ok(enrolled)
}

/// Whether a Surplus hub answers at `url`, before the wizard signs up there.
#[tauri::command]
async fn check_hub(shell: State<'_, Shell>, url: String) -> Answer<()> {
    shell.control.check_hub(&url).await.map_err(text)
}

#[tauri::command]
fn apply(shell: State<'_, Shell>, choices: Choices) -> Answer<Settings> {
    let settings = shell.control.apply(choices).map_err(text)?;
    shell.tell_if_running(&Message::SettingsChanged);
    Ok(settings)
}

#[tauri::command]
fn generate_passphrase() -> String {
    control::generate_passphrase()
}

/// What is wrong with a new recovery passphrase, as the user types it; `None` when it will do.
#[tauri::command]
fn passphrase_problem(shell: State<'_, Shell>, passphrase: String) -> Option<String> {
    shell.control.passphrase_problem(&passphrase)
}

/// Unlocks or sets up the backup key. Answers what is wrong with the passphrase when it opened a
/// key locked under one too weak: the window then asks for a better one.
#[tauri::command]
async fn set_recovery_passphrase(
    shell: State<'_, Shell>,
    passphrase: String,
) -> Answer<Option<String>> {
    let too_weak = shell
        .control
        .set_recovery_passphrase(&passphrase)
        .await
        .map_err(text)?;
    // Backups waiting for the key can start.
    if shell.registered.load(Ordering::SeqCst) {
        shell.tell_if_running(&Message::BackUpNow);
    }
    Ok(too_weak)
}

/// Locks the copy of the backup key kept at the hub under a new recovery passphrase.
#[tauri::command]
async fn change_recovery_passphrase(shell: State<'_, Shell>, passphrase: String) -> Answer<()> {
    shell
        .control
        .change_recovery_passphrase(&passphrase)
        .await
        .map_err(text)
}

/// Ends every log-in session of the account, this PC's too (for a PC lost or stolen). Devices
/// go on with their own credentials.
#[tauri::command]
async fn log_out_everywhere(shell: State<'_, Shell>) -> Answer<()> {
    shell.control.logout(true).await.map_err(text)
}

/// The wizard's last page: start at login (unless the user said no) and take the first backup.
#[tauri::command]
fn finish_wizard(shell: State<'_, Shell>, autostart: bool) -> Answer<()> {
    set_autostart(autostart)?;
    surplus_desktop::set_wizard_done(shell.data_dir()).map_err(|source| {
        text(ControlError::Io {
            path: shell.data_dir().to_owned(),
            source,
        })
    })?;
    shell.tell(&Message::Enrolled)?;
    shell.tell(&Message::BackUpNow)
}

#[tauri::command]
fn set_autostart(on: bool) -> Answer<()> {
    autostart::set(on).map_err(|error| {
        Problem::new(
            "Surplus can't change whether it starts when you log in. See Details.",
            error,
        )
    })
}

/// Pauses `what` (`lending` or `backups`) until `until` (`hour` or `tomorrow`).
#[tauri::command]
fn pause(shell: State<'_, Shell>, what: String, until: String) -> Answer<()> {
    surplus_desktop::pause(&shell.control, Pausable::named(&what)?, &until)?;
    shell.tell_if_running(&Message::SettingsChanged);
    Ok(())
}

#[tauri::command]
fn resume(shell: State<'_, Shell>, what: String) -> Answer<()> {
    surplus_desktop::resume(&shell.control, Pausable::named(&what)?)?;
    shell.tell_if_running(&Message::SettingsChanged);
    Ok(())
}

#[tauri::command]
fn back_up_now(shell: State<'_, Shell>) -> Answer<()> {
    if !shell.registered.load(Ordering::SeqCst) {
        return Err("This PC is not set up yet: open Settings to sign in."
            .to_owned()
            .into());
    }
    shell.tell(&Message::BackUpNow)
}

#[tauri::command]
async fn snapshots(shell: State<'_, Shell>) -> Answer<Vec<SnapshotView>> {
    shell.control.snapshots().await.map_err(text)
}

#[tauri::command]
async fn list_snapshot(
    shell: State<'_, Shell>,
    snapshot: String,
    path: Option<PathBuf>,
) -> Answer<Vec<EntryView>> {
    shell.control.list(&snapshot, path).await.map_err(text)
}

/// A folder the user picked to back up, checked: it exists and this user can read it.
#[tauri::command]
fn check_folder(path: PathBuf) -> Answer<PathBuf> {
    control::readable_folder(&path).map_err(text)
}

/// Saves the recovery passphrase to the file the user chose in the save dialog.
#[tauri::command]
fn save_passphrase(path: PathBuf, passphrase: String) -> Answer<()> {
    control::save_passphrase(&path, &passphrase).map_err(text)
}

#[tauri::command]
async fn search_snapshot(
    shell: State<'_, Shell>,
    snapshot: String,
    needle: String,
) -> Answer<SearchResults> {
    shell.control.search(&snapshot, &needle).await.map_err(text)
}

/// Sends a restore's progress to the restore window as `restore-progress` events.
struct Reporter {
    app: AppHandle,
    files: AtomicU64,
    bytes: AtomicU64,
    total_files: AtomicU64,
    total_bytes: AtomicU64,
    /// When progress was last sent, in ms: at most ten events a second.
    sent_at: AtomicU64,
}

impl Reporter {
    fn send(&self, force: bool) {
        let now = u64::try_from(now_ms()).unwrap_or(0);
        if !force && now.saturating_sub(self.sent_at.load(Ordering::Relaxed)) < 100 {
            return;
        }
        self.sent_at.store(now, Ordering::Relaxed);
        let _ = self.app.emit(
            "restore-progress",
            RestoreProgress {
                files: self.files.load(Ordering::Relaxed),
                bytes: self.bytes.load(Ordering::Relaxed),
                total_files: self.total_files.load(Ordering::Relaxed),
                total_bytes: self.total_bytes.load(Ordering::Relaxed),
            },
        );
    }
}

impl control::FileProgress for Reporter {
    fn start(&self, files: u64, bytes: u64) {
        self.total_files.store(files, Ordering::Relaxed);
        self.total_bytes.store(bytes, Ordering::Relaxed);
        self.send(true);
    }

    fn bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.send(false);
    }

    fn file(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.send(false);
    }
}

/// Restores each of `paths` (the whole snapshot when empty) of `snapshot` under `target`, or,
/// without one, where the files were: keeping both copies of a file that changed since, unless
/// `replace`.
#[tauri::command]
async fn restore(
    app: AppHandle,
    shell: State<'_, Shell>,
    snapshot: String,
    paths: Vec<PathBuf>,
    target: Option<PathBuf>,
    replace: bool,
) -> Answer<Restored> {
    let (to, existing) = match target {
        Some(folder) => (RestoreTo::Folder(folder), Existing::Replace),
        None if replace => (RestoreTo::Original, Existing::Replace),
        None => (RestoreTo::Original, Existing::KeepBoth),
    };
    let mut restored = surplus_agent::control::RestoreReport::default();
    let wanted: Vec<Option<PathBuf>> = if paths.is_empty() {
        vec![None]
    } else {
        paths.into_iter().map(Some).collect()
    };
    for path in wanted {
        let reporter = Arc::new(Reporter {
            app: app.clone(),
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            total_files: AtomicU64::new(0),
            total_bytes: AtomicU64::new(0),
            sent_at: AtomicU64::new(0),
        });
        let report = shell
            .control
            .restore(&snapshot, path, to.clone(), existing, reporter.clone())
            .await
            .map_err(text)?;
        reporter.send(true);
        restored += report;
    }
    Ok(restored.into())
}

#[tauri::command]
async fn credits(shell: State<'_, Shell>) -> Answer<surplus_protocol::Credits> {
    shell.control.credits().await.map_err(text)
}

#[tauri::command]
fn history(shell: State<'_, Shell>) -> Vec<surplus_agent::history::Point> {
    surplus_agent::history::load(shell.control.data_dir())
}

#[tauri::command]
fn open_window(app: AppHandle, page: String) {
    crate::open_window(&app, &page);
}

#[tauri::command]
fn close_window(app: AppHandle, page: String) {
    if let Some(window) = app.get_webview_window(&page) {
        let _ = window.close();
    }
}
