//! What the user decided: consent, quotas, the compute schedule, the hub to talk to.
//!
//! Settings live in `<data-dir>/settings.toml` so that a user (or an administrator of a headless
//! box) can read and edit them by hand. Everything defaults to the conservative choice: nothing is
//! donated until the user opts in, and the limits follow the product defaults (10% of free space
//! capped at 100 GiB, a free-space floor of 10 GiB or 10%, half the cores, only after 5 idle
//! minutes, never on battery, never while other programs are busy).
//!
//! What a person types for them (`2GiB`, `22:00-06:00`) is read by [`crate::units`].

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use surplus_protocol::{ComputeLimits, Consent, PauseState, TimeWindow};

use crate::atomic_file::{self, Visibility};
use crate::client::HubTrust;
use crate::disk::DiskSpace;
use crate::units::{GIB, MAX_CPU_CELSIUS, MIN_CPU_CELSIUS, MINUTES_PER_DAY, format_window};
use crate::vault::VaultLimits;

/// The most the default quota grows to, however large the disk: donating more should be a choice.
pub const DEFAULT_QUOTA_CAP_BYTES: u64 = 100 * GIB;

/// The smallest default free-space floor: below this a desktop starts to misbehave.
pub const DEFAULT_FLOOR_MIN_BYTES: u64 = 10 * GIB;

/// The name of the settings file inside the data directory.
pub const SETTINGS_FILE: &str = "settings.toml";

/// The name of the vault directory inside the data directory when the user chose no other place.
/// The leading dot hides it on Unix.
pub const DEFAULT_VAULT_DIR: &str = ".vault";
/// The vault's folder when the user puts it on another disk (`surplus quota --path DIR`).
pub const VAULT_DIR_NAME: &str = ".surplus-vault";

/// The longest device name the hub accepts.
const DEVICE_NAME_MAX_CHARS: usize = 64;

/// Why settings could not be loaded, saved or accepted.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("settings file {path} is not valid TOML settings: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("cannot encode settings as TOML: {0}")]
    Encode(#[from] toml::ser::Error),
    #[error("cannot write settings file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("invalid {field} {value}: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("settings file {path}: {source}")]
    InvalidInFile {
        path: PathBuf,
        source: Box<SettingsError>,
    },
}

/// Everything the user decided about this device.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The hub this device reports to, such as `https://hub.example.com`.
    pub hub_url: Option<String>,
    /// A private CA, or clear text accepted, for that hub.
    #[serde(skip_serializing_if = "HubTrust::is_default")]
    #[cfg_attr(feature = "ts", ts(as = "Option<HubTrust>", optional))]
    pub hub_trust: HubTrust,
    /// The name shown for this device; `None` uses the host name.
    pub device_name: Option<String>,
    /// Bytes per second the agent may move to and from the hub; `None` is unlimited.
    pub bandwidth_bytes_per_second: Option<u64>,
    /// Per-resource opt-in. Both are off until the user turns them on.
    pub consent: Consent,
    pub storage: StorageSettings,
    pub compute: ComputeSettings,
    pub pause: PauseState,
    pub backup: BackupSettings,
}

/// What to back up.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
// Named apart from the hub's `BackupSettings` (surplus-protocol) among the TypeScript types.
#[cfg_attr(feature = "ts", ts(rename = "BackupFolders"))]
#[serde(default, deny_unknown_fields)]
pub struct BackupSettings {
    /// The folders backed up, as absolute paths.
    pub folders: Vec<PathBuf>,
    /// Scheduled backups wait while this lasts (a backup asked for now still runs); lending is
    /// paused apart, with [`Settings::pause`].
    pub pause: PauseState,
}

/// How much disk the vault may take, and where it lives.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// The most the vault may hold. `None` means the default: 10% of the disk's free space, capped
    /// at 100 GiB.
    pub quota_bytes: Option<u64>,
    /// The free space donation never pushes the disk below. `None` means the default: the larger
    /// of 10 GiB and 10% of the disk's total size.
    pub floor_bytes: Option<u64>,
    /// Where the vault lives. `None` means `<data-dir>/.vault`.
    pub vault_path: Option<PathBuf>,
}

