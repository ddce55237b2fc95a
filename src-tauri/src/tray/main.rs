//! The Surplus tray process: the tray icon and its menu, notifications, and the agent core's
//! worker, with no webview, so what runs all day stays small. Windows are another process
//! (`surplus-desktop`), started on demand; it asks this one for what only the running agent can do
//! through [`surplus_desktop::link`].
//!
//! Started at login as `surplus-tray --autostart`, and by the windows process as
//! `surplus-tray --for-window` (then it says `listening` on standard output once it answers);
//! neither opens a window. Started by hand, it opens the status window (the wizard on a first
//! run). A second tray for the same data directory hands over to the first and ends.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod menu;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use surplus_agent::control::{self, Control, TrayStatus};
use surplus_agent::worker::AgentState;
use surplus_desktop::Pausable;
use surplus_desktop::agent::Agent;
use surplus_desktop::link::{self, Message};
use tao::event::{Event, StartCause};
use tao::event_loop::{ControlFlow, EventLoopBuilder};
use tray_icon::menu::MenuEvent;

/// How often the tray looks at the worker's state.
const REFRESH: Duration = Duration::from_secs(2);

/// What wakes the event loop besides its timer.
#[derive(Debug)]
enum Wake {
    Menu(String),
    Link(Message),
    /// The agent's state or the settings changed on disk.
    StateChanged,
}

struct Tray {
    control: Control,
    agent: Option<Agent>,
    /// Whether the device is registered; read from the keyring once, and again when the windows
    /// say it was enrolled, so the refresh does not ask the keyring every two seconds.
    registered: bool,
    menu: Option<menu::TrayMenu>,
    /// What the tray last showed and the state it was read from, to tell changes.
    shown: (Option<TrayStatus>, AgentState),
}

impl Tray {
    fn data_dir(&self) -> &Path {
        self.control.data_dir()
    }

    /// Starts the worker if the device is registered and it is not running yet.
    fn start_agent(&mut self) {
        if self.agent.is_some() {
            return;
        }
        self.registered = self.control.registered();
        if !self.registered {
            return;
        }
        match Agent::start(self.data_dir(), task_runner()) {
            Ok(started) => self.agent = Some(started),
            Err(error) => tracing::error!(%error, "cannot start the agent"),
        }
    }

    fn status(&self) -> (TrayStatus, AgentState) {
        let settings = self.control.settings().unwrap_or_default();
        let state = AgentState::load(self.data_dir()).unwrap_or_default();
        let status = control::tray_status(
            self.registered,
            &settings,
            &state,
            surplus_agent::clock::now_ms(),
            control::local_clock,
        );
        (status, state)
    }

    /// Brings the tray in line with the device's state and tells the user what they must know.
    fn refresh(&mut self) {
        let (status, state) = self.status();
        for alert in control::alerts(&self.shown.1, &state) {
            notify(alert.title, alert.body);
        }
        if self.shown.0.as_ref() != Some(&status)
            && let Some(menu) = &self.menu
        {
            menu.show(&status);
        }
        self.shown = (Some(status), state);
    }

    /// Opens a window through the windows process; one already running takes the request over.
    fn open(&self, page: &str) {
        let page = surplus_desktop::page_to_show(self.data_dir(), page);
        let started = surplus_desktop::sibling("surplus-desktop").and_then(|windows| {
            std::process::Command::new(windows)
                .args(["--show", page])
                .env("SURPLUS_DATA_DIR", self.data_dir())
                .spawn()
        });
        match started {
            // Reaped when it ends, on a thread of its own.
            Ok(mut child) => drop(std::thread::spawn(move || child.wait())),
            Err(error) => tracing::error!(%error, page, "cannot open a window"),
        }
    }

    fn back_up_now(&self) -> Result<(), String> {
        match &self.agent {
            Some(agent) => {
                agent.handle().back_up_now();
                Ok(())
            }
            None => Err("this PC is not set up yet".into()),
        }
    }

    fn settings_changed(&self) {
        if let Some(agent) = &self.agent {
            agent.handle().settings_changed();
        }
    }

    /// A click in the tray menu. Answers whether the tray should end.
    fn on_menu(&mut self, id: &str) -> bool {
        let done = match id {
            "pause-hour" | "pause-tomorrow" => {
                let how_long = id.trim_start_matches("pause-");
                surplus_desktop::pause(&self.control, Pausable::Lending, how_long)
                    .map(|()| self.settings_changed())
            }
            "resume" => surplus_desktop::resume(&self.control, Pausable::Lending)
                .map(|()| self.settings_changed()),
            "pause-backups-hour" | "pause-backups-tomorrow" => {
                let how_long = id.trim_start_matches("pause-backups-");
                surplus_desktop::pause(&self.control, Pausable::Backups, how_long)
                    .map(|()| self.settings_changed())
            }
            "resume-backups" => surplus_desktop::resume(&self.control, Pausable::Backups)
                .map(|()| self.settings_changed()),
            "backup-now" => self.back_up_now(),
            "restore" | "status" | "settings" => {
                self.open(id);
                Ok(())
            }
            "quit" => return true,
            _ => Ok(()),
        };
        if let Err(error) = done {
            tracing::warn!(%error, id, "tray menu");
        }
        self.refresh();
        false
    }

