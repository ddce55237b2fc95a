//! Which of a device's resources are spare right now, and how a subscriber's
//! backups are coded across the holders there are.
//!
//! Pure functions of the device's latest report (which carries the user's consent, quota and
//! limits), the subscriber's standing and settings, and the time. No I/O, so every rule is tested
//! here.

use std::collections::HashSet;

use surplus_protocol::{
    BackupPlan, BackupSettings, Coding, ComfortHold, Spare, SpareReason, StatusReport,
    SubscriberStatus, UnixMillis, UserActivity,
};
use uuid::Uuid;

/// Decides what a device has spare.
///
/// Storage is spare when the user consented, donation is not paused, and the vault has room below
/// both its quota and the disk's free-space floor. It does not wait for the user to be idle: a
/// blob at rest costs the user nothing.
///
/// Compute is spare when the user consented, donation is not paused, nobody is at the machine
/// (idle long enough, or no user session at all), it is not on battery (unless allowed), other
/// programs leave the CPU mostly free, and the local time is inside the schedule window. It is
/// counted in slots: the share of cores the user allowed, at least one when any share is allowed.
pub fn spare(report: &StatusReport, status: SubscriberStatus, now: UnixMillis) -> Spare {
    let mut spare = Spare::default();
    match storage(report, status, now) {
        Ok(bytes) => spare.storage_bytes = bytes,
        Err(reason) => spare.storage_reason = Some(reason),
    }
    match compute(report, status, now) {
        Ok(slots) => spare.compute_slots = slots,
        Err(reason) => spare.compute_reason = Some(reason),
    }
    spare
}

fn storage(
    report: &StatusReport,
    status: SubscriberStatus,
    now: UnixMillis,
) -> Result<u64, SpareReason> {
    common(report, status, now, report.consent.storage)?;
    let vault = &report.vault;
    let below_quota = vault.quota_bytes.saturating_sub(vault.used_bytes);
    if below_quota == 0 {
        return Err(SpareReason::VaultFull);
    }
    // Space already reserved by the vault is the vault's to fill; beyond it, only what the disk
    // has above the floor.
    let above_floor = report
        .disk
        .free_bytes
        .saturating_add(vault.reserved_bytes)
        .saturating_sub(vault.floor_bytes);
    if above_floor == 0 {
        return Err(SpareReason::DiskFloor);
    }
    Ok(below_quota.min(above_floor))
}

fn compute(
    report: &StatusReport,
    status: SubscriberStatus,
    now: UnixMillis,
) -> Result<u32, SpareReason> {
    common(report, status, now, report.consent.compute)?;
    let limits = &report.limits;
    match report.user {
        UserActivity::None => {}
        UserActivity::Unknown => return Err(SpareReason::IdleUnknown),
        UserActivity::Idle { idle_seconds } => {
            if idle_seconds < u64::from(limits.idle_minutes) * 60 {
                return Err(SpareReason::UserActive);
            }
        }
    }
    match report.comfort {
        None => {}
        Some(ComfortHold::FullScreen) => return Err(SpareReason::FullScreen),
        Some(ComfortHold::TooHot) => return Err(SpareReason::TooHot),
    }
    if report.on_battery == Some(true) && !limits.on_battery {
        return Err(SpareReason::OnBattery);
    }
    if report.cpu.busy_percent > f32::from(limits.busy_cpu_percent) {
        return Err(SpareReason::CpuBusy);
    }
    if let Some(window) = limits.window
        && !window.contains(local_minute(now, report.utc_offset_minutes))
    {
        return Err(SpareReason::OutsideWindow);
    }
    let allowed = u64::from(report.cpu.cores) * u64::from(limits.cores_percent.min(100)) / 100;
    let slots = if limits.cores_percent > 0 && report.cpu.cores > 0 {
        allowed.max(1)
    } else {
        0
    };
    if slots == 0 {
        return Err(SpareReason::NoCores);
    }
    Ok(u32::try_from(slots).unwrap_or(u32::MAX))
}

fn common(
    report: &StatusReport,
    status: SubscriberStatus,
    now: UnixMillis,
    consent: bool,
) -> Result<(), SpareReason> {
    if status != SubscriberStatus::Active {
        return Err(SpareReason::SubscriberInactive);
    }
    if !consent {
        return Err(SpareReason::NoConsent);
    }
    if report.pause.is_paused(now) {
        return Err(SpareReason::Paused);
    }
    Ok(())
}

