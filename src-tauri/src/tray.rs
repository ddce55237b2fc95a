//! The tray icon and its menu, kept in step with the device's state.

use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Wry};

use surplus_agent::control::{TrayState, TrayStatus};

pub const TRAY_ID: &str = "surplus";

/// The menu items whose text or availability follow the state.
pub struct TrayMenu {
    status: MenuItem<Wry>,
    pause_hour: MenuItem<Wry>,
    pause_tomorrow: MenuItem<Wry>,
    resume: MenuItem<Wry>,
}

fn icon(state: TrayState) -> Image<'static> {
    let bytes: &'static [u8] = match state {
        TrayState::Donating => include_bytes!("../../icons/tray-donating.png"),
        TrayState::Paused => include_bytes!("../../icons/tray-paused.png"),
        TrayState::Attention => include_bytes!("../../icons/tray-attention.png"),
    };
    Image::from_bytes(bytes).expect("the tray icons are PNGs built into the app")
}

/// Makes the tray icon. Menu clicks go to [`crate::on_menu`]. Every item has a mnemonic (the
/// letter after `&`), so the open menu can be worked from the keyboard.
pub fn build(app: &AppHandle, status: &TrayStatus) -> tauri::Result<TrayMenu> {
    let item = |id: &str, text: &str| MenuItem::with_id(app, id, text, true, None::<&str>);
    let menu = TrayMenu {
        status: MenuItem::with_id(app, "status-line", &status.line, false, None::<&str>)?,
        pause_hour: item("pause-hour", "&Pause for 1 hour")?,
        pause_tomorrow: item("pause-tomorrow", "Pause until &tomorrow")?,
        resume: item("resume", "&Resume")?,
    };
    let separator = || PredefinedMenuItem::separator(app);
    let items = Menu::with_items(
        app,
        &[
            &menu.status,
            &separator()?,
            &menu.pause_hour,
            &menu.pause_tomorrow,
            &menu.resume,
            &separator()?,
            &item("backup-now", "&Back up now")?,
            &item("restore", "R&estore files...")?,
            &item("status", "&Status...")?,
            &item("settings", "Settin&gs...")?,
            &separator()?,
            &item("quit", "&Quit Surplus")?,
        ],
    )?;
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(icon(status.state))
        .tooltip(format!("Surplus: {}", status.line))
        .menu(&items)
        .show_menu_on_left_click(true)
        .on_menu_event(|app, event| crate::on_menu(app, event.id().as_ref()))
        .build(app)?;
    menu.show(app, status);
    Ok(menu)
}

impl TrayMenu {
    /// Shows `status` on the icon and in the menu.
    pub fn show(&self, app: &AppHandle, status: &TrayStatus) {
        let paused = status.paused;
        let shown = self
            .status
            .set_text(&status.line)
            .and_then(|()| self.resume.set_enabled(paused))
            .and_then(|()| self.pause_hour.set_enabled(!paused))
            .and_then(|()| self.pause_tomorrow.set_enabled(!paused));
        let tray: Option<TrayIcon> = app.tray_by_id(TRAY_ID);
        let shown = shown.and_then(|()| match tray {
            Some(tray) => tray
                .set_icon(Some(icon(status.state)))
                .and_then(|()| tray.set_tooltip(Some(format!("Surplus: {}", status.line)))),
            None => Ok(()),
        });
        if let Err(error) = shown {
            tracing::warn!(%error, "updating the tray");
        }
    }
}