/// When and how much donated compute may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct ComputeSettings {
    /// The share of the cores donated work may use (0-100).
    pub cores_percent: u8,
    /// Minutes without keyboard or mouse input before compute starts.
    pub idle_minutes: u32,
    /// Compute stops while other programs use more than this share of the CPU (0-100).
    pub busy_cpu_percent: u8,
    /// Whether compute may run on battery.
    pub on_battery: bool,
    /// A daily window in local time outside which nothing runs; written `"HH:MM-HH:MM"` in the
    /// file. Kept parsed so that an unreadable window is refused when the file is loaded rather
    /// than silently ignored when compute is scheduled.
    #[serde(with = "window_text", skip_serializing_if = "Option::is_none")]
    // Absent rather than null when there is none (ts-rs reads `skip_serializing_if` only beside
    // a field's own `default`).
    #[cfg_attr(feature = "ts", ts(type = "string", optional))]
    pub window: Option<TimeWindow>,
    /// Whether compute waits while a full-screen window has the focus (a game, a film, a video
    /// call), which the idle time alone misses: none of them moves the mouse.
    pub pause_in_full_screen: bool,
    /// Compute waits while the CPU is hotter than this, in degrees Celsius; `None` (the default)
    /// for no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub max_cpu_celsius: Option<u8>,
}

impl Default for ComputeSettings {
    fn default() -> Self {
        Self {
            cores_percent: 50,
            idle_minutes: 5,
            busy_cpu_percent: 25,
            on_battery: false,
            window: None,
            pause_in_full_screen: true,
            max_cpu_celsius: None,
        }
    }
}

