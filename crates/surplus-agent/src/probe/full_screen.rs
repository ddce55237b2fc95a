//! Whether the focused window covers the screen, from the window manager's hints on X11
//! (EWMH): the root window's `_NET_ACTIVE_WINDOW` names the focused window, whose
//! `_NET_WM_STATE` holds `_NET_WM_STATE_FULLSCREEN` while it is full screen.

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{Atom, AtomEnum, ConnectionExt, Window};
use x11rb::rust_connection::RustConnection;

/// An open connection to the X server and the atoms the question needs, kept between readings
/// and reopened after an error.
#[derive(Default)]
pub(super) struct X11FullScreen {
    connection: Option<Connected>,
    /// Whether the current run of failures was already logged.
    warned: bool,
}

struct Connected {
    connection: RustConnection,
    root: Window,
    active_window: Atom,
    /// Set on the root window by a window manager that follows EWMH.
    wm_check: Atom,
    state: Atom,
    full_screen: Atom,
}

impl X11FullScreen {
    /// `Some(true)` while the focused window is full screen, `Some(false)` while it is not or no
    /// window has the focus, `None` when the X server or its window manager cannot say.
    pub(super) fn full_screen(&mut self) -> Option<bool> {
        match self.read() {
            Ok(answer) => {
                self.warned = false;
                answer
            }
            Err(error) => {
                self.connection = None;
                if !self.warned {
                    tracing::debug!(%error, "cannot tell whether a full-screen window has the focus");
                    self.warned = true;
                }
                None
            }
        }
    }

    fn read(&mut self) -> Result<Option<bool>, Box<dyn std::error::Error>> {
        if self.connection.is_none() {
            self.connection = Some(Connected::open()?);
        }
        let Some(x) = &self.connection else {
            return Ok(None);
        };
        let active = x
            .connection
            .get_property(false, x.root, x.active_window, AtomEnum::WINDOW, 0, 1)?
            .reply()?;
        if active.type_ == u32::from(AtomEnum::NONE) {
            // No hint: either an EWMH window manager with nothing focused yet, or no window
            // manager that could say.
            let manager = x
                .connection
                .get_property(false, x.root, x.wm_check, AtomEnum::WINDOW, 0, 1)?
                .reply()?;
            return Ok((manager.type_ != u32::from(AtomEnum::NONE)).then_some(false));
        }
        let Some(window) = active.value32().and_then(|mut ids| ids.next()) else {
            return Ok(None);
        };
        if window == x11rb::NONE {
            return Ok(Some(false));
        }
        let state = x
            .connection
            .get_property(false, window, x.state, AtomEnum::ATOM, 0, 64)?
            .reply();
        match state {
            Ok(state) => {
                Ok(Some(state.value32().is_some_and(|mut atoms| {
                    atoms.any(|atom| atom == x.full_screen)
                })))
            }
            // The window closed between the two questions: nothing full screen has the focus.
            Err(x11rb::errors::ReplyError::X11Error(error))
                if error.error_kind == x11rb::protocol::ErrorKind::Window =>
            {
                Ok(Some(false))
            }
            Err(error) => Err(error.into()),
        }
    }
}

impl Connected {
    fn open() -> Result<Connected, Box<dyn std::error::Error>> {
        let (connection, screen) = x11rb::connect(None)?;
        let root = connection
            .setup()
            .roots
            .get(screen)
            .map(|screen| screen.root)
            .ok_or_else(|| format!("the X server has no screen {screen}"))?;
        let atom = |name: &str| -> Result<Atom, Box<dyn std::error::Error>> {
            Ok(connection
                .intern_atom(false, name.as_bytes())?
                .reply()?
                .atom)
        };
        let active_window = atom("_NET_ACTIVE_WINDOW")?;
        let wm_check = atom("_NET_SUPPORTING_WM_CHECK")?;
        let state = atom("_NET_WM_STATE")?;
        let full_screen = atom("_NET_WM_STATE_FULLSCREEN")?;
        Ok(Connected {
            connection,
            root,
            active_window,
            wm_check,
            state,
            full_screen,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use x11rb::protocol::xproto::{ClientMessageEvent, CreateWindowAux, EventMask, WindowClass};
    use x11rb::wrapper::ConnectionExt as _;

    use super::*;

    /// Polls the probe until it answers `expected`, for at most ten seconds.
    fn until(probe: &mut X11FullScreen, expected: Option<bool>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = probe.full_screen();
            if seen == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the probe still says {seen:?}, not {expected:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asks the window manager, as a pager would, to change `window`'s state or focus.
    fn ask(x: &Connected, window: Window, message: Atom, data: [u32; 5]) {
        let event = ClientMessageEvent::new(32, window, message, data);
        x.connection
            .send_event(
                false,
                x.root,
                EventMask::SUBSTRUCTURE_REDIRECT | EventMask::SUBSTRUCTURE_NOTIFY,
                event,
            )
            .expect("send");
        x.connection.flush().expect("flush");
    }

    /// A real X server with a real window manager (`scripts/test` runs this under Xvfb with
    /// openbox): a window of our own goes full screen, leaves it, comes back and closes, and the
    /// probe follows each change.
    #[test]
    #[ignore = "needs an X server with an EWMH window manager: scripts/test runs it"]
    fn real_x11_full_screen_window_is_seen() {
        const ADD: u32 = 1;
        const REMOVE: u32 = 0;
        const FROM_PAGER: u32 = 2;
        let x = Connected::open().expect("an X server named by DISPLAY");
        let mut probe = X11FullScreen::default();
        // The window manager may still be starting: it answers once it keeps the hint.
        until(&mut probe, Some(false));
        let window = x.connection.generate_id().expect("id");
        let screen = &x.connection.setup().roots[0];
        x.connection
            .create_window(
                screen.root_depth,
                window,
                x.root,
                0,
                0,
                320,
                240,
                0,
                WindowClass::INPUT_OUTPUT,
                screen.root_visual,
                &CreateWindowAux::new().background_pixel(screen.white_pixel),
            )
            .expect("create");
        x.connection
            .change_property8(
                x11rb::protocol::xproto::PropMode::REPLACE,
                window,
                AtomEnum::WM_NAME,
                AtomEnum::STRING,
                b"surplus full-screen test",
            )
            .expect("name");
        x.connection.map_window(window).expect("map");
        x.connection.flush().expect("flush");
        ask(&x, window, x.active_window, [FROM_PAGER, 0, 0, 0, 0]);
        until(&mut probe, Some(false));

        ask(&x, window, x.state, [ADD, x.full_screen, 0, FROM_PAGER, 0]);
        ask(&x, window, x.active_window, [FROM_PAGER, 0, 0, 0, 0]);
        until(&mut probe, Some(true));
        ask(
            &x,
            window,
            x.state,
            [REMOVE, x.full_screen, 0, FROM_PAGER, 0],
        );
        until(&mut probe, Some(false));
        ask(&x, window, x.state, [ADD, x.full_screen, 0, FROM_PAGER, 0]);
        until(&mut probe, Some(true));
        x.connection.destroy_window(window).expect("destroy");
        x.connection.flush().expect("flush");
        until(&mut probe, Some(false));
    }
}
