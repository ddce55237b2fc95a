//! Packs: chunks sealed in parallel batches into the open pack, a full pack erasure-coded into
//! shards for the store and recorded in a sealed index, and blobs read back from packs rebuilt
//! from their shards.

use std::collections::HashMap;
use std::io;

use super::{
    BackupError, BlobEntry, CACHED_PACKS, CHECKPOINT_PACKS, Location, MAX_BLOB, PACK_TARGET,
    PackEntry, Repository, Sealing,
};
use crate::erasure;
use crate::keys::{ChunkId, hex};
use crate::store::{ObjectKind, Store};
use crate::{Error, seal};

impl<S: Store> Repository<S> {
    pub(super) fn load_indexes(&mut self) -> Result<(), BackupError> {
        for name in self
            .store
            .list_objects(ObjectKind::Index)
            .map_err(BackupError::Store)?
        {
            let sealed = self
                .store
                .get_object(ObjectKind::Index, &name)
                .map_err(BackupError::Store)?;
            let plain = seal::open(&self.data, name.as_bytes(), &sealed, MAX_BLOB)?;
            let packs: Vec<PackEntry> =
                serde_json::from_slice(&plain).map_err(|e| Error::Malformed {
                    what: "index",
                    detail: e.to_string(),
                })?;
            for entry in packs {
                repository_index(&mut self.index, &entry);
                self.packs.insert(entry.id.clone(), entry);
            }
        }
        Ok(())
    }

    pub(super) fn has(&self, id: &ChunkId) -> bool {
        self.index.contains_key(id)
            || self.open_ids.contains(id)
            || self.pending_ids.contains(id)
            || self.sealing.as_ref().is_some_and(|s| s.ids.contains(id))
    }

    /// Adds a sealed blob to the open pack unless it is already there; whether it was added.
    pub(super) fn add_sealed(&mut self, id: ChunkId, sealed: Vec<u8>) -> Result<bool, BackupError> {
        if self.has(&id) {
            return Ok(false);
        }
        let offset = u32::try_from(self.open_pack.len()).unwrap_or(u32::MAX);
        let length = u32::try_from(sealed.len()).unwrap_or(u32::MAX);
        self.open_pack.extend_from_slice(&sealed);
        self.open_blobs.push(BlobEntry { id, offset, length });
        self.open_ids.insert(id);
        if self.open_pack.len() >= PACK_TARGET {
            self.flush_pack()?;
        }
        Ok(true)
    }

    /// Erasure-codes the open pack and hands its shards to the store.
    fn flush_pack(&mut self) -> Result<(), BackupError> {
        if self.open_blobs.is_empty() {
            return Ok(());
        }
        let id = blake3::hash(&self.open_pack).to_hex().to_string();
        let shards = erasure::encode(&self.open_pack, self.coding)?;
        // The buffer is kept for the next pack: its room was set aside once, so that it never
        // grows by doubling past its target, and is not allocated again for every pack.
        self.open_pack.clear();
        let hashes = shards
            .iter()
            .map(|s| hex(&erasure::shard_hash(s)))
            .collect();
        let bytes = shards.iter().map(|s| s.len() as u64).sum();
        self.store
            .put_shards(&id, shards)
            .map_err(BackupError::Store)?;
        self.progress.pack_stored(bytes);
        let entry = PackEntry {
            id: id.clone(),
            coding: self.coding,
            shards: hashes,
            blobs: std::mem::take(&mut self.open_blobs),
        };
        self.open_ids.clear();
        repository_index(&mut self.index, &entry);
        self.packs.insert(id, entry.clone());
        self.unwritten.push(entry);
        if self.unwritten.len() >= CHECKPOINT_PACKS {
            let entries = std::mem::take(&mut self.unwritten);
            self.write_index(&entries)?;
        }
        Ok(())
    }

    /// Flushes the open pack and records the new packs in a sealed index object.
    pub(super) fn commit(&mut self) -> Result<(), BackupError> {
        self.seal_pending()?;
        self.finish_sealing()?;
        self.flush_pack()?;
        if self.unwritten.is_empty() {
            return Ok(());
        }
        let entries = std::mem::take(&mut self.unwritten);
        self.write_index(&entries)?;
        Ok(())
    }

