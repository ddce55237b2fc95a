//! The disks a vault may go on, and applying what the user chose in the wizard or the settings.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::settings::Settings;

use super::{Control, ControlError, Result};

/// A disk the vault may go on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct DiskChoice {
    /// Where it is mounted; the vault goes in a hidden folder there (or, for the disk that holds
    /// the data directory, inside it).
    pub mount_point: PathBuf,
    pub name: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// The free space donation never takes the disk below (the default floor).
    pub floor_bytes: u64,
    /// The largest quota the disk allows now: its free space minus the floor.
    pub max_quota_bytes: u64,
    /// The quota offered if the user does not choose: 10% of the free space, capped.
    pub default_quota_bytes: u64,
    /// Whether the vault is on this disk now.
    pub current: bool,
}

/// What the user chose on a page of the wizard or of the settings; `None` leaves a setting as it
/// is.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
// A window names only what it changes.
#[cfg_attr(feature = "ts", ts(optional_fields))]
#[serde(default, deny_unknown_fields)]
pub struct Choices {
    pub consent_storage: Option<bool>,
    pub consent_compute: Option<bool>,
    /// The mount point of the disk the vault goes on (one of [`Control::disks`]).
    pub vault_disk: Option<PathBuf>,
    pub quota_bytes: Option<u64>,
    /// The folders backed up: all of them, replacing the list.
    pub folders: Option<Vec<PathBuf>>,
    pub cores_percent: Option<u8>,
    /// Minutes away from keyboard and mouse before compute starts.
    pub idle_minutes: Option<u32>,
    /// Compute waits while other programs use more than this share of the CPU (0-100).
    pub busy_cpu_percent: Option<u8>,
    pub on_battery: Option<bool>,
    /// The daily window compute keeps to, as `HH:MM-HH:MM`; empty for any time.
    pub window: Option<String>,
    /// The most bytes per second backups and transfers may use; 0 for no limit.
    pub bandwidth_bytes_per_second: Option<u64>,
    pub pause_in_full_screen: Option<bool>,
    /// Compute waits while the CPU is hotter than this (degrees Celsius); 0 for no limit.
    pub max_cpu_celsius: Option<u8>,
}

impl Control {
    /// The disks the vault may go on, with the limits each allows.
    pub fn disks(&self) -> Result<Vec<DiskChoice>> {
        let settings = self.settings()?;
        let vault_dir = settings.vault_dir(&self.data_dir);
        // The probe's override file (tests) speaks for every disk, as it does for the agent.
        let overrides = crate::probe::OverrideFile::from_env().read();
        let mut disks = (self.mounts)()
            .into_iter()
            .filter(|mount| usable_disk(&mount.file_system))
            .map(|mount| (mount.mount_point, mount.name, mount.space))
            .collect::<Vec<_>>();
        // The disk of the data directory is always offered, even where sysinfo sees no disks.
        if let Ok(space) = crate::disk::disk_space(&self.data_dir)
            && !disks
                .iter()
                .any(|(mount, _, _)| self.data_dir.starts_with(mount))
        {
            disks.push((self.data_dir.clone(), "data folder".to_owned(), space));
        }
        disks.sort_by(|a, b| a.0.cmp(&b.0));
        disks.dedup_by(|a, b| a.0 == b.0);
        if let Some(overrides) = &overrides {
            for (_, _, space) in &mut disks {
                overrides.apply_disk(space);
            }
        }
        let current_mount = disks
            .iter()
            .filter(|(mount, _, _)| vault_dir.starts_with(mount))
            .max_by_key(|(mount, _, _)| mount.as_os_str().len())
            .map(|(mount, _, _)| mount.clone());
        let defaults = Settings::default();
        Ok(disks
            .into_iter()
            .map(|(mount_point, name, space)| {
                let floor = defaults.effective_floor(space);
                DiskChoice {
                    current: current_mount.as_ref() == Some(&mount_point),
                    name,
                    total_bytes: space.total_bytes,
                    free_bytes: space.free_bytes,
                    floor_bytes: floor,
                    max_quota_bytes: space.free_bytes.saturating_sub(floor),
                    default_quota_bytes: defaults.effective_quota(space),
                    mount_point,
                }
            })
            .collect())
    }

