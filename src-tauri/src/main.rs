//! The Surplus tray app's windows: the wizard, settings, status and restore, in Tauri. This
//! process runs only while one of them is open, and ends with the last; the tray icon and the
//! agent live in the tray process (`surplus-tray`), which this one starts when it is not running
//! and ends with ([`surplus_desktop::link`]). It translates between the windows and the core
//! ([`surplus_agent::control`]), and decides nothing itself.
//!
//! `surplus-desktop [--show PAGE]` opens a page (the wizard until it was finished); a second
//! launch hands over to the first. `--autostart`, from an older login entry, only starts the tray.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;
mod news;

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::AtomicBool;

use surplus_agent::control::{self, Control, Problem, TrayStatus};
use surplus_agent::settings::Settings;
use surplus_agent::worker::AgentState;
use surplus_desktop::link::{self, Message};
use tauri::{AppHandle, Manager, WebviewUrl, WebviewWindowBuilder};

/// The windows' state, shared by their commands.
pub struct Shell {
    control: Control,
    /// Whether the device is registered; read from the keyring once, then kept.
    registered: AtomicBool,
}

impl Shell {
    fn data_dir(&self) -> &Path {
        self.control.data_dir()
    }

    /// Tells the tray, which runs the agent, what it must act on now.
    fn tell(&self, message: &Message) -> Result<(), Problem> {
        link::send(self.data_dir(), message).map_err(|error| {
            Problem::new(
                "Surplus's tray isn't running, so this can't happen now. Start Surplus from \
                 your applications menu and try again.",
                error.to_string(),
            )
        })
    }

    /// Like [`Shell::tell`], for news the tray would also find on its own within seconds.
    fn tell_if_running(&self, message: &Message) {
        if let Err(error) = self.tell(message) {
            tracing::warn!(error = %error.details, ?message, "cannot tell the tray");
        }
    }

    fn status(&self) -> (TrayStatus, AgentState, Settings) {
        let settings = self.control.settings().unwrap_or_default();
        let state = AgentState::load(self.data_dir()).unwrap_or_default();
        let status = control::tray_status(
            self.registered.load(std::sync::atomic::Ordering::SeqCst),
            &settings,
            &state,
            surplus_agent::clock::now_ms(),
            control::local_clock,
        );
        (status, state, settings)
    }
}

/// Opens one of the app's windows, or brings it forward if it is open.
pub fn open_window(app: &AppHandle, page: &str) {
    let shell = app.state::<Shell>();
    let page = surplus_desktop::page_to_show(shell.data_dir(), page);
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

/// The page that `--show PAGE` asks for, if any.
fn page_asked(args: &[String]) -> Option<&str> {
    args.windows(2)
        .find(|pair| pair[0] == "--show")
        .map(|pair| pair[1].as_str())
}

/// Starts the tray process for `data_dir` unless it runs, and waits until it answers.
fn start_tray(data_dir: &Path, at_login: bool) -> std::io::Result<()> {
    let mut tray = std::process::Command::new(surplus_desktop::sibling("surplus-tray")?);
    tray.arg(if at_login {
        "--autostart"
    } else {
        "--for-window"
    })
    .env("SURPLUS_DATA_DIR", data_dir)
    .stdin(Stdio::null());
    // Its own process group: a terminal closing on this process leaves the tray running.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut tray, 0);
    if at_login {
        tray.spawn()?;
        return Ok(());
    }
    let mut child = tray.stdout(Stdio::piped()).spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no pipe"))?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    if line.trim() != "listening" {
        let status = child.wait()?;
        return Err(std::io::Error::other(format!("the tray ended: {status}")));
    }
    // The tray outlives this process; reap it if it ends first.
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// Keeps the windows alive as long as the tray: starts it if need be, then ends the app when it
/// ends (Quit in the tray menu). Without a tray, the windows still work, and say the agent is off.
fn follow_tray(app: AppHandle, data_dir: PathBuf) {
    let watched = link::watch(&data_dir).or_else(|_| {
        start_tray(&data_dir, false).map_err(|error| error.to_string())?;
        link::watch(&data_dir).map_err(|error| error.to_string())
    });
    match watched {
        Ok(()) => {
            tracing::info!("the tray ended: closing the windows");
            app.exit(0);
        }
        Err(error) => tracing::error!(%error, "cannot start the tray"),
    }
}

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    surplus_desktop::lighten_gtk();
    surplus_desktop::init_logging();
    let Some(data_dir) = surplus_desktop::data_dir() else {
        eprintln!("surplus-desktop: no home folder: set SURPLUS_DATA_DIR");
        return ExitCode::from(2);
    };
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|arg| arg == "--autostart") {
        // A tray already running lets the new one end quietly.
        return match start_tray(&data_dir, true) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("surplus-desktop: cannot start the tray: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let first_page = page_asked(&args).unwrap_or("status").to_owned();
    let control = Control::new(&data_dir);
    let shell = Shell {
        registered: AtomicBool::new(control.registered()),
        control,
    };
    let app = tauri::Builder::default()
        // First: a second launch hands over to this one, which shows the page it asked for.
        .plugin(tauri_plugin_single_instance::init(|app, args, _cwd| {
            open_window(app, page_asked(&args).unwrap_or("status"));
        }))
        // The native folder and file choosers (folders to back up, where to restore, where to
        // save the recovery passphrase).
        .plugin(tauri_plugin_dialog::init())
        .manage(shell)
        .invoke_handler(commands::handler())
        .setup(move |app| {
            let handle = app.handle().clone();
            open_window(&handle, &first_page);
            let news = handle.clone();
            std::thread::Builder::new()
                .name("surplus-news".into())
                .spawn(move || news::follow(news))?;
            let follower = handle.clone();
            std::thread::Builder::new()
                .name("surplus-follow-tray".into())
                .spawn(move || follow_tray(follower, data_dir))?;
            Ok(())
        })
        .build(tauri::generate_context!());
    match app {
        // Ends with its last window.
        Ok(app) => {
            app.run(|_, _| {});
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("surplus-desktop: cannot start: {error}");
            ExitCode::FAILURE
        }
    }
}
