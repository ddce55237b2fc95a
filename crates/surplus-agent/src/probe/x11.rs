//! The X11 session's input idle time, from the X screensaver extension.

use surplus_protocol::UserActivity;

/// Why the X11 idle time could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProbeError {
    #[error("cannot connect to X display {display:?}: {reason}")]
    X11Connect { display: String, reason: String },
    #[error("cannot read the idle time from X display {display:?}: {reason}")]
    X11Query { display: String, reason: String },
}

/// An open connection to the X server, kept between samples and reopened after an error.
#[derive(Default)]
pub(super) struct X11Idle {
    connection: Option<(x11rb::rust_connection::RustConnection, u32)>,
    /// Whether the current run of failures was already logged.
    warned: bool,
}

impl X11Idle {
    /// The input idle time on `display` (the session's `DISPLAY`).
    pub(super) fn user_activity(&mut self, display: &str) -> UserActivity {
        match self.idle_milliseconds(display) {
            Ok(milliseconds) => {
                self.warned = false;
                UserActivity::Idle {
                    idle_seconds: u64::from(milliseconds) / 1000,
                }
            }
            Err(error) => {
                self.connection = None;
                if self.warned {
                    tracing::debug!(%error, "user idle time unknown");
                } else {
                    tracing::warn!(%error, "user idle time unknown; compute will not start");
                    self.warned = true;
                }
                UserActivity::Unknown
            }
        }
    }

    fn idle_milliseconds(&mut self, display: &str) -> Result<u32, ProbeError> {
        use x11rb::connection::Connection;
        use x11rb::protocol::screensaver::ConnectionExt;
        let display = display.to_owned();
        if self.connection.is_none() {
            let (connection, screen) =
                x11rb::connect(Some(&display)).map_err(|error| ProbeError::X11Connect {
                    display: display.clone(),
                    reason: error.to_string(),
                })?;
            let root = connection
                .setup()
                .roots
                .get(screen)
                .map(|screen| screen.root)
                .ok_or_else(|| ProbeError::X11Connect {
                    display: display.clone(),
                    reason: format!("the server has no screen {screen}"),
                })?;
            self.connection = Some((connection, root));
        }
        let Some((connection, root)) = &self.connection else {
            return Err(ProbeError::X11Connect {
                display,
                reason: "not connected".into(),
            });
        };
        let query = |reason: String| ProbeError::X11Query {
            display: display.clone(),
            reason,
        };
        let reply = connection
            .screensaver_query_info(*root)
            .map_err(|error| query(error.to_string()))?
            .reply()
            .map_err(|error| query(error.to_string()))?;
        Ok(reply.ms_since_user_input)
    }
}
