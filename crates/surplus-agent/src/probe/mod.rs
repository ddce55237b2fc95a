//! Measurements of the machine: how busy the CPU is, how much memory and disk are free, whether the
//! user is at the keyboard, whether it runs on battery.
//!
//! The hub decides what is spare from these samples, and the worker stops donated work the moment
//! they say the user needs the machine back, so a probe that cannot tell says so ([`UserActivity::
//! Unknown`], `on_battery: None`) instead of guessing in the direction that would donate.
//!
//! [`SystemProbe`] reads the real machine. [`FixedProbe`] returns whatever a test put in it.
//! [`OverrideProbe`] wraps either and lets an end-to-end test change a running agent's view of the
//! world through a JSON file named by `SURPLUS_PROBE_OVERRIDE` (its user comes back, its disk
//! fills), without touching the real machine.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use surplus_protocol::{MemoryReport, UserActivity};

use crate::disk::{DiskSpace, disk_space};

#[cfg(all(unix, not(target_os = "macos")))]
mod dbus;
#[cfg(all(unix, not(target_os = "macos")))]
mod full_screen;
mod idle;
mod overrides;
#[cfg(all(unix, not(target_os = "macos")))]
mod terminal;
#[cfg(all(unix, not(target_os = "macos")))]
mod wayland;
#[cfg(all(unix, not(target_os = "macos")))]
mod x11;

#[cfg(all(unix, not(target_os = "macos")))]
use full_screen::X11FullScreen;
#[cfg(all(unix, not(target_os = "macos")))]
use idle::DesktopIdle;
pub use idle::IdleSource;
#[cfg(all(unix, not(target_os = "macos")))]
pub use idle::Session;
pub use overrides::{OverrideFile, OverrideGauge, OverrideProbe, ProbeOverride};

/// The environment variable naming a JSON file whose fields override what the probe measured:
/// a test hook, honoured only by a build with the `test-hooks` feature.
#[cfg(feature = "test-hooks")]
pub const OVERRIDE_ENV: &str = "SURPLUS_PROBE_OVERRIDE";

/// The override file the environment names for the end-to-end tests; always `None` in a build
/// without the `test-hooks` feature, which never reads the variable.
pub fn override_path() -> Option<PathBuf> {
    #[cfg(feature = "test-hooks")]
    return std::env::var_os(OVERRIDE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    #[cfg(not(feature = "test-hooks"))]
    None
}

/// One measurement of the machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Logical cores.
    pub cores: u32,
    /// CPU used by other programs than this one (donated work runs here), as a percentage of all
    /// cores (0-100).
    pub busy_percent: f32,
    pub memory: MemoryReport,
    pub user: UserActivity,
    /// `Some(true)` when running on a discharging battery, `Some(false)` on mains power or without
    /// a battery, `None` when the power source cannot be read.
    pub on_battery: Option<bool>,
    /// The file system that holds the vault.
    pub disk: DiskSpace,
    /// What the user's comfort rules look at.
    pub comfort: Comfort,
}

/// What the user's comfort rules look at: things that make donated work unwelcome even while
/// nobody touches the keyboard. `None` where it cannot be read, which holds nothing: the rules
/// are a courtesy on top of the idle time, not a condition for donating.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Comfort {
    /// Whether the window with the focus covers the whole screen.
    pub full_screen: Option<bool>,
    /// The hottest CPU sensor, in degrees Celsius.
    pub cpu_celsius: Option<f32>,
}

impl Sample {
    /// A machine nobody uses, with plenty of everything: a starting point for tests, which then
    /// change the one thing they are about.
    pub fn idle_server() -> Sample {
        const GIB: u64 = 1024 * 1024 * 1024;
        Sample {
            cores: 4,
            busy_percent: 0.0,
            memory: MemoryReport {
                total_bytes: 8 * GIB,
                available_bytes: 6 * GIB,
            },
            user: UserActivity::None,
            on_battery: Some(false),
            disk: DiskSpace {
                total_bytes: 500 * GIB,
                free_bytes: 250 * GIB,
            },
            comfort: Comfort::default(),
        }
    }
}

