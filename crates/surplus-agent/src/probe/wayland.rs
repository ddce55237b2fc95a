//! A Wayland compositor's idle notifications (`ext-idle-notify-v1`: KDE Plasma, Sway and the
//! other wlroots compositors), turned into an idle time.
//!
//! The protocol tells no idle time: the compositor sends `idled` once the seat had no input for
//! a timeout the client chose, and `resumed` at the next input. So the agent keeps a connection
//! with one notification of [`NOTIFY_AFTER`] and counts: before any event, or after `resumed`,
//! the user is idle for 0 s; after `idled`, for the timeout plus the time since the event. A
//! thread of its own waits for the events and notes when each arrives; asking the idle time
//! only reads what it noted. The compositor starts counting when the notification is made, so
//! an agent that starts while the user is already away sees the idle time grow from then on.
//!
//! Version 2's `get_input_idle_notification` is used when the compositor offers it: it ignores
//! idle inhibitors (a video player keeping the screen on), which speak of the screen, not of
//! the user's input. With version 1 an inhibitor keeps the user "active", which holds compute
//! back, never the other way round.

use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wayland_client::globals::{GlobalListContents, registry_queue_init};
use wayland_client::protocol::{wl_registry, wl_seat};
use wayland_client::{Connection, Dispatch, Proxy, QueueHandle};
use wayland_protocols::ext::idle_notify::v1::client::{
    ext_idle_notification_v1, ext_idle_notifier_v1,
};

/// The idle timeout of the agent's notification: the shortest idle time it can see. Short, so
/// that the idle time is known to within a few seconds; long enough that typing does not send
/// a pair of events at every pause.
pub(super) const NOTIFY_AFTER: Duration = Duration::from_secs(5);

/// How long the first reading waits for the compositor to set the notification up; a slower
/// compositor's reading comes at a later sample, and other sources answer meanwhile.
const SETUP_WAIT: Duration = Duration::from_secs(2);

/// Why the compositor's idle notifications cannot be read.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum IdleNotifyError {
    #[error("no Wayland display is named (WAYLAND_DISPLAY, XDG_RUNTIME_DIR)")]
    NoDisplay,
    #[error("cannot connect to the Wayland compositor at {path}: {reason}")]
    Connect { path: PathBuf, reason: String },
    #[error("the Wayland compositor has not set the idle notification up yet")]
    SettingUp,
    #[error("the connection to the Wayland compositor failed: {0}")]
    Connection(String),
    #[error("the Wayland compositor does not offer {0}")]
    Missing(&'static str),
}

/// The compositor's idle notifications, on a connection made when first asked and made again
/// after it fails.
pub(super) struct WaylandIdle {
    /// The compositor's socket.
    socket: Option<PathBuf>,
    watch: Option<Watch>,
}

impl WaylandIdle {
    pub(super) fn new(socket: Option<PathBuf>) -> WaylandIdle {
        WaylandIdle {
            socket,
            watch: None,
        }
    }

    /// The user's idle time in seconds, as the latest events say.
    pub(super) fn idle_seconds(&mut self) -> Result<u64, IdleNotifyError> {
        let watch = match &mut self.watch {
            Some(watch) => watch,
            None => {
                let socket = self.socket.clone().ok_or(IdleNotifyError::NoDisplay)?;
                self.watch.insert(Watch::start(socket)?)
            }
        };
        let seen = watch.seen();
        match seen {
            Seen::SettingUp => Err(IdleNotifyError::SettingUp),
            Seen::Active => Ok(0),
            Seen::IdleSince(at) => Ok((NOTIFY_AFTER + at.elapsed()).as_secs()),
            Seen::Failed(error) => {
                self.watch = None;
                Err(error)
            }
        }
    }
}

/// What the compositor said so far.
#[derive(Debug, Clone)]
enum Seen {
    /// The notification is not set up yet.
    SettingUp,
    /// No `idled` since the notification was made, or `resumed` after it.
    Active,
    /// `idled` arrived then, and no `resumed` since.
    IdleSince(Instant),
    /// The connection ended; its thread has ended too.
    Failed(IdleNotifyError),
}

/// What the watching thread notes, and a signal when it changes.
type Shared = Arc<(Mutex<Seen>, Condvar)>;

fn note(shared: &Shared, seen: Seen) {
    *shared.0.lock().unwrap_or_else(PoisonError::into_inner) = seen;
    shared.1.notify_all();
}

/// A connection to the compositor, watched by a thread of its own.
struct Watch {
    shared: Shared,
    /// The connection's socket, shut down when the watch is dropped so that the thread ends.
    stream: UnixStream,
}

