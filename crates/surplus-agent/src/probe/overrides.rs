//! Test overrides of what the probe measured, read from a JSON file the end-to-end tests write.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use surplus_protocol::UserActivity;

use super::{Comfort, IdleSource, Probe, Sample, override_path};
use crate::disk::{DiskGauge, DiskSpace};

/// The fields an override file may set; each one present replaces the measured value.
///
/// ```json
/// {"user": {"session": "idle", "idle_seconds": 0}, "on_battery": true, "busy_percent": 90,
///  "disk_free_bytes": 123, "full_screen": true, "cpu_celsius": 85}
/// ```
///
/// Unknown fields make the file malformed, so that a misspelt field is reported rather than
/// silently doing nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeOverride {
    pub cores: Option<u32>,
    pub busy_percent: Option<f32>,
    pub user: Option<UserActivity>,
    pub on_battery: Option<bool>,
    pub memory_total_bytes: Option<u64>,
    pub memory_available_bytes: Option<u64>,
    pub disk_total_bytes: Option<u64>,
    pub disk_free_bytes: Option<u64>,
    pub full_screen: Option<bool>,
    pub cpu_celsius: Option<f32>,
}

impl ProbeOverride {
    /// Replaces the fields of `sample` this override sets.
    pub fn apply(&self, sample: &mut Sample) {
        if let Some(cores) = self.cores {
            sample.cores = cores;
        }
        if let Some(busy) = self.busy_percent {
            sample.busy_percent = busy.clamp(0.0, 100.0);
        }
        if let Some(user) = self.user {
            sample.user = user;
        }
        if let Some(on_battery) = self.on_battery {
            sample.on_battery = Some(on_battery);
        }
        if let Some(total) = self.memory_total_bytes {
            sample.memory.total_bytes = total;
        }
        if let Some(available) = self.memory_available_bytes {
            sample.memory.available_bytes = available;
        }
        self.apply_disk(&mut sample.disk);
        self.apply_comfort(&mut sample.comfort);
    }

    /// Replaces the comfort readings this override sets.
    pub fn apply_comfort(&self, comfort: &mut Comfort) {
        if let Some(full_screen) = self.full_screen {
            comfort.full_screen = Some(full_screen);
        }
        if let Some(celsius) = self.cpu_celsius {
            comfort.cpu_celsius = Some(celsius);
        }
    }

    /// Replaces the disk fields this override sets.
    pub fn apply_disk(&self, disk: &mut DiskSpace) {
        if let Some(total) = self.disk_total_bytes {
            disk.total_bytes = total;
        }
        if let Some(free) = self.disk_free_bytes {
            disk.free_bytes = free;
        }
    }
}

/// Reads the override file afresh on every call, so a test can change it while the agent runs.
#[derive(Debug, Clone, Default)]
pub struct OverrideFile {
    path: Option<PathBuf>,
    /// Whether the current malformed state was already logged (reset once the file reads well).
    warned: bool,
}

impl OverrideFile {
    /// The file named by `SURPLUS_PROBE_OVERRIDE` ([`override_path`]), if any.
    pub fn from_env() -> OverrideFile {
        OverrideFile::new(override_path())
    }

    /// The given file, or no overrides at all for `None`.
    pub fn new(path: Option<PathBuf>) -> OverrideFile {
        if let Some(path) = &path {
            tracing::info!(path = %path.display(), "probe overrides enabled");
        }
        OverrideFile {
            path,
            warned: false,
        }
    }

    /// The overrides now in force: `None` when no file is configured, the file does not exist, or
    /// it is malformed (which is logged once).
    pub fn read(&mut self) -> Option<ProbeOverride> {
        let path = self.path.as_ref()?;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return None,
            Err(error) => {
                if !self.warned {
                    tracing::warn!(path = %path.display(), %error, "cannot read the probe override file; ignoring it");
                    self.warned = true;
                }
                return None;
            }
        };
        match serde_json::from_str::<ProbeOverride>(&text) {
            Ok(overrides) => {
                self.warned = false;
                Some(overrides)
            }
            Err(error) => {
                if !self.warned {
                    tracing::warn!(path = %path.display(), %error, "malformed probe override file; ignoring it");
                    self.warned = true;
                }
                None
            }
        }
    }
}

/// A probe whose samples an override file can change; see [`ProbeOverride`].
pub struct OverrideProbe<P> {
    inner: P,
    file: OverrideFile,
}

impl<P: Probe> OverrideProbe<P> {
    /// Wraps `inner` with the overrides named by `SURPLUS_PROBE_OVERRIDE`, if any.
    pub fn from_env(inner: P) -> OverrideProbe<P> {
        OverrideProbe {
            inner,
            file: OverrideFile::from_env(),
        }
    }

    /// Wraps `inner` with overrides from `path` (none for `None`).
    pub fn new(inner: P, path: Option<PathBuf>) -> OverrideProbe<P> {
        OverrideProbe {
            inner,
            file: OverrideFile::new(path),
        }
    }
}

