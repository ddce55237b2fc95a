//! What the tray app's two processes share. The tray process (`surplus-tray`) runs all day: the
//! tray icon, notifications and the agent core's worker ([`agent`]), with no webview. The windows
//! process (`surplus-desktop`) is Tauri and WebKit, and runs only while one of its windows is
//! open. They talk over a local socket in the data directory ([`link`]); both read and write the
//! device's state through [`surplus_agent::control::Control`], and neither decides anything itself.

pub mod agent;
pub mod autostart;
pub mod link;
pub mod watch;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use surplus_agent::control::{self, Control};
use surplus_protocol::PauseState;

/// The data directory: `SURPLUS_DATA_DIR`, or the platform's usual place.
pub fn data_dir() -> Option<PathBuf> {
    std::env::var_os("SURPLUS_DATA_DIR")
        .map(PathBuf::from)
        .or_else(surplus_agent::settings::default_data_dir)
}

/// Logs to stderr, filtered by `SURPLUS_LOG` (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SURPLUS_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// The path of the app's other program, installed beside this one.
pub fn sibling(name: &str) -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| std::io::Error::other("this program has no folder"))?;
    Ok(dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX)))
}

/// The windows the app has, each a page of `ui/`.
pub const PAGES: [&str; 4] = ["wizard", "status", "settings", "restore"];

/// The app's own memory, beside the agent's settings: whether the wizard was finished.
#[derive(Debug, Default, Serialize, Deserialize)]
struct DesktopFile {
    wizard_done: bool,
}

fn desktop_file(data_dir: &Path) -> PathBuf {
    data_dir.join("desktop.json")
}

/// Whether the setup wizard was finished on this device.
pub fn wizard_done(data_dir: &Path) -> bool {
    std::fs::read(desktop_file(data_dir))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<DesktopFile>(&bytes).ok())
        .is_some_and(|file| file.wizard_done)
}

pub fn set_wizard_done(data_dir: &Path) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(&DesktopFile { wizard_done: true })?;
    std::fs::write(desktop_file(data_dir), bytes)
}

/// The page to open for a request to show `page`: the wizard until it was finished, the status
/// window for anything unknown.
pub fn page_to_show(data_dir: &Path, page: &str) -> &'static str {
    if !wizard_done(data_dir) {
        return "wizard";
    }
    PAGES
        .into_iter()
        .find(|known| *known == page)
        .unwrap_or("status")
}

/// What the user may pause, each on its own: lending (disk space and processor time to others)
/// or their own backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pausable {
    Lending,
    Backups,
}

impl Pausable {
    /// `lending` or `backups`, as the windows and the tray menu name them.
    pub fn named(name: &str) -> Result<Pausable, String> {
        match name {
            "lending" => Ok(Pausable::Lending),
            "backups" => Ok(Pausable::Backups),
            other => Err(format!("nothing called {other:?} can be paused")),
        }
    }
}

/// Pauses `what` for `how_long` (`hour` or `tomorrow`).
pub fn pause(control: &Control, what: Pausable, how_long: &str) -> Result<(), String> {
    let until = control::pause_until(how_long).map_err(|error| error.to_string())?;
    set_pause(control, what, PauseState::Until { until })
}

/// Resumes `what` after a pause.
pub fn resume(control: &Control, what: Pausable) -> Result<(), String> {
    set_pause(control, what, PauseState::Running)
}

fn set_pause(control: &Control, what: Pausable, pause: PauseState) -> Result<(), String> {
    control
        .update(|s| match what {
            Pausable::Lending => s.pause = pause,
            Pausable::Backups => s.backup.pause = pause,
        })
        .map(drop)
        .map_err(|error| error.to_string())
}

/// GTK probes OpenGL when it opens the display, which loads the GL driver (with Mesa, all of
/// LLVM) into the process: about 50 MB of resident memory for a tray icon or a few simple pages.
/// So GDK's GL is off, and WebKit, which would need it for accelerated compositing, draws in
/// software. A user who sets either variable keeps it. Call it first thing in `main`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn lighten_gtk() {
    for (name, value) in [
        ("GDK_GL", "disable"),
        ("WEBKIT_DISABLE_COMPOSITING_MODE", "1"),
    ] {
        if std::env::var_os(name).is_none() {
            // SAFETY: called first thing in `main`, before any other thread exists, so nothing
            // reads the environment concurrently.
            unsafe { std::env::set_var(name, value) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wizard_comes_first_then_the_page_asked_for() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        assert_eq!(page_to_show(dir.path(), "settings"), "wizard");
        set_wizard_done(dir.path()).expect("works");
        assert_eq!(page_to_show(dir.path(), "settings"), "settings");
        assert_eq!(page_to_show(dir.path(), "restore"), "restore");
        assert_eq!(page_to_show(dir.path(), "../../etc"), "status");
    }
}
