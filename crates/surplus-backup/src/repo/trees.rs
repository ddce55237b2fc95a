//! Sealed trees: written as blobs of the open pack, read back through an optional cache of
//! their ciphertext on this device.

use std::path::PathBuf;

use super::{BackupError, MAX_BLOB, Repository};
use crate::keys::{ChunkId, hex};
use crate::store::Store;
use crate::tree::Tree;
use crate::{Error, seal};

impl<S: Store> Repository<S> {
    /// Keeps sealed trees in `dir` on this device, so that listing snapshots, browsing them and
    /// comparing a backup with the last one need no holder online. The trees stay sealed: the
    /// cache holds ciphertext only, and losing it costs only fetching them again.
    pub fn set_tree_cache(&mut self, dir: PathBuf) {
        self.tree_cache = Some(dir);
    }

    fn cached_tree(&self, id: &ChunkId) -> Option<Vec<u8>> {
        let dir = self.tree_cache.as_ref()?;
        std::fs::read(dir.join(hex(&id.0))).ok()
    }

    /// Best effort: a tree that cannot be cached is fetched again when needed.
    fn cache_tree(&self, id: &ChunkId, sealed: &[u8]) {
        let Some(dir) = &self.tree_cache else { return };
        let path = dir.join(hex(&id.0));
        let temp = dir.join(format!(".{}.tmp", hex(&id.0)));
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&temp, sealed))
            .and_then(|()| std::fs::rename(&temp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
    }

    /// Adds a blob unless the repository has it already. Returns its id and whether it was new.
    pub(super) fn add_blob(&mut self, plaintext: &[u8]) -> Result<(ChunkId, bool), BackupError> {
        let id = self.ids.id(plaintext);
        if self.has(&id) {
            return Ok((id, false));
        }
        let sealed = seal::seal(&self.data, &id.0, plaintext);
        self.cache_tree(&id, &sealed);
        Ok((id, self.add_sealed(id, sealed)?))
    }

    pub(super) fn read_tree(&mut self, id: &ChunkId) -> Result<Tree, BackupError> {
        // A cached tree that does not open (damaged on disk) is fetched again.
        let cached = self
            .cached_tree(id)
            .and_then(|sealed| seal::open(&self.data, &id.0, &sealed, MAX_BLOB).ok());
        let bytes = match cached {
            Some(bytes) => bytes,
            None => {
                let sealed = self.sealed_blob(id)?;
                let bytes = seal::open(&self.data, &id.0, &sealed, MAX_BLOB)?;
                self.cache_tree(id, &sealed);
                bytes
            }
        };
        Ok(
            serde_json::from_slice(&bytes).map_err(|e| Error::Malformed {
                what: "tree",
                detail: e.to_string(),
            })?,
        )
    }
}
