//! The hidden vault of donated storage: the blobs other devices entrust to this one.
//!
//! Layout, inside a dot-directory (hidden on Linux by its name; on Windows and macOS also by the
//! file system's hidden flag):
//!
//! ```text
//! .vault/
//!   blobs/<first 2 hex>/<hash>   content-addressed blobs, named by the hex BLAKE3 of their bytes
//!   reserve                      space set aside for blobs still to come, really allocated
//!   tmp/                         blobs being received; emptied on open
//! ```
//!
//! Two promises shape it. The quota is a hard limit: no blob is admitted that would take the vault
//! past it. And the user's disk keeps its free-space floor: the vault never writes (or reserves)
//! past it, and when other programs fill the disk down to the floor, the reservation gives way.
//! Space is reserved up front, so that what the hub was told is spare stays available to the vault
//! while the disk fills with other things; a blob of `n` bytes first shrinks the reservation by
//! `n`, so storing it never needs more free space than the reservation already holds.
//!
//! The arithmetic behind both promises lives in two pure functions, [`plan_reservation`] and
//! [`admit`], which the vault calls for every decision and which are property-tested on their own.
//!
//! Every blob is verified against its name when it is written and whenever it is read, so a
//! flipped bit on the donor's disk is reported as [`VaultError::Corrupt`] rather than handed back.
//! Writes go through a temporary file, fsync, rename and a directory fsync, and the bytes used are
//! recomputed from the files on open, so a crash at any point loses nothing that was acknowledged.
//!
//! Its parts: `limits` (the two limits and the pure arithmetic of both promises), `write`
//! (storing and deleting blobs), `read` (reading them back, verified, and proofs of storage),
//! `reservation` (the reserve file kept to plan as the disk fills and empties) and `trash`
//! (blobs the hub no longer knows, kept a while).

mod limits;
mod read;
mod reservation;
mod trash;
mod write;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use surplus_protocol::{BlobHash, FailureCode, VaultReport, is_blob_hash};

use crate::atomic_file::sync_dir;
use crate::disk::{DiskGauge, DiskSpace, FilesystemGauge};
use crate::units::Size;

pub use limits::{Refusal, VaultLimits, admit, plan_reservation};
pub use trash::Collected;
use trash::scan_trash;

const BLOBS_DIR: &str = "blobs";
const TMP_DIR: &str = "tmp";
/// Blobs the hub no longer knows this device holds (see [`Vault::collect_garbage`]): kept a
/// while, counted as used, and taken back if the hub asks for one after all.
const TRASH_DIR: &str = "trash";
const RESERVE_FILE: &str = "reserve";

/// Why a vault operation failed. Every message names the blob or path involved.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{hash:?} is not a blob hash (64 lower-case hex characters)")]
    InvalidHash { hash: String },
    #[error("blob {hash} not admitted: {refusal}")]
    QuotaExceeded { hash: BlobHash, refusal: Refusal },
    #[error("blob {hash} is corrupt: its bytes hash to {actual}")]
    Corrupt { hash: BlobHash, actual: String },
    #[error("blob {hash} should be {expected} bytes but {received} arrived")]
    SizeMismatch {
        hash: BlobHash,
        expected: u64,
        received: u64,
    },
    #[error("blob {hash} should be {expected} bytes but more arrived")]
    Oversized { hash: BlobHash, expected: u64 },
    #[error("blob {hash} is not in the vault")]
    NotFound { hash: BlobHash },
    #[error("cannot read the data of blob {hash}: {source}")]
    Source { hash: BlobHash, source: io::Error },
    #[error("cannot measure the disk holding the vault {path}: {source}")]
    Disk { path: PathBuf, source: io::Error },
    #[error("vault I/O failed on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl VaultError {
    /// The code a device reports to the hub when an instruction fails with this error.
    pub fn failure_code(&self) -> FailureCode {
        match self {
            VaultError::QuotaExceeded { .. } => FailureCode::QuotaExceeded,
            VaultError::Corrupt { .. }
            | VaultError::SizeMismatch { .. }
            | VaultError::Oversized { .. } => FailureCode::Corrupt,
            VaultError::NotFound { .. } => FailureCode::NotFound,
            VaultError::InvalidHash { .. }
            | VaultError::Source { .. }
            | VaultError::Disk { .. }
            | VaultError::Io { .. } => FailureCode::Io,
        }
    }
}

