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

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use surplus_protocol::{BlobHash, FailureCode, VaultReport, is_blob_hash};

use crate::atomic_file::sync_dir;
use crate::disk::{DiskGauge, DiskSpace, FilesystemGauge};
use crate::units::Size;

const BLOBS_DIR: &str = "blobs";
const TMP_DIR: &str = "tmp";
/// Blobs the hub no longer knows this device holds (see [`Vault::collect_garbage`]): kept a
/// while, counted as used, and taken back if the hub asks for one after all.
const TRASH_DIR: &str = "trash";
const RESERVE_FILE: &str = "reserve";

/// Blobs stream through a buffer of this size, so memory stays flat whatever their size.
const CHUNK: usize = 64 * 1024;

/// Distinguishes temporary files of concurrent writes in one process.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The two limits the user set on donated storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaultLimits {
    /// The most the vault may ever hold.
    pub quota_bytes: u64,
    /// The free space the vault never pushes the disk below.
    pub floor_bytes: u64,
}

/// Why a blob was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The blob would take the vault past its quota.
    Quota { size: u64, used: u64, quota: u64 },
    /// Writing the blob would push the disk's free space below the floor; `available` counts the
    /// reservation as free, since the vault releases it for the blob.
    Floor {
        size: u64,
        available: u64,
        floor: u64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Refusal::Quota { size, used, quota } => write!(
                f,
                "{size} bytes more would take the vault from {} past its quota of {}",
                Size(used),
                Size(quota)
            ),
            Refusal::Floor {
                size,
                available,
                floor,
            } => write!(
                f,
                "{size} bytes more would leave the disk below its free-space floor of {} \
                 ({} free to the vault)",
                Size(floor),
                Size(available)
            ),
        }
    }
}

/// How large the reservation should be: all the quota not yet used, but never more than the disk
/// can give without crossing the floor.
///
/// `disk_free` is measured with the current reservation already allocated, so the space the
/// reservation may occupy is `disk_free + current_reserve - floor`. When other programs push free
/// space below the floor this shrinks the reservation (down to nothing), and it grows back as they
/// free space again.
pub fn plan_reservation(
    quota: u64,
    used: u64,
    current_reserve: u64,
    disk_free: u64,
    floor: u64,
) -> u64 {
    let room_in_quota = quota.saturating_sub(used);
    // In u128 so that no sum of two u64 figures can overflow.
    let room_on_disk =
        (u128::from(disk_free) + u128::from(current_reserve)).saturating_sub(u128::from(floor));
    u64::try_from(room_on_disk).map_or(room_in_quota, |room| room.min(room_in_quota))
}

/// Whether a blob of `size` bytes may be stored: only if the vault stays within its quota and
/// writing it leaves at least `floor` bytes free, counting the reservation (which the vault
/// releases for the blob) as available. A disk already below its floor admits nothing, not even
/// an empty blob.
pub fn admit(
    size: u64,
    quota: u64,
    used: u64,
    reserve: u64,
    disk_free: u64,
    floor: u64,
) -> Result<(), Refusal> {
    if used.checked_add(size).is_none_or(|total| total > quota) {
        return Err(Refusal::Quota { size, used, quota });
    }
    // In u128 so that no sum of two u64 figures can overflow.
    let available = u128::from(disk_free) + u128::from(reserve);
    if available < u128::from(floor) + u128::from(size) {
        let available = u64::try_from(available).unwrap_or(u64::MAX);
        return Err(Refusal::Floor {
            size,
            available,
            floor,
        });
    }
    Ok(())
}

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