    fn on_message(&mut self, message: Message) {
        match message {
            Message::Show(page) => self.open(&page),
            Message::SettingsChanged => self.settings_changed(),
            Message::Enrolled => {
                self.start_agent();
                self.settings_changed();
            }
            Message::BackUpNow => {
                if let Err(error) = self.back_up_now() {
                    tracing::warn!(%error, "back up now");
                }
            }
            Message::Watch => {}
        }
        self.refresh();
    }
}

/// A notification through the OS, sent from a thread of its own: it is a D-Bus call on Linux.
fn notify(title: String, body: String) {
    std::thread::spawn(move || {
        let shown = notify_rust::Notification::new()
            .appname("Surplus")
            .summary(&title)
            .body(&body)
            .show();
        if let Err(error) = shown {
            tracing::warn!(%error, "cannot show a notification");
        }
    });
}

/// Each compute task runs in a process of its own, `surplus-tray-task` beside this program, so
/// that it needs no checks in its code (Unix only; elsewhere tasks run in this process).
fn task_runner() -> Option<surplus_agent::compute::Runner> {
    if !cfg!(unix) {
        return None;
    }
    let program = surplus_desktop::sibling("surplus-tray-task").ok()?;
    if !program.exists() {
        tracing::warn!(path = %program.display(), "no task program: tasks run in this process");
        return None;
    }
    Some(surplus_agent::compute::Runner {
        program,
        args: Vec::new(),
    })
}

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    surplus_desktop::lighten_gtk();
    surplus_desktop::init_logging();
    let Some(data_dir): Option<PathBuf> = surplus_desktop::data_dir() else {
        eprintln!("surplus-tray: no home folder: set SURPLUS_DATA_DIR");
        return ExitCode::from(2);
    };
    let at_login = std::env::args().any(|arg| arg == "--autostart");
    let for_window = std::env::args().any(|arg| arg == "--for-window");
    let quiet = at_login || for_window;

    let listener = match link::listen(&data_dir) {
        Ok(Some(listener)) => listener,
        Ok(None) => {
            // Another tray runs for this data directory: it takes over.
            if for_window {
                println!("listening");
            } else if !quiet
                && let Err(error) = link::send(&data_dir, &Message::Show("status".into()))
            {
                eprintln!("surplus-tray: {error}");
                return ExitCode::FAILURE;
            }
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!(
                "surplus-tray: cannot listen in {}: {error}",
                data_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };

    let event_loop = EventLoopBuilder::<Wake>::with_user_event().build();
    let proxy = event_loop.create_proxy();
    MenuEvent::set_event_handler(Some(move |event: MenuEvent| {
        let _ = proxy.send_event(Wake::Menu(event.id.0));
    }));
    let proxy = event_loop.create_proxy();
    let mut tray = Tray {
        control: Control::new(&data_dir),
        agent: None,
        registered: false,
        menu: None,
        shown: (None, AgentState::default()),
    };
    tray.start_agent();
    // The event loop owns the agent: requests go to it, and are answered once queued.
    let served = listener.serve(move |message| {
        proxy
            .send_event(Wake::Link(message))
            .map_err(|_| "Surplus is quitting".to_owned())
    });
    if let Err(error) = served {
        eprintln!("surplus-tray: cannot answer the windows: {error}");
        return ExitCode::FAILURE;
    }
    // The tray says a change as it happens (a backup done, the hub's word on it), not at its next
    // look; without a watch it still looks every REFRESH.
    let proxy = event_loop.create_proxy();
    let _watcher = surplus_desktop::watch::state_files(&data_dir, move || {
        let _ = proxy.send_event(Wake::StateChanged);
    })
    .map_err(|error| tracing::warn!(%error, "cannot watch the data directory"))
    .ok();
    if for_window {
        println!("listening");
        let _ = std::io::stdout().flush();
    }

    let mut next_refresh = Instant::now() + REFRESH;
    event_loop.run(move |event, _, flow| {
        let mut quit = false;
        match event {
            Event::NewEvents(StartCause::Init) => {
                let (status, state) = tray.status();
                match menu::build(&status) {
                    Ok(menu) => tray.menu = Some(menu),
                    Err(error) => tracing::error!(%error, "cannot make the tray icon"),
                }
                tray.shown = (Some(status), state);
                if !quiet {
                    tray.open("status");
                }
            }
            Event::NewEvents(StartCause::ResumeTimeReached { .. }) => {
                tray.refresh();
                next_refresh = Instant::now() + REFRESH;
            }
            Event::UserEvent(Wake::Menu(id)) => quit = tray.on_menu(&id),
            Event::UserEvent(Wake::Link(message)) => tray.on_message(message),
            Event::UserEvent(Wake::StateChanged) => tray.refresh(),
            _ => {}
        }
        if quit {
            if let Some(agent) = tray.agent.take() {
                agent.stop();
            }
            tracing::info!("quit");
            *flow = ControlFlow::Exit;
        } else if *flow != ControlFlow::Exit {
            *flow = ControlFlow::WaitUntil(next_refresh);
        }
    });
}
