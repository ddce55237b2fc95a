//! The windows' news: what the core knows of this device, sent to them as an `overview` event
//! whenever it changes, so that they update in place rather than ask again on a timer. The tray
//! process writes the agent's state, the settings and the history into the data directory; a
//! change to one of them ([`surplus_desktop::watch`]), or the clock (for "5 min ago"), makes a
//! new overview, sent when it differs from the last one sent.

use std::sync::mpsc;
use std::time::Duration;

use tauri::{AppHandle, Emitter, Manager};

use crate::Shell;

/// How often the overview is made again with nothing changed on disk: what it says of the time
/// ("backed up 5 min ago") moves on by itself.
const TICK: Duration = Duration::from_secs(15);
/// How long a burst of writes (the state and the history together) is let settle.
const SETTLE: Duration = Duration::from_millis(100);

/// The event the windows listen to.
pub const OVERVIEW: &str = "overview";

/// Sends the windows every new overview, as long as the app runs (on a thread of its own).
pub fn follow(app: AppHandle) {
    let data_dir = app.state::<Shell>().data_dir().to_owned();
    // `changed` lives as long as this loop, so that without a watch the clock still ticks.
    let (changed, changes) = mpsc::channel::<()>();
    let telling = changed.clone();
    let _watcher = surplus_desktop::watch::state_files(&data_dir, move || {
        let _ = telling.send(());
    })
    .map_err(|error| {
        tracing::warn!(%error, "cannot watch the data directory; the windows update every {}s", TICK.as_secs());
    })
    .ok();
    let mut sent = None;
    loop {
        if changes.recv_timeout(TICK).is_ok() {
            while changes.recv_timeout(SETTLE).is_ok() {}
        }
        let overview = crate::commands::overview_of(&app.state::<Shell>());
        let Ok(value) = serde_json::to_value(&overview) else {
            continue;
        };
        if sent.as_ref() != Some(&value) {
            if let Err(error) = app.emit(OVERVIEW, &value) {
                tracing::debug!(%error, "cannot send the windows the overview");
            }
            sent = Some(value);
        }
    }
}
