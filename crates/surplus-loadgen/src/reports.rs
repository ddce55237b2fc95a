//! Realistic status reports for simulated devices.
//!
//! Each device gets a profile (a desktop, a laptop, a headless server), fixed by its index so that
//! runs are repeatable, and a short sequence of reports that it cycles through: its user comes and
//! goes, its CPU load moves, its disk fills a little. Every report passes the hub's validation.

use surplus_protocol::{
    ComputeLimits, Consent, CpuReport, DiskReport, MemoryReport, PauseState, StatusReport,
    TimeWindow, UserActivity, VaultReport,
};

const GIB: u64 = 1 << 30;

/// SplitMix64: a small, good-enough generator so that no `rand` dependency is needed.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

#[derive(Debug, Clone, Copy)]
enum Profile {
    Desktop,
    Laptop,
    Server,
}

/// `count` reports for the device numbered `index`, to be sent in turn.
pub fn for_device(index: usize, count: usize) -> Vec<StatusReport> {
    let mut mix = Mix(index as u64);
    let profile = match mix.below(10) {
        0..=4 => Profile::Desktop,
        5..=7 => Profile::Laptop,
        _ => Profile::Server,
    };
    let (os, cores, memory_gib) = match profile {
        Profile::Desktop => (
            ["linux", "windows", "windows"][mix.below(3) as usize],
            [4, 8, 12, 16][mix.below(4) as usize],
            [8, 16, 32][mix.below(3) as usize],
        ),
        Profile::Laptop => (
            ["windows", "macos", "linux"][mix.below(3) as usize],
            [4, 8][mix.below(2) as usize],
            [8, 16][mix.below(2) as usize],
        ),
        Profile::Server => ("linux", [4, 8, 16][mix.below(3) as usize], 16),
    };
    let disk_total = [256, 512, 1024, 2048][mix.below(4) as usize] * GIB;
    let quota = [16, 32, 64, 128][mix.below(4) as usize] * GIB;
    let floor = 10 * GIB;
    let consent = Consent {
        storage: mix.below(10) < 8,
        compute: mix.below(10) < 6,
    };
    let utc_offset_minutes = [-300, -240, 0, 60, 120, 330, 540][mix.below(7) as usize];
    let limits = ComputeLimits {
        cores_percent: [25, 50, 50, 75][mix.below(4) as usize],
        idle_minutes: [5, 5, 10, 15][mix.below(4) as usize],
        busy_cpu_percent: 25,
        on_battery: false,
        window: (mix.below(5) == 0).then_some(TimeWindow {
            start_minute: 22 * 60,
            end_minute: 6 * 60,
        }),
    };
    let pause = if mix.below(20) == 0 {
        PauseState::Indefinitely
    } else {
        PauseState::Running
    };
    let used = if consent.storage {
        mix.below(quota / 4)
    } else {
        0
    };
    let mut disk_free = disk_total / 3 + mix.below(disk_total / 3);
    let mut idle_seconds = mix.below(3600);
    (0..count.max(1))
        .map(|step| {
            // The user is back every few reports on desktops and laptops.
            let user = match profile {
                Profile::Server => UserActivity::None,
                _ if step % 3 == 2 => {
                    idle_seconds = mix.below(20);
                    UserActivity::Idle { idle_seconds }
                }
                _ => {
                    idle_seconds += 30;
                    UserActivity::Idle { idle_seconds }
                }
            };
            disk_free = disk_free.saturating_sub(mix.below(64 << 20));
            StatusReport {
                agent_version: "0.1.0".to_owned(),
                os: os.to_owned(),
                arch: std::env::consts::ARCH.to_owned(),
                utc_offset_minutes,
                cpu: CpuReport {
                    cores,
                    busy_percent: (mix.below(6000) as f32) / 100.0,
                },
                memory: MemoryReport {
                    total_bytes: memory_gib * GIB,
                    available_bytes: memory_gib * GIB / 4 + mix.below(memory_gib * GIB / 2),
                },
                user,
                on_battery: match profile {
                    Profile::Laptop => Some(mix.below(4) == 0),
                    Profile::Desktop => Some(false),
                    Profile::Server => None,
                },
                disk: DiskReport {
                    total_bytes: disk_total,
                    free_bytes: disk_free,
                },
                vault: VaultReport {
                    quota_bytes: if consent.storage { quota } else { 0 },
                    used_bytes: used,
                    reserved_bytes: 0,
                    floor_bytes: floor,
                },
                consent,
                limits: limits.clone(),
                upload_bytes_per_second: None,
                pause,
                comfort: None,
            }
        })
        .collect()
}

/// A report of the device numbered `index` lending storage: consenting, running, with a 64 GiB
/// quota of which nothing is used yet.
pub fn lending_storage(index: usize) -> StatusReport {
    let mut report = for_device(index, 1).remove(0);
    report.consent.storage = true;
    report.pause = PauseState::Running;
    report.vault.quota_bytes = 64 * GIB;
    report.vault.used_bytes = 0;
    report.disk.free_bytes = report.disk.free_bytes.max(200 * GIB);
    report.disk.total_bytes = report.disk.total_bytes.max(report.disk.free_bytes);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_repeatable_and_valid() {
        for index in 0..200 {
            let reports = for_device(index, 4);
            assert_eq!(reports.len(), 4);
            assert_eq!(reports, for_device(index, 4));
            for report in reports {
                assert!((0.0..=100.0).contains(&report.cpu.busy_percent));
                assert!(report.limits.cores_percent <= 100);
                assert!(report.utc_offset_minutes.abs() <= 14 * 60);
                assert!(report.vault.used_bytes <= report.vault.quota_bytes);
                assert!(report.disk.free_bytes <= report.disk.total_bytes);
            }
        }
    }
}