impl Settings {
    /// The settings file inside `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(SETTINGS_FILE)
    }

    /// Reads `<data_dir>/settings.toml`, or the defaults when there is none yet.
    ///
    /// A file that exists but cannot be read, parsed or validated is an error rather than a silent
    /// fallback to the defaults: the user's choices (a lowered quota, a schedule) must never be
    /// dropped without them knowing.
    pub fn load(data_dir: &Path) -> Result<Settings, SettingsError> {
        let path = Self::path(data_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                tracing::debug!(path = %path.display(), "no settings file yet; using the defaults");
                return Ok(Settings::default());
            }
            Err(source) => return Err(SettingsError::Read { path, source }),
        };
        let settings: Settings = toml::from_str(&text).map_err(|source| SettingsError::Parse {
            path: path.clone(),
            source,
        })?;
        settings
            .validate()
            .map_err(|error| SettingsError::InvalidInFile {
                path,
                source: Box::new(error),
            })?;
        Ok(settings)
    }

    /// Writes `<data_dir>/settings.toml` atomically (temporary file, fsync, rename), creating the
    /// data directory if needed. Invalid settings are refused rather than written.
    pub fn save(&self, data_dir: &Path) -> Result<(), SettingsError> {
        self.validate()?;
        let path = Self::path(data_dir);
        let text = toml::to_string_pretty(self)?;
        crate::private_fs::dir_all(data_dir).map_err(|source| SettingsError::Write {
            path: data_dir.to_path_buf(),
            source,
        })?;
        atomic_file::write(&path, text.as_bytes(), Visibility::Ordinary).map_err(|source| {
            SettingsError::Write {
                path: path.clone(),
                source,
            }
        })?;
        tracing::debug!(path = %path.display(), "settings saved");
        Ok(())
    }

    /// Checks every field; the error names the field and its bad value.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(url) = &self.hub_url {
            validate_hub_url(url)?;
        }
        if let Some(name) = &self.device_name {
            let chars = name.chars().count();
            if name.trim().is_empty() || chars > DEVICE_NAME_MAX_CHARS {
                return Err(invalid(
                    "device_name",
                    format!("{name:?}"),
                    format!("must be 1-{DEVICE_NAME_MAX_CHARS} characters, not blank"),
                ));
            }
            if name.chars().any(char::is_control) {
                return Err(invalid(
                    "device_name",
                    format!("{name:?}"),
                    "must not contain control characters",
                ));
            }
        }
        if self.bandwidth_bytes_per_second == Some(0) {
            return Err(invalid(
                "bandwidth_bytes_per_second",
                "0",
                "must be more than 0; leave it unset for no limit",
            ));
        }
        if self.storage.quota_bytes == Some(0) {
            return Err(invalid(
                "storage.quota_bytes",
                "0",
                "must be more than 0; withdraw storage consent to donate nothing",
            ));
        }
        if let Some(path) = self
            .storage
            .vault_path
            .as_ref()
            .filter(|path| !path.is_absolute())
        {
            return Err(invalid(
                "storage.vault_path",
                format!("{:?}", path.display().to_string()),
                "must be an absolute path",
            ));
        }
        let compute = &self.compute;
        if compute.cores_percent > 100 {
            return Err(invalid(
                "compute.cores_percent",
                compute.cores_percent.to_string(),
                "must be 0-100",
            ));
        }
        if compute.busy_cpu_percent > 100 {
            return Err(invalid(
                "compute.busy_cpu_percent",
                compute.busy_cpu_percent.to_string(),
                "must be 0-100",
            ));
        }
        if let Some(celsius) = compute
            .max_cpu_celsius
            .filter(|c| !(MIN_CPU_CELSIUS..=MAX_CPU_CELSIUS).contains(c))
        {
            return Err(invalid(
                "compute.max_cpu_celsius",
                celsius.to_string(),
                format!(
                    "must be {MIN_CPU_CELSIUS}-{MAX_CPU_CELSIUS} degrees Celsius; leave it unset for no limit"
                ),
            ));
        }
        if let Some(window) = compute.window {
            if window.start_minute >= MINUTES_PER_DAY || window.end_minute >= MINUTES_PER_DAY {
                return Err(invalid(
                    "compute.window",
                    format!("{}-{}", window.start_minute, window.end_minute),
                    "minutes after midnight must be 0-1439",
                ));
            }
            if window.start_minute == window.end_minute {
                return Err(invalid(
                    "compute.window",
                    format!("{:?}", format_window(window)),
                    "start and end are the same; leave the window unset to allow any time",
                ));
            }
        }
        Ok(())
    }

    /// The compute limits as the hub receives them in every report.
    pub fn compute_limits(&self) -> ComputeLimits {
        ComputeLimits {
            cores_percent: self.compute.cores_percent,
            idle_minutes: self.compute.idle_minutes,
            busy_cpu_percent: self.compute.busy_cpu_percent,
            on_battery: self.compute.on_battery,
            window: self.compute.window,
        }
    }

    /// The vault quota in force: the user's, or 10% of the free space capped at 100 GiB.
    ///
    /// `disk.free_bytes` should count the vault's own blobs and reservation as free (see
    /// [`crate::vault::Vault::disk_without_vault`]); otherwise the default quota would shrink every
    /// time the vault grew.
    pub fn effective_quota(&self, disk: DiskSpace) -> u64 {
        self.storage
            .quota_bytes
            .unwrap_or_else(|| (disk.free_bytes / 10).min(DEFAULT_QUOTA_CAP_BYTES))
    }

    /// The free-space floor in force: the user's, or the larger of 10 GiB and 10% of the disk.
    pub fn effective_floor(&self, disk: DiskSpace) -> u64 {
        self.storage
            .floor_bytes
            .unwrap_or_else(|| (disk.total_bytes / 10).max(DEFAULT_FLOOR_MIN_BYTES))
    }

    /// Both vault limits in force, ready for [`crate::vault::Vault::open`].
    pub fn vault_limits(&self, disk: DiskSpace) -> VaultLimits {
        VaultLimits {
            quota_bytes: self.effective_quota(disk),
            floor_bytes: self.effective_floor(disk),
        }
    }

    /// Where the vault lives: the user's choice, or `<data_dir>/.vault`.
    pub fn vault_dir(&self, data_dir: &Path) -> PathBuf {
        self.storage
            .vault_path
            .clone()
            .unwrap_or_else(|| data_dir.join(DEFAULT_VAULT_DIR))
    }
}

/// The per-user directory the agent keeps its settings, credentials and vault in by default
/// (`~/.local/share/surplus` on Linux, `%LOCALAPPDATA%\surplus` on Windows,
/// `~/Library/Application Support/surplus` on macOS); `None` if the system names no home.
pub fn default_data_dir() -> Option<PathBuf> {
    dirs::data_local_dir().map(|dir| dir.join("surplus"))
}

fn invalid(
    field: &'static str,
    value: impl Into<String>,
    reason: impl Into<String>,
) -> SettingsError {
    SettingsError::Invalid {
        field,
        value: value.into(),
        reason: reason.into(),
    }
}

fn validate_hub_url(url: &str) -> Result<(), SettingsError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
    match host {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Ok(()),
        _ => Err(invalid(
            "hub_url",
            format!("{url:?}"),
            "must be an http:// or https:// address with a host, such as https://hub.example.com",
        )),
    }
}

