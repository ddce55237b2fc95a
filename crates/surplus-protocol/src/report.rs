//! A device's status report: its measurements and its user's settings, sent with every heartbeat.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::UnixMillis;

/// A device's operating information, sent with every heartbeat and on request.
///
/// The settings that decide what may be donated (consent, quota, limits, pause) travel with the
/// measurements, so that the hub decides from one consistent picture of the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatusReport {
    pub agent_version: String,
    /// The operating system family (`linux`, `windows`, `macos`, ...).
    pub os: String,
    /// The CPU architecture, as Rust names it (`x86_64`, `aarch64`, ...); empty from agents that
    /// predate it. Replicas of a compute task go to donors of one [`architecture_class`].
    #[serde(default)]
    pub arch: String,
    /// The device's offset from UTC, so that the hub can evaluate its schedule window.
    pub utc_offset_minutes: i32,
    pub cpu: CpuReport,
    pub memory: MemoryReport,
    pub user: UserActivity,
    /// `None` when the power source cannot be read; a machine without a battery reports `false`.
    pub on_battery: Option<bool>,
    pub disk: DiskReport,
    pub vault: VaultReport,
    pub consent: Consent,
    pub limits: ComputeLimits,
    /// The most bytes per second the device's user lets it send (backups, blobs for others);
    /// absent for no limit, and from agents that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_bytes_per_second: Option<u64>,
    pub pause: PauseState,
    /// A comfort rule of the device's user that holds donated compute now (a full-screen app is
    /// in front, the CPU runs hot), as the agent judged it with its own hysteresis; absent when
    /// none holds, and from agents that predate the rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comfort: Option<ComfortHold>,
}

/// A comfort rule that holds donated compute even though the user is away from the keyboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ComfortHold {
    /// A full-screen window has the focus: a game, a film, a video call, a presentation, none of
    /// which moves the mouse.
    FullScreen,
    /// The CPU is above the temperature the user set.
    TooHot,
}

impl StatusReport {
    /// Whether the device gives up storage it holds for others: consent withdrawn while its
    /// vault holds something, or a quota lowered below what it holds. The hub then has it hand
    /// the excess over to other holders.
    pub fn gives_storage_up(&self) -> bool {
        !self.consent.storage && self.vault.used_bytes > 0
            || self.vault.used_bytes > self.vault.quota_bytes
    }
}

/// The class of CPU architectures whose floating point gives the same bits for the same
/// WebAssembly, NaNs included: x86 and x86-64 are one class, 32- and 64-bit Arm another. Runs of
/// a task that does not ask for agreement across architectures all go to one class, so the
/// sandbox can leave NaNs as the hardware makes them. Agents that do not report their
/// architecture (empty) are a class of their own: they canonicalise NaNs whatever the hub says.
pub fn architecture_class(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86" => "x86",
        "aarch64" | "arm" | "arm64ec" => "arm",
        "riscv64" | "riscv32" => "riscv",
        "powerpc64" | "powerpc" => "powerpc",
        "loongarch64" | "loongarch32" => "loongarch",
        "mips64" | "mips" | "mips32r6" | "mips64r6" => "mips",
        other => other,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CpuReport {
    pub cores: u32,
    /// CPU used by programs other than donated work, as a percentage of all cores (0-100).
    pub busy_percent: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemoryReport {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

/// Whether someone is using the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "session", rename_all = "snake_case")]
pub enum UserActivity {
    /// No user session at all (a server or NAS running the headless agent): always idle.
    None,
    /// A session whose input idle time was read.
    Idle { idle_seconds: u64 },
    /// A session exists but its idle time cannot be read: never treated as idle.
    Unknown,
}

/// The disk that holds the vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DiskReport {
    pub total_bytes: u64,
    pub free_bytes: u64,
}

/// The hidden vault of donated storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct VaultReport {
    /// The most the vault may ever hold, as the user set it.
    pub quota_bytes: u64,
    /// Bytes of blobs held for others.
    pub used_bytes: u64,
    /// Bytes set aside on disk for blobs still to come.
    pub reserved_bytes: u64,
    /// The free space the vault never pushes the disk below.
    pub floor_bytes: u64,
}

/// The user's explicit consent, per resource. Both are off until the user turns them on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Consent {
    pub storage: bool,
    pub compute: bool,
}

/// When donated compute may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ComputeLimits {
    /// The share of the cores donated work may use (0-100).
    pub cores_percent: u8,
    /// Minutes without keyboard or mouse input before compute starts.
    pub idle_minutes: u32,
    /// Compute stops while other programs use more than this share of the CPU (0-100).
    pub busy_cpu_percent: u8,
    /// Whether compute may run on battery.
    pub on_battery: bool,
    /// An optional daily window, in the device's local time, outside which nothing runs.
    pub window: Option<TimeWindow>,
}

/// A daily window in local time. `end` before `start` wraps past midnight (22:00-06:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TimeWindow {
    /// Minutes after local midnight (0-1439).
    pub start_minute: u16,
    /// Minutes after local midnight (0-1439).
    pub end_minute: u16,
}

