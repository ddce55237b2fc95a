//! Where the user's idle time comes from, and which source gave the latest reading.
//!
//! On Linux and the BSDs the session the agent runs in decides ([`Session`], read from the
//! environment once, or given by a test):
//!
//! - A Wayland session (`WAYLAND_DISPLAY` set, or `XDG_SESSION_TYPE=wayland`): the compositor's
//!   `ext-idle-notify-v1` (KDE Plasma, Sway and the other wlroots compositors), then GNOME's
//!   Mutter IdleMonitor, the freedesktop ScreenSaver and logind's idle hint on D-Bus, the first
//!   that answers. The X screensaver extension is not asked even when XWayland sets `DISPLAY`:
//!   it counts only the input that X clients get, so it would call a user typing in a Wayland
//!   window idle.
//! - An X11 session (`DISPLAY` set): the X screensaver extension.
//! - `XDG_SESSION_TYPE` naming a graphical session (`x11`, `mir`) without a display to ask:
//!   `Unknown`.
//! - `XDG_SESSION_TYPE=tty` (a console or SSH login): the time since the last keystroke on any
//!   terminal, read from the terminals' access times as `w` and BOINC do.
//! - Otherwise (a service started at boot, a container, a NAS): no interactive session at all, so
//!   `None`, which counts as idle from the start.
//!
//! Whatever cannot be read is `Unknown`, which never counts as idle.

#[cfg(all(unix, not(target_os = "macos")))]
use std::path::PathBuf;
#[cfg(all(unix, not(target_os = "macos")))]
use std::time::{Duration, Instant};

#[cfg(all(unix, not(target_os = "macos")))]
use surplus_protocol::UserActivity;

#[cfg(all(unix, not(target_os = "macos")))]
use super::dbus::DbusIdle;
#[cfg(all(unix, not(target_os = "macos")))]
use super::terminal::terminal_activity;
#[cfg(all(unix, not(target_os = "macos")))]
use super::wayland::{IdleNotifyError, WaylandIdle};
#[cfg(all(unix, not(target_os = "macos")))]
use super::x11::X11Idle;

/// Where a reading of the user's activity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleSource {
    /// An X11 session's input idle time (the MIT-SCREEN-SAVER extension).
    X11ScreenSaver,
    /// A Wayland compositor's `ext_idle_notifier_v1` (KDE Plasma, Sway and other wlroots ones).
    WaylandIdleNotify,
    /// GNOME Shell's `org.gnome.Mutter.IdleMonitor` on the session bus.
    MutterIdleMonitor,
    /// `org.freedesktop.ScreenSaver` on the session bus: its idle time, or where it cannot tell
    /// that (KDE on Wayland) only whether the screen is locked.
    FreedesktopScreenSaver,
    /// The login session's `IdleHint` in systemd-logind.
    LogindIdleHint,
    /// A console or SSH login: the terminals' access times.
    TerminalAccess,
    /// The operating system's own input idle time (Windows, macOS).
    System,
    /// No interactive session: a service started at boot, a container, a NAS.
    NoSession,
    /// A session whose idle time no source could read: compute does not start.
    NoneReadable,
}

impl std::fmt::Display for IdleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdleSource::X11ScreenSaver => "X11 screen saver extension",
            IdleSource::WaylandIdleNotify => "Wayland ext-idle-notify-v1",
            IdleSource::MutterIdleMonitor => "GNOME Mutter IdleMonitor",
            IdleSource::FreedesktopScreenSaver => "freedesktop ScreenSaver",
            IdleSource::LogindIdleHint => "logind IdleHint",
            IdleSource::TerminalAccess => "terminal access times",
            IdleSource::System => "the system's input idle time",
            IdleSource::NoSession => "no user session",
            IdleSource::NoneReadable => "none readable",
        })
    }
}

