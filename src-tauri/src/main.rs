//! The Surplus tray app: a thin shell over the agent core. The worker runs on its own runtime in
//! a background thread ([`agent`]); this shell translates between the windows, the tray and the
//! core ([`surplus_agent::control`]), and decides nothing itself.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod agent;
mod commands;
mod tray;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use surplus_agent::control::{self, Control, TrayStatus};
use surplus_agent::settings::Settings;
use surplus_agent::worker::AgentState;
use tauri::{AppHandle, Manager, WebviewUrl, WebviewWindowBuilder};
use tauri_plugin_notification::NotificationExt as _;

/// How often the tray looks at the worker's state.
const REFRESH: Duration = Duration::from_secs(2);

/// The app's state, shared by commands, the tray and the refresher.
pub struct Shell {
    control: Control,
    /// The hub the wizard offers: `SURPLUS_HUB`, or the hosted one.
    default_hub: String,
    agent: Mutex<Option<agent::Agent>>,
    tray: Mutex<Option<tray::TrayMenu>>,
    /// What the tray last showed and the state it was read from, to tell changes.
    shown: Mutex<(Option<TrayStatus>, AgentState)>,
    quitting: AtomicBool,
    /// Whether the device is registered; read from the keyring once, then kept, so the tray's
    /// refresh does not ask the keyring every two seconds.
    registered: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The shell's own memory, beside the agent's settings: whether the wizard was finished.
#[derive(Debug, Default, Serialize, Deserialize)]
struct DesktopFile {
    wizard_done: bool,
}

impl Shell {
    fn desktop_file(&self) -> PathBuf {
        self.control.data_dir().join("desktop.json")
    }

    fn wizard_done(&self) -> bool {
        std::fs::read(self.desktop_file())
            .ok()
            .and_then(|bytes| serde_json::from_slice::<DesktopFile>(&bytes).ok())
            .is_some_and(|file| file.wizard_done)
    }

    fn set_wizard_done(&self) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(&DesktopFile { wizard_done: true })?;
        std::fs::write(self.desktop_file(), bytes)
    }

    /// Starts the worker if the device is registered and it is not running yet.
    fn start_agent(&self) {
        let mut agent = lock(&self.agent);
        if agent.is_some() {
            return;
        }
        let registered = self.control.registered();
        self.registered.store(registered, Ordering::SeqCst);
        if !registered {
            return;
        }
        match agent::Agent::start(self.control.data_dir()) {
            Ok(started) => *agent = Some(started),
            Err(error) => tracing::error!(%error, "cannot start the agent"),
        }
    }

    /// Tells the running worker that the settings changed, so it acts on them now.
    fn settings_changed(&self) {
        if let Some(agent) = lock(&self.agent).as_ref() {
            agent.handle().settings_changed();
        }
    }

    fn status(&self) -> (TrayStatus, AgentState, Settings) {
        let settings = self.control.settings().unwrap_or_default();
        let state = AgentState::load(self.control.data_dir()).unwrap_or_default();
        let status = control::tray_status(
            self.registered.load(Ordering::SeqCst),
            &settings,
            &state,
            surplus_agent::worker::now_ms(),
            control::local_clock,
        );
        (status, state, settings)
    }
}

/// Opens one of the app's windows, or brings it forward if it is open.
pub fn open_window(app: &AppHandle, page: &str) {
    if let Some(window) = app.get_webview_window(page) {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
        return;
    }
    let (title, width, height) = match page {
        "wizard" => ("Set up Surplus", 720.0, 620.0),
        "settings" => ("Surplus settings", 760.0, 680.0),
        "restore" => ("Restore files", 820.0, 640.0),
        _ => ("Surplus", 780.0, 720.0),
    };
    let url = WebviewUrl::App(format!("index.html#{page}").into());
    if let Err(error) = WebviewWindowBuilder::new(app, page, url)
        .title(title)
        .inner_size(width, height)
        .min_inner_size(560.0, 480.0)
        .build()
    {
        tracing::error!(%error, page, "cannot open a window");
    }
}

