//! The user's idle time from the desktop's services on D-Bus, for Wayland sessions whose
//! compositor offers no `ext-idle-notify-v1`:
//!
//! - GNOME: `org.gnome.Mutter.IdleMonitor`'s `GetIdletime` on the session bus, the time since
//!   the last input in milliseconds, from the compositor itself.
//! - `org.freedesktop.ScreenSaver` on the session bus (KDE, and desktops that implement it):
//!   `GetSessionIdleTime`, in seconds, where it works. KDE on Wayland answers it with
//!   `NotSupported`; there only `GetActive` is left, whether the screen saver or the lock screen
//!   is on. On means the user is away, and the idle time counts from when the agent first saw it
//!   on (the minutes before the screen locked are not known, so compute starts that much later,
//!   never earlier). Off says nothing about how long the user has been away, so it reads as idle
//!   for 0 s: the conservative reading, which holds compute until the screen locks.
//! - systemd-logind's session on the system bus: `IdleHint` and `IdleSinceHint`, which only mean
//!   something when the desktop sets them; `IdleHint` false with `IdleSinceHint` 0 is a hint
//!   nobody sets, so an error here (and `Unknown` in the end), not "active".
//!
//! Calls time out after [`CALL_TIMEOUT`], so a hung service cannot stall the probe for long.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use zbus::blocking::Connection;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

/// The longest a call to a desktop service may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

const MUTTER: (&str, &str, &str) = (
    "org.gnome.Mutter.IdleMonitor",
    "/org/gnome/Mutter/IdleMonitor/Core",
    "org.gnome.Mutter.IdleMonitor",
);
const SCREEN_SAVER: (&str, &str, &str) = (
    "org.freedesktop.ScreenSaver",
    "/org/freedesktop/ScreenSaver",
    "org.freedesktop.ScreenSaver",
);
const LOGIN1: &str = "org.freedesktop.login1";

/// Why a desktop service did not tell the idle time.
#[derive(Debug, thiserror::Error)]
pub(super) enum DbusError {
    #[error("no session bus (neither DBUS_SESSION_BUS_ADDRESS nor XDG_RUNTIME_DIR is set)")]
    NoSessionBus,
    #[error("cannot connect to D-Bus at {address}: {source}")]
    Connect {
        address: String,
        source: Box<zbus::Error>,
    },
    #[error("{service}: {source}")]
    Call {
        service: &'static str,
        source: Box<zbus::Error>,
    },
    #[error("logind's session {0} has no idle hint: nothing in this session sets it")]
    NoIdleHint(String),
}

/// Connections to the session and system buses, made when first needed and again after one
/// fails.
pub(super) struct DbusIdle {
    session_bus: Option<String>,
    system_bus: String,
    /// The session's name in logind (`XDG_SESSION_ID`).
    session_id: Option<String>,
    session: Option<Connection>,
    system: Option<Connection>,
    /// logind's object for this session, once found.
    logind_session: Option<OwnedObjectPath>,
    /// When the screen saver was first seen on, while it stays on.
    screen_saver_on_since: Option<Instant>,
}

impl DbusIdle {
    pub(super) fn new(
        session_bus: Option<String>,
        system_bus: String,
        session_id: Option<String>,
    ) -> DbusIdle {
        DbusIdle {
            session_bus,
            system_bus,
            session_id,
            session: None,
            system: None,
            logind_session: None,
            screen_saver_on_since: None,
        }
    }

    /// GNOME's idle time, in seconds.
    pub(super) fn mutter(&mut self) -> Result<u64, DbusError> {
        let milliseconds: u64 = self.call_session(MUTTER, "GetIdletime")?;
        Ok(milliseconds / 1000)
    }

    /// The freedesktop ScreenSaver's idle time, or on KDE's Wayland session the time since the
    /// screen locked, in seconds.
    pub(super) fn screen_saver(&mut self) -> Result<u64, DbusError> {
        let unsupported = match self.call_session::<u32>(SCREEN_SAVER, "GetSessionIdleTime") {
            Ok(seconds) => {
                self.screen_saver_on_since = None;
                return Ok(u64::from(seconds));
            }
            Err(error) => error,
        };
        let on: bool = match self.call_session(SCREEN_SAVER, "GetActive") {
            Ok(on) => on,
            // Nothing answers at all: the first error says more.
            Err(_) => return Err(unsupported),
        };
        if !on {
            self.screen_saver_on_since = None;
            return Ok(0);
        }
        let since = *self.screen_saver_on_since.get_or_insert_with(Instant::now);
        Ok(since.elapsed().as_secs())
    }

