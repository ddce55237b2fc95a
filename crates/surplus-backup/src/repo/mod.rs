//! The repository: backing folders up into a [`Store`] and restoring them from it.
//!
//! Backing up walks each folder, cuts every file into chunks, and adds each chunk not already in
//! the repository to the open pack; a full pack is erasure-coded into shards and handed to the
//! store. A file whose size, times and inode match the previous snapshot is not read again: its
//! chunk list is reused. Trees and the snapshot itself are sealed too, so the store sees only
//! ciphertext, sizes and hashes. Restoring rebuilds each pack from any `data` of its shards whose
//! hashes match, opens the chunks, and writes files atomically with their permissions and times.
//!
//! Both survive an interruption. A backup records its packs in an index every few packs, so the
//! next run finds what was stored and does not store it again. A restore leaves whole files only
//! (each appears under its name once complete), and the next run skips files already in place.
//!
//! The parts, each an `impl Repository` of its own: `packs` (the open pack, sealing in
//! batches, shards to the store, indexes, and blobs read back from rebuilt packs), `trees`
//! (sealed trees and their cache on this device), `backup`, `snapshots` (listing and browsing
//! them), `restore`, `forget` (forgetting snapshots and pruning the packs only they needed),
//! and `platform` (what differs between Unix and other systems).

mod backup;
mod forget;
mod packs;
mod platform;
mod restore;
mod snapshots;
mod trees;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::chunker::MAX_SIZE;
use crate::erasure::Coding;
use crate::keys::{ChunkId, ChunkIdKey, DataKey, MasterKey};
use crate::seal;
use crate::store::Store;

pub use backup::{BackupReport, scan_totals};
pub use restore::{Existing, RestoreReport};

/// Packs are cut when they reach this size.
pub const PACK_TARGET: usize = 16 << 20;
/// A pack's buffer: its target and the largest sealed chunk that may cross it.
const PACK_ROOM: usize = PACK_TARGET + MAX_SIZE as usize + seal::OVERHEAD;
/// Chunks are sealed in parallel batches of about this many bytes, one batch on the thread pool
/// while the next is read.
const BATCH_BYTES: usize = 4 << 20;
/// Files up to this size are read whole and cut in memory; larger ones are streamed. Together
/// with the batches and the open pack, this bounds a backup's memory whatever the tree.
const WHOLE_FILE_LIMIT: u64 = 8 << 20;
/// Packs kept rebuilt in memory while restoring (trees and data interleave).
const CACHED_PACKS: usize = 3;
/// The largest plaintext a blob (a chunk or a tree) may open to.
const MAX_BLOB: usize = 256 << 20;
/// A backup records its packs in an index every this many packs, so that an interrupted backup
/// loses at most this much work.
pub const CHECKPOINT_PACKS: usize = 4;

/// What a backup or a restore tells as it goes. Every method has a default that ignores it.
pub trait Progress: Send + Sync {
    /// Bytes of file content read (or recognised unchanged), or written by a restore.
    fn bytes(&self, _bytes: u64) {}
    /// One file done.
    fn file(&self) {}
    /// One pack stored, of `bytes` bytes in all shards.
    fn pack_stored(&self, _bytes: u64) {}
}

/// Ignores all progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("the store: {0}")]
    Store(#[source] io::Error),
    #[error(transparent)]
    Data(#[from] Error),
    #[error("chunk {0} is in no pack this repository knows")]
    MissingChunk(ChunkId),
    #[error("no snapshot {0}")]
    NoSuchSnapshot(String),
    #[error("{0} is not in the snapshot")]
    NoSuchPath(String),
    #[error(
        "the snapshot names an entry {0:?}, which is not a plain file name; nothing is restored outside the target"
    )]
    UnsafeName(String),
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where a pack's blobs are, and the hashes of its shards.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackEntry {
    pub id: String,
    pub coding: Coding,
    pub shards: Vec<String>,
    pub blobs: Vec<BlobEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobEntry {
    pub id: ChunkId,
    pub offset: u32,
    pub length: u32,
}

#[derive(Debug, Clone)]
struct Location {
    pack: String,
    offset: usize,
    length: usize,
}

/// A batch of chunks being sealed on the thread pool.
struct Sealing {
    ids: std::collections::HashSet<ChunkId>,
    done: std::sync::mpsc::Receiver<Vec<(ChunkId, Vec<u8>)>>,
}

/// A subscriber's backups in a store.
pub struct Repository<S: Store> {
    store: S,
    ids: ChunkIdKey,
    data: DataKey,
    coding: Coding,
    index: HashMap<ChunkId, Location>,
    packs: HashMap<String, PackEntry>,
    open_pack: Vec<u8>,
    open_blobs: Vec<BlobEntry>,
    unwritten: Vec<PackEntry>,
    /// Recently rebuilt packs, most recent last.
    cached_packs: std::collections::VecDeque<(String, Vec<u8>)>,
    open_ids: std::collections::HashSet<ChunkId>,
    /// New chunks waiting to be sealed in the next parallel batch.
    pending: Vec<(ChunkId, Vec<u8>)>,
    pending_ids: std::collections::HashSet<ChunkId>,
    pending_bytes: usize,
    /// The batch being sealed on the thread pool, if any.
    sealing: Option<Sealing>,
    progress: std::sync::Arc<dyn Progress>,
    /// Where sealed trees are kept on this device (see [`Repository::set_tree_cache`]).
    tree_cache: Option<PathBuf>,
}

impl<S: Store> std::fmt::Debug for Repository<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("packs", &self.packs.len())
            .field("chunks", &self.index.len())
            .finish()
    }
}

impl<S: Store> Repository<S> {
    /// Opens the repository in `store`, reading every index it holds.
    pub fn open(store: S, key: &MasterKey, coding: Coding) -> Result<Repository<S>, BackupError> {
        let mut repository = Repository {
            store,
            ids: key.chunk_id_key(),
            data: key.data_key(),
            coding,
            index: HashMap::new(),
            packs: HashMap::new(),
            open_pack: Vec::with_capacity(PACK_ROOM),
            open_blobs: Vec::new(),
            unwritten: Vec::new(),
            cached_packs: std::collections::VecDeque::new(),
            open_ids: std::collections::HashSet::new(),
            pending: Vec::new(),
            pending_ids: std::collections::HashSet::new(),
            pending_bytes: 0,
            sealing: None,
            progress: std::sync::Arc::new(Quiet),
            tree_cache: None,
        };
        repository.load_indexes()?;
        Ok(repository)
    }

    pub fn store(&mut self) -> &mut S {
        &mut self.store
    }

    /// Where backups and restores report their progress from now on.
    pub fn set_progress(&mut self, progress: std::sync::Arc<dyn Progress>) {
        self.progress = progress;
    }
}
