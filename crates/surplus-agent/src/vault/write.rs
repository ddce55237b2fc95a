//! Storing a blob (admitted under the quota and the floor before a byte is written, streamed
//! into a temporary file while hashed, checked, and moved into place durably) and deleting one.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{StoredBlob, TMP_DIR, Vault, VaultError, admit, check_hash, io_at};
use crate::atomic_file::sync_dir;

/// Blobs stream through a buffer of this size, so memory stays flat whatever their size.
const CHUNK: usize = 64 * 1024;

/// Distinguishes temporary files of concurrent writes in one process.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl Vault {
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

#[cfg(test)]
mod tests {
    use std::io;

    use super::super::testing::{KIB, blob, files_in, hash_of, open, put, roomy_disk};
    use super::*;
    use crate::disk::{DiskSpace, FixedGauge};
    use surplus_protocol::{FailureCode, VaultReport};

    use crate::vault::Refusal;

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
}
