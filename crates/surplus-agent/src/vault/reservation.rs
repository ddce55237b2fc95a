//! The reservation: space set aside up front in the `reserve` file, really allocated, re-planned
//! after every change and given way when other programs fill the disk down to its floor.

use std::fs::File;
use std::io;
#[cfg(any(target_os = "linux", target_os = "android"))]
use std::io::{Seek, SeekFrom, Write};

use super::{RESERVE_FILE, Vault, VaultError, VaultLimits, io_at, plan_reservation};
use crate::disk::DiskSpace;
use crate::units::Size;

impl Vault {
    /// Changes the limits and re-plans the reservation.
    ///
    /// A quota below what is already held is allowed: nothing is deleted (the data belongs to
    /// others and must be moved first), new blobs are refused, and [`Vault::over_quota_bytes`]
    /// says how much should move away.
    pub fn set_limits(&mut self, limits: VaultLimits) -> Result<(), VaultError> {
        self.limits = limits;
        if self.used > limits.quota_bytes {
            tracing::warn!(
                quota = %Size(limits.quota_bytes),
                used = %Size(self.used),
                over = %Size(self.over_quota_bytes()),
                "vault quota lowered below what it holds; nothing is deleted, new blobs are refused"
            );
        }
        self.replan(None)?;
        Ok(())
    }

    /// Re-plans the reservation against `disk` (as a probe measured it). Returns whether the
    /// reservation shrank, which happens when other programs filled the disk down to the floor,
    /// so that the caller can tell the user and the hub.
    pub fn reconcile(&mut self, disk: DiskSpace) -> Result<bool, VaultError> {
        let before = self.reserved;
        let shrank = self.replan(Some(disk))?;
        if shrank {
            tracing::info!(
                from = %Size(before),
                to = %Size(self.reserved),
                free = %Size(disk.free_bytes),
                floor = %Size(self.limits.floor_bytes),
                "the disk is filling; the vault's reservation gave way"
            );
        }
        Ok(shrank)
    }

    pub(super) fn measure(&mut self) -> Result<DiskSpace, VaultError> {
        self.gauge
            .measure(&self.dir)
            .map_err(|source| VaultError::Disk {
                path: self.dir.clone(),
                source,
            })
    }

    /// Resizes the reservation to what [`plan_reservation`] says for `disk` (measured now when
    /// `None`). Returns whether it shrank.
    ///
    /// Failing to shrink is an error: the space is promised back to the user. Failing to grow is
    /// only logged: the reservation holds less than it could until the next re-plan, and nothing
    /// promised is broken.
    pub(super) fn replan(&mut self, disk: Option<DiskSpace>) -> Result<bool, VaultError> {
        let disk = match disk {
            Some(disk) => disk,
            None => self.measure()?,
        };
        let target = plan_reservation(
            self.limits.quota_bytes,
            self.used,
            self.reserved,
            disk.free_bytes,
            self.limits.floor_bytes,
        );
        let before = self.reserved;
        match self.resize_reserve(target) {
            Ok(()) => {}
            Err(error) if target > before => {
                tracing::warn!(
                    %error,
                    wanted = %Size(target),
                    holding = %Size(self.reserved),
                    "cannot grow the vault's reservation; will retry"
                );
            }
            Err(error) => return Err(error),
        }
        Ok(self.reserved < before)
    }

    /// Sets the reserve file to `target` bytes of really allocated space.
    pub(super) fn resize_reserve(&mut self, target: u64) -> Result<(), VaultError> {
        let path = self.dir.join(RESERVE_FILE);
        if target == self.reserved {
            return Ok(());
        }
        if target < self.reserved {
            self.reserve.set_len(target).map_err(io_at(&path))?;
            self.reserved = target;
            return Ok(());
        }
        let result = allocate(&mut self.reserve, self.reserved, target);
        // A failed allocation may have grown the file part way; believe the file.
        self.reserved = self
            .reserve
            .metadata()
            .map(|meta| meta.len())
            .unwrap_or(self.reserved);
        result.map_err(io_at(&path))
    }
}

/// Grows `file` from `from` to `to` bytes with blocks really allocated, so that the space is
/// ours whatever else fills the disk. File systems without `fallocate` get zeros written.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn allocate(file: &mut File, from: u64, to: u64) -> io::Result<()> {
    use rustix::fs::FallocateFlags;
    use rustix::io::Errno;
    match rustix::fs::fallocate(&*file, FallocateFlags::empty(), from, to - from) {
        Ok(()) => Ok(()),
        Err(errno) if errno == Errno::OPNOTSUPP || errno == Errno::NOSYS => {
            write_zeros(file, from, to)
        }
        Err(errno) => Err(errno.into()),
    }
}

