//! How big a disk is and how much of it is free: measured by the file system, or set by a test.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use surplus_protocol::DiskReport;

/// Size and free space of one file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DiskSpace {
    pub total_bytes: u64,
    /// Bytes an unprivileged program can still write (the root-only reserve of ext4 is not free
    /// to us).
    pub free_bytes: u64,
}

impl From<DiskSpace> for DiskReport {
    fn from(disk: DiskSpace) -> Self {
        DiskReport {
            total_bytes: disk.total_bytes,
            free_bytes: disk.free_bytes,
        }
    }
}

/// One mounted file system, as the machine lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: PathBuf,
    /// The device's name (`/dev/sda1`), or what the system calls the disk.
    pub name: String,
    /// `ext4`, `ntfs`, `tmpfs`...
    pub file_system: String,
    pub space: DiskSpace,
}

/// The file systems mounted on this machine now.
pub fn mounts() -> Vec<Mount> {
    sysinfo::Disks::new_with_refreshed_list()
        .iter()
        .map(|disk| Mount {
            mount_point: disk.mount_point().to_owned(),
            name: disk.name().to_string_lossy().into_owned(),
            file_system: disk.file_system().to_string_lossy().into_owned(),
            space: DiskSpace {
                total_bytes: disk.total_space(),
                free_bytes: disk.available_space(),
            },
        })
        .collect()
}

/// Measures the size and free space of the file system holding `path`, or of its nearest
/// existing ancestor (the vault directory does not exist before the user first consents).
pub fn disk_space(path: &Path) -> io::Result<DiskSpace> {
    let mut last_error = None;
    for candidate in path.ancestors() {
        let candidate = if candidate.as_os_str().is_empty() {
            Path::new(".")
        } else {
            candidate
        };
        match filesystem_space(candidate) {
            Ok(space) => return Ok(space),
            Err(error) if error.kind() == io::ErrorKind::NotFound => last_error = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::NotFound)))
}

#[cfg(unix)]
fn filesystem_space(path: &Path) -> io::Result<DiskSpace> {
    let stat = rustix::fs::statvfs(path)?;
    let block = if stat.f_frsize > 0 {
        stat.f_frsize
    } else {
        stat.f_bsize
    };
    Ok(DiskSpace {
        total_bytes: stat.f_blocks.saturating_mul(block),
        free_bytes: stat.f_bavail.saturating_mul(block),
    })
}

/// Without statvfs, the disk is the mounted volume with the longest mount point that contains the
/// path.
#[cfg(not(unix))]
fn filesystem_space(path: &Path) -> io::Result<DiskSpace> {
    let path = std::fs::canonicalize(path)?;
    let disks = sysinfo::Disks::new_with_refreshed_list();
    disks
        .list()
        .iter()
        .filter(|disk| path.starts_with(disk.mount_point()))
        .max_by_key(|disk| disk.mount_point().as_os_str().len())
        .map(|disk| DiskSpace {
            total_bytes: disk.total_space(),
            free_bytes: disk.available_space(),
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no mounted disk holds {}", path.display()),
            )
        })
}

/// Where the vault learns how full its disk is before admitting a blob or planning its
/// reservation. The real one asks the file system; tests and end-to-end runs substitute their
/// own (see [`crate::probe::OverrideGauge`]).
pub trait DiskGauge: Send {
    /// Size and free space of the file system holding `dir`.
    fn measure(&mut self, dir: &Path) -> io::Result<DiskSpace>;
}

/// The file system's own figures (statvfs).
#[derive(Debug, Clone, Copy, Default)]
pub struct FilesystemGauge;

impl DiskGauge for FilesystemGauge {
    fn measure(&mut self, dir: &Path) -> io::Result<DiskSpace> {
        disk_space(dir)
    }
}

/// A gauge reporting whatever it was last told, for tests. Clones share the figure.
#[derive(Debug, Clone)]
pub struct FixedGauge(Arc<Mutex<DiskSpace>>);

impl FixedGauge {
    pub fn new(disk: DiskSpace) -> FixedGauge {
        FixedGauge(Arc::new(Mutex::new(disk)))
    }

    /// Changes what later measurements report.
    pub fn set(&self, disk: DiskSpace) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = disk;
    }
}

impl DiskGauge for FixedGauge {
    fn measure(&mut self, _dir: &Path) -> io::Result<DiskSpace> {
        Ok(*self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_space_uses_the_nearest_existing_ancestor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let direct = disk_space(dir.path()).expect("measure");
        assert!(direct.total_bytes > 0);
        assert!(direct.free_bytes <= direct.total_bytes);
        let missing = dir.path().join("not").join("yet").join(".vault");
        let through_ancestor = disk_space(&missing).expect("measure");
        assert_eq!(through_ancestor.total_bytes, direct.total_bytes);
    }

    #[test]
    fn disk_space_converts_to_the_wire_report() {
        let report = DiskReport::from(DiskSpace {
            total_bytes: 10,
            free_bytes: 4,
        });
        assert_eq!(
            report,
            DiskReport {
                total_bytes: 10,
                free_bytes: 4
            }
        );
    }
}