/// The desktop session the agent measures: the environment variables that tell what kind of
/// session it is and where its compositor and buses are. Read once from the process's
/// environment ([`Session::from_env`]), or built by a test, which then never has to change the
/// environment of the process it runs in. An empty variable counts as unset.
#[cfg(all(unix, not(target_os = "macos")))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    /// `DISPLAY`: the X server (XWayland's, in a Wayland session).
    pub x11_display: Option<String>,
    /// `WAYLAND_DISPLAY`: the compositor's socket, a name in the runtime directory or a path.
    pub wayland_display: Option<String>,
    /// `XDG_SESSION_TYPE`: `x11`, `wayland`, `mir`, `tty` or `unspecified`.
    pub session_type: Option<String>,
    /// `XDG_SESSION_ID`: the session's name in logind.
    pub session_id: Option<String>,
    /// `XDG_RUNTIME_DIR`: where the compositor's socket and the session bus live.
    pub runtime_dir: Option<PathBuf>,
    /// `DBUS_SESSION_BUS_ADDRESS`; without it, `bus` in the runtime directory.
    pub session_bus: Option<String>,
    /// `DBUS_SYSTEM_BUS_ADDRESS`; without it, the system bus's usual socket.
    pub system_bus: Option<String>,
}

#[cfg(all(unix, not(target_os = "macos")))]
impl Session {
    /// The session this process runs in.
    pub fn from_env() -> Session {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        Session {
            x11_display: var("DISPLAY"),
            wayland_display: var("WAYLAND_DISPLAY"),
            session_type: var("XDG_SESSION_TYPE"),
            session_id: var("XDG_SESSION_ID"),
            runtime_dir: var("XDG_RUNTIME_DIR").map(PathBuf::from),
            session_bus: var("DBUS_SESSION_BUS_ADDRESS"),
            system_bus: var("DBUS_SYSTEM_BUS_ADDRESS"),
        }
    }

    /// The compositor's socket: `WAYLAND_DISPLAY` itself when it is a path, else that name in
    /// the runtime directory.
    pub(super) fn wayland_socket(&self) -> Option<PathBuf> {
        let display = PathBuf::from(self.wayland_display.as_deref()?);
        if display.is_absolute() {
            Some(display)
        } else {
            Some(self.runtime_dir.as_ref()?.join(display))
        }
    }

    /// The session bus, where the desktop's services are.
    fn session_bus_address(&self) -> Option<String> {
        self.session_bus.clone().or_else(|| {
            let runtime_dir = self.runtime_dir.as_ref()?;
            Some(format!("unix:path={}", runtime_dir.join("bus").display()))
        })
    }

    /// The system bus, where logind is.
    fn system_bus_address(&self) -> String {
        self.system_bus
            .clone()
            .unwrap_or_else(|| "unix:path=/var/run/dbus/system_bus_socket".to_owned())
    }

    fn kind(&self) -> SessionKind {
        let session_type = self.session_type.as_deref();
        if self.wayland_display.is_some() || session_type == Some("wayland") {
            SessionKind::Wayland
        } else if self.x11_display.is_some() {
            SessionKind::X11
        } else {
            match session_type {
                Some("x11" | "mir") => SessionKind::Unreadable,
                Some("tty") => SessionKind::Terminal,
                _ => SessionKind::None,
            }
        }
    }
}

#[cfg(all(unix, not(target_os = "macos")))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionKind {
    Wayland,
    X11,
    /// A graphical session without a display to ask.
    Unreadable,
    Terminal,
    None,
}

/// How long a source that failed is left alone before it is tried again: a compositor or a
/// desktop service that was restarted comes back, and one that is not there is asked once a
/// minute rather than on every sample.
#[cfg(all(unix, not(target_os = "macos")))]
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// The user's idle time on Linux and the BSDs, from the source the session allows.
#[cfg(all(unix, not(target_os = "macos")))]
pub(super) struct DesktopIdle {
    session: Session,
    x11: X11Idle,
    wayland: WaylandIdle,
    dbus: DbusIdle,
    fallbacks: Fallbacks,
}