    /// logind's idle hint for this session, in seconds.
    pub(super) fn logind(&mut self) -> Result<u64, DbusError> {
        let path = match &self.logind_session {
            Some(path) => path.clone(),
            None => {
                let path = match self.session_id.clone() {
                    Some(id) => self.call_system(
                        "/org/freedesktop/login1",
                        "org.freedesktop.login1.Manager",
                        "GetSession",
                        &(id,),
                    )?,
                    None => OwnedObjectPath::try_from("/org/freedesktop/login1/session/auto")
                        .map_err(|source| DbusError::Call {
                            service: LOGIN1,
                            source: Box::new(source.into()),
                        })?,
                };
                self.logind_session.insert(path).clone()
            }
        };
        let property = |idle: &mut DbusIdle, name: &str| -> Result<OwnedValue, DbusError> {
            idle.call_system(
                path.as_str(),
                "org.freedesktop.DBus.Properties",
                "Get",
                &("org.freedesktop.login1.Session", name),
            )
        };
        let convert = |source: zbus::zvariant::Error| DbusError::Call {
            service: LOGIN1,
            source: Box::new(source.into()),
        };
        let idle_hint = bool::try_from(property(self, "IdleHint")?).map_err(convert)?;
        let since_micros = u64::try_from(property(self, "IdleSinceHint")?).map_err(convert)?;
        match (idle_hint, since_micros) {
            (_, 0) => Err(DbusError::NoIdleHint(path.to_string())),
            (false, _) => Ok(0),
            (true, since) => {
                let since = UNIX_EPOCH + Duration::from_micros(since);
                Ok(SystemTime::now()
                    .duration_since(since)
                    .unwrap_or_default()
                    .as_secs())
            }
        }
    }

    /// Calls a method without arguments of a service on the session bus.
    fn call_session<T>(
        &mut self,
        (service, path, interface): (&'static str, &str, &str),
        method: &str,
    ) -> Result<T, DbusError>
    where
        T: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
    {
        let address = self.session_bus.clone().ok_or(DbusError::NoSessionBus)?;
        let connection = connect(&mut self.session, &address)?;
        let answer = connection
            .call_method(Some(service), path, Some(interface), method, &())
            .and_then(|reply| reply.body().deserialize::<T>());
        answer.map_err(|source| forget_broken(&mut self.session, service, source))
    }

    /// Calls a method of logind on the system bus.
    fn call_system<B, T>(
        &mut self,
        path: &str,
        interface: &str,
        method: &str,
        body: &B,
    ) -> Result<T, DbusError>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
        T: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
    {
        let address = self.system_bus.clone();
        let connection = connect(&mut self.system, &address)?;
        let answer = connection
            .call_method(Some(LOGIN1), path, Some(interface), method, body)
            .and_then(|reply| reply.body().deserialize::<T>());
        answer.map_err(|source| {
            // A session that ended leaves a stale path: find it again next time.
            self.logind_session = None;
            forget_broken(&mut self.system, LOGIN1, source)
        })
    }
}

/// The connection in `slot`, made first if there is none.
fn connect<'c>(
    slot: &'c mut Option<Connection>,
    address: &str,
) -> Result<&'c Connection, DbusError> {
    match slot {
        Some(connection) => Ok(connection),
        None => {
            let connection = zbus::blocking::connection::Builder::address(address)
                .map(|builder| builder.method_timeout(CALL_TIMEOUT))
                .and_then(zbus::blocking::connection::Builder::build)
                .map_err(|source| DbusError::Connect {
                    address: address.to_owned(),
                    source: Box::new(source),
                })?;
            Ok(slot.insert(connection))
        }
    }
}