    /// Applies the user's choices, refusing (and changing nothing) when one of them cannot be
    /// honoured: a folder that is not there, a disk that is not offered, a quota over what the
    /// disk allows, a vault moved while it holds others' data.
    pub fn apply(&self, choices: Choices) -> Result<Settings> {
        let settings = self.settings()?;
        if let Some(folders) = &choices.folders {
            for folder in folders {
                if !folder.is_absolute() {
                    return Err(ControlError::Input(format!(
                        "{} is not a full path",
                        folder.display()
                    )));
                }
                if !folder.is_dir() {
                    return Err(ControlError::Input(format!(
                        "{} is not a folder on this PC",
                        folder.display()
                    )));
                }
                if let Err(error) = std::fs::read_dir(folder) {
                    return Err(ControlError::Input(format!(
                        "Surplus can't read {}: {}",
                        folder.display(),
                        match error.kind() {
                            std::io::ErrorKind::PermissionDenied =>
                                "you don't have permission to open it".to_owned(),
                            _ => error.to_string(),
                        }
                    )));
                }
            }
        }
        let window = match choices.window.as_deref().map(str::trim) {
            None => None,
            Some("") => Some(None),
            Some(text) => Some(Some(
                crate::units::parse_window(text)
                    .map_err(|error| ControlError::Input(error.to_string()))?,
            )),
        };
        let current_dir = settings.vault_dir(&self.data_dir);
        let vault_dir = match &choices.vault_disk {
            Some(mount) => Some(self.vault_move(mount)?),
            None => None,
        };
        if let Some(quota) = choices.quota_bytes {
            let mount = match &choices.vault_disk {
                Some(mount) => mount.clone(),
                None => current_dir.clone(),
            };
            let disk = self
                .disks()?
                .into_iter()
                .filter(|d| mount.starts_with(&d.mount_point))
                .max_by_key(|d| d.mount_point.as_os_str().len())
                .ok_or_else(|| {
                    ControlError::Input(format!("{} is not a disk on this PC", mount.display()))
                })?;
            // What the vault already takes on its disk is free for it.
            let own = if disk.current {
                crate::vault::held_bytes(&current_dir).unwrap_or(0)
            } else {
                0
            };
            let most = disk.max_quota_bytes + own;
            if quota > most {
                return Err(ControlError::Input(format!(
                    "a quota of {} leaves less than {} free on {}: at most {} fits",
                    crate::units::format_size(quota),
                    crate::units::format_size(disk.floor_bytes),
                    disk.mount_point.display(),
                    crate::units::format_size(most)
                )));
            }
        }
        self.update(|s| {
            if let Some(storage) = choices.consent_storage {
                s.consent.storage = storage;
            }
            if let Some(compute) = choices.consent_compute {
                s.consent.compute = compute;
            }
            if let Some(dir) = vault_dir {
                self.put_vault(s, dir);
            }
            if let Some(quota) = choices.quota_bytes {
                s.storage.quota_bytes = Some(quota);
            }
            if let Some(folders) = choices.folders {
                s.backup.folders = folders;
            }
            if let Some(cores) = choices.cores_percent {
                s.compute.cores_percent = cores;
            }
            if let Some(minutes) = choices.idle_minutes {
                s.compute.idle_minutes = minutes;
            }
            if let Some(busy) = choices.busy_cpu_percent {
                s.compute.busy_cpu_percent = busy;
            }
            if let Some(on_battery) = choices.on_battery {
                s.compute.on_battery = on_battery;
            }
            if let Some(window) = window {
                s.compute.window = window;
            }
            if let Some(rate) = choices.bandwidth_bytes_per_second {
                s.bandwidth_bytes_per_second = (rate > 0).then_some(rate);
            }
            if let Some(pause) = choices.pause_in_full_screen {
                s.compute.pause_in_full_screen = pause;
            }
            if let Some(celsius) = choices.max_cpu_celsius {
                s.compute.max_cpu_celsius = (celsius > 0).then_some(celsius);
            }
        })
    }