/// Wraps an I/O error with the path it happened on.
fn io_at(path: &Path) -> impl FnOnce(io::Error) -> VaultError + '_ {
    move |source| VaultError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn check_hash(hash: &str) -> Result<(), VaultError> {
    if is_blob_hash(hash) {
        Ok(())
    } else {
        Err(VaultError::InvalidHash {
            hash: hash.to_owned(),
        })
    }
}

/// A blob held in the vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub hash: BlobHash,
    pub size: u64,
}

/// The hidden vault on this device's disk.
///
/// One process owns a vault at a time (the agent's worker); methods that change it take `&mut
/// self`.
pub struct Vault {
    dir: PathBuf,
    limits: VaultLimits,
    /// Bytes of blobs held, recomputed from the files on open.
    used: u64,
    /// Bytes allocated to the reserve file.
    reserved: u64,
    reserve: File,
    gauge: Box<dyn DiskGauge>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("dir", &self.dir)
            .field("limits", &self.limits)
            .field("used", &self.used)
            .field("reserved", &self.reserved)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Opens the vault in `dir`, creating it (hidden) if needed, and reserves its space.
    ///
    /// Opening reserves up to the unused quota at once, so only open a vault once the user has
    /// consented to donate storage.
    pub fn open(dir: &Path, limits: VaultLimits) -> Result<Vault, VaultError> {
        Vault::open_with_gauge(dir, limits, Box::new(FilesystemGauge))
    }

    /// Like [`Vault::open`], measuring the disk with `gauge` instead of the file system.
    pub fn open_with_gauge(
        dir: &Path,
        limits: VaultLimits,
        gauge: Box<dyn DiskGauge>,
    ) -> Result<Vault, VaultError> {
        let created = !dir.exists();
        crate::private_fs::dir_all(dir).map_err(io_at(dir))?;
        if created {
            hide(dir);
            if let Some(parent) = dir.parent() {
                sync_dir(parent).map_err(io_at(parent))?;
            }
        }
        let blobs = dir.join(BLOBS_DIR);
        crate::private_fs::dir_all(&blobs).map_err(io_at(&blobs))?;
        let tmp = dir.join(TMP_DIR);
        crate::private_fs::dir_all(&tmp).map_err(io_at(&tmp))?;
        clear_leftovers(&tmp)?;

        let trash = dir.join(TRASH_DIR);
        crate::private_fs::dir_all(&trash).map_err(io_at(&trash))?;
        // Trashed blobs still take their space until the trash is emptied.
        let used = scan_blobs(&blobs)?
            .iter()
            .map(|blob| blob.size)
            .sum::<u64>()
            + scan_trash(&trash)?
                .iter()
                .map(|(blob, _)| blob.size)
                .sum::<u64>();
        let reserve_path = dir.join(RESERVE_FILE);
        let reserve = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&reserve_path)
            .map_err(io_at(&reserve_path))?;
        let reserved = reserve.metadata().map_err(io_at(&reserve_path))?.len();