/// The error of a call; the connection is dropped unless the other end answered (with an
/// error), so that a bus that went away is connected to again.
fn forget_broken(
    slot: &mut Option<Connection>,
    service: &'static str,
    source: zbus::Error,
) -> DbusError {
    if !matches!(source, zbus::Error::MethodError(..)) {
        *slot = None;
    }
    DbusError::Call {
        service,
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    //! The probe against fakes of the desktop's services on a real D-Bus session: they need a
    //! session bus, so they are ignored by default and `scripts/test` runs them under
    //! `dbus-run-session` (`cargo test -p surplus-agent --lib -- --ignored real_session_bus`).

    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::{Duration, Instant};

    use surplus_protocol::UserActivity;

    use crate::probe::{IdleSource, Probe, Session, SystemProbe};

    /// GNOME's idle monitor, saying what the test sets.
    struct FakeMutter {
        idle_ms: Arc<AtomicU64>,
    }

    #[zbus::interface(name = "org.gnome.Mutter.IdleMonitor")]
    impl FakeMutter {
        fn get_idletime(&self) -> u64 {
            self.idle_ms.load(Ordering::SeqCst)
        }
    }

    /// What the fake ScreenSaver says.
    #[derive(Clone, Copy)]
    enum Saver {
        /// `GetSessionIdleTime` answers, in seconds.
        IdleTime(u32),
        /// As KDE on Wayland: no idle time, only whether the screen is locked.
        LockOnly { locked: bool },
    }

    struct FakeScreenSaver {
        says: Arc<Mutex<Saver>>,
    }

    #[zbus::interface(name = "org.freedesktop.ScreenSaver")]
    impl FakeScreenSaver {
        fn get_session_idle_time(&self) -> zbus::fdo::Result<u32> {
            match *self.says.lock().unwrap_or_else(PoisonError::into_inner) {
                Saver::IdleTime(seconds) => Ok(seconds),
                Saver::LockOnly { .. } => Err(zbus::fdo::Error::NotSupported(
                    "GetSessionIdleTime is not supported on Wayland".into(),
                )),
            }
        }

        fn get_active(&self) -> bool {
            match *self.says.lock().unwrap_or_else(PoisonError::into_inner) {
                Saver::IdleTime(_) => false,
                Saver::LockOnly { locked } => locked,
            }
        }
    }

    /// logind's session object: its idle hint and since when (microseconds since the epoch).
    struct FakeLogindSession {
        hint: Arc<Mutex<(bool, u64)>>,
    }

    #[zbus::interface(name = "org.freedesktop.login1.Session")]
    impl FakeLogindSession {
        #[zbus(property)]
        fn idle_hint(&self) -> bool {
            self.hint.lock().unwrap_or_else(PoisonError::into_inner).0
        }

        #[zbus(property)]
        fn idle_since_hint(&self) -> u64 {
            self.hint.lock().unwrap_or_else(PoisonError::into_inner).1
        }
    }

    /// A service on the test's session bus, under `name`.
    fn serve<I: zbus::object_server::Interface>(
        name: &str,
        path: &str,
        interface: I,
    ) -> zbus::blocking::Connection {
        zbus::blocking::connection::Builder::session()
            .and_then(|builder| builder.name(name.to_owned()))
            .and_then(|builder| builder.serve_at(path.to_owned(), interface))
            .and_then(zbus::blocking::connection::Builder::build)
            .expect("serve a fake on the session bus (run under dbus-run-session)")
    }

    /// Takes a fake off the bus, as when its desktop quits.
    fn withdraw(service: zbus::blocking::Connection, name: &str) {
        service
            .release_name(name.to_owned())
            .expect("release the name");
        drop(service);
    }

    /// A Wayland session on the test's D-Bus session, whose compositor is not there (its socket
    /// does not exist): the compositor's source fails, and the D-Bus ones are asked. logind is
    /// looked for on the session bus too, where the test can serve its fake.
    fn wayland_session_without_compositor(runtime_dir: &std::path::Path) -> Session {
        let bus = std::env::var("DBUS_SESSION_BUS_ADDRESS")
            .expect("a D-Bus session (run under dbus-run-session)");
        Session {
            wayland_display: Some("wayland-nobody".to_owned()),
            session_type: Some("wayland".to_owned()),
            runtime_dir: Some(runtime_dir.to_owned()),
            session_bus: Some(bus.clone()),
            system_bus: Some(bus),
            ..Session::default()
        }
    }

    /// Asks the probe until `wanted` holds of its reading, for at most ten seconds.
    fn reading_when(
        probe: &mut SystemProbe,
        what: &str,
        wanted: impl Fn(UserActivity, IdleSource) -> bool,
    ) -> (UserActivity, IdleSource) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let user = probe.user();
            let source = probe.idle_source().expect("a real probe names its source");
            if wanted(user, source) {
                return (user, source);
            }
            assert!(
                Instant::now() < deadline,
                "{what}: the probe still reads {user:?} from {source}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn idle(idle_seconds: u64) -> UserActivity {
        UserActivity::Idle { idle_seconds }
    }

    #[test]
    #[ignore = "needs a D-Bus session bus: scripts/test runs it under dbus-run-session"]
    fn real_session_bus_idle_sources_are_read_and_fallen_back_from_in_order() {
        let runtime_dir = tempfile::tempdir().expect("tempdir");
        let idle_ms = Arc::new(AtomicU64::new(754_321));
        let mutter = serve(
            "org.gnome.Mutter.IdleMonitor",
            "/org/gnome/Mutter/IdleMonitor/Core",
            FakeMutter {
                idle_ms: Arc::clone(&idle_ms),
            },
        );
        let mut probe =
            SystemProbe::for_session(wayland_session_without_compositor(runtime_dir.path()));

        // GNOME: the milliseconds Mutter says, in whole seconds.
        assert_eq!(probe.user(), idle(754));
        assert_eq!(probe.idle_source(), Some(IdleSource::MutterIdleMonitor));
        assert_eq!(
            IdleSource::MutterIdleMonitor.to_string(),
            "GNOME Mutter IdleMonitor"
        );
        idle_ms.store(1_999, Ordering::SeqCst);
        assert_eq!(probe.user(), idle(1));

        // Mutter goes away: the freedesktop ScreenSaver's idle time is read instead.
        let says = Arc::new(Mutex::new(Saver::IdleTime(42)));
        let screen_saver = serve(
            "org.freedesktop.ScreenSaver",
            "/org/freedesktop/ScreenSaver",
            FakeScreenSaver {
                says: Arc::clone(&says),
            },
        );
        withdraw(mutter, "org.gnome.Mutter.IdleMonitor");
        let reading = reading_when(&mut probe, "Mutter gone", |_, source| {
            source != IdleSource::MutterIdleMonitor
        });
        assert_eq!(reading, (idle(42), IdleSource::FreedesktopScreenSaver));

        // As on KDE's Wayland session: no idle time, so an unlocked screen reads as active and
        // a locked one as away since the probe saw it lock.
        *says.lock().expect("lock") = Saver::LockOnly { locked: false };
        assert_eq!(probe.user(), idle(0));
        assert_eq!(
            probe.idle_source(),
            Some(IdleSource::FreedesktopScreenSaver)
        );
        *says.lock().expect("lock") = Saver::LockOnly { locked: true };
        let locked_at = Instant::now();
        let (user, source) =
            reading_when(&mut probe, "the screen locked", |user, _| user != idle(0));
        assert_eq!(source, IdleSource::FreedesktopScreenSaver);
        let UserActivity::Idle { idle_seconds } = user else {
            panic!("a locked screen reads as idle, not {user:?}");
        };
        assert!(
            idle_seconds <= locked_at.elapsed().as_secs(),
            "{idle_seconds}"
        );
        *says.lock().expect("lock") = Saver::LockOnly { locked: false };
        assert_eq!(probe.user(), idle(0));

        // The ScreenSaver goes away too: logind's idle hint, set five minutes ago.
        let now_micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_micros();
        let five_minutes_ago = u64::try_from(now_micros).expect("micros") - 300_000_000;
        let hint = Arc::new(Mutex::new((true, five_minutes_ago)));
        let _logind = serve(
            "org.freedesktop.login1",
            "/org/freedesktop/login1/session/auto",
            FakeLogindSession {
                hint: Arc::clone(&hint),
            },
        );
        withdraw(screen_saver, "org.freedesktop.ScreenSaver");
        let (user, source) = reading_when(&mut probe, "the ScreenSaver gone", |_, source| {
            source != IdleSource::FreedesktopScreenSaver
        });
        assert_eq!(source, IdleSource::LogindIdleHint);
        assert!(
            matches!(user, UserActivity::Idle { idle_seconds } if (300..310).contains(&idle_seconds)),
            "{user:?}"
        );
        // Not idle, and the hint maintained: active.
        *hint.lock().expect("lock") = (false, five_minutes_ago);
        assert_eq!(probe.user(), idle(0));
        // A hint nobody sets (false, never) says nothing: unknown, never idle.
        *hint.lock().expect("lock") = (false, 0);
        assert_eq!(probe.user(), UserActivity::Unknown);
        assert_eq!(probe.idle_source(), Some(IdleSource::NoneReadable));
    }
}