/// A click in the tray menu.
pub fn on_menu(app: &AppHandle, id: &str) {
    let shell = app.state::<Shell>();
    match id {
        "pause-hour" => commands::pause_for(&shell, "hour"),
        "pause-tomorrow" => commands::pause_for(&shell, "tomorrow"),
        "resume" => commands::resume_donating(&shell),
        "backup-now" => {
            if let Some(agent) = lock(&shell.agent).as_ref() {
                agent.handle().back_up_now();
            }
            Ok(())
        }
        "restore" | "status" | "settings" => {
            let page = if shell.wizard_done() { id } else { "wizard" };
            open_window(app, page);
            Ok(())
        }
        "quit" => {
            shell.quitting.store(true, Ordering::SeqCst);
            app.exit(0);
            Ok(())
        }
        _ => Ok(()),
    }
    .unwrap_or_else(|error| tracing::warn!(%error, id, "tray menu"));
    refresh(app);
}

/// Brings the tray in line with the device's state and tells the user what they must know.
fn refresh(app: &AppHandle) {
    let shell = app.state::<Shell>();
    let (status, state, _) = shell.status();
    let mut shown = lock(&shell.shown);
    for alert in control::alerts(&shown.1, &state) {
        if let Err(error) = app
            .notification()
            .builder()
            .title(&alert.title)
            .body(&alert.body)
            .show()
        {
            tracing::warn!(%error, "cannot show a notification");
        }
    }
    if shown.0.as_ref() != Some(&status)
        && let Some(tray) = lock(&shell.tray).as_ref()
    {
        tray.show(app, &status);
    }
    *shown = (Some(status), state);
}

/// GTK probes OpenGL when it opens the display, which loads the GL driver (with Mesa, all of
/// LLVM) into a process that, as a tray app, mostly has no window at all: about 50 MB of the idle
/// app's resident memory. So GDK's GL is off, and WebKit, which would need it for accelerated
/// compositing, draws its few simple pages in software. A user who sets either variable keeps it.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn lighten_gtk() {
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

fn main() {
    #[cfg(target_os = "linux")]
    lighten_gtk();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SURPLUS_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let data_dir = std::env::var_os("SURPLUS_DATA_DIR")
        .map(PathBuf::from)
        .or_else(surplus_agent::settings::default_data_dir);
    let Some(data_dir) = data_dir else {
        eprintln!("surplus-desktop: no home folder: set SURPLUS_DATA_DIR");
        std::process::exit(2);
    };
    let launched_at_login = std::env::args().any(|arg| arg == "--autostart");
    let shell = Shell {
        control: Control::new(&data_dir),
        default_hub: std::env::var("SURPLUS_HUB")
            .unwrap_or_else(|_| "https://hub.surplus.example".to_owned()),
        agent: Mutex::new(None),
        tray: Mutex::new(None),
        shown: Mutex::new((None, AgentState::default())),
        quitting: AtomicBool::new(false),
        registered: AtomicBool::new(false),
    };
    let app = tauri::Builder::default()
        // First: a second launch hands over to this one, which shows itself.
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            let shell = app.state::<Shell>();
            let page = if shell.wizard_done() {
                "status"
            } else {
                "wizard"
            };
            open_window(app, page);
        }))
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            Some(vec!["--autostart"]),
        ))
        .plugin(tauri_plugin_notification::init())
        .manage(shell)
        .invoke_handler(commands::handler())
        .setup(move |app| {
            let handle = app.handle().clone();
            let shell = handle.state::<Shell>();
            shell.start_agent();
            let (status, state, _) = shell.status();
            *lock(&shell.tray) = Some(tray::build(&handle, &status)?);
            *lock(&shell.shown) = (Some(status), state);
            if !shell.wizard_done() {
                open_window(&handle, "wizard");
            } else if !launched_at_login {
                open_window(&handle, "status");
            }
            let refresher = handle.clone();
            std::thread::Builder::new()
                .name("surplus-tray".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(REFRESH);
                        let app = refresher.clone();
                        let _ = refresher.run_on_main_thread(move || refresh(&app));
                    }
                })?;
            Ok(())
        })
        .build(tauri::generate_context!())
        .unwrap_or_else(|error| {
            eprintln!("surplus-desktop: cannot start: {error}");
            std::process::exit(1);
        });
    app.run(|app, event| {
        if let tauri::RunEvent::ExitRequested { code, api, .. } = event {
            // Closing the last window leaves the app in the tray; only Quit ends it.
            let shell = app.state::<Shell>();
            if code.is_none() && !shell.quitting.load(Ordering::SeqCst) {
                api.prevent_exit();
                return;
            }
            if let Some(agent) = lock(&shell.agent).take() {
                agent.stop();
            }
            tracing::info!("quit");
        }
    });
}
