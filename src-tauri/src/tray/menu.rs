//! The tray icon and its menu, kept in step with the device's state.

use tray_icon::menu::{Menu, MenuItem, PredefinedMenuItem};
use tray_icon::{Icon, TrayIcon, TrayIconBuilder};

use surplus_agent::control::{TrayState, TrayStatus};

/// The icon, and the menu items whose text or availability follow the state.
pub struct TrayMenu {
    icon: TrayIcon,
    backup: MenuItem,
    status: MenuItem,
    pause_hour: MenuItem,
    pause_tomorrow: MenuItem,
    resume: MenuItem,
    pause_backups_hour: MenuItem,
    pause_backups_tomorrow: MenuItem,
    resume_backups: MenuItem,
}

fn icon(state: TrayState) -> Icon {
    let bytes: &'static [u8] = match state {
        TrayState::Donating => include_bytes!("../../../icons/tray-donating.png"),
        TrayState::Paused => include_bytes!("../../../icons/tray-paused.png"),
        TrayState::Attention => include_bytes!("../../../icons/tray-attention.png"),
    };
    let decoded = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .and_then(|mut reader| {
            let mut rgba = vec![0; reader.output_buffer_size().unwrap_or_default()];
            let frame = reader.next_frame(&mut rgba)?;
            rgba.truncate(frame.buffer_size());
            Ok((rgba, frame.width, frame.height))
        });
    let (rgba, width, height) = decoded.expect("the tray icons are RGBA PNGs built into the app");
    Icon::from_rgba(rgba, width, height).expect("the tray icons are RGBA PNGs built into the app")
}

/// The backups' health first, then what the PC lends.
fn tooltip(status: &TrayStatus) -> String {
    format!("Surplus: {}\n{}", status.backup.sentence, status.line)
}

/// Makes the tray icon. Menu clicks arrive as `tray_icon::menu::MenuEvent`s carrying the item's
/// id. Every item has a mnemonic (the letter after `&`), so the open menu can be worked from the
/// keyboard.
pub fn build(status: &TrayStatus) -> Result<TrayMenu, Box<dyn std::error::Error>> {
    let item = |id: &str, text: &str| MenuItem::with_id(id, text, true, None);
    let backup_item = MenuItem::with_id("backup-line", &status.backup.sentence, false, None);
    let status_item = MenuItem::with_id("status-line", &status.line, false, None);
    let pause_hour = item("pause-hour", "&Pause lending for 1 hour");
    let pause_tomorrow = item("pause-tomorrow", "Pause lending until &tomorrow");
    let resume = item("resume", "&Resume lending");
    let pause_backups_hour = item("pause-backups-hour", "Pause backups for 1 &hour");
    let pause_backups_tomorrow = item("pause-backups-tomorrow", "Pause backups until to&morrow");
    let resume_backups = item("resume-backups", "Resume bac&kups");
    let items = Menu::with_items(&[
        &backup_item,
        &status_item,
        &PredefinedMenuItem::separator(),
        &pause_hour,
        &pause_tomorrow,
        &resume,
        &PredefinedMenuItem::separator(),
        &pause_backups_hour,
        &pause_backups_tomorrow,
        &resume_backups,
        &PredefinedMenuItem::separator(),
        &item("backup-now", "&Back up now"),
        &item("restore", "R&estore files..."),
        &item("status", "&Status..."),
        &item("settings", "Settin&gs..."),
        &PredefinedMenuItem::separator(),
        &item("quit", "&Quit Surplus"),
    ])?;
    let icon = TrayIconBuilder::new()
        .with_id("surplus")
        .with_icon(icon(status.state))
        .with_tooltip(tooltip(status))
        .with_menu(Box::new(items))
        .with_menu_on_left_click(true)
        .build()?;
    let menu = TrayMenu {
        icon,
        backup: backup_item,
        status: status_item,
        pause_hour,
        pause_tomorrow,
        resume,
        pause_backups_hour,
        pause_backups_tomorrow,
        resume_backups,
    };
    menu.show(status);
    Ok(menu)
}

impl TrayMenu {
    /// Shows `status` on the icon and in the menu.
    pub fn show(&self, status: &TrayStatus) {
        let paused = status.paused;
        self.backup.set_text(&status.backup.sentence);
        self.status.set_text(&status.line);
        self.resume.set_enabled(paused);
        self.pause_hour.set_enabled(!paused);
        self.pause_tomorrow.set_enabled(!paused);
        let backups_paused = status.backups_paused;
        self.resume_backups.set_enabled(backups_paused);
        self.pause_backups_hour.set_enabled(!backups_paused);
        self.pause_backups_tomorrow.set_enabled(!backups_paused);
        let shown = self
            .icon
            .set_icon(Some(icon(status.state)))
            .and_then(|()| self.icon.set_tooltip(Some(tooltip(status))));
        if let Err(error) = shown {
            tracing::warn!(%error, "updating the tray");
        }
    }
}