/// Minutes after local midnight at `now` for a device `offset_minutes` from UTC.
fn local_minute(now: UnixMillis, offset_minutes: i32) -> u16 {
    let minutes = now.div_euclid(60_000) + i64::from(offset_minutes);
    u16::try_from(minutes.rem_euclid(24 * 60)).unwrap_or(0)
}

/// How many holders a subscriber's packs can use now, from the devices with spare storage as
/// (device, subscriber) pairs. Another subscriber counts once however many devices they have,
/// since a pack gives each subscriber at most one shard; in household mode each of the
/// subscriber's own devices counts too, except `source`, the device whose data it is.
pub fn eligible_holders(
    devices: impl IntoIterator<Item = (Uuid, Uuid)>,
    subscriber: Uuid,
    source: Option<Uuid>,
    household: bool,
) -> u32 {
    let mut others = HashSet::new();
    let mut own = 0u32;
    for (device, owner) in devices {
        if owner != subscriber {
            others.insert(owner);
        } else if household && Some(device) != source {
            own += 1;
        }
    }
    u32::try_from(others.len())
        .unwrap_or(u32::MAX)
        .saturating_add(own)
}

/// The coding a subscriber's next backup uses, and a warning when the holders are too few for it.
pub fn backup_plan(settings: BackupSettings, eligible_holders: u32) -> BackupPlan {
    let coding = settings
        .coding
        .unwrap_or_else(|| Coding::for_holders(eligible_holders));
    let warning = if eligible_holders == 0 {
        Some(
            "no device can hold your backups yet: they wait at the hub until one can, and are \
             not protected until then"
                .to_owned(),
        )
    } else if eligible_holders < coding.shards() {
        Some(format!(
            "your coding {}+{} needs {} holders but only {eligible_holders} can hold shards now: \
             the rest wait at the hub until more can (or choose a smaller coding)",
            coding.data,
            coding.parity,
            coding.shards()
        ))
    } else if coding.shards() == 1 {
        Some(
            "only one device can hold your backups: a single copy, lost if that device is lost"
                .to_owned(),
        )
    } else {
        None
    };
    BackupPlan {
        settings,
        coding,
        eligible_holders,
        warning,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use surplus_protocol::{
        ComputeLimits, Consent, CpuReport, DiskReport, MemoryReport, PauseState, TimeWindow,
        VaultReport,
    };

    const GIB: u64 = 1 << 30;
    /// 2026-01-01T12:00:00Z.
    const NOON: UnixMillis = 1_767_268_800_000;

    fn report() -> StatusReport {
        StatusReport {
            agent_version: "test".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            utc_offset_minutes: 0,
            cpu: CpuReport {
                cores: 8,
                busy_percent: 5.0,
            },
            memory: MemoryReport {
                total_bytes: 16 * GIB,
                available_bytes: 8 * GIB,
            },
            user: UserActivity::Idle { idle_seconds: 600 },
            on_battery: Some(false),
            disk: DiskReport {
                total_bytes: 500 * GIB,
                free_bytes: 200 * GIB,
            },
            vault: VaultReport {
                quota_bytes: 20 * GIB,
                used_bytes: 5 * GIB,
                reserved_bytes: 15 * GIB,
                floor_bytes: 50 * GIB,
            },
            consent: Consent {
                storage: true,
                compute: true,
            },
            limits: ComputeLimits {
                cores_percent: 50,
                idle_minutes: 5,
                busy_cpu_percent: 25,
                on_battery: false,
                window: None,
            },
            upload_bytes_per_second: None,
            pause: PauseState::Running,
            comfort: None,
        }
    }

    /// One check per rule: the report is tweaked, and the expected spare compared.
    fn check(
        tweak: impl FnOnce(&mut StatusReport),
        storage: Result<u64, SpareReason>,
        compute: Result<u32, SpareReason>,
    ) {
        let mut r = report();
        tweak(&mut r);
        let spare = spare(&r, SubscriberStatus::Active, NOON);
        let got_storage = spare.storage_reason.map_or(Ok(spare.storage_bytes), Err);
        let got_compute = spare.compute_reason.map_or(Ok(spare.compute_slots), Err);
        assert_eq!((got_storage, got_compute), (storage, compute));
    }

    #[test]
    fn an_idle_consenting_device_has_both() {
        check(|_| {}, Ok(15 * GIB), Ok(4));
    }

    #[test]
    fn nothing_without_consent() {
        check(
            |r| r.consent = Consent::default(),
            Err(SpareReason::NoConsent),
            Err(SpareReason::NoConsent),
        );
        check(
            |r| r.consent.compute = false,
            Ok(15 * GIB),
            Err(SpareReason::NoConsent),
        );
    }

    #[test]
    fn nothing_while_paused_and_again_after() {
        check(
            |r| r.pause = PauseState::Indefinitely,
            Err(SpareReason::Paused),
            Err(SpareReason::Paused),
        );
        check(
            |r| r.pause = PauseState::Until { until: NOON + 1 },
            Err(SpareReason::Paused),
            Err(SpareReason::Paused),
        );
        check(
            |r| r.pause = PauseState::Until { until: NOON },
            Ok(15 * GIB),
            Ok(4),
        );
    }

    #[test]
    fn nothing_for_an_inactive_subscriber() {
        for status in [SubscriberStatus::Suspended, SubscriberStatus::Cancelled] {
            let spare = spare(&report(), status, NOON);
            assert_eq!(spare.storage_reason, Some(SpareReason::SubscriberInactive));
            assert_eq!(spare.compute_reason, Some(SpareReason::SubscriberInactive));
        }
    }

    #[test]
    fn storage_stops_at_the_quota_and_the_floor() {
        check(
            |r| r.vault.used_bytes = 20 * GIB,
            Err(SpareReason::VaultFull),
            Ok(4),
        );
        check(
            |r| r.vault.used_bytes = 25 * GIB,
            Err(SpareReason::VaultFull),
            Ok(4),
        );
        // Reserved space counts; beyond it only what is above the floor.
        check(
            |r| {
                r.disk.free_bytes = 40 * GIB;
                r.vault.reserved_bytes = 12 * GIB;
            },
            Ok(2 * GIB),
            Ok(4),
        );
        check(
            |r| {
                r.disk.free_bytes = 40 * GIB;
                r.vault.reserved_bytes = 0;
            },
            Err(SpareReason::DiskFloor),
            Ok(4),
        );
    }

    #[test]
    fn compute_waits_for_the_user_to_leave() {
        check(
            |r| r.user = UserActivity::Idle { idle_seconds: 299 },
            Ok(15 * GIB),
            Err(SpareReason::UserActive),
        );
        check(
            |r| r.user = UserActivity::Idle { idle_seconds: 300 },
            Ok(15 * GIB),
            Ok(4),
        );
        check(
            |r| r.user = UserActivity::Unknown,
            Ok(15 * GIB),
            Err(SpareReason::IdleUnknown),
        );
        check(|r| r.user = UserActivity::None, Ok(15 * GIB), Ok(4));
    }

    #[test]
    fn compute_respects_battery_cpu_and_cores() {
        check(
            |r| r.on_battery = Some(true),
            Ok(15 * GIB),
            Err(SpareReason::OnBattery),
        );
        check(
            |r| {
                r.on_battery = Some(true);
                r.limits.on_battery = true;
            },
            Ok(15 * GIB),
            Ok(4),
        );
        check(
            |r| r.cpu.busy_percent = 25.5,
            Ok(15 * GIB),
            Err(SpareReason::CpuBusy),
        );
        check(
            |r| r.limits.cores_percent = 0,
            Ok(15 * GIB),
            Err(SpareReason::NoCores),
        );
        check(
            |r| {
                r.cpu.cores = 1;
                r.limits.cores_percent = 10;
            },
            Ok(15 * GIB),
            Ok(1),
        );
        check(|r| r.limits.cores_percent = 100, Ok(15 * GIB), Ok(8));
    }

    #[test]
    fn compute_keeps_to_the_comfort_rules_the_agent_judged() {
        check(
            |r| r.comfort = Some(ComfortHold::FullScreen),
            Ok(15 * GIB),
            Err(SpareReason::FullScreen),
        );
        check(
            |r| r.comfort = Some(ComfortHold::TooHot),
            Ok(15 * GIB),
            Err(SpareReason::TooHot),
        );
        // The user's own return is the stronger reason, and is named first.
        check(
            |r| {
                r.comfort = Some(ComfortHold::FullScreen);
                r.user = UserActivity::Idle { idle_seconds: 0 };
            },
            Ok(15 * GIB),
            Err(SpareReason::UserActive),
        );
    }

    #[test]
    fn compute_keeps_to_the_local_window() {
        let night = Some(TimeWindow {
            start_minute: 22 * 60,
            end_minute: 6 * 60,
        });
        check(
            |r| r.limits.window = night,
            Ok(15 * GIB),
            Err(SpareReason::OutsideWindow),
        );
        // Noon UTC is 23:00 at UTC+11.
        check(
            |r| {
                r.limits.window = night;
                r.utc_offset_minutes = 11 * 60;
            },
            Ok(15 * GIB),
            Ok(4),
        );
        // And 02:00 at UTC-10.
        check(
            |r| {
                r.limits.window = night;
                r.utc_offset_minutes = -10 * 60;
            },
            Ok(15 * GIB),
            Ok(4),
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha, ..ProptestConfig::default() })]

        /// Whatever the report, spare storage never exceeds the room below the quota, never
        /// dips into the floor, and compute never exceeds the cores.
        #[test]
        fn spare_is_within_every_limit(
            quota in 0..100 * GIB, used in 0..120 * GIB, reserved in 0..50 * GIB,
            free in 0..300 * GIB, floor in 0..60 * GIB, cores in 0u32..64, percent in 0u8..=100,
            idle in 0u64..3600, busy in 0f32..100.0,
        ) {
            let mut r = report();
            r.vault = VaultReport { quota_bytes: quota, used_bytes: used, reserved_bytes: reserved, floor_bytes: floor };
            r.disk.free_bytes = free;
            r.cpu = CpuReport { cores, busy_percent: busy };
            r.limits.cores_percent = percent;
            r.user = UserActivity::Idle { idle_seconds: idle };
            let spare = spare(&r, SubscriberStatus::Active, NOON);
            prop_assert!(used + spare.storage_bytes <= quota.max(used));
            prop_assert!(spare.storage_bytes <= (free + reserved).saturating_sub(floor));
            prop_assert!(spare.compute_slots <= cores);
            if spare.compute_slots > 0 {
                prop_assert!(idle >= 300 && busy <= 25.0);
            }
        }
    }

    #[test]
    fn each_other_subscriber_counts_once_and_own_devices_only_in_household_mode() {
        let me = Uuid::from_u128(1);
        let (laptop, desktop) = (Uuid::from_u128(10), Uuid::from_u128(11));
        let devices = [
            (laptop, me),
            (desktop, me),
            (Uuid::from_u128(20), Uuid::from_u128(2)),
            (Uuid::from_u128(21), Uuid::from_u128(2)),
            (Uuid::from_u128(30), Uuid::from_u128(3)),
        ];
        assert_eq!(eligible_holders(devices, me, Some(laptop), false), 2);
        assert_eq!(eligible_holders(devices, me, Some(laptop), true), 3);
        assert_eq!(eligible_holders(devices, me, None, true), 4);
        assert_eq!(eligible_holders([], me, None, true), 0);
    }

    #[test]
    fn the_automatic_coding_follows_the_holders() {
        let auto = BackupSettings::default();
        let codings: Vec<(u16, u16)> = [0, 1, 2, 3, 4, 5, 6, 9, 10, 40]
            .into_iter()
            .map(|n| {
                let c = backup_plan(auto, n).coding;
                (c.data, c.parity)
            })
            .collect();
        assert_eq!(
            codings,
            [
                (1, 0),
                (1, 0),
                (1, 1),
                (1, 2),
                (2, 2),
                (2, 2),
                (3, 3),
                (3, 3),
                (4, 6),
                (4, 6)
            ]
        );
        assert!(backup_plan(auto, 0).warning.is_some());
        assert!(backup_plan(auto, 1).warning.is_some());
        assert_eq!(backup_plan(auto, 2).warning, None);
        assert_eq!(backup_plan(auto, 12).warning, None);
    }

    #[test]
    fn a_chosen_coding_is_kept_and_a_shortfall_is_said() {
        let chosen = BackupSettings {
            household: false,
            coding: Some(Coding { data: 4, parity: 2 }),
        };
        let plan = backup_plan(chosen, 3);
        assert_eq!(plan.coding, Coding { data: 4, parity: 2 });
        let warning = plan.warning.expect("too few holders");
        assert!(
            warning.contains("4+2 needs 6 holders but only 3"),
            "{warning}"
        );
        assert_eq!(backup_plan(chosen, 6).warning, None);
    }
}