impl<P: Probe> Probe for OverrideProbe<P> {
    fn sample(&mut self, vault_dir: &Path) -> Sample {
        let mut sample = self.inner.sample(vault_dir);
        if let Some(overrides) = self.file.read() {
            overrides.apply(&mut sample);
        }
        sample
    }

    fn user(&mut self) -> UserActivity {
        match self.file.read().and_then(|overrides| overrides.user) {
            Some(user) => user,
            None => self.inner.user(),
        }
    }

    fn busy(&mut self) -> f32 {
        match self
            .file
            .read()
            .and_then(|overrides| overrides.busy_percent)
        {
            Some(busy) => busy.clamp(0.0, 100.0),
            None => self.inner.busy(),
        }
    }

    fn comfort(&mut self) -> Comfort {
        let mut comfort = self.inner.comfort();
        if let Some(overrides) = self.file.read() {
            overrides.apply_comfort(&mut comfort);
        }
        comfort
    }

    /// The measuring probe's source, even where the file overrides what it read: a test hook
    /// that changes the reading, not where readings come from.
    fn idle_source(&self) -> Option<IdleSource> {
        self.inner.idle_source()
    }
}

/// A disk gauge for the vault that honours the disk fields of the override file, so that an
/// end-to-end test which "fills the disk" is believed by the vault's admission checks too, not
/// only by the reports.
pub struct OverrideGauge<G> {
    inner: G,
    file: OverrideFile,
}

impl<G: DiskGauge> OverrideGauge<G> {
    /// Wraps `inner` with overrides from `path` (none for `None`): the worker's
    /// [`crate::worker::WorkerOptions::disk_overrides`].
    pub fn new(inner: G, path: Option<PathBuf>) -> OverrideGauge<G> {
        OverrideGauge {
            inner,
            file: OverrideFile::new(path),
        }
    }
}

impl<G: DiskGauge> DiskGauge for OverrideGauge<G> {
    fn measure(&mut self, dir: &Path) -> io::Result<DiskSpace> {
        let mut disk = self.inner.measure(dir)?;
        if let Some(overrides) = self.file.read() {
            overrides.apply_disk(&mut disk);
        }
        Ok(disk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::FixedProbe;

    #[test]
    fn override_file_replaces_only_the_fields_it_has() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("override.json");
        let fixed = FixedProbe::new(Sample::idle_server());
        let mut probe = OverrideProbe::new(fixed, Some(path.clone()));

        // No file yet: the measurement passes through.
        assert_eq!(probe.sample(dir.path()), Sample::idle_server());

        std::fs::write(
            &path,
            r#"{"user": {"session": "idle", "idle_seconds": 0}, "on_battery": true,
                "busy_percent": 90, "disk_free_bytes": 123, "full_screen": true}"#,
        )
        .expect("write");
        let sample = probe.sample(dir.path());
        assert_eq!(sample.user, UserActivity::Idle { idle_seconds: 0 });
        assert_eq!(sample.on_battery, Some(true));
        assert_eq!(sample.busy_percent, 90.0);
        assert_eq!(sample.disk.free_bytes, 123);
        assert_eq!(sample.comfort.full_screen, Some(true));
        assert_eq!(probe.comfort().full_screen, Some(true));
        assert_eq!(probe.comfort().cpu_celsius, None);
        assert_eq!(
            sample.disk.total_bytes,
            Sample::idle_server().disk.total_bytes
        );
        assert_eq!(sample.cores, 4);

        // Changed while running: the next sample sees it.
        std::fs::write(&path, r#"{"user": {"session": "unknown"}}"#).expect("write");
        let sample = probe.sample(dir.path());
        assert_eq!(sample.user, UserActivity::Unknown);
        assert_eq!(sample.on_battery, Some(false));
    }

    #[test]
    fn a_malformed_override_file_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("override.json");
        let mut probe =
            OverrideProbe::new(FixedProbe::new(Sample::idle_server()), Some(path.clone()));
        for bad in [
            "{not json",
            r#"{"busy_precent": 90}"#,
            r#"{"user": {"session": "asleep"}}"#,
        ] {
            std::fs::write(&path, bad).expect("write");
            assert_eq!(probe.sample(dir.path()), Sample::idle_server(), "{bad}");
            assert!(probe.file.warned);
        }
        std::fs::write(&path, r#"{"cores": 2}"#).expect("write");
        assert_eq!(probe.sample(dir.path()).cores, 2);
        assert!(!probe.file.warned);
    }

    #[test]
    fn override_gauge_changes_the_disk_the_vault_sees() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("override.json");
        let real = crate::disk::FilesystemGauge;
        let mut gauge = OverrideGauge::new(real, Some(path.clone()));
        let measured = gauge.measure(dir.path()).expect("measure");
        assert!(measured.total_bytes > 0);
        std::fs::write(&path, r#"{"disk_free_bytes": 5, "busy_percent": 10}"#).expect("write");
        let overridden = gauge.measure(dir.path()).expect("measure");
        assert_eq!(overridden.free_bytes, 5);
        assert_eq!(overridden.total_bytes, measured.total_bytes);
    }
}