        let mut vault = Vault {
            dir: dir.to_path_buf(),
            limits,
            used,
            reserved,
            reserve,
            gauge,
        };
        if let Err(error) = vault.replan(None) {
            tracing::warn!(%error, "cannot plan the vault's reservation; will retry");
        }
        tracing::info!(
            dir = %vault.dir.display(),
            used = %Size(vault.used),
            reserved = %Size(vault.reserved),
            quota = %Size(limits.quota_bytes),
            floor = %Size(limits.floor_bytes),
            "vault open"
        );
        if vault.used > limits.quota_bytes {
            tracing::warn!(
                over = %Size(vault.over_quota_bytes()),
                "the vault holds more than its quota; those blobs should move elsewhere"
            );
        }
        Ok(vault)
    }

    /// The vault's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The limits in force.
    pub fn limits(&self) -> VaultLimits {
        self.limits
    }

    /// Bytes of blobs held.
    pub fn used_bytes(&self) -> u64 {
        self.used
    }

    /// Bytes set aside on disk for blobs still to come.
    pub fn reserved_bytes(&self) -> u64 {
        self.reserved
    }

    /// How many bytes of blobs must move elsewhere to get back within the quota (after the user
    /// lowered it); zero when within.
    pub fn over_quota_bytes(&self) -> u64 {
        self.used.saturating_sub(self.limits.quota_bytes)
    }

    /// The vault as the hub sees it.
    pub fn report(&self) -> VaultReport {
        VaultReport {
            quota_bytes: self.limits.quota_bytes,
            used_bytes: self.used,
            reserved_bytes: self.reserved,
            floor_bytes: self.limits.floor_bytes,
        }
    }

    /// `disk` as it would be without the vault: its blobs and reservation counted as free.
    ///
    /// Default quotas are a share of the free space; computing them from this rather than the raw
    /// figure keeps the quota from shrinking every time the vault itself grows.
    pub fn disk_without_vault(&self, disk: DiskSpace) -> DiskSpace {
        let free = disk
            .free_bytes
            .saturating_add(self.used)
            .saturating_add(self.reserved);
        DiskSpace {
            total_bytes: disk.total_bytes,
            free_bytes: free.min(disk.total_bytes),
        }
    }

    /// Whether the vault holds a blob named `hash` (not verified; see [`Vault::get`]).
    pub fn contains(&self, hash: &str) -> bool {
        is_blob_hash(hash) && self.blob_path(hash).is_file()
    }

    /// Every blob held, ordered by hash.
    pub fn list(&self) -> Result<Vec<StoredBlob>, VaultError> {
        let mut blobs = scan_blobs(&self.dir.join(BLOBS_DIR))?;
        blobs.sort_by(|a, b| a.hash.cmp(&b.hash));
        Ok(blobs)
    }

    fn blob_path(&self, hash: &str) -> PathBuf {
        self.dir.join(BLOBS_DIR).join(&hash[..2]).join(hash)
    }
}

/// Bytes of blobs held by the vault in `dir`, without opening it (opening reserves space); zero
/// when there is no vault there.
pub fn held_bytes(dir: &Path) -> Result<u64, VaultError> {
    let blobs = dir.join(BLOBS_DIR);
    if !blobs.exists() {
        return Ok(0);
    }
    let trash = dir.join(TRASH_DIR);
    let trashed: u64 = if trash.exists() {
        scan_trash(&trash)?.iter().map(|(blob, _)| blob.size).sum()
    } else {
        0
    };
    Ok(scan_blobs(&blobs)?
        .iter()
        .map(|blob| blob.size)
        .sum::<u64>()
        + trashed)
}

/// Every well-named blob file under `blobs`; anything else found there is left alone.
fn scan_blobs(blobs: &Path) -> Result<Vec<StoredBlob>, VaultError> {
    let mut found = Vec::new();
    for prefix in fs::read_dir(blobs).map_err(io_at(blobs))? {
        let prefix = prefix.map_err(io_at(blobs))?;
        let prefix_name = prefix.file_name().to_string_lossy().into_owned();
        let prefix_path = prefix.path();
        if !prefix_path.is_dir() {
            tracing::debug!(path = %prefix_path.display(), "ignoring a stray file in the vault");
            continue;
        }
        for entry in fs::read_dir(&prefix_path).map_err(io_at(&prefix_path))? {
            let entry = entry.map_err(io_at(&prefix_path))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata().map_err(io_at(&entry.path()))?;
            if meta.is_file() && is_blob_hash(&name) && name.starts_with(&prefix_name) {
                found.push(StoredBlob {
                    hash: name,
                    size: meta.len(),
                });
            } else {
                tracing::debug!(path = %entry.path().display(), "ignoring a stray file in the vault");
            }
        }
    }
    Ok(found)
}

/// Removes what interrupted writes left in `tmp`: none of it was acknowledged.
fn clear_leftovers(tmp: &Path) -> Result<(), VaultError> {
    for entry in fs::read_dir(tmp).map_err(io_at(tmp))? {
        let path = entry.map_err(io_at(tmp))?.path();
        tracing::debug!(path = %path.display(), "removing an interrupted write");
        let removed = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(io_at(&path))?;
    }
    Ok(())
}

/// Marks the vault hidden where a leading dot is not enough. Failure only makes it visible, so
/// it is logged, not fatal.
#[cfg(any(windows, target_os = "macos"))]
fn hide(dir: &Path) {
    #[cfg(windows)]
    let status = std::process::Command::new("attrib")
        .arg("+H")
        .arg(dir)
        .status();
    #[cfg(target_os = "macos")]
    let status = std::process::Command::new("chflags")
        .arg("hidden")
        .arg(dir)
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => tracing::warn!(dir = %dir.display(), %status, "cannot hide the vault"),
        Err(error) => tracing::warn!(dir = %dir.display(), %error, "cannot hide the vault"),
    }
}

