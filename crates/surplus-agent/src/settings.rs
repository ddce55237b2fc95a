//! What the user decided: consent, quotas, the compute schedule, the hub to talk to.
//!
//! Settings live in `<data-dir>/settings.toml` so that a user (or an administrator of a headless
//! box) can read and edit them by hand. Everything defaults to the conservative choice: nothing is
//! donated until the user opts in, and the limits follow the product defaults (10% of free space
//! capped at 100 GiB, a free-space floor of 10 GiB or 10%, half the cores, only after 5 idle
//! minutes, never on battery, never while other programs are busy).
//!
//! The parsers at the bottom turn what a person types on the command line (`2GiB`, `50%`,
//! `22:00-06:00`, `1h30m`, `10MiB/s`) into values, and say exactly which input they could not read.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use surplus_protocol::{ComputeLimits, Consent, PauseState, TimeWindow};

use crate::atomic_file::{self, Visibility};
use crate::client::HubTrust;
use crate::probe::DiskSpace;
use crate::vault::VaultLimits;

/// One gibibyte, the unit the defaults are stated in.
pub const GIB: u64 = 1024 * 1024 * 1024;

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

/// Input typed by a person that a parser could not read. The message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct InputError {
    /// What was expected (`size`, `percentage`, `time window`, ...).
    pub what: &'static str,
    /// The input exactly as given.
    pub input: String,
    /// What is wrong with it, and what would be right.
    pub reason: String,
}