    /// Seals pack entries into one index object named by the hash of its content; returns the
    /// name. The store has kept every shard handed to it first: an index never names a pack
    /// that is not there.
    pub(super) fn write_index(&mut self, entries: &[PackEntry]) -> Result<String, BackupError> {
        self.store.flush().map_err(BackupError::Store)?;
        let json = serde_json::to_vec(entries).map_err(|e| Error::Malformed {
            what: "index",
            detail: e.to_string(),
        })?;
        let name = blake3::hash(&json).to_hex()[..32].to_owned();
        let sealed = seal::seal(&self.data, name.as_bytes(), &json);
        self.store
            .put_object(ObjectKind::Index, &name, &sealed)
            .map_err(BackupError::Store)?;
        Ok(name)
    }

    /// Sends the chunks waiting (from however many files) to be sealed on every core, while the
    /// caller reads on; the batch sent before is added to the open pack first, in order. Sealing,
    /// compression above all, is the costly part of a backup; small files share a batch, so they
    /// are sealed in parallel too.
    pub(super) fn seal_pending(&mut self) -> Result<(), BackupError> {
        use rayon::prelude::*;
        self.finish_sealing()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let ids = std::mem::take(&mut self.pending_ids);
        self.pending_bytes = 0;
        let data = self.data.clone();
        let (sealed, done) = std::sync::mpsc::sync_channel(1);
        rayon::spawn(move || {
            let batch: Vec<(ChunkId, Vec<u8>)> = pending
                .par_iter()
                .map(|(id, plaintext)| (*id, seal::seal(&data, &id.0, plaintext)))
                .collect();
            // The repository may have given up on this backup meanwhile.
            let _ = sealed.send(batch);
        });
        self.sealing = Some(Sealing { ids, done });
        Ok(())
    }

    /// Waits for the batch being sealed, if any, and adds it to the open pack.
    fn finish_sealing(&mut self) -> Result<(), BackupError> {
        let Some(sealing) = self.sealing.take() else {
            return Ok(());
        };
        let batch = sealing.done.recv().map_err(|_| {
            BackupError::Store(io::Error::other("sealing a batch of chunks stopped"))
        })?;
        for (id, sealed) in batch {
            self.add_sealed(id, sealed)?;
        }
        Ok(())
    }

    /// Reads and opens one blob.
    pub fn read_blob(&mut self, id: &ChunkId) -> Result<Vec<u8>, BackupError> {
        let sealed = self.sealed_blob(id)?;
        Ok(seal::open(&self.data, &id.0, &sealed, MAX_BLOB)?)
    }

    /// A blob's sealed bytes, from its pack (rebuilt from its shards, or cached).
    pub(super) fn sealed_blob(&mut self, id: &ChunkId) -> Result<Vec<u8>, BackupError> {
        let location = self
            .index
            .get(id)
            .cloned()
            .ok_or(BackupError::MissingChunk(*id))?;
        let position = match self
            .cached_packs
            .iter()
            .position(|(pack, _)| *pack == location.pack)
        {
            Some(position) => position,
            None => {
                let entry = self
                    .packs
                    .get(&location.pack)
                    .ok_or(BackupError::MissingChunk(*id))?;
                let expected: Vec<[u8; 32]> = entry
                    .shards
                    .iter()
                    .map(|h| {
                        blake3::Hash::from_hex(h)
                            .map(|h| *h.as_bytes())
                            .map_err(|_| Error::Malformed {
                                what: "index",
                                detail: "a bad shard hash".into(),
                            })
                    })
                    .collect::<Result<_, _>>()?;
                let (names, needed) = (entry.shards.clone(), usize::from(entry.coding.data));
                let shards = self
                    .store
                    .get_shards(&location.pack, &names, needed)
                    .map_err(BackupError::Store)?;
                let pack = erasure::rebuild(&expected, shards.iter().map(Vec::as_slice))?;
                if self.cached_packs.len() == CACHED_PACKS {
                    self.cached_packs.pop_front();
                }
                self.cached_packs.push_back((location.pack.clone(), pack));
                self.cached_packs.len() - 1
            }
        };
        let pack = &self.cached_packs[position].1;
        let sealed = pack
            .get(location.offset..location.offset + location.length)
            .ok_or_else(|| Error::Malformed {
                what: "pack",
                detail: "a blob past its end".into(),
            })?;
        Ok(sealed.to_vec())
    }

    /// The hashes of a pack's shards, in index order.
    pub fn shards_of(&self, pack: &str) -> Option<&[String]> {
        self.packs.get(pack).map(|entry| entry.shards.as_slice())
    }
}

fn repository_index(index: &mut HashMap<ChunkId, Location>, entry: &PackEntry) {
    for blob in &entry.blobs {
        index.insert(
            blob.id,
            Location {
                pack: entry.id.clone(),
                offset: blob.offset as usize,
                length: blob.length as usize,
            },
        );
    }
}