#[cfg(all(unix, not(target_os = "macos")))]
impl DesktopIdle {
    /// Connects to nothing yet: each source connects when it is first asked.
    pub(super) fn new(session: Session) -> DesktopIdle {
        DesktopIdle {
            x11: X11Idle::default(),
            wayland: WaylandIdle::new(session.wayland_socket()),
            dbus: DbusIdle::new(
                session.session_bus_address(),
                session.system_bus_address(),
                session.session_id.clone(),
            ),
            fallbacks: Fallbacks::new(RETRY_AFTER),
            session,
        }
    }

    /// The user's activity now, and where it was read.
    pub(super) fn user_activity(&mut self) -> (UserActivity, IdleSource) {
        match self.session.kind() {
            SessionKind::Wayland => {
                let DesktopIdle {
                    wayland,
                    dbus,
                    fallbacks,
                    ..
                } = self;
                let failed = |error: &dyn std::fmt::Display| Miss::Failed(error.to_string());
                fallbacks.read(Instant::now(), |source| match source {
                    IdleSource::WaylandIdleNotify => {
                        wayland.idle_seconds().map_err(|error| match error {
                            IdleNotifyError::SettingUp => Miss::NotYet,
                            error => failed(&error),
                        })
                    }
                    IdleSource::MutterIdleMonitor => dbus.mutter().map_err(|e| failed(&e)),
                    IdleSource::FreedesktopScreenSaver => {
                        dbus.screen_saver().map_err(|e| failed(&e))
                    }
                    IdleSource::LogindIdleHint => dbus.logind().map_err(|e| failed(&e)),
                    other => Err(Miss::Failed(format!(
                        "{other} is not a Wayland session's source"
                    ))),
                })
            }
            SessionKind::X11 => {
                let display = self.session.x11_display.as_deref().unwrap_or_default();
                match self.x11.user_activity(display) {
                    UserActivity::Unknown => (UserActivity::Unknown, IdleSource::NoneReadable),
                    known => (known, IdleSource::X11ScreenSaver),
                }
            }
            SessionKind::Unreadable => (UserActivity::Unknown, IdleSource::NoneReadable),
            SessionKind::Terminal => match terminal_activity() {
                UserActivity::Unknown => (UserActivity::Unknown, IdleSource::NoneReadable),
                known => (known, IdleSource::TerminalAccess),
            },
            SessionKind::None => (UserActivity::None, IdleSource::NoSession),
        }
    }
}

/// A Wayland session's sources, best first: the compositor knows every input; Mutter is the
/// compositor on GNOME; the ScreenSaver interface is coarser on KDE; logind only knows what the
/// desktop tells it.
#[cfg(all(unix, not(target_os = "macos")))]
const WAYLAND_SOURCES: [IdleSource; 4] = [
    IdleSource::WaylandIdleNotify,
    IdleSource::MutterIdleMonitor,
    IdleSource::FreedesktopScreenSaver,
    IdleSource::LogindIdleHint,
];

/// Why a source gave no reading.
#[cfg(all(unix, not(target_os = "macos")))]
#[derive(Debug)]
enum Miss {
    /// It cannot be read: left alone for a while.
    Failed(String),
    /// It is still being set up (the compositor has not answered yet): asked again at the next
    /// sample.
    NotYet,
}

/// Which of [`WAYLAND_SOURCES`] to ask: the best one that answers. A source that fails is left
/// alone for a while (`retry_after`) and the next one asked; once that while is over it is
/// asked again first, so a better source that comes back is used again. Sources after the one
/// that answers are not asked at all.
#[cfg(all(unix, not(target_os = "macos")))]
struct Fallbacks {
    retry_after: Duration,
    /// For each source that failed, when it may be asked again.
    retry_at: [Option<Instant>; WAYLAND_SOURCES.len()],
    /// The source of the latest reading, if one answered.
    current: Option<IdleSource>,
    /// Whether "no source answers" was logged since a source last answered.
    warned_none: bool,
}

#[cfg(all(unix, not(target_os = "macos")))]
impl Fallbacks {
    fn new(retry_after: Duration) -> Fallbacks {
        Fallbacks {
            retry_after,
            retry_at: [None; WAYLAND_SOURCES.len()],
            current: None,
            warned_none: false,
        }
    }

