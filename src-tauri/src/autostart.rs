//! Starting at login: an entry for the tray process (`surplus-tray --autostart`), which starts
//! the agent and opens no window. The OS's own mechanism, through `auto-launch`: an XDG autostart
//! file on Linux, the Run key on Windows, a launch agent on macOS.

use auto_launch::{AutoLaunch, AutoLaunchBuilder};

/// The entry's name, which is also the file name on Linux (`Surplus.desktop`).
const NAME: &str = "Surplus";

fn launcher() -> Result<AutoLaunch, String> {
    let tray = crate::sibling("surplus-tray").map_err(|error| error.to_string())?;
    let mut builder = AutoLaunchBuilder::new();
    builder
        .set_app_name(NAME)
        .set_app_path(&tray.display().to_string())
        .set_args(&["--autostart"]);
    #[cfg(target_os = "macos")]
    builder.set_use_launch_agent(true);
    builder.build().map_err(|error| error.to_string())
}

/// Whether the app starts at login.
pub fn is_enabled() -> bool {
    launcher()
        .and_then(|launcher| launcher.is_enabled().map_err(|error| error.to_string()))
        .unwrap_or(false)
}

/// Starts the app at login, or stops doing so.
pub fn set(on: bool) -> Result<(), String> {
    let launcher = launcher()?;
    if on {
        // The XDG autostart folder may not exist yet on a fresh account.
        #[cfg(target_os = "linux")]
        if let Some(config) = std::env::var_os("XDG_CONFIG_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|home| std::path::PathBuf::from(home).join(".config"))
            })
        {
            std::fs::create_dir_all(config.join("autostart")).map_err(|error| error.to_string())?;
        }
        launcher.enable().map_err(|error| error.to_string())
    } else if launcher.is_enabled().unwrap_or(true) {
        launcher.disable().map_err(|error| error.to_string())
    } else {
        Ok(())
    }
}