/// Reads and writes the compute window as `"HH:MM-HH:MM"` text, the form people write it in.
mod window_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use surplus_protocol::TimeWindow;

    pub(super) fn serialize<S: Serializer>(
        window: &Option<TimeWindow>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match window {
            Some(window) => serializer.serialize_str(&crate::units::format_window(*window)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<TimeWindow>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        text.map(|text| crate::units::parse_window(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(total_gib: u64, free_gib: u64) -> DiskSpace {
        DiskSpace {
            total_bytes: total_gib * GIB,
            free_bytes: free_gib * GIB,
        }
    }

    #[test]
    fn defaults_donate_nothing_and_follow_the_product_defaults() {
        let settings = Settings::default();
        assert_eq!(
            settings.consent,
            Consent {
                storage: false,
                compute: false
            }
        );
        assert_eq!(settings.pause, PauseState::Running);
        let limits = settings.compute_limits();
        assert_eq!(limits.cores_percent, 50);
        assert_eq!(limits.idle_minutes, 5);
        assert_eq!(limits.busy_cpu_percent, 25);
        assert!(!limits.on_battery);
        assert_eq!(limits.window, None);
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn default_quota_is_a_tenth_of_free_space_capped() {
        let settings = Settings::default();
        assert_eq!(settings.effective_quota(disk(500, 200)), 20 * GIB);
        assert_eq!(settings.effective_quota(disk(8000, 5000)), 100 * GIB);
        let chosen = Settings {
            storage: StorageSettings {
                quota_bytes: Some(3 * GIB),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(chosen.effective_quota(disk(8000, 5000)), 3 * GIB);
    }

    #[test]
    fn default_floor_is_the_larger_of_10_gib_and_a_tenth() {
        let settings = Settings::default();
        assert_eq!(settings.effective_floor(disk(50, 20)), 10 * GIB);
        assert_eq!(settings.effective_floor(disk(1000, 20)), 100 * GIB);
        let chosen = Settings {
            storage: StorageSettings {
                floor_bytes: Some(GIB),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(chosen.effective_floor(disk(1000, 20)), GIB);
        assert_eq!(
            chosen.vault_limits(disk(1000, 20)),
            VaultLimits {
                quota_bytes: 2 * GIB,
                floor_bytes: GIB
            }
        );
    }

    #[test]
    fn vault_dir_defaults_inside_the_data_dir() {
        let data = Path::new("/home/ann/.local/share/surplus");
        assert_eq!(Settings::default().vault_dir(data), data.join(".vault"));
        let chosen = Settings {
            storage: StorageSettings {
                vault_path: Some(PathBuf::from("/mnt/big/.surplus")),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(chosen.vault_dir(data), PathBuf::from("/mnt/big/.surplus"));
    }

    #[test]
    fn load_returns_defaults_when_the_file_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            Settings::load(dir.path()).expect("load"),
            Settings::default()
        );
    }

    #[test]
    fn save_then_load_round_trips_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("nested").join("data");
        let settings = Settings {
            hub_url: Some("https://hub.example.com".into()),
            hub_trust: HubTrust {
                ca_file: Some("/etc/surplus/ca.pem".into()),
                insecure_http: false,
            },
            device_name: Some("Ann's desktop".into()),
            bandwidth_bytes_per_second: Some(10 * 1024 * 1024),
            consent: Consent {
                storage: true,
                compute: false,
            },
            storage: StorageSettings {
                quota_bytes: Some(20 * GIB),
                floor_bytes: None,
                vault_path: Some(PathBuf::from("/srv/vault")),
            },
            compute: ComputeSettings {
                cores_percent: 75,
                idle_minutes: 10,
                busy_cpu_percent: 30,
                on_battery: true,
                window: Some(TimeWindow {
                    start_minute: 22 * 60,
                    end_minute: 6 * 60,
                }),
                pause_in_full_screen: false,
                max_cpu_celsius: Some(80),
            },
            pause: PauseState::Until {
                until: 1_700_000_000_000,
            },
            backup: BackupSettings {
                folders: vec![PathBuf::from("/home/ann/photos")],
                pause: PauseState::Until {
                    until: 1_800_000_000_000,
                },
            },
        };
        Settings::default().save(&data).expect("save defaults");
        let text = std::fs::read_to_string(Settings::path(&data)).expect("read");
        assert!(text.contains("paused = \"running\""), "{text}");
        assert_eq!(Settings::load(&data).expect("load"), Settings::default());
        settings.save(&data).expect("save");
        let text = std::fs::read_to_string(Settings::path(&data)).expect("read");
        assert!(text.contains("window = \"22:00-06:00\""), "{text}");
        assert!(text.contains("max_cpu_celsius = 80"), "{text}");
        assert_eq!(Settings::load(&data).expect("load"), settings);

        let indefinitely = Settings {
            pause: PauseState::Indefinitely,
            ..Settings::default()
        };
        indefinitely.save(&data).expect("save");
        assert_eq!(Settings::load(&data).expect("load"), indefinitely);
    }

    #[test]
    fn a_partial_file_fills_in_the_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            Settings::path(dir.path()),
            "hub_url = \"http://127.0.0.1:8080\"\n[compute]\ncores_percent = 25\n",
        )
        .expect("write");
        let settings = Settings::load(dir.path()).expect("load");
        assert_eq!(settings.hub_url.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(settings.compute.cores_percent, 25);
        assert_eq!(settings.compute.idle_minutes, 5);
        assert_eq!(settings.consent, Consent::default());
    }

    #[test]
    fn a_bad_file_is_an_error_naming_the_file_and_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = Settings::path(dir.path());
        std::fs::write(&path, "[compute]\ncores_percent = 150\n").expect("write");
        let message = Settings::load(dir.path()).expect_err("invalid").to_string();
        assert!(message.contains("compute.cores_percent 150"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");

        std::fs::write(&path, "[compute]\nwindow = \"25:00-06:00\"\n").expect("write");
        let message = Settings::load(dir.path()).expect_err("invalid").to_string();
        assert!(message.contains("25:00-06:00"), "{message}");

        std::fs::write(&path, "hub_ulr = \"typo\"\n").expect("write");
        let message = Settings::load(dir.path())
            .expect_err("unknown field")
            .to_string();
        assert!(message.contains("hub_ulr"), "{message}");
    }

    #[test]
    fn validate_names_the_field_and_value() {
        let cases: Vec<(Settings, &str)> = vec![
            (
                Settings {
                    hub_url: Some("ftp://x".into()),
                    ..Default::default()
                },
                "hub_url \"ftp://x\"",
            ),
            (
                Settings {
                    hub_url: Some("https://".into()),
                    ..Default::default()
                },
                "hub_url",
            ),
            (
                Settings {
                    device_name: Some("  ".into()),
                    ..Default::default()
                },
                "device_name",
            ),
            (
                Settings {
                    device_name: Some("x".repeat(65)),
                    ..Default::default()
                },
                "device_name",
            ),
            (
                Settings {
                    bandwidth_bytes_per_second: Some(0),
                    ..Default::default()
                },
                "bandwidth_bytes_per_second 0",
            ),
            (
                Settings {
                    storage: StorageSettings {
                        quota_bytes: Some(0),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "storage.quota_bytes 0",
            ),
            (
                Settings {
                    storage: StorageSettings {
                        vault_path: Some(PathBuf::from("relative/vault")),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "storage.vault_path \"relative/vault\"",
            ),
            (
                Settings {
                    compute: ComputeSettings {
                        busy_cpu_percent: 101,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "compute.busy_cpu_percent 101",
            ),
            (
                Settings {
                    compute: ComputeSettings {
                        max_cpu_celsius: Some(30),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "compute.max_cpu_celsius 30",
            ),
            (
                Settings {
                    compute: ComputeSettings {
                        window: Some(TimeWindow {
                            start_minute: 60,
                            end_minute: 60,
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "compute.window \"01:00-01:00\"",
            ),
            (
                Settings {
                    compute: ComputeSettings {
                        window: Some(TimeWindow {
                            start_minute: 2000,
                            end_minute: 60,
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "compute.window 2000-60",
            ),
        ];
        for (settings, expected) in cases {
            let message = settings.validate().expect_err(expected).to_string();
            assert!(
                message.contains(expected),
                "{message:?} should contain {expected:?}"
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = Settings {
            bandwidth_bytes_per_second: Some(0),
            ..Default::default()
        };
        assert!(bad.save(dir.path()).is_err());
        assert!(!Settings::path(dir.path()).exists());
    }
}
