//! The trash: blobs the hub no longer knows this device holds, kept a while and counted as
//! used, given back if the hub asks for one after all, deleted once their time is up.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use surplus_protocol::{BlobHash, is_blob_hash};

use super::{BLOBS_DIR, StoredBlob, TRASH_DIR, Vault, VaultError, io_at, scan_blobs};
use crate::atomic_file::sync_dir;

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

impl Vault {
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
    pub(super) fn untrash(&self, hash: &str) -> Result<(), VaultError> {
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
}

/// The blobs in the trash, with when each went in.
pub(super) fn scan_trash(
    trash: &Path,
) -> Result<Vec<(StoredBlob, std::time::SystemTime)>, VaultError> {
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

#[cfg(test)]
mod tests {
    use super::super::testing::{KIB, blob, hash_of, open, put, roomy_disk};
    use super::*;
    use crate::disk::FixedGauge;
    use crate::vault::held_bytes;

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
}