/// On Linux and other Unixes the leading dot of the vault's name hides it.
#[cfg(not(any(windows, target_os = "macos")))]
fn hide(_dir: &Path) {}

#[cfg(test)]
mod testing;

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};

    use proptest::prelude::*;

    use super::testing::{KIB, blob, deterministic, files_in, hash_of, open, put, roomy_disk};
    use super::*;
    use crate::disk::FixedGauge;

    #[test]
    fn reopening_recomputes_used_from_the_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gauge = FixedGauge::new(roomy_disk());
        let mut vault = open(dir.path(), 64 * KIB, 0, &gauge);
        put(&mut vault, &blob(10, 3000)).expect("put");
        put(&mut vault, &blob(11, 2000)).expect("put");
        drop(vault);

        // A crash after a rename, before any bookkeeping: the blob counts.
        let late = blob(12, 1000);
        let late_hash = hash_of(&late);
        let prefix = dir.path().join("blobs").join(&late_hash[..2]);
        fs::create_dir_all(&prefix).expect("mkdir");
        fs::write(prefix.join(&late_hash), &late).expect("write");
        // A crash mid-write: the temporary file is discarded.
        fs::write(dir.path().join("tmp").join("partial.1.1"), b"half a blob").expect("write");
        // Stray files are not blobs.
        fs::write(dir.path().join("blobs").join("README"), b"not a blob").expect("write");

        let vault = open(dir.path(), 64 * KIB, 0, &gauge);
        assert_eq!(vault.used_bytes(), 6000);
        assert_eq!(vault.list().expect("list").len(), 3);
        assert_eq!(vault.reserved_bytes(), 64 * KIB - 6000);
        assert_eq!(files_in(&dir.path().join("tmp")), 0);
        assert_eq!(vault.get(&late_hash).expect("get"), late);
    }

    #[test]
    fn disk_without_vault_counts_the_vault_as_free() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gauge = FixedGauge::new(roomy_disk());
        let mut vault = open(dir.path(), 64 * KIB, 0, &gauge);
        put(&mut vault, &blob(13, 4 * KIB)).expect("put");
        let disk = DiskSpace {
            total_bytes: 1000 * KIB,
            free_bytes: 100 * KIB,
        };
        assert_eq!(vault.disk_without_vault(disk).free_bytes, 164 * KIB);
        let full = DiskSpace {
            total_bytes: 100 * KIB,
            free_bytes: 90 * KIB,
        };
        assert_eq!(vault.disk_without_vault(full).free_bytes, 100 * KIB);
    }

    #[test]
    fn the_real_vault_opens_on_the_real_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault_dir = dir.path().join(".vault");
        let mut vault = Vault::open(
            &vault_dir,
            VaultLimits {
                quota_bytes: 128 * KIB,
                floor_bytes: 0,
            },
        )
        .expect("open");
        assert!(vault_dir.is_dir());
        put(&mut vault, &blob(14, 100)).expect("put");
        assert_eq!(vault.reserved_bytes(), 128 * KIB - 100);
    }

    #[derive(Debug, Clone)]
    enum VaultOp {
        Put(u64, u64),
        Delete(usize),
        SetQuota(u64),
        /// Other programs change the disk's free space (before the vault's own files) to this.
        OthersLeave(u64),
    }

    fn vault_op() -> impl Strategy<Value = VaultOp> {
        prop_oneof![
            4 => (any::<u64>(), 0u64..3000).prop_map(|(seed, size)| VaultOp::Put(seed, size)),
            2 => any::<usize>().prop_map(VaultOp::Delete),
            1 => (0u64..12_000).prop_map(VaultOp::SetQuota),
            1 => (0u64..24_000).prop_map(VaultOp::OthersLeave),
        ]
    }

    /// A disk that reports what other programs leave free minus what the vault's own files take,
    /// as a real disk would, but at a test's scale.
    #[derive(Clone)]
    struct SimulatedDisk {
        dir: PathBuf,
        left_by_others: Arc<Mutex<u64>>,
    }

    impl SimulatedDisk {
        fn taken(path: &Path) -> u64 {
            let Ok(entries) = fs::read_dir(path) else {
                return 0;
            };
            entries
                .flatten()
                .map(|entry| match entry.metadata() {
                    Ok(meta) if meta.is_dir() => Self::taken(&entry.path()),
                    Ok(meta) => meta.len(),
                    Err(_) => 0,
                })
                .sum()
        }
    }

    impl DiskGauge for SimulatedDisk {
        fn measure(&mut self, _dir: &Path) -> io::Result<DiskSpace> {
            let left = *self.left_by_others.lock().expect("lock");
            Ok(DiskSpace {
                total_bytes: 1 << 30,
                free_bytes: left.saturating_sub(Self::taken(&self.dir)),
            })
        }
    }

    proptest! {
        #![proptest_config(deterministic(32))]

        #[test]
        fn the_real_vault_keeps_its_promises(ops in proptest::collection::vec(vault_op(), 1..30)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let floor = 2000;
            let mut disk = SimulatedDisk {
                dir: dir.path().to_path_buf(),
                left_by_others: Arc::new(Mutex::new(16_000)),
            };
            let mut vault = Vault::open_with_gauge(
                dir.path(),
                VaultLimits { quota_bytes: 8000, floor_bytes: floor },
                Box::new(disk.clone()),
            )
            .expect("open");
            let mut held: Vec<String> = Vec::new();
            for op in ops {
                match op {
                    VaultOp::Put(seed, size) => {
                        let data = blob(seed, size);
                        let hash = hash_of(&data);
                        let free = disk.measure(dir.path()).expect("measure").free_bytes;
                        let (used, quota) = (vault.used_bytes(), vault.limits().quota_bytes);
                        let already = held.contains(&hash);
                        let allowed =
                            already || admit(size, quota, used, vault.reserved_bytes(), free, floor).is_ok();
                        let result = put(&mut vault, &data);
                        prop_assert_eq!(result.is_ok(), allowed, "{:?}", result);
                        match result {
                            Ok(_) if !already => {
                                held.push(hash);
                                prop_assert!(vault.used_bytes() <= quota, "quota exceeded");
                                let free = disk.measure(dir.path()).expect("measure").free_bytes;
                                prop_assert!(free >= floor, "floor crossed: {} free", free);
                            }
                            Ok(_) => prop_assert_eq!(vault.used_bytes(), used),
                            Err(error) => {
                                prop_assert!(matches!(error, VaultError::QuotaExceeded { .. }), "{}", error);
                                prop_assert_eq!(vault.used_bytes(), used);
                            }
                        }
                    }
                    VaultOp::Delete(index) => {
                        if !held.is_empty() {
                            let hash = held.swap_remove(index % held.len());
                            prop_assert!(vault.delete(&hash).expect("delete") <= 3000);
                        }
                    }
                    VaultOp::SetQuota(quota) => {
                        vault.set_limits(VaultLimits { quota_bytes: quota, floor_bytes: floor }).expect("limits");
                    }
                    VaultOp::OthersLeave(left) => {
                        // Others can fill the free space, not the space the vault's files hold.
                        let taken = SimulatedDisk::taken(dir.path());
                        *disk.left_by_others.lock().expect("lock") = left.max(taken);
                        let measured = disk.measure(dir.path()).expect("measure");
                        vault.reconcile(measured).expect("reconcile");
                    }
                }
                let listed = vault.list().expect("list");
                prop_assert_eq!(vault.used_bytes(), listed.iter().map(|b| b.size).sum::<u64>());
                prop_assert_eq!(listed.len(), held.len());
                prop_assert!(vault.reserved_bytes() <= vault.limits().quota_bytes.saturating_sub(vault.used_bytes()));
                let reserve_len = fs::metadata(dir.path().join(RESERVE_FILE)).expect("reserve").len();
                prop_assert_eq!(reserve_len, vault.reserved_bytes());
                prop_assert_eq!(files_in(&dir.path().join(TMP_DIR)), 0);
                let free = disk.measure(dir.path()).expect("measure").free_bytes;
                prop_assert!(free >= floor || vault.reserved_bytes() == 0, "reserve holds {} below the floor", vault.reserved_bytes());
            }
        }
    }
}