/// Grows `file` to `to` bytes. Windows allocates the clusters when a file is extended; other
/// systems may keep the file sparse.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn allocate(file: &mut File, _from: u64, to: u64) -> io::Result<()> {
    file.set_len(to)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn write_zeros(file: &mut File, from: u64, to: u64) -> io::Result<()> {
    let zeros = vec![0u8; 1024 * 1024];
    file.seek(SeekFrom::Start(from))?;
    let mut remaining = to - from;
    while remaining > 0 {
        let count = usize::try_from(remaining).map_or(zeros.len(), |r| r.min(zeros.len()));
        file.write_all(&zeros[..count])?;
        remaining -= count as u64;
    }
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::testing::{KIB, blob, open, put, roomy_disk};
    use super::*;
    use crate::disk::FixedGauge;
    use crate::vault::Refusal;

    #[test]
    fn the_reservation_gives_way_to_a_filling_disk_and_comes_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gauge = FixedGauge::new(DiskSpace {
            total_bytes: 1 << 30,
            free_bytes: 1 << 29,
        });
        let mut vault = open(dir.path(), 256 * KIB, 100 * KIB, &gauge);
        assert_eq!(vault.reserved_bytes(), 256 * KIB);
        let reserve = dir.path().join(RESERVE_FILE);
        assert_eq!(fs::metadata(&reserve).expect("reserve").len(), 256 * KIB);
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::MetadataExt;
            let allocated = fs::metadata(&reserve).expect("reserve").blocks() * 512;
            assert!(allocated >= 256 * KIB, "only {allocated} bytes allocated");
        }

        // Other programs fill the disk to 40 KiB above the floor.
        let filled = DiskSpace {
            total_bytes: 1 << 30,
            free_bytes: 40 * KIB,
        };
        gauge.set(filled);
        // Still above the floor: the reservation stays (that is what it is for).
        assert!(
            !vault
                .reconcile(DiskSpace {
                    free_bytes: 140 * KIB,
                    ..filled
                })
                .expect("reconcile")
        );
        assert_eq!(vault.reserved_bytes(), 256 * KIB);
        // Below the floor: it shrinks just enough to put the disk back at the floor.
        assert!(
            vault
                .reconcile(DiskSpace {
                    free_bytes: 60 * KIB,
                    ..filled
                })
                .expect("reconcile")
        );
        assert_eq!(vault.reserved_bytes(), 216 * KIB);
        assert_eq!(fs::metadata(&reserve).expect("reserve").len(), 216 * KIB);
        // Space comes back: so does the reservation, up to the unused quota.
        assert!(
            !vault
                .reconcile(DiskSpace {
                    free_bytes: 1 << 29,
                    ..filled
                })
                .expect("reconcile")
        );
        assert_eq!(vault.reserved_bytes(), 256 * KIB);
        // The disk fills completely: the reservation releases what puts it back at the floor
        // and keeps the rest, which still admits blobs up to that size and no larger.
        let full = DiskSpace {
            free_bytes: 0,
            ..filled
        };
        assert!(vault.reconcile(full).expect("reconcile"));
        assert_eq!(vault.reserved_bytes(), 156 * KIB);
        gauge.set(DiskSpace {
            free_bytes: 100 * KIB,
            ..filled
        });
        let error = put(&mut vault, &blob(8, 156 * KIB + 1)).expect_err("past the floor");
        assert!(matches!(
            error,
            VaultError::QuotaExceeded {
                refusal: Refusal::Floor { .. },
                ..
            }
        ));
        put(&mut vault, &blob(8, 156 * KIB)).expect("within the reservation");
        assert_eq!(vault.reserved_bytes(), 0);
        // Nothing is left above the floor.
        assert!(put(&mut vault, &blob(9, 1)).is_err());
    }

    #[test]
    fn lowering_the_quota_keeps_data_and_reports_the_excess() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gauge = FixedGauge::new(roomy_disk());
        let mut vault = open(dir.path(), 64 * KIB, 0, &gauge);
        for seed in 0..4 {
            put(&mut vault, &blob(seed, 4 * KIB)).expect("put");
        }
        vault
            .set_limits(VaultLimits {
                quota_bytes: 10 * KIB,
                floor_bytes: 0,
            })
            .expect("limits");
        assert_eq!(vault.used_bytes(), 16 * KIB);
        assert_eq!(vault.list().expect("list").len(), 4);
        assert_eq!(vault.over_quota_bytes(), 6 * KIB);
        assert_eq!(vault.reserved_bytes(), 0);
        assert!(put(&mut vault, &blob(9, 1)).is_err());
        vault
            .set_limits(VaultLimits {
                quota_bytes: 20 * KIB,
                floor_bytes: 0,
            })
            .expect("limits");
        assert_eq!(vault.over_quota_bytes(), 0);
        assert_eq!(vault.reserved_bytes(), 4 * KIB);
    }
}