/// Something that measures the machine.
///
/// `sample` takes `&mut self` because real measurements are deltas (CPU use since the last
/// sample) and keep connections open between samples (to the X server).
pub trait Probe: Send {
    /// Measures the machine now; `vault_dir` names the disk to report (its nearest existing
    /// ancestor when it does not exist yet). Never fails: what cannot be read is reported as
    /// unknown or, for the disk, as full.
    fn sample(&mut self, vault_dir: &Path) -> Sample;

    /// Only whether someone uses the machine: cheap enough to ask several times a second while
    /// donated work runs.
    fn user(&mut self) -> UserActivity {
        self.sample(Path::new(".")).user
    }

    /// Only the CPU use of programs other than donated work (0-100), as cheaply.
    fn busy(&mut self) -> f32 {
        self.sample(Path::new(".")).busy_percent
    }

    /// Where the latest reading of the user's activity came from, for `surplus status` and
    /// `surplus doctor`; `None` for probes that read no real session (tests).
    fn idle_source(&self) -> Option<IdleSource> {
        None
    }

    /// Only what the comfort rules look at, as cheaply.
    fn comfort(&mut self) -> Comfort {
        self.sample(Path::new(".")).comfort
    }
}

impl<P: Probe + ?Sized> Probe for Box<P> {
    fn sample(&mut self, vault_dir: &Path) -> Sample {
        (**self).sample(vault_dir)
    }

    fn user(&mut self) -> UserActivity {
        (**self).user()
    }

    fn busy(&mut self) -> f32 {
        (**self).busy()
    }

    fn idle_source(&self) -> Option<IdleSource> {
        (**self).idle_source()
    }

    fn comfort(&mut self) -> Comfort {
        (**self).comfort()
    }
}

/// The real machine.
pub struct SystemProbe {
    system: sysinfo::System,
    /// When the CPU counters were last read; CPU use is only meaningful over an interval.
    cpu_read_at: Instant,
    /// Whether `busy_percent` holds a real reading yet.
    has_cpu_reading: bool,
    busy_percent: f32,
    battery: Option<starship_battery::Manager>,
    /// Where the user's idle time comes from, chosen from the session the agent runs in.
    #[cfg(all(unix, not(target_os = "macos")))]
    idle: DesktopIdle,
    /// The source of the latest reading of the user's activity.
    idle_source: Option<IdleSource>,
    #[cfg(all(unix, not(target_os = "macos")))]
    full_screen: X11FullScreen,
    /// The temperature sensors, listed once.
    sensors: sysinfo::Components,
    /// Whether a disk measurement failure was already logged, so a broken mount does not flood
    /// the log every few seconds.
    disk_warned: bool,
}