/// What [`Vault::collect_garbage`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    /// Blobs moved to the trash now, and their bytes.
    pub trashed: usize,
    pub trashed_bytes: u64,
    /// Blobs whose time in the trash ran out, deleted now, and their bytes.
    pub deleted: usize,
    pub deleted_bytes: u64,
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

    /// Stores a blob read from `data`, which must be exactly `expected_size` bytes hashing to
    /// `hash`.
    ///
    /// The blob is refused before a byte is written if it does not fit the quota or the floor
    /// ([`VaultError::QuotaExceeded`]); bytes that do not match the hash or the size are refused
    /// after streaming ([`VaultError::Corrupt`], [`VaultError::SizeMismatch`]). Either way nothing
    /// is left behind. Storing a blob that is already there is a no-op that reads nothing.
    pub fn put(
        &mut self,
        hash: &str,
        data: impl Read,
        expected_size: u64,
    ) -> Result<StoredBlob, VaultError> {
        check_hash(hash)?;
        let path = self.blob_path(hash);
        self.untrash(hash)?;
        if let Some(existing) = self.existing(hash, &path)? {
            tracing::debug!(hash, "blob already in the vault");
            return Ok(existing);
        }
        let disk = self.measure()?;
        admit(
            expected_size,
            self.limits.quota_bytes,
            self.used,
            self.reserved,
            disk.free_bytes,
            self.limits.floor_bytes,
        )
        .map_err(|refusal| VaultError::QuotaExceeded {
            hash: hash.to_owned(),
            refusal,
        })?;

        // If other programs pushed the disk below its floor since the last reconcile, give way
        // first, so that the write starts from a disk at or above the floor.
        self.replan(Some(disk))?;
        // Release the part of the reservation the blob will occupy before writing it, so that
        // the write never needs space the reservation is holding.
        let release = expected_size.min(self.reserved);
        self.resize_reserve(self.reserved - release)?;
        if let Err(error) = self.write_blob(hash, &path, data, expected_size) {
            if let Err(replan) = self.replan(None) {
                tracing::warn!(error = %replan, "cannot restore the vault's reservation");
            }
            return Err(error);
        }
        self.used += expected_size;
        if let Err(error) = self.replan(None) {
            tracing::warn!(%error, "blob stored, but the vault's reservation could not be re-planned");
        }
        tracing::debug!(hash, size = expected_size, "blob stored");
        Ok(StoredBlob {
            hash: hash.to_owned(),
            size: expected_size,
        })
    }

    /// The bytes of a blob, verified against its hash.
    pub fn get(&self, hash: &str) -> Result<Vec<u8>, VaultError> {
        let (mut file, path) = self.open_blob(hash)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_at(&path))?;
        let actual = blake3::hash(&bytes).to_hex().to_string();
        if actual != hash {
            return Err(corrupt(hash, actual));
        }
        Ok(bytes)
    }

    /// The blob's file, positioned at its start, after its whole content was verified against its
    /// hash; for streaming a large blob without holding it in memory.
    pub fn open_verified(&self, hash: &str) -> Result<File, VaultError> {
        let (mut file, path) = self.open_blob(hash)?;
        let mut hasher = blake3::Hasher::new();
        io::copy(&mut file, &mut hasher).map_err(io_at(&path))?;
        let actual = hasher.finalize().to_hex().to_string();
        if actual != hash {
            return Err(corrupt(hash, actual));
        }
        file.seek(SeekFrom::Start(0)).map_err(io_at(&path))?;
        Ok(file)
    }

    /// Up to `len` bytes of a blob from `offset` (fewer at its end, none past it). The whole blob
    /// is verified first: a range of a corrupt blob is never handed out.
    pub fn read_range(&self, hash: &str, offset: u64, len: u64) -> Result<Vec<u8>, VaultError> {
        let mut file = self.open_verified(hash)?;
        let path = self.blob_path(hash);
        file.seek(SeekFrom::Start(offset)).map_err(io_at(&path))?;
        let mut bytes = Vec::new();
        file.take(len)
            .read_to_end(&mut bytes)
            .map_err(io_at(&path))?;
        Ok(bytes)
    }

    /// Proves the vault holds a blob: the BLAKE3 (Bao) slice of its bytes in
    /// `offset..offset + length`, which anyone who knows the blob's hash can check.
    ///
    /// Making the slice reads the whole blob (its tree is not kept), and the blob is deliberately
    /// not verified first: the hub checks the slice against the hash, so an altered blob fails
    /// there. A range past the end yields the slice of the last chunk, as Bao defines.
    pub fn prove(&self, hash: &str, offset: u64, length: u64) -> Result<Vec<u8>, VaultError> {
        let (mut file, path) = self.open_blob(hash)?;
        let mut encoder = bao::encode::Encoder::new_outboard(io::Cursor::new(Vec::new()));
        io::copy(&mut file, &mut encoder).map_err(io_at(&path))?;
        encoder.finalize().map_err(io_at(&path))?;
        let outboard = encoder.into_inner().into_inner();
        file.seek(SeekFrom::Start(0)).map_err(io_at(&path))?;
        let mut extractor = bao::encode::SliceExtractor::new_outboard(
            file,
            io::Cursor::new(outboard),
            offset,
            length,
        );
        let mut slice = Vec::new();
        extractor.read_to_end(&mut slice).map_err(io_at(&path))?;
        Ok(slice)
    }

    /// Removes a blob and grows the reservation back by its size (quota and disk permitting).
    /// Returns the bytes freed; deleting a blob that is not there frees nothing and succeeds,
    /// since instructions may be delivered twice.
    pub fn delete(&mut self, hash: &str) -> Result<u64, VaultError> {
        check_hash(hash)?;
        let path = self.blob_path(hash);
        let size = match fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(source) => return Err(VaultError::Io { path, source }),
        };
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(source) => return Err(VaultError::Io { path, source }),
        }
        if let Some(parent) = path.parent() {
            sync_dir(parent).map_err(io_at(parent))?;
        }
        self.used = self.used.saturating_sub(size);
        if let Err(error) = self.replan(None) {
            tracing::warn!(%error, "blob deleted, but the vault's reservation could not be re-planned");
        }
        tracing::debug!(hash, size, "blob deleted");
        Ok(size)
    }

    /// Moves to the trash every blob held that is not in `keep`, the blobs the hub says this
    /// device holds for someone, and whose file was written before `written_before` (a blob
    /// stored since the hub made its list may be missing from it); and deletes what went into
    /// the trash before `expired_before`. A trashed blob still counts as used, and comes back if
    /// the hub asks for it ([`Vault::get`], [`Vault::put`]) before it expires: a hub restored from
    /// an older backup, or wrong, loses nothing at once.
    pub fn collect_garbage(
        &mut self,
        keep: &std::collections::HashSet<BlobHash>,
        written_before: std::time::SystemTime,
        expired_before: std::time::SystemTime,
    ) -> Result<Collected, VaultError> {
        let mut collected = Collected::default();
        let trash = self.dir.join(TRASH_DIR);
        for (blob, trashed_at) in scan_trash(&trash)? {
            if trashed_at >= expired_before {
                continue;
            }
            let path = trash.join(&blob.hash);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(VaultError::Io { path, source }),
            }
            self.used = self.used.saturating_sub(blob.size);
            collected.deleted += 1;
            collected.deleted_bytes += blob.size;
        }
        let blobs = self.dir.join(BLOBS_DIR);
        for blob in scan_blobs(&blobs)? {
            if keep.contains(&blob.hash) {
                continue;
            }
            let path = self.blob_path(&blob.hash);
            let written = fs::metadata(&path)
                .and_then(|meta| meta.modified())
                .map_err(io_at(&path))?;
            if written >= written_before {
                continue;
            }
            let to = trash.join(&blob.hash);
            fs::rename(&path, &to).map_err(io_at(&path))?;
            // The trash keeps a blob from the moment it went in.
            File::options()
                .write(true)
                .open(&to)
                .and_then(|file| file.set_modified(std::time::SystemTime::now()))
                .map_err(io_at(&to))?;
            collected.trashed += 1;
            collected.trashed_bytes += blob.size;
        }
        sync_dir(&trash).map_err(io_at(&trash))?;
        if collected.deleted > 0
            && let Err(error) = self.replan(None)
        {
            tracing::warn!(%error, "trash emptied, but the vault's reservation could not be re-planned");
        }
        Ok(collected)
    }

    /// Takes `hash` back out of the trash, if it is there. Its space was still counted.
    fn untrash(&self, hash: &str) -> Result<(), VaultError> {
        let trashed = self.dir.join(TRASH_DIR).join(hash);
        if !trashed.is_file() {
            return Ok(());
        }
        let path = self.blob_path(hash);
        let prefix = path.parent().unwrap_or(&self.dir);
        crate::private_fs::dir_all(prefix).map_err(io_at(prefix))?;
        match fs::rename(&trashed, &path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(VaultError::Io { path, source }),
        }
        sync_dir(prefix).map_err(io_at(prefix))?;
        tracing::info!(
            hash,
            "a blob the hub had let go of is wanted again; taken out of the trash"
        );
        Ok(())
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

    fn open_blob(&self, hash: &str) -> Result<(File, PathBuf), VaultError> {
        check_hash(hash)?;
        let path = self.blob_path(hash);
        self.untrash(hash)?;
        match File::open(&path) {
            Ok(file) => Ok((file, path)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Err(VaultError::NotFound {
                hash: hash.to_owned(),
            }),
            Err(source) => Err(VaultError::Io { path, source }),
        }
    }

    /// The blob already stored under `hash`, if it is there and intact. A copy that no longer
    /// matches its hash is removed, so that storing the blob again heals it.
    fn existing(&mut self, hash: &str, path: &Path) -> Result<Option<StoredBlob>, VaultError> {
        let size = match fs::metadata(path) {
            Ok(meta) => meta.len(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(VaultError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        match self.open_verified(hash) {
            Ok(_) => Ok(Some(StoredBlob {
                hash: hash.to_owned(),
                size,
            })),
            Err(VaultError::Corrupt { actual, .. }) => {
                tracing::warn!(hash, actual, "replacing a corrupt copy of a blob");
                fs::remove_file(path).map_err(io_at(path))?;
                self.used = self.used.saturating_sub(size);
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Streams `data` into a temporary file while hashing it, checks size and hash, and moves it
    /// into place durably. On any failure the temporary file is removed.
    fn write_blob(
        &self,
        hash: &str,
        path: &Path,
        data: impl Read,
        expected_size: u64,
    ) -> Result<(), VaultError> {
        let temp = self.dir.join(TMP_DIR).join(format!(
            "{hash}.{}.{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        let result = stream_into(&temp, hash, data, expected_size)
            .and_then(|()| move_into_place(&temp, path));
        if result.is_err() {
            // Best effort: the temporary file is useless now, and the real error is the one to
            // report. Leftovers are also removed on the next open.
            let _ = fs::remove_file(&temp);
        }
        result
    }

    fn measure(&mut self) -> Result<DiskSpace, VaultError> {
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
    fn replan(&mut self, disk: Option<DiskSpace>) -> Result<bool, VaultError> {
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
    fn resize_reserve(&mut self, target: u64) -> Result<(), VaultError> {
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

fn corrupt(hash: &str, actual: String) -> VaultError {
    tracing::warn!(hash, actual, "corrupt blob in the vault");
    VaultError::Corrupt {
        hash: hash.to_owned(),
        actual,
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

fn stream_into(
    temp: &Path,
    hash: &str,
    data: impl Read,
    expected_size: u64,
) -> Result<(), VaultError> {
    let mut file = crate::private_fs::new_file()
        .open(temp)
        .map_err(io_at(temp))?;
    let mut hasher = blake3::Hasher::new();
    // One byte more than expected is enough to tell that the data is too long.
    let mut limited = data.take(expected_size.saturating_add(1));
    let mut buffer = vec![0u8; CHUNK];
    let mut received: u64 = 0;
    loop {
        let count = match limited.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(VaultError::Source {
                    hash: hash.to_owned(),
                    source,
                });
            }
        };
        received += count as u64;
        if received > expected_size {
            return Err(VaultError::Oversized {
                hash: hash.to_owned(),
                expected: expected_size,
            });
        }
        hasher.update(&buffer[..count]);
        file.write_all(&buffer[..count]).map_err(io_at(temp))?;
    }
    if received != expected_size {
        return Err(VaultError::SizeMismatch {
            hash: hash.to_owned(),
            expected: expected_size,
            received,
        });
    }
    let actual = hasher.finalize().to_hex().to_string();
    if actual != hash {
        return Err(VaultError::Corrupt {
            hash: hash.to_owned(),
            actual,
        });
    }
    file.sync_all().map_err(io_at(temp))
}

/// Renames a fully written, synced temporary file to its final name and makes the rename durable.
fn move_into_place(temp: &Path, path: &Path) -> Result<(), VaultError> {
    let Some(prefix_dir) = path.parent() else {
        return Err(VaultError::Io {
            path: path.to_path_buf(),
            source: io::Error::other("a blob path has no directory"),
        });
    };
    if !prefix_dir.is_dir() {
        match fs::create_dir(prefix_dir) {
            Ok(()) => {
                if let Some(blobs) = prefix_dir.parent() {
                    sync_dir(blobs).map_err(io_at(blobs))?;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(VaultError::Io {
                    path: prefix_dir.to_path_buf(),
                    source,
                });
            }
        }
    }
    fs::rename(temp, path).map_err(io_at(path))?;
    sync_dir(prefix_dir).map_err(io_at(prefix_dir))
}

/// Every well-named blob file under `blobs`; anything else found there is left alone.
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

/// The blobs in the trash, with when each went in.
fn scan_trash(trash: &Path) -> Result<Vec<(StoredBlob, std::time::SystemTime)>, VaultError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(trash).map_err(io_at(trash))? {
        let entry = entry.map_err(io_at(trash))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = entry.metadata().map_err(io_at(&entry.path()))?;
        if meta.is_file() && is_blob_hash(&name) {
            let trashed_at = meta.modified().map_err(io_at(&entry.path()))?;
            found.push((
                StoredBlob {
                    hash: name,
                    size: meta.len(),
                },
                trashed_at,
            ));
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
mod tests {
    use super::*;
    use crate::disk::FixedGauge;
    use proptest::prelude::*;
    use proptest::test_runner::{Config as ProptestConfig, RngSeed};
    use std::sync::{Arc, Mutex};

    const KIB: u64 = 1024;

    fn hash_of(data: &[u8]) -> String {
        blake3::hash(data).to_hex().to_string()
    }

    /// Distinct blob contents of `size` bytes.
    fn blob(seed: u64, size: u64) -> Vec<u8> {
        (0..size)
            .map(|i| (i.wrapping_mul(31).wrapping_add(seed.wrapping_mul(7919)) % 251) as u8)
            .collect()
    }

    fn roomy_disk() -> DiskSpace {
        DiskSpace {
            total_bytes: 1 << 40,
            free_bytes: 1 << 39,
        }
    }

    fn open(dir: &Path, quota: u64, floor: u64, gauge: &FixedGauge) -> Vault {
        Vault::open_with_gauge(
            dir,
            VaultLimits {
                quota_bytes: quota,
                floor_bytes: floor,
            },
            Box::new(gauge.clone()),
        )
        .expect("open vault")
    }

    fn put(vault: &mut Vault, data: &[u8]) -> Result<StoredBlob, VaultError> {
        vault.put(&hash_of(data), data, data.len() as u64)
    }

    fn files_in(dir: &Path) -> usize {
        fs::read_dir(dir)
            .map(|entries| entries.count())
            .unwrap_or(0)
    }

    fn deterministic(cases: u32) -> ProptestConfig {
        ProptestConfig {
            cases,
            rng_seed: RngSeed::Fixed(0x5eed_cafe),
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    #[test]
    fn blobs_the_hub_does_not_know_go_to_the_trash_and_come_back_when_asked_for() {
        use std::time::{Duration, SystemTime};
        let dir = tempfile::tempdir().expect("tempdir");
        let gauge = FixedGauge::new(roomy_disk());
        let mut vault = open(dir.path(), 64 * KIB, KIB, &gauge);
        let (kept, orphan, wanted_later) = (blob(1, 3000), blob(2, 2000), blob(3, 1000));
        for data in [&kept, &orphan, &wanted_later] {
            put(&mut vault, data).expect("put");
        }
        let used = vault.used_bytes();
        let keep = std::collections::HashSet::from([hash_of(&kept)]);
        let now = SystemTime::now() + Duration::from_secs(1);
        let long_ago = now - Duration::from_secs(7 * 86_400);

        // Stored after the hub made its list: left alone, whatever the list says.
        let early = now - Duration::from_secs(3600);
        assert_eq!(
            vault
                .collect_garbage(&keep, early, long_ago)
                .expect("collect"),
            Collected::default()
        );

        let collected = vault
            .collect_garbage(&keep, now, long_ago)
            .expect("collect");
        assert_eq!((collected.trashed, collected.trashed_bytes), (2, 3000));
        assert!(!vault.contains(&hash_of(&orphan)));
        assert!(vault.contains(&hash_of(&kept)));
        assert_eq!(vault.used_bytes(), used, "the trash still takes its space");
        // The hub asks for one after all: it comes back, verified.
        assert_eq!(
            vault.get(&hash_of(&wanted_later)).expect("get"),
            wanted_later
        );
        drop(vault);
        let mut vault = open(dir.path(), 64 * KIB, KIB, &gauge);
        assert_eq!(vault.used_bytes(), used, "reopened, the trash is counted");

        // Once its time is up, the trash is emptied and the space given back.
        let later = SystemTime::now() + Duration::from_secs(60);
        let collected = vault.collect_garbage(&keep, now, later).expect("collect");
        assert_eq!((collected.deleted, collected.deleted_bytes), (1, 2000));
        assert_eq!(vault.used_bytes(), used - 2000);
        assert!(matches!(
            vault.get(&hash_of(&orphan)),
            Err(VaultError::NotFound { .. })
        ));
        assert_eq!(held_bytes(dir.path()).expect("held"), used - 2000);
    }

    #[test]
    fn put_get_delete_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gauge = FixedGauge::new(roomy_disk());
        let mut vault = open(&dir.path().join(".vault"), 64 * KIB, 0, &gauge);
        assert_eq!(vault.reserved_bytes(), 64 * KIB);

        let data = blob(1, 5000);
        let hash = hash_of(&data);
        let stored = put(&mut vault, &data).expect("put");
        assert_eq!(
            stored,
            StoredBlob {
                hash: hash.clone(),
                size: 5000
            }
        );
        assert!(vault.contains(&hash));
        assert_eq!(vault.get(&hash).expect("get"), data);
        assert_eq!(vault.used_bytes(), 5000);
        assert_eq!(vault.reserved_bytes(), 64 * KIB - 5000);
        assert_eq!(vault.list().expect("list"), vec![stored.clone()]);
        assert!(
            dir.path()
                .join(".vault/blobs")
                .join(&hash[..2])
                .join(&hash)
                .is_file()
        );
        assert_eq!(
            vault.report(),
            VaultReport {
                quota_bytes: 64 * KIB,
                used_bytes: 5000,
                reserved_bytes: 64 * KIB - 5000,
                floor_bytes: 0
            }
        );

        // Idempotent: the same blob again changes nothing and reads nothing.
        let mut untouched: &[u8] = &[];
        assert_eq!(
            vault.put(&hash, &mut untouched, 5000).expect("put again"),
            stored
        );
        assert_eq!(vault.used_bytes(), 5000);

        assert_eq!(vault.delete(&hash).expect("delete"), 5000);
        assert!(!vault.contains(&hash));
        assert_eq!(vault.used_bytes(), 0);
        assert_eq!(vault.reserved_bytes(), 64 * KIB);
        assert_eq!(vault.delete(&hash).expect("delete again"), 0);
        assert!(matches!(vault.get(&hash), Err(VaultError::NotFound { .. })));
    }

    #[test]
    fn ranges_and_proofs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gauge = FixedGauge::new(roomy_disk());
        let mut vault = open(dir.path(), 64 * KIB, 0, &gauge);
        let data = blob(2, 1000);
        let hash = hash_of(&data);
        put(&mut vault, &data).expect("put");

        assert_eq!(
            vault.read_range(&hash, 10, 20).expect("range"),
            data[10..30].to_vec()
        );
        assert_eq!(
            vault.read_range(&hash, 990, 100).expect("range"),
            data[990..].to_vec()
        );
        assert!(vault.read_range(&hash, 5000, 10).expect("range").is_empty());
        let mut file = vault.open_verified(&hash).expect("open");
        let mut all = Vec::new();
        file.read_to_end(&mut all).expect("read");
        assert_eq!(all, data);

        // Proofs over a blob of several BLAKE3 chunks (1 KiB each).
        let data = blob(4, 8000);
        let hash = hash_of(&data);
        put(&mut vault, &data).expect("put");
        let check = |slice: &[u8], offset: u64, length: u64| {
            let hash = bao::Hash::from_hex(&hash).expect("hash");
            let mut decoder = bao::decode::SliceDecoder::new(slice, &hash, offset, length);
            let mut out = Vec::new();
            decoder.read_to_end(&mut out).map(|_| out)
        };
        let slice = vault.prove(&hash, 100, 50).expect("prove");
        assert_eq!(check(&slice, 100, 50).expect("valid"), data[100..150]);
        let slice = vault.prove(&hash, 7900, 500).expect("prove");
        assert_eq!(check(&slice, 7900, 500).expect("valid"), data[7900..]);
        let slice = vault.prove(&hash, 4096, 1024).expect("prove");
        assert_eq!(check(&slice, 4096, 1024).expect("valid"), data[4096..5120]);
        assert!(
            check(&slice, 0, 1024).is_err(),
            "a slice proves only its own range"
        );
        assert!(matches!(
            vault.prove(&hash_of(b"absent"), 0, 1),
            Err(VaultError::NotFound { .. })
        ));
    }

    #[test]
    fn corruption_is_detected_on_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gauge = FixedGauge::new(roomy_disk());
        let mut vault = open(dir.path(), 64 * KIB, 0, &gauge);
        let data = blob(3, 4096);
        let hash = hash_of(&data);
        put(&mut vault, &data).expect("put");
        let honest_proof = vault.prove(&hash, 0, 4096).expect("prove");

        let path = dir.path().join("blobs").join(&hash[..2]).join(&hash);
        let mut bytes = fs::read(&path).expect("read");
        bytes[1234] ^= 0x01;
        fs::write(&path, &bytes).expect("write");

        let error = vault.get(&hash).expect_err("corrupt");
        assert!(matches!(error, VaultError::Corrupt { .. }), "{error}");
        assert_eq!(error.failure_code(), FailureCode::Corrupt);
        assert!(error.to_string().contains(&hash));
        assert!(matches!(
            vault.open_verified(&hash),
            Err(VaultError::Corrupt { .. })
        ));
        assert!(matches!(
            vault.read_range(&hash, 0, 10),
            Err(VaultError::Corrupt { .. })
        ));
        let tampered_proof = vault.prove(&hash, 0, 4096).expect("prove");
        assert_ne!(tampered_proof, honest_proof);
        let root = bao::Hash::from_hex(&hash).expect("hash");
        let mut decoder = bao::decode::SliceDecoder::new(&tampered_proof[..], &root, 0, 4096);
        assert!(
            decoder.read_to_end(&mut Vec::new()).is_err(),
            "a tampered slice fails"
        );

        // Storing it again replaces the corrupt copy.
        put(&mut vault, &data).expect("heal");
        assert_eq!(vault.get(&hash).expect("get"), data);
        assert_eq!(vault.used_bytes(), 4096);
    }

    #[test]
    fn bad_data_is_refused_without_leaving_anything_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gauge = FixedGauge::new(roomy_disk());
        let mut vault = open(dir.path(), 64 * KIB, 0, &gauge);
        let data = blob(4, 3000);
        let hash = hash_of(&data);
        let other = blob(5, 3000);

        let error = vault
            .put(&hash, other.as_slice(), 3000)
            .expect_err("mismatch");
        assert!(matches!(error, VaultError::Corrupt { .. }), "{error}");
        let error = vault.put(&hash, &data[..2000], 3000).expect_err("short");
        assert!(
            matches!(error, VaultError::SizeMismatch { received: 2000, .. }),
            "{error}"
        );
        let error = vault.put(&hash, data.as_slice(), 2000).expect_err("long");
        assert!(matches!(error, VaultError::Oversized { .. }), "{error}");
        assert_eq!(error.failure_code(), FailureCode::Corrupt);
        let error = vault
            .put("../../etc/passwd", data.as_slice(), 3000)
            .expect_err("bad name");
        assert!(matches!(error, VaultError::InvalidHash { .. }), "{error}");
        assert!(error.to_string().contains("../../etc/passwd"));

        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("connection reset"))
            }
        }
        let error = vault.put(&hash, Failing, 3000).expect_err("source");
        assert!(matches!(error, VaultError::Source { .. }), "{error}");
        assert_eq!(error.failure_code(), FailureCode::Io);

        assert_eq!(vault.used_bytes(), 0);
        assert_eq!(vault.reserved_bytes(), 64 * KIB);
        assert_eq!(files_in(&dir.path().join("tmp")), 0);
        assert_eq!(files_in(&dir.path().join("blobs")), 0);
        assert!(vault.list().expect("list").is_empty());
    }

    #[test]
    fn a_flood_of_puts_never_exceeds_the_quota() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gauge = FixedGauge::new(roomy_disk());
        let mut vault = open(dir.path(), 10 * KIB, 0, &gauge);
        let mut stored = 0;
        for seed in 0..25 {
            match put(&mut vault, &blob(seed, KIB)) {
                Ok(_) => stored += 1,
                Err(error) => {
                    assert!(matches!(
                        error,
                        VaultError::QuotaExceeded {
                            refusal: Refusal::Quota { .. },
                            ..
                        }
                    ));
                    assert_eq!(error.failure_code(), FailureCode::QuotaExceeded);
                }
            }
            assert!(vault.used_bytes() <= 10 * KIB);
            assert!(vault.reserved_bytes() <= 10 * KIB - vault.used_bytes());
        }
        assert_eq!(stored, 10);
        assert_eq!(vault.reserved_bytes(), 0);
    }

    #[test]
    fn the_floor_is_never_crossed() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 8 KiB above the floor: room for the reservation and nothing more.
        let gauge = FixedGauge::new(DiskSpace {
            total_bytes: 1 << 30,
            free_bytes: 108 * KIB,
        });
        let mut vault = open(dir.path(), 64 * KIB, 100 * KIB, &gauge);
        assert_eq!(vault.reserved_bytes(), 8 * KIB);
        // The reservation is now allocated, so the disk shows that much less free.
        gauge.set(DiskSpace {
            total_bytes: 1 << 30,
            free_bytes: 100 * KIB,
        });
        put(&mut vault, &blob(6, 8 * KIB)).expect("fits in the reservation");
        let error = put(&mut vault, &blob(7, 1)).expect_err("would cross the floor");
        assert!(
            matches!(
                error,
                VaultError::QuotaExceeded {
                    refusal: Refusal::Floor { .. },
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("floor"), "{error}");
    }

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

    /// What the world looks like to the vault's arithmetic: a disk shared with other programs.
    #[derive(Debug, Clone)]
    struct World {
        total: u64,
        others: u64,
        blobs: Vec<u64>,
        used: u64,
        reserve: u64,
        quota: u64,
        floor: u64,
    }

    impl World {
        fn free(&self) -> u64 {
            self.total
                .saturating_sub(self.others + self.used + self.reserve)
        }

        /// What the vault does after every change: re-plan, then allocate.
        fn replan(&mut self) {
            let target =
                plan_reservation(self.quota, self.used, self.reserve, self.free(), self.floor);
            assert!(
                target <= self.quota.saturating_sub(self.used),
                "reserve beyond quota"
            );
            if target > self.reserve {
                assert!(
                    self.free() >= target - self.reserve,
                    "reserving space the disk lacks"
                );
                assert!(
                    self.free() - (target - self.reserve) >= self.floor,
                    "reserve crosses floor"
                );
            }
            self.reserve = target;
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u64),
        Delete(usize),
        SetQuota(u64),
        SetFloor(u64),
        OthersWrite(u64),
        OthersFree(u64),
        Reconcile,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..400).prop_map(Op::Put),
            2 => any::<usize>().prop_map(Op::Delete),
            1 => (0u64..2000).prop_map(Op::SetQuota),
            1 => (0u64..2000).prop_map(Op::SetFloor),
            1 => (0u64..1500).prop_map(Op::OthersWrite),
            1 => (0u64..1500).prop_map(Op::OthersFree),
            1 => Just(Op::Reconcile),
        ]
    }

    proptest! {
        #![proptest_config(deterministic(512))]

        #[test]
        fn admit_is_exactly_quota_and_floor(
            size in any::<u64>(), quota in any::<u64>(), used in any::<u64>(),
            reserve in any::<u64>(), free in any::<u64>(), floor in any::<u64>(),
        ) {
            let fits_quota = u128::from(used) + u128::from(size) <= u128::from(quota);
            let fits_floor =
                u128::from(free) + u128::from(reserve) >= u128::from(floor) + u128::from(size);
            prop_assert_eq!(admit(size, quota, used, reserve, free, floor).is_ok(), fits_quota && fits_floor);
        }

        #[test]
        fn admit_small_numbers(
            size in 0u64..100, quota in 0u64..300, used in 0u64..300,
            reserve in 0u64..300, free in 0u64..300, floor in 0u64..300,
        ) {
            let admitted = admit(size, quota, used, reserve, free, floor).is_ok();
            prop_assert_eq!(admitted, used + size <= quota && free + reserve >= floor + size);
        }

        #[test]
        fn the_reservation_respects_quota_and_floor(
            quota in any::<u64>(), used in any::<u64>(), current in any::<u64>(),
            free in any::<u64>(), floor in any::<u64>(),
        ) {
            let target = plan_reservation(quota, used, current, free, floor);
            prop_assert!(target <= quota.saturating_sub(used));
            // After resizing from `current` to `target`, free space is free + current - target.
            let free_after = u128::from(free) + u128::from(current) - u128::from(target).min(u128::from(free) + u128::from(current));
            if target > 0 {
                prop_assert!(free_after >= u128::from(floor));
            }
            // It takes everything it may: either the whole unused quota or down to the floor.
            prop_assert!(target == quota.saturating_sub(used) || target == 0 || free_after == u128::from(floor));
        }

        #[test]
        fn no_sequence_of_events_breaks_the_promises(
            total in 1000u64..5000,
            quota in 0u64..2000,
            floor in 0u64..2000,
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let mut world = World { total, others: 0, blobs: Vec::new(), used: 0, reserve: 0, quota, floor };
            world.replan();
            for op in ops {
                match op {
                    Op::Put(size) => {
                        let free = world.free();
                        match admit(size, world.quota, world.used, world.reserve, free, world.floor) {
                            Ok(()) => {
                                world.replan();
                                world.reserve -= size.min(world.reserve);
                                prop_assert!(world.free() >= size, "no room to write");
                                world.used += size;
                                world.blobs.push(size);
                                prop_assert!(world.used <= world.quota, "quota exceeded");
                                prop_assert!(world.free() >= world.floor, "floor crossed");
                                world.replan();
                            }
                            Err(Refusal::Quota { .. }) => prop_assert!(world.used + size > world.quota),
                            Err(Refusal::Floor { .. }) => prop_assert!(free + world.reserve < world.floor + size),
                        }
                    }
                    Op::Delete(index) => {
                        if !world.blobs.is_empty() {
                            let size = world.blobs.swap_remove(index % world.blobs.len());
                            world.used -= size;
                            world.replan();
                        }
                    }
                    Op::SetQuota(quota) => {
                        world.quota = quota;
                        world.replan();
                    }
                    Op::SetFloor(floor) => {
                        world.floor = floor;
                        world.replan();
                    }
                    Op::OthersWrite(bytes) => world.others += bytes.min(world.free()),
                    Op::OthersFree(bytes) => world.others -= bytes.min(world.others),
                    Op::Reconcile => world.replan(),
                }
                prop_assert!(world.reserve <= world.quota.saturating_sub(world.used));
                prop_assert_eq!(world.used, world.blobs.iter().sum::<u64>());
            }
        }
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