    /// Reads the idle time (in seconds) from the best source that answers, through `ask`.
    fn read(
        &mut self,
        now: Instant,
        mut ask: impl FnMut(IdleSource) -> Result<u64, Miss>,
    ) -> (UserActivity, IdleSource) {
        for (index, source) in WAYLAND_SOURCES.into_iter().enumerate() {
            if self.retry_at[index].is_some_and(|at| now < at) {
                continue;
            }
            match ask(source) {
                Ok(idle_seconds) => {
                    self.retry_at[index] = None;
                    if self.current != Some(source) {
                        tracing::info!(%source, "reading the user's idle time from {source}");
                    }
                    self.current = Some(source);
                    self.warned_none = false;
                    return (UserActivity::Idle { idle_seconds }, source);
                }
                Err(Miss::NotYet) => {}
                Err(Miss::Failed(error)) => {
                    self.retry_at[index] = Some(now + self.retry_after);
                    if self.current == Some(source) {
                        tracing::warn!(
                            %source,
                            %error,
                            "cannot read the user's idle time from {source} any more; trying the next source"
                        );
                        self.current = None;
                    } else {
                        tracing::debug!(%source, %error, "no idle time from {source}");
                    }
                }
            }
        }
        self.current = None;
        if !self.warned_none {
            self.warned_none = true;
            tracing::warn!(
                "no source tells the user's idle time in this Wayland session; compute will not start"
            );
        }
        (UserActivity::Unknown, IdleSource::NoneReadable)
    }
}

#[cfg(all(test, unix, not(target_os = "macos")))]
mod tests {
    use super::*;

    /// The sources a fake desktop answers from, and what they say, with the order asked.
    struct Desktop {
        answers: Vec<(IdleSource, u64)>,
        /// A source that is still being set up.
        setting_up: Option<IdleSource>,
        asked: Vec<IdleSource>,
    }

    impl Desktop {
        fn ask(&mut self, source: IdleSource) -> Result<u64, Miss> {
            self.asked.push(source);
            if self.setting_up == Some(source) {
                return Err(Miss::NotYet);
            }
            self.answers
                .iter()
                .find(|(answering, _)| *answering == source)
                .map(|(_, seconds)| *seconds)
                .ok_or_else(|| Miss::Failed(format!("{source} is not there")))
        }
    }

    fn check(
        fallbacks: &mut Fallbacks,
        desktop: &mut Desktop,
        now: Instant,
        expected: (UserActivity, IdleSource),
        asked: &[IdleSource],
    ) {
        desktop.asked.clear();
        let reading = fallbacks.read(now, |source| desktop.ask(source));
        assert_eq!(reading, expected);
        assert_eq!(desktop.asked, asked);
    }

    fn idle(idle_seconds: u64) -> UserActivity {
        UserActivity::Idle { idle_seconds }
    }

    #[test]
    fn the_best_source_that_answers_is_used_and_remembered() {
        use IdleSource::*;
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        let mut fallbacks = Fallbacks::new(minute);
        let mut gnome = Desktop {
            answers: vec![(MutterIdleMonitor, 42), (LogindIdleHint, 7)],
            setting_up: None,
            asked: Vec::new(),
        };
        check(
            &mut fallbacks,
            &mut gnome,
            start,
            (idle(42), MutterIdleMonitor),
            &[WaylandIdleNotify, MutterIdleMonitor],
        );
        // The compositor that failed is not asked again on the next samples.
        check(
            &mut fallbacks,
            &mut gnome,
            start + Duration::from_secs(1),
            (idle(42), MutterIdleMonitor),
            &[MutterIdleMonitor],
        );
        // Mutter goes away: the next source answers, and Mutter is left alone for a while.
        gnome.answers.remove(0);
        check(
            &mut fallbacks,
            &mut gnome,
            start + Duration::from_secs(2),
            (idle(7), LogindIdleHint),
            &[MutterIdleMonitor, FreedesktopScreenSaver, LogindIdleHint],
        );
        check(
            &mut fallbacks,
            &mut gnome,
            start + Duration::from_secs(3),
            (idle(7), LogindIdleHint),
            &[LogindIdleHint],
        );
        // Once the while is over the better sources are asked again, and Mutter is back.
        gnome.answers.push((MutterIdleMonitor, 5));
        check(
            &mut fallbacks,
            &mut gnome,
            start + Duration::from_secs(2) + minute,
            (idle(5), MutterIdleMonitor),
            &[WaylandIdleNotify, MutterIdleMonitor],
        );
    }