impl Watch {
    /// Connects and starts the thread that sets the notification up and waits for its events.
    fn start(socket: PathBuf) -> Result<Watch, IdleNotifyError> {
        let connect_failed = |error: std::io::Error| IdleNotifyError::Connect {
            path: socket.clone(),
            reason: error.to_string(),
        };
        let stream = UnixStream::connect(&socket).map_err(connect_failed)?;
        let for_thread = stream.try_clone().map_err(connect_failed)?;
        let shared: Shared = Arc::new((Mutex::new(Seen::SettingUp), Condvar::new()));
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("wayland-idle".to_owned())
            .spawn(move || {
                let error = watch(for_thread, &thread_shared);
                note(&thread_shared, Seen::Failed(error));
            })
            .map_err(connect_failed)?;
        let watch = Watch { shared, stream };
        // Most compositors answer at once: the first reading then already comes from them.
        let (lock, changed) = &*watch.shared;
        let seen = lock.lock().unwrap_or_else(PoisonError::into_inner);
        drop(
            changed
                .wait_timeout_while(seen, SETUP_WAIT, |seen| matches!(seen, Seen::SettingUp))
                .unwrap_or_else(PoisonError::into_inner),
        );
        Ok(watch)
    }

    fn seen(&self) -> Seen {
        self.shared
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // The thread's wait for events ends with an error, and so does the thread.
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// The watching thread: sets the notification up, then notes its events until the connection
/// fails or is shut down. Returns why it ended.
fn watch(stream: UnixStream, shared: &Shared) -> IdleNotifyError {
    let failed = |error: &dyn std::fmt::Display| IdleNotifyError::Connection(error.to_string());
    let connection = match Connection::from_socket(stream) {
        Ok(connection) => connection,
        Err(error) => return failed(&error),
    };
    let (globals, mut queue) = match registry_queue_init::<Events>(&connection) {
        Ok(init) => init,
        Err(error) => return failed(&error),
    };
    let handle = queue.handle();
    let Ok(notifier) =
        globals.bind::<ext_idle_notifier_v1::ExtIdleNotifierV1, _, _>(&handle, 1..=2, ())
    else {
        return IdleNotifyError::Missing("ext_idle_notifier_v1");
    };
    let Ok(seat) = globals.bind::<wl_seat::WlSeat, _, _>(&handle, 1..=1, ()) else {
        return IdleNotifyError::Missing("a seat (wl_seat)");
    };
    let timeout = u32::try_from(NOTIFY_AFTER.as_millis()).unwrap_or(u32::MAX);
    // Kept until the thread ends, so that the compositor keeps sending its events.
    let _notification = if notifier.version() >= 2 {
        notifier.get_input_idle_notification(timeout, &seat, &handle, ())
    } else {
        notifier.get_idle_notification(timeout, &seat, &handle, ())
    };
    let mut events = Events {
        shared: Arc::clone(shared),
    };
    // A compositor that refuses the notification says so here.
    if let Err(error) = queue.roundtrip(&mut events) {
        return failed(&error);
    }
    {
        // Unless an event already came.
        let mut seen = shared.0.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*seen, Seen::SettingUp) {
            *seen = Seen::Active;
        }
    }
    shared.1.notify_all();
    loop {
        if let Err(error) = queue.blocking_dispatch(&mut events) {
            return failed(&error);
        }
    }
}

/// The watching thread's side of the events.
struct Events {
    shared: Shared,
}

impl Dispatch<ext_idle_notification_v1::ExtIdleNotificationV1, ()> for Events {
    fn event(
        events: &mut Self,
        _: &ext_idle_notification_v1::ExtIdleNotificationV1,
        event: ext_idle_notification_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match event {
            ext_idle_notification_v1::Event::Idled => {
                note(&events.shared, Seen::IdleSince(Instant::now()));
            }
            ext_idle_notification_v1::Event::Resumed => note(&events.shared, Seen::Active),
            _ => {}
        }
    }
}

/// The registry, the seat and the notifier send nothing the agent needs.
impl Dispatch<wl_registry::WlRegistry, GlobalListContents> for Events {
    fn event(
        _: &mut Self,
        _: &wl_registry::WlRegistry,
        _: wl_registry::Event,
        _: &GlobalListContents,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
    }
}

wayland_client::delegate_noop!(Events: ignore wl_seat::WlSeat);
wayland_client::delegate_noop!(Events: ignore ext_idle_notifier_v1::ExtIdleNotifierV1);

#[cfg(test)]
mod tests {
    //! Against a real compositor, KWin (`kwin_wayland --virtual`), which offers
    //! ext-idle-notify-v1 and fake input. Ignored by default: `scripts/test` starts KWin and runs
    //! them with its socket in `WAYLAND_DISPLAY` and `XDG_RUNTIME_DIR`
    //! (`cargo test -p surplus-agent --lib -- --ignored real_kwin`).

    use std::time::{Duration, Instant};