impl SystemProbe {
    /// Prepares the probe. The first CPU reading starts now, so the first sample reports the CPU
    /// use since this call.
    pub fn new() -> SystemProbe {
        use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind};
        let refresh = RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing().with_cpu_usage())
            .with_memory(MemoryRefreshKind::nothing().with_ram());
        let system = sysinfo::System::new_with_specifics(refresh);
        let battery = match starship_battery::Manager::new() {
            Ok(manager) => Some(manager),
            Err(error) => {
                tracing::debug!(%error, "cannot read batteries; the power source is unknown");
                None
            }
        };
        SystemProbe {
            system,
            cpu_read_at: Instant::now(),
            has_cpu_reading: false,
            busy_percent: 0.0,
            battery,
            #[cfg(all(unix, not(target_os = "macos")))]
            idle: DesktopIdle::new(Session::from_env()),
            idle_source: None,
            #[cfg(all(unix, not(target_os = "macos")))]
            full_screen: X11FullScreen::default(),
            sensors: sysinfo::Components::new_with_refreshed_list(),
            disk_warned: false,
        }
    }

    /// Prepares the probe for a given desktop session rather than the one this process's
    /// environment names, as tests do to point it at a private compositor or D-Bus session.
    #[cfg(all(unix, not(target_os = "macos")))]
    pub fn for_session(session: Session) -> SystemProbe {
        let mut probe = SystemProbe::new();
        probe.idle = DesktopIdle::new(session);
        probe
    }

    /// CPU use since the previous reading. sysinfo needs at least
    /// [`sysinfo::MINIMUM_CPU_UPDATE_INTERVAL`] between readings to compute a meaningful value, so
    /// a sample taken sooner repeats the previous value (the first one waits out the interval).
    fn busy_percent(&mut self) -> f32 {
        let interval = sysinfo::MINIMUM_CPU_UPDATE_INTERVAL;
        let elapsed = self.cpu_read_at.elapsed();
        if elapsed < interval {
            if self.has_cpu_reading {
                return self.busy_percent;
            }
            std::thread::sleep(interval - elapsed);
        }
        self.system.refresh_cpu_usage();
        // Donated work runs in this process: what it uses is not "other programs".
        let own = sysinfo::get_current_pid().ok().and_then(|pid| {
            self.system.refresh_processes_specifics(
                sysinfo::ProcessesToUpdate::Some(&[pid]),
                false,
                sysinfo::ProcessRefreshKind::nothing().with_cpu(),
            );
            self.system.process(pid).map(sysinfo::Process::cpu_usage)
        });
        self.cpu_read_at = Instant::now();
        self.has_cpu_reading = true;
        let cores = self.cores().max(1) as f32;
        let others = self.system.global_cpu_usage() - own.unwrap_or(0.0) / cores;
        self.busy_percent = others.clamp(0.0, 100.0);
        self.busy_percent
    }

    fn cores(&self) -> u32 {
        let listed = self.system.cpus().len();
        let cores = if listed > 0 {
            listed
        } else {
            std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1)
        };
        u32::try_from(cores).unwrap_or(u32::MAX)
    }

    fn memory(&mut self) -> MemoryReport {
        self.system
            .refresh_memory_specifics(sysinfo::MemoryRefreshKind::nothing().with_ram());
        MemoryReport {
            total_bytes: self.system.total_memory(),
            available_bytes: self.system.available_memory(),
        }
    }

    /// Any system battery discharging means we run on battery; no battery, or none discharging,
    /// means mains power; anything unreadable means we cannot tell.
    fn on_battery(&self) -> Option<bool> {
        let manager = self.battery.as_ref()?;
        let batteries = match manager.batteries() {
            Ok(batteries) => batteries,
            Err(error) => {
                tracing::debug!(%error, "cannot list batteries");
                return None;
            }
        };
        let mut discharging = false;
        for battery in batteries {
            match battery {
                Ok(battery) => {
                    discharging |= battery.state() == starship_battery::State::Discharging;
                }
                Err(error) => {
                    tracing::debug!(%error, "cannot read a battery");
                    return None;
                }
            }
        }
        Some(discharging)
    }

    /// Whether someone is using the machine, decided from the session the agent runs in: on
    /// Linux and the BSDs by [`DesktopIdle`] (X11, Wayland through the compositor or the desktop's
    /// D-Bus services, a terminal login, or no session at all).
    ///
    /// On Windows and macOS the idle time comes from the system (through the `user-idle` crate:
    /// `GetLastInputInfo`, IOKit's `HIDIdleTime`); a failure to read it is `Unknown`.
    fn user_activity(&mut self) -> UserActivity {
        #[cfg(all(unix, not(target_os = "macos")))]
        let (activity, source) = self.idle.user_activity();
        #[cfg(any(windows, target_os = "macos"))]
        let (activity, source) = match user_idle::UserIdle::get_time() {
            Ok(idle) => (
                UserActivity::Idle {
                    idle_seconds: idle.as_seconds(),
                },
                IdleSource::System,
            ),
            Err(_) => (UserActivity::Unknown, IdleSource::NoneReadable),
        };
        #[cfg(not(any(windows, unix)))]
        let (activity, source) = (UserActivity::Unknown, IdleSource::NoneReadable);
        self.idle_source = Some(source);
        activity
    }

    /// Whether a full-screen window has the focus: read from the window manager on X11 (which
    /// includes the X clients of a Wayland session, such as most games); unknown elsewhere.
    fn full_screen(&mut self) -> Option<bool> {
        #[cfg(all(unix, not(target_os = "macos")))]
        {
            let set = |name: &str| std::env::var_os(name).is_some_and(|value| !value.is_empty());
            if set("DISPLAY") {
                return self.full_screen.full_screen();
            }
        }
        None
    }

    /// The hottest CPU sensor: the package or core temperatures that Linux's `coretemp` and
    /// `k10temp` drivers report (`Package id 0`, `Core 3`, `Tctl`), or any sensor named for the
    /// CPU.
    fn cpu_celsius(&mut self) -> Option<f32> {
        self.sensors.refresh(false);
        self.sensors
            .list()
            .iter()
            .filter(|sensor| is_cpu_sensor(sensor.label()))
            .filter_map(sysinfo::Component::temperature)
            .filter(|celsius| celsius.is_finite())
            .reduce(f32::max)
    }

    fn disk(&mut self, vault_dir: &Path) -> DiskSpace {
        match disk_space(vault_dir) {
            Ok(space) => {
                self.disk_warned = false;
                space
            }
            Err(error) => {
                if !self.disk_warned {
                    tracing::warn!(
                        path = %vault_dir.display(),
                        %error,
                        "cannot measure the disk holding the vault; reporting it as full"
                    );
                    self.disk_warned = true;
                }
                DiskSpace::default()
            }
        }
    }
}