impl InputError {
    fn new(what: &'static str, input: &str, reason: impl Into<String>) -> Self {
        Self {
            what,
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Everything the user decided about this device.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The hub this device reports to, such as `https://hub.example.com`.
    pub hub_url: Option<String>,
    /// A private CA, or clear text accepted, for that hub.
    #[serde(skip_serializing_if = "HubTrust::is_default")]
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
#[serde(default, deny_unknown_fields)]
pub struct BackupSettings {
    /// The folders backed up, as absolute paths.
    pub folders: Vec<PathBuf>,
}

/// How much disk the vault may take, and where it lives.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
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
    pub window: Option<TimeWindow>,
}

impl Default for ComputeSettings {
    fn default() -> Self {
        Self {
            cores_percent: 50,
            idle_minutes: 5,
            busy_cpu_percent: 25,
            on_battery: false,
            window: None,
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

const MINUTES_PER_DAY: u16 = 24 * 60;

/// Reads and writes the compute window as `"HH:MM-HH:MM"` text, the form people write it in.
mod window_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use surplus_protocol::TimeWindow;

    pub(super) fn serialize<S: Serializer>(
        window: &Option<TimeWindow>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match window {
            Some(window) => serializer.serialize_str(&super::format_window(*window)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<TimeWindow>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        text.map(|text| super::parse_window(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Parses a size such as `2GiB`, `500MB`, `1.5 GB`, `10g` or `123` (bytes).
///
/// Units are case-insensitive. `KB`, `MB`, `GB`, `TB` are decimal (powers of 1000); `KiB`, `MiB`,
/// `GiB`, `TiB` and the bare letters `K`, `M`, `G`, `T` are binary (powers of 1024), as in `df -h`
/// and most command lines. A fraction is rounded down to whole bytes.
pub fn parse_size(input: &str) -> Result<u64, InputError> {
    const WHAT: &str = "size";
    let text = input.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(InputError::new(
            WHAT,
            input,
            "expected a number and a unit, such as 2GiB or 500MB",
        ));
    }
    let multiplier = size_unit(unit.trim()).ok_or_else(|| {
        InputError::new(
            WHAT,
            input,
            format!(
                "unknown unit {:?}; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB",
                unit.trim()
            ),
        )
    })?;
    let bytes = scale_decimal(number, multiplier)
        .ok_or_else(|| InputError::new(WHAT, input, "expected a number such as 2 or 1.5"))?;
    u64::try_from(bytes).map_err(|_| InputError::new(WHAT, input, "too large"))
}

fn size_unit(unit: &str) -> Option<u64> {
    const KIB: u64 = 1024;
    let multiplier = match unit.to_ascii_lowercase().as_str() {
        "" | "b" | "byte" | "bytes" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "k" | "kib" => KIB,
        "m" | "mib" => KIB.pow(2),
        "g" | "gib" => KIB.pow(3),
        "t" | "tib" => KIB.pow(4),
        _ => return None,
    };
    Some(multiplier)
}

/// `number` (digits, optionally with one decimal point between digits) times `multiplier`, rounded
/// down; exact integer arithmetic so that `1.1GB` is exactly 1,100,000,000 bytes.
fn scale_decimal(number: &str, multiplier: u64) -> Option<u128> {
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 18 {
        return None;
    }
    if number.contains('.') && fraction.is_empty() {
        return None;
    }
    let multiplier = u128::from(multiplier);
    let whole: u128 = whole.parse().ok()?;
    let mut total = whole.checked_mul(multiplier)?;
    if !fraction.is_empty() {
        let numerator: u128 = fraction.parse().ok()?;
        let denominator = 10u128.pow(u32::try_from(fraction.len()).ok()?);
        total = total.checked_add(numerator.checked_mul(multiplier)? / denominator)?;
    }
    Some(total)
}

/// Parses a percentage such as `50` or `50%` (a whole number, 0-100).
pub fn parse_percent(input: &str) -> Result<u8, InputError> {
    const WHAT: &str = "percentage";
    let text = input.trim();
    let digits = text.strip_suffix('%').unwrap_or(text).trim_end();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InputError::new(
            WHAT,
            input,
            "expected a whole number from 0 to 100, such as 50%",
        ));
    }
    match digits.parse::<u32>() {
        Ok(value) if value <= 100 => {
            u8::try_from(value).map_err(|_| InputError::new(WHAT, input, "must be from 0 to 100"))
        }
        _ => Err(InputError::new(WHAT, input, "must be from 0 to 100")),
    }
}

/// Parses a daily window such as `22:00-06:00` (local time). An end before the start wraps past
/// midnight; `24:00` is accepted as an end and means midnight. The start and end must differ.
pub fn parse_window(input: &str) -> Result<TimeWindow, InputError> {
    const WHAT: &str = "time window";
    let (start, end) = input
        .trim()
        .split_once('-')
        .ok_or_else(|| InputError::new(WHAT, input, "expected HH:MM-HH:MM, such as 22:00-06:00"))?;
    let start_minute = parse_clock(start.trim(), false).ok_or_else(|| {
        InputError::new(
            WHAT,
            input,
            format!("{:?} is not a time from 00:00 to 23:59", start.trim()),
        )
    })?;
    let end_minute = parse_clock(end.trim(), true).ok_or_else(|| {
        InputError::new(
            WHAT,
            input,
            format!("{:?} is not a time from 00:00 to 24:00", end.trim()),
        )
    })?;
    if start_minute == end_minute {
        return Err(InputError::new(
            WHAT,
            input,
            "start and end are the same; leave the window unset to allow any time",
        ));
    }
    Ok(TimeWindow {
        start_minute,
        end_minute,
    })
}

/// `H:MM` or `HH:MM` as minutes after midnight; `24:00` only when it ends a window.
fn parse_clock(text: &str, is_end: bool) -> Option<u16> {
    let (hours, minutes) = text.split_once(':')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(hours) || hours.len() > 2 || !digits(minutes) || minutes.len() != 2 {
        return None;
    }
    let hours: u16 = hours.parse().ok()?;
    let minutes: u16 = minutes.parse().ok()?;
    match (hours, minutes) {
        (24, 0) if is_end => Some(0),
        (0..=23, 0..=59) => Some(hours * 60 + minutes),
        _ => None,
    }
}

/// Formats a window the way [`parse_window`] reads it (`22:00-06:00`).
pub fn format_window(window: TimeWindow) -> String {
    let clock = |minute: u16| format!("{:02}:{:02}", minute / 60, minute % 60);
    format!(
        "{}-{}",
        clock(window.start_minute),
        clock(window.end_minute)
    )
}

/// Parses a duration such as `90s`, `15m`, `1h`, `2d` or `1h30m`.
///
/// Units are `d`, `h`, `m`, `s` (case-insensitive), each at most once and largest first, so that
/// a slip such as `30m1h` is caught rather than guessed at. A bare number has no unit and is
/// refused.
pub fn parse_duration(input: &str) -> Result<Duration, InputError> {
    const WHAT: &str = "duration";
    let text = input.trim();
    if text.is_empty() {
        return Err(InputError::new(
            WHAT,
            input,
            "expected a duration such as 90s, 15m, 1h, 2d or 1h30m",
        ));
    }
    let mut seconds: u64 = 0;
    let mut last_unit_seconds = u64::MAX;
    let mut rest = text;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(InputError::new(
                WHAT,
                input,
                "expected a number before each unit, such as 1h30m",
            ));
        }
        let (number, after) = rest.split_at(digits_end);
        let mut chars = after.chars();
        let unit = chars.next().ok_or_else(|| {
            InputError::new(
                WHAT,
                input,
                format!("{number:?} has no unit; add s, m, h or d"),
            )
        })?;
        let unit_seconds = match unit.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            other => {
                return Err(InputError::new(
                    WHAT,
                    input,
                    format!("unknown unit {other:?}; use s, m, h or d"),
                ));
            }
        };
        if unit_seconds >= last_unit_seconds {
            return Err(InputError::new(
                WHAT,
                input,
                "give each unit once, largest first, such as 1h30m",
            ));
        }
        last_unit_seconds = unit_seconds;
        let value: u64 = number
            .parse()
            .map_err(|_| InputError::new(WHAT, input, "number too large"))?;
        seconds = value
            .checked_mul(unit_seconds)
            .and_then(|part| seconds.checked_add(part))
            .ok_or_else(|| InputError::new(WHAT, input, "too long"))?;
        rest = chars.as_str();
    }
    Ok(Duration::from_secs(seconds))
}

/// Parses a transfer rate such as `10MiB/s` or `10MiB` into bytes per second (units as in
/// [`parse_size`]). A rate of zero is refused: leave the limit unset for no limit.
pub fn parse_rate(input: &str) -> Result<u64, InputError> {
    const WHAT: &str = "rate";
    let text = input.trim();
    let size = match text.len().checked_sub(2).and_then(|at| text.get(at..)) {
        Some(suffix) if suffix.eq_ignore_ascii_case("/s") => &text[..text.len() - 2],
        _ => text,
    };
    let bytes = parse_size(size).map_err(|error| InputError::new(WHAT, input, error.reason))?;
    if bytes == 0 {
        return Err(InputError::new(WHAT, input, "must be more than 0"));
    }
    Ok(bytes)
}

/// Formats a byte count for people, in binary units with one decimal (`12.4 GiB`, `512 B`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Precision lost in the cast is far below the one decimal shown.
    let mut value = bytes as f64;
    let mut unit = 0;
    while (value >= 1024.0 || (value * 10.0).round() >= 10240.0) && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A size for people, for use in format strings (`{}` shows `12.4 GiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_size(self.0))
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
            },
            pause: PauseState::Until {
                until: 1_700_000_000_000,
            },
            backup: BackupSettings {
                folders: vec![PathBuf::from("/home/ann/photos")],
            },
        };
        Settings::default().save(&data).expect("save defaults");
        let text = std::fs::read_to_string(Settings::path(&data)).expect("read");
        assert!(text.contains("paused = \"running\""), "{text}");
        assert_eq!(Settings::load(&data).expect("load"), Settings::default());
        settings.save(&data).expect("save");
        let text = std::fs::read_to_string(Settings::path(&data)).expect("read");
        assert!(text.contains("window = \"22:00-06:00\""), "{text}");
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

    #[test]
    fn sizes_in_binary_and_decimal_units() {
        let good = [
            ("123", 123),
            ("0", 0),
            ("2GiB", 2 * GIB),
            ("2 gib", 2 * GIB),
            ("500MB", 500_000_000),
            ("1.5 GB", 1_500_000_000),
            ("1.1GB", 1_100_000_000),
            ("10g", 10 * GIB),
            ("4K", 4096),
            ("4kb", 4000),
            ("1TiB", 1024 * GIB),
            ("7 bytes", 7),
            (" 12B ", 12),
            ("0.5KiB", 512),
            ("1.0005KiB", 1024),
        ];
        for (input, expected) in good {
            assert_eq!(parse_size(input), Ok(expected), "{input}");
        }
        let bad = [
            "",
            "GiB",
            "2XB",
            "-1",
            "1.2.3GB",
            "1.GB",
            ".5GB",
            "99999999999999999999TiB",
            "2 G B",
        ];
        for input in bad {
            let error = parse_size(input).expect_err(input);
            assert_eq!(error.input, input);
            assert!(error.to_string().contains(&format!("{input:?}")), "{error}");
        }
    }

    #[test]
    fn percentages() {
        for (input, expected) in [
            ("50", 50),
            ("50%", 50),
            ("0", 0),
            ("100 %", 100),
            (" 7% ", 7),
        ] {
            assert_eq!(parse_percent(input), Ok(expected), "{input}");
        }
        for input in ["", "%", "101", "-5", "50.5", "fifty", "1000000000000"] {
            let error = parse_percent(input).expect_err(input);
            assert!(error.to_string().contains(&format!("{input:?}")), "{error}");
        }
    }

    #[test]
    fn windows() {
        assert_eq!(
            parse_window("22:00-06:00"),
            Ok(TimeWindow {
                start_minute: 1320,
                end_minute: 360
            })
        );
        assert_eq!(
            parse_window("9:30 - 17:45"),
            Ok(TimeWindow {
                start_minute: 570,
                end_minute: 1065
            })
        );
        assert_eq!(
            parse_window("18:00-24:00"),
            Ok(TimeWindow {
                start_minute: 1080,
                end_minute: 0
            })
        );
        assert_eq!(
            format_window(TimeWindow {
                start_minute: 1320,
                end_minute: 360
            }),
            "22:00-06:00"
        );
        for input in [
            "",
            "22:00",
            "22:00-22:00",
            "00:00-24:00",
            "24:00-06:00",
            "22:60-06:00",
            "2200-0600",
            "22:0-06:00",
            "a:bc-06:00",
        ] {
            let error = parse_window(input).expect_err(input);
            assert!(error.to_string().contains(&format!("{input:?}")), "{error}");
        }
    }

    #[test]
    fn durations() {
        let good = [
            ("90s", 90),
            ("15m", 900),
            ("1h", 3600),
            ("2d", 172_800),
            ("1h30m", 5400),
            ("1d2h3m4s", 93_784),
            ("0s", 0),
            ("2H", 7200),
        ];
        for (input, seconds) in good {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_secs(seconds)),
                "{input}"
            );
        }
        for input in [
            "",
            "90",
            "h",
            "1x",
            "30m1h",
            "1h1h",
            "1.5h",
            "-1h",
            "99999999999999999999d",
            "1h 30m",
        ] {
            let error = parse_duration(input).expect_err(input);
            assert!(error.to_string().contains(&format!("{input:?}")), "{error}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10MiB/s"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_rate("10MiB"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_rate("1.5 MB/S"), Ok(1_500_000));
        assert_eq!(parse_rate("4096"), Ok(4096));
        for input in ["", "/s", "0", "0MB/s", "fast", "10MiB/h"] {
            let error = parse_rate(input).expect_err(input);
            assert!(error.to_string().contains(&format!("{input:?}")), "{error}");
        }
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1024), "1.0 KiB");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(13_314_398_618), "12.4 GiB");
        assert_eq!(format_size(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(format_size(u64::MAX), "16.0 EiB");
        assert_eq!(Size(10 * GIB).to_string(), "10.0 GiB");
    }
}