    use surplus_protocol::UserActivity;
    use wayland_client::globals::{GlobalListContents, registry_queue_init};
    use wayland_client::protocol::wl_registry;
    use wayland_client::{Connection, Dispatch, QueueHandle};
    use wayland_protocols_plasma::fake_input::client::org_kde_kwin_fake_input::OrgKdeKwinFakeInput;

    use super::NOTIFY_AFTER;
    use crate::probe::{IdleSource, Probe, Session, SystemProbe};

    /// The compositor `scripts/test` started, and no D-Bus to fall back to: every reading must
    /// come from the compositor.
    fn kwin_session() -> Session {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| panic!("{name} names the test's KWin"))
        };
        Session {
            wayland_display: Some(var("WAYLAND_DISPLAY")),
            runtime_dir: Some(var("XDG_RUNTIME_DIR").into()),
            session_type: Some("wayland".to_owned()),
            session_bus: Some("unix:path=/nonexistent/session-bus".to_owned()),
            system_bus: Some("unix:path=/nonexistent/system-bus".to_owned()),
            ..Session::default()
        }
    }

    /// Asks the probe until it reads, from the compositor, an idle time for which `wanted`
    /// holds, for at most `limit`. Other readings are allowed only while the compositor sets the
    /// notification up (KWin takes seconds to answer a new client).
    fn idle_when(
        probe: &mut SystemProbe,
        what: &str,
        limit: Duration,
        wanted: impl Fn(u64) -> bool,
    ) -> u64 {
        let deadline = Instant::now() + limit;
        let mut answered = false;
        loop {
            let user = probe.user();
            let source = probe.idle_source();
            if source == Some(IdleSource::WaylandIdleNotify) {
                answered = true;
                let UserActivity::Idle { idle_seconds } = user else {
                    panic!("{what}: the compositor's reading is {user:?}");
                };
                if wanted(idle_seconds) {
                    return idle_seconds;
                }
            } else {
                assert!(
                    !answered,
                    "{what}: the compositor answered, then {source:?} did"
                );
                assert_eq!(user, UserActivity::Unknown, "{what}: {source:?}");
            }
            assert!(
                Instant::now() < deadline,
                "{what}: still {user:?} from {source:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A client of KWin's fake input protocol: input as a user would give it.
    struct FakeInput;

    impl Dispatch<wl_registry::WlRegistry, GlobalListContents> for FakeInput {
        fn event(
            _: &mut Self,
            _: &wl_registry::WlRegistry,
            _: wl_registry::Event,
            _: &GlobalListContents,
            _: &Connection,
            _: &QueueHandle<Self>,
        ) {
        }
    }

    impl Dispatch<OrgKdeKwinFakeInput, ()> for FakeInput {
        fn event(
            _: &mut Self,
            _: &OrgKdeKwinFakeInput,
            _: <OrgKdeKwinFakeInput as wayland_client::Proxy>::Event,
            _: &(),
            _: &Connection,
            _: &QueueHandle<Self>,
        ) {
        }
    }

    /// Moves KWin's pointer by a few pixels.
    fn move_the_pointer(session: &Session) {
        let socket = session.wayland_socket().expect("a socket");
        let stream = std::os::unix::net::UnixStream::connect(&socket).expect("connect to KWin");
        let connection = Connection::from_socket(stream).expect("a Wayland connection");
        let (globals, mut queue) = registry_queue_init::<FakeInput>(&connection).expect("globals");
        let fake_input: OrgKdeKwinFakeInput = globals
            .bind(&queue.handle(), 1..=4, ())
            .expect("KWin offers org_kde_kwin_fake_input (KWIN_WAYLAND_NO_PERMISSION_CHECKS=1)");
        fake_input.authenticate("surplus tests".to_owned(), "to play a user".to_owned());
        fake_input.pointer_motion(3.0, 3.0);
        queue
            .roundtrip(&mut FakeInput)
            .expect("KWin took the motion");
    }

    #[test]
    #[ignore = "needs KWin: scripts/test starts it and runs this"]
    fn real_kwin_idle_time_grows_without_input_and_drops_at_input() {
        let session = kwin_session();
        let mut probe = SystemProbe::for_session(session.clone());
        let notify_after = NOTIFY_AFTER.as_secs();
        // Without input the compositor says `idled` after the notification's timeout, and the
        // idle time grows from there.
        let limit = Duration::from_secs(30);
        idle_when(&mut probe, "no input", limit, |idle| idle >= notify_after);
        let before = idle_when(&mut probe, "no input", limit, |idle| {
            idle >= notify_after + 2
        });
        // The user moves the mouse: `resumed`, and the idle time starts again from nothing
        // (or, if the probe looked only after the timeout passed again, from the timeout).
        move_the_pointer(&session);
        let after = idle_when(&mut probe, "the pointer moved", limit, |idle| idle < before);
        assert!(after <= notify_after, "{after}");
    }
}