    #[test]
    fn a_source_still_being_set_up_is_asked_again_at_the_next_sample() {
        use IdleSource::*;
        let start = Instant::now();
        let mut fallbacks = Fallbacks::new(Duration::from_secs(60));
        let mut kde = Desktop {
            answers: vec![(WaylandIdleNotify, 0), (FreedesktopScreenSaver, 0)],
            setting_up: Some(WaylandIdleNotify),
            asked: Vec::new(),
        };
        check(
            &mut fallbacks,
            &mut kde,
            start,
            (idle(0), FreedesktopScreenSaver),
            &[WaylandIdleNotify, MutterIdleMonitor, FreedesktopScreenSaver],
        );
        kde.setting_up = None;
        check(
            &mut fallbacks,
            &mut kde,
            start + Duration::from_secs(1),
            (idle(0), WaylandIdleNotify),
            &[WaylandIdleNotify],
        );
    }

    #[test]
    fn nothing_readable_is_unknown_never_idle() {
        use IdleSource::*;
        let start = Instant::now();
        let mut fallbacks = Fallbacks::new(Duration::from_secs(60));
        let mut bare = Desktop {
            answers: Vec::new(),
            setting_up: None,
            asked: Vec::new(),
        };
        check(
            &mut fallbacks,
            &mut bare,
            start,
            (UserActivity::Unknown, NoneReadable),
            &WAYLAND_SOURCES,
        );
        check(
            &mut fallbacks,
            &mut bare,
            start + Duration::from_secs(1),
            (UserActivity::Unknown, NoneReadable),
            &[],
        );
    }

    #[test]
    fn the_session_decides_where_the_idle_time_comes_from() {
        let session = |pairs: &[(&str, &str)]| {
            let get = |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            };
            Session {
                x11_display: get("DISPLAY"),
                wayland_display: get("WAYLAND_DISPLAY"),
                session_type: get("XDG_SESSION_TYPE"),
                ..Session::default()
            }
        };
        let cases: &[(&[(&str, &str)], SessionKind)] = &[
            // XWayland's DISPLAY does not make a Wayland session an X11 one.
            (
                &[("DISPLAY", ":0"), ("WAYLAND_DISPLAY", "wayland-0")],
                SessionKind::Wayland,
            ),
            (
                &[("DISPLAY", ":0"), ("XDG_SESSION_TYPE", "wayland")],
                SessionKind::Wayland,
            ),
            // Sway started from a console keeps XDG_SESSION_TYPE=tty.
            (
                &[
                    ("WAYLAND_DISPLAY", "wayland-1"),
                    ("XDG_SESSION_TYPE", "tty"),
                ],
                SessionKind::Wayland,
            ),
            (
                &[("DISPLAY", ":0"), ("XDG_SESSION_TYPE", "x11")],
                SessionKind::X11,
            ),
            (&[("XDG_SESSION_TYPE", "x11")], SessionKind::Unreadable),
            (&[("XDG_SESSION_TYPE", "tty")], SessionKind::Terminal),
            (&[("XDG_SESSION_TYPE", "unspecified")], SessionKind::None),
            (&[], SessionKind::None),
        ];
        for (pairs, kind) in cases {
            assert_eq!(session(pairs).kind(), *kind, "{pairs:?}");
        }
        assert_eq!(
            DesktopIdle::new(Session::default()).user_activity(),
            (UserActivity::None, IdleSource::NoSession)
        );
    }
}