    /// Where the vault goes when the user puts it in `folder`: a disk's top from the tray's list
    /// of disks, or any folder from `surplus quota --path`. Inside the data directory when
    /// `folder` is the top of the disk the data directory is on (or the data directory itself);
    /// else a hidden folder inside `folder`. One rule, whichever front end asks.
    pub fn vault_dir_in(&self, folder: &Path) -> PathBuf {
        let data_mount = self
            .disks()
            .ok()
            .and_then(|disks| {
                disks
                    .into_iter()
                    .filter(|d| self.data_dir.starts_with(&d.mount_point))
                    .max_by_key(|d| d.mount_point.as_os_str().len())
            })
            .map(|d| d.mount_point);
        if data_mount.as_deref() == Some(folder) || folder == self.data_dir {
            self.data_dir.join(crate::settings::DEFAULT_VAULT_DIR)
        } else {
            folder.join(crate::settings::VAULT_DIR_NAME)
        }
    }

    /// The vault's new place for a move into `folder` ([`Control::vault_dir_in`]), refused while
    /// the vault holds data for others: it must be handed over first.
    pub fn vault_move(&self, folder: &Path) -> Result<PathBuf> {
        let current = self.settings()?.vault_dir(&self.data_dir);
        let target = self.vault_dir_in(folder);
        if target != current {
            let held = crate::vault::held_bytes(&current).unwrap_or(0);
            if held > 0 {
                return Err(ControlError::Input(format!(
                    "the vault in {} holds {} for others: withdraw storage consent, wait until \
                     it is empty, then move it",
                    current.display(),
                    crate::units::format_size(held)
                )));
            }
        }
        Ok(target)
    }

    /// Records `dir` as the vault's place in `settings` (none when it is the default one).
    pub fn put_vault(&self, settings: &mut Settings, dir: PathBuf) {
        settings.storage.vault_path =
            (dir != self.data_dir.join(crate::settings::DEFAULT_VAULT_DIR)).then_some(dir);
    }
}