impl Default for SystemProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl Probe for SystemProbe {
    fn sample(&mut self, vault_dir: &Path) -> Sample {
        Sample {
            busy_percent: self.busy_percent(),
            cores: self.cores(),
            memory: self.memory(),
            user: self.user_activity(),
            on_battery: self.on_battery(),
            disk: self.disk(vault_dir),
            comfort: self.comfort(),
        }
    }

    fn user(&mut self) -> UserActivity {
        self.user_activity()
    }

    fn busy(&mut self) -> f32 {
        self.busy_percent()
    }

    fn idle_source(&self) -> Option<IdleSource> {
        self.idle_source
    }

    fn comfort(&mut self) -> Comfort {
        Comfort {
            full_screen: self.full_screen(),
            cpu_celsius: self.cpu_celsius(),
        }
    }
}

/// Whether a temperature sensor's label names the CPU.
fn is_cpu_sensor(label: &str) -> bool {
    let label = label.to_ascii_lowercase();
    [
        "cpu",
        "package id",
        "core ",
        "tctl",
        "tdie",
        "coretemp",
        "k10temp",
        "soc_thermal",
    ]
    .iter()
    .any(|name| label.contains(name))
}

/// A probe that reports whatever was last put into it, for tests.
///
/// Clones share the same sample, so a test keeps one clone (or [`FixedProbe::handle`]) and hands
/// the other to the code under test.
#[derive(Clone)]
pub struct FixedProbe {
    sample: Arc<Mutex<Sample>>,
}

impl FixedProbe {
    pub fn new(sample: Sample) -> FixedProbe {
        FixedProbe {
            sample: Arc::new(Mutex::new(sample)),
        }
    }

    /// The shared sample, to change what later samples report.
    pub fn handle(&self) -> Arc<Mutex<Sample>> {
        Arc::clone(&self.sample)
    }

    /// Changes what later samples report.
    pub fn update(&self, change: impl FnOnce(&mut Sample)) {
        change(&mut self.sample.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

impl Probe for FixedProbe {
    fn sample(&mut self, _vault_dir: &Path) -> Sample {
        self.sample
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_probe_reports_plausible_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut probe = SystemProbe::new();
        let first = probe.sample(dir.path());
        let second = probe.sample(dir.path());
        for sample in [first, second] {
            assert!(sample.cores >= 1);
            assert!(
                (0.0..=100.0).contains(&sample.busy_percent),
                "{}",
                sample.busy_percent
            );
            assert!(sample.memory.total_bytes > 0);
            assert!(sample.memory.available_bytes <= sample.memory.total_bytes);
            assert!(sample.disk.total_bytes > 0);
        }
    }

    #[test]
    fn fixed_probe_reports_changes_made_through_its_handle() {
        let dir = Path::new("/nowhere");
        let mut probe = FixedProbe::new(Sample::idle_server());
        let handle = probe.handle();
        assert_eq!(probe.sample(dir), Sample::idle_server());
        handle.lock().expect("lock").busy_percent = 80.0;
        probe
            .clone()
            .update(|sample| sample.on_battery = Some(true));
        let sample = probe.sample(dir);
        assert_eq!(sample.busy_percent, 80.0);
        assert_eq!(sample.on_battery, Some(true));
    }
}