impl TimeWindow {
    /// Whether `minute` (after local midnight) falls inside the window.
    pub fn contains(&self, minute: u16) -> bool {
        if self.start_minute <= self.end_minute {
            (self.start_minute..self.end_minute).contains(&minute)
        } else {
            minute >= self.start_minute || minute < self.end_minute
        }
    }
}

/// Whether the user has paused donation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "paused", rename_all = "snake_case")]
pub enum PauseState {
    #[default]
    Running,
    /// Paused until the given time.
    Until { until: UnixMillis },
    /// Paused until the user resumes.
    Indefinitely,
}

impl PauseState {
    /// Whether donation is paused at `now`.
    pub fn is_paused(&self, now: UnixMillis) -> bool {
        match *self {
            Self::Running => false,
            Self::Until { until } => now < until,
            Self::Indefinitely => true,
        }
    }
}

/// What the hub answers to a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    /// What the hub now counts as spare on this device.
    pub spare: Spare,
    /// When to send the next heartbeat.
    pub next_heartbeat_seconds: u32,
    pub server_time: UnixMillis,
    /// While the device hands over what it holds for others (it gave storage up): how far it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<Handover>,
}

/// A device handing what it holds for others over to other holders, after it gave storage up
/// (consent withdrawn, quota lowered, `surplus leave`). Nothing is deleted from it before the
/// new copy is confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Handover {
    /// Still to hand over.
    pub remaining_bytes: u64,
    pub remaining_blobs: u32,
    /// Handed over (confirmed elsewhere and deleted here) since the hand-over began.
    pub moved_bytes: u64,
    /// What is not handed over by then is counted lost and rebuilt from other copies.
    pub deadline: UnixMillis,
}

impl Handover {
    /// How far along, 0 to 100.
    pub fn percent(&self) -> u32 {
        let total = self.remaining_bytes.saturating_add(self.moved_bytes);
        if total == 0 {
            return 100;
        }
        u32::try_from(self.moved_bytes.saturating_mul(100) / total).unwrap_or(100)
    }
}

/// Every blob the hub's ledger has a device holding for someone, as a copy that counts or may
/// count again (`GET /v1/device/retain`). The device may let go of any other blob it stored
/// before it asked: the agent moves those to its vault's trash, from which a blob comes back if
/// the hub asks for it before the trash is emptied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetainList {
    pub hashes: Vec<crate::BlobHash>,
}

/// What a device holds for others, as the hub's ledger has it (`GET /v1/device/holdings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Holdings {
    /// Bytes of live allocations on the device: to be stored, stored, or being handed over.
    pub held_bytes: u64,
    pub held_blobs: u32,
    pub handover: Option<Handover>,
}

/// Spare resources on one device, as the hub's policy decided them from its latest report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Spare {
    pub storage_bytes: u64,
    pub compute_slots: u32,
    /// Why nothing is spare, when that is so (`no_consent`, `paused`, `user_active`, ...).
    pub storage_reason: Option<SpareReason>,
    pub compute_reason: Option<SpareReason>,
}

/// Why a resource is not spare right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum SpareReason {
    NoConsent,
    Paused,
    SubscriberInactive,
    VaultFull,
    DiskFloor,
    UserActive,
    IdleUnknown,
    OnBattery,
    CpuBusy,
    OutsideWindow,
    NoCores,
    /// A full-screen app has the focus ([`ComfortHold::FullScreen`]).
    FullScreen,
    /// The CPU is above the user's temperature limit ([`ComfortHold::TooHot`]).
    TooHot,
}

impl SpareReason {
    pub fn describe(self) -> &'static str {
        match self {
            Self::NoConsent => "not consented",
            Self::Paused => "paused",
            Self::SubscriberInactive => "subscriber not active",
            Self::VaultFull => "vault quota used up",
            Self::DiskFloor => "disk free space at its floor",
            Self::UserActive => "user active",
            Self::IdleUnknown => "idle time unknown",
            Self::OnBattery => "on battery",
            Self::CpuBusy => "other programs busy",
            Self::OutsideWindow => "outside the schedule window",
            Self::NoCores => "no cores allowed",
            Self::FullScreen => "a full-screen app is in use",
            Self::TooHot => "the CPU is too hot",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_wraps_past_midnight() {
        let night = TimeWindow {
            start_minute: 22 * 60,
            end_minute: 6 * 60,
        };
        assert!(night.contains(23 * 60));
        assert!(night.contains(0));
        assert!(night.contains(5 * 60 + 59));
        assert!(!night.contains(6 * 60));
        assert!(!night.contains(12 * 60));
        let day = TimeWindow {
            start_minute: 9 * 60,
            end_minute: 17 * 60,
        };
        assert!(day.contains(9 * 60));
        assert!(!day.contains(17 * 60));
        assert!(!day.contains(8 * 60));
    }

    #[test]
    fn user_activity_wire_form() {
        let idle = serde_json::to_value(UserActivity::Idle { idle_seconds: 42 }).expect("json");
        assert_eq!(
            idle,
            serde_json::json!({"session": "idle", "idle_seconds": 42})
        );
        let none = serde_json::to_value(UserActivity::None).expect("json");
        assert_eq!(none, serde_json::json!({"session": "none"}));
    }
}