/// Filesystems that are not disks a person would put a vault on.
fn usable_disk(file_system: &str) -> bool {
    !matches!(
        file_system,
        "tmpfs" | "devtmpfs" | "overlay" | "squashfs" | "proc" | "sysfs" | "ramfs" | "efivarfs"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::disk::{DiskSpace, Mount};
    use crate::units::GIB;

    /// A machine with a 500 GiB system disk (200 GiB free) that holds every temporary folder,
    /// a USB disk, and file systems that are not disks.
    fn machine() -> Vec<Mount> {
        let mount = |at: &str, file_system: &str, total: u64, free: u64| Mount {
            mount_point: PathBuf::from(at),
            name: format!("{file_system} at {at}"),
            file_system: file_system.to_owned(),
            space: DiskSpace {
                total_bytes: total * GIB,
                free_bytes: free * GIB,
            },
        };
        vec![
            mount("/", "ext4", 500, 200),
            mount("/media/usb", "vfat", 64, 60),
            mount("/proc", "proc", 0, 0),
            mount("/dev/shm", "tmpfs", 8, 8),
        ]
    }

    #[test]
    fn choices_that_cannot_be_honoured_change_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let control = Control::new(dir.path()).with_mounts(machine);
        let missing = dir.path().join("not-there");
        let error = control
            .apply(Choices {
                consent_storage: Some(true),
                folders: Some(vec![missing.clone()]),
                ..Choices::default()
            })
            .expect_err("a missing folder is refused");
        assert!(error.to_string().contains("not a folder"), "{error}");
        let error = control
            .apply(Choices {
                folders: Some(vec![PathBuf::from("relative/path")]),
                ..Choices::default()
            })
            .expect_err("a relative folder is refused");
        assert!(error.to_string().contains("not a full path"), "{error}");
        let error = control
            .apply(Choices {
                consent_storage: Some(true),
                quota_bytes: Some(150 * GIB + 1),
                ..Choices::default()
            })
            .expect_err("a quota beyond the disk is refused");
        assert!(
            error
                .to_string()
                .ends_with("leaves less than 50.0 GiB free on /: at most 150.0 GiB fits"),
            "{error}"
        );
        assert_eq!(control.settings().expect("settings"), Settings::default());
    }

    #[test]
    fn the_disks_offered_are_the_machines_real_ones_with_their_limits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let control = Control::new(dir.path()).with_mounts(machine);
        let disks = control.disks().expect("disks");
        let offered: Vec<_> = disks.iter().map(|d| d.mount_point.clone()).collect();
        assert_eq!(offered, [PathBuf::from("/"), PathBuf::from("/media/usb")]);
        let system = &disks[0];
        assert!(system.current, "the data directory's disk holds the vault");
        // The floor is the larger of 10 GiB and a tenth of the disk; the default quota a tenth
        // of the free space.
        assert_eq!(system.floor_bytes, 50 * GIB);
        assert_eq!(system.max_quota_bytes, 150 * GIB);
        assert_eq!(system.default_quota_bytes, 20 * GIB);
        let usb = &disks[1];
        assert!(!usb.current);
        assert_eq!(usb.floor_bytes, 10 * GIB);
        assert_eq!(usb.max_quota_bytes, 50 * GIB);
        assert_eq!(usb.default_quota_bytes, 6 * GIB);
    }

    #[test]
    fn choices_are_saved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let control = Control::new(dir.path()).with_mounts(machine);
        let settings = control
            .apply(Choices {
                consent_storage: Some(true),
                consent_compute: Some(false),
                folders: Some(vec![dir.path().to_owned()]),
                quota_bytes: Some(150 * GIB),
                cores_percent: Some(30),
                ..Choices::default()
            })
            .expect("applied");
        assert_eq!(control.settings().expect("settings"), settings);
        assert!(settings.consent.storage && !settings.consent.compute);
        assert_eq!(settings.backup.folders, [dir.path().to_owned()]);
        assert_eq!(settings.storage.quota_bytes, Some(150 * GIB));
        assert_eq!(settings.compute.cores_percent, 30);
    }

    #[test]
    fn every_limit_the_command_line_sets_the_windows_set_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let control = Control::new(dir.path()).with_mounts(machine);
        let settings = control
            .apply(Choices {
                idle_minutes: Some(12),
                busy_cpu_percent: Some(40),
                on_battery: Some(true),
                window: Some("22:00-06:30".into()),
                bandwidth_bytes_per_second: Some(2_000_000),
                pause_in_full_screen: Some(false),
                max_cpu_celsius: Some(85),
                ..Choices::default()
            })
            .expect("applied");
        let compute = &settings.compute;
        assert_eq!(
            (
                compute.idle_minutes,
                compute.busy_cpu_percent,
                compute.on_battery
            ),
            (12, 40, true)
        );
        assert_eq!(
            compute.window.map(crate::units::format_window).as_deref(),
            Some("22:00-06:30")
        );
        assert_eq!(settings.bandwidth_bytes_per_second, Some(2_000_000));
        assert!(!compute.pause_in_full_screen);
        assert_eq!(compute.max_cpu_celsius, Some(85));
        // Empty, or 0: no limit again.
        let cleared = control
            .apply(Choices {
                window: Some(String::new()),
                bandwidth_bytes_per_second: Some(0),
                max_cpu_celsius: Some(0),
                ..Choices::default()
            })
            .expect("applied");
        assert_eq!(cleared.compute.window, None);
        assert_eq!(cleared.bandwidth_bytes_per_second, None);
        assert_eq!(cleared.compute.max_cpu_celsius, None);
        assert_eq!(cleared.compute.idle_minutes, 12);
        // What cannot be honoured is refused, and nothing changes.
        for bad in [
            Choices {
                window: Some("25:00-06:00".into()),
                ..Choices::default()
            },
            Choices {
                busy_cpu_percent: Some(101),
                ..Choices::default()
            },
            Choices {
                max_cpu_celsius: Some(20),
                ..Choices::default()
            },
        ] {
            control.apply(bad).expect_err("refused");
            assert_eq!(control.settings().expect("settings"), cleared);
        }
    }

    #[test]
    fn a_folder_that_cannot_be_read_is_refused_when_added() {
        let dir = tempfile::tempdir().expect("tempdir");
        let control = Control::new(dir.path()).with_mounts(machine);
        let missing = dir.path().join("gone");
        let error = control
            .apply(Choices {
                folders: Some(vec![missing.clone()]),
                ..Choices::default()
            })
            .expect_err("refused");
        assert!(error.to_string().contains("is not a folder"), "{error}");
        assert!(
            control
                .settings()
                .expect("settings")
                .backup
                .folders
                .is_empty()
        );
    }

    #[test]
    fn pseudo_filesystems_are_not_offered() {
        assert!(usable_disk("ext4"));
        assert!(!usable_disk("tmpfs"));
        assert!(!usable_disk("overlay"));
    }
}
