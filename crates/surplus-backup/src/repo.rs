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

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::chunker::{AVERAGE_SIZE, MAX_SIZE, MIN_SIZE};
use crate::erasure::{self, Coding};
use crate::keys::{ChunkId, ChunkIdKey, DataKey, MasterKey, hex};
use crate::store::{ObjectKind, Store};
use crate::tree::{Node, NodeKind, RawName, Root, Snapshot, Summary, Tree};
use crate::{Error, seal};

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

/// Counts the files and bytes of file content under `folders`, for a progress bar's totals.
/// What cannot be read is left out; the backup itself reports it.
pub fn scan_totals(folders: &[PathBuf]) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut stack: Vec<PathBuf> = folders.to_vec();
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.filter_map(Result::ok).map(|e| e.path()));
            }
        } else if meta.is_file() {
            files += 1;
            bytes += meta.len();
        }
    }
    (files, bytes)
}

/// What a restore did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RestoreReport {
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Files found already in place (same size and modification time), as an interrupted
    /// restore leaves them, and not written again.
    pub in_place: u64,
}

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

/// What a backup could not include, by path: the snapshot is complete but for these.
#[derive(Debug, Default)]
pub struct BackupReport {
    pub snapshot_id: String,
    pub snapshot: Option<Snapshot>,
    pub skipped: Vec<(PathBuf, String)>,
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

    fn load_indexes(&mut self) -> Result<(), BackupError> {
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

    pub fn store(&mut self) -> &mut S {
        &mut self.store
    }

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

    /// Where backups and restores report their progress from now on.
    pub fn set_progress(&mut self, progress: std::sync::Arc<dyn Progress>) {
        self.progress = progress;
    }

    /// Adds a blob unless the repository has it already. Returns its id and whether it was new.
    fn add_blob(&mut self, plaintext: &[u8]) -> Result<(ChunkId, bool), BackupError> {
        let id = self.ids.id(plaintext);
        if self.has(&id) {
            return Ok((id, false));
        }
        let sealed = seal::seal(&self.data, &id.0, plaintext);
        self.cache_tree(&id, &sealed);
        Ok((id, self.add_sealed(id, sealed)?))
    }

    fn has(&self, id: &ChunkId) -> bool {
        self.index.contains_key(id)
            || self.open_ids.contains(id)
            || self.pending_ids.contains(id)
            || self.sealing.as_ref().is_some_and(|s| s.ids.contains(id))
    }

    /// Adds a sealed blob to the open pack unless it is already there; whether it was added.
    fn add_sealed(&mut self, id: ChunkId, sealed: Vec<u8>) -> Result<bool, BackupError> {
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
    fn commit(&mut self) -> Result<(), BackupError> {
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
    fn write_index(&mut self, entries: &[PackEntry]) -> Result<String, BackupError> {
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

    /// Reads and opens one blob.
    pub fn read_blob(&mut self, id: &ChunkId) -> Result<Vec<u8>, BackupError> {
        let sealed = self.sealed_blob(id)?;
        Ok(seal::open(&self.data, &id.0, &sealed, MAX_BLOB)?)
    }

    /// A blob's sealed bytes, from its pack (rebuilt from its shards, or cached).
    fn sealed_blob(&mut self, id: &ChunkId) -> Result<Vec<u8>, BackupError> {
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

    fn read_tree(&mut self, id: &ChunkId) -> Result<Tree, BackupError> {
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

    /// The packs a snapshot's trees and files are in.
    pub fn packs_of(
        &mut self,
        snapshot: &Snapshot,
    ) -> Result<std::collections::BTreeSet<String>, BackupError> {
        let mut packs = std::collections::BTreeSet::new();
        let mut pending: Vec<Node> = snapshot.roots.iter().map(|r| r.node.clone()).collect();
        while let Some(node) = pending.pop() {
            match node.kind {
                NodeKind::Dir { tree } => {
                    packs.extend(self.index.get(&tree).map(|l| l.pack.clone()));
                    pending.extend(self.read_tree(&tree)?.nodes);
                }
                NodeKind::File { chunks, .. } => {
                    packs.extend(
                        chunks
                            .iter()
                            .filter_map(|c| self.index.get(c))
                            .map(|l| l.pack.clone()),
                    );
                }
                NodeKind::Symlink { .. } => {}
            }
        }
        Ok(packs)
    }

    /// The entries of one directory of a snapshot (`path` as `<folder name>/sub/dir`), or its
    /// folders when `path` is `None`; a file's path lists that file alone.
    pub fn list(
        &mut self,
        snapshot: &Snapshot,
        path: Option<&Path>,
    ) -> Result<Vec<Node>, BackupError> {
        let wanted: Vec<Vec<u8>> = path
            .map(|p| p.iter().map(os_bytes).collect())
            .unwrap_or_default();
        let mut nodes: Vec<Node> = snapshot
            .roots
            .iter()
            .map(|r| Node {
                name: r.name.clone(),
                ..r.node.clone()
            })
            .collect();
        for (depth, component) in wanted.iter().enumerate() {
            let node = nodes
                .into_iter()
                .find(|n| n.name.0 == *component)
                .ok_or_else(|| {
                    BackupError::NoSuchPath(
                        path.map(|p| p.display().to_string()).unwrap_or_default(),
                    )
                })?;
            nodes = match &node.kind {
                NodeKind::Dir { tree } => self.read_tree(tree)?.nodes,
                _ if depth + 1 == wanted.len() => vec![node],
                _ => {
                    return Err(BackupError::NoSuchPath(
                        path.map(|p| p.display().to_string()).unwrap_or_default(),
                    ));
                }
            };
        }
        Ok(nodes)
    }

    /// Forgets the snapshots `retention` does not keep, then prunes: packs no kept snapshot needs
    /// are let go (their shards deleted from the store) and the index is rewritten without them.
    /// Returns the forgotten snapshots' ids and the number of packs let go.
    pub fn forget(
        &mut self,
        retention: crate::forget::Retention,
        utc_offset_minutes: i32,
    ) -> Result<(Vec<String>, usize), BackupError> {
        let snapshots = self.snapshots()?;
        let times: Vec<i64> = snapshots.iter().map(|(_, s)| s.time).collect();
        let kept = crate::forget::keep(&times, retention, utc_offset_minutes);
        let mut needed = std::collections::BTreeSet::new();
        for (index, (_, snapshot)) in snapshots.iter().enumerate() {
            if kept.contains(&index) {
                needed.extend(self.packs_of(snapshot)?);
            }
        }
        let mut forgotten = Vec::new();
        for (index, (id, _)) in snapshots.iter().enumerate() {
            if !kept.contains(&index) {
                self.store
                    .delete_object(ObjectKind::Snapshot, id)
                    .map_err(BackupError::Store)?;
                forgotten.push(id.clone());
            }
        }
        let unneeded: Vec<String> = self
            .packs
            .keys()
            .filter(|p| !needed.contains(*p))
            .cloned()
            .collect();
        if unneeded.is_empty() {
            return Ok((forgotten, 0));
        }
        // The new index first, then the old ones go: a crash in between leaves extra entries
        // for packs that are still there, never a pack without an entry.
        let old_indexes = self
            .store
            .list_objects(ObjectKind::Index)
            .map_err(BackupError::Store)?;
        let remaining: Vec<PackEntry> = self
            .packs
            .values()
            .filter(|p| needed.contains(&p.id))
            .cloned()
            .collect();
        let mut written = None;
        if !remaining.is_empty() {
            written = Some(self.write_index(&remaining)?);
        }
        for name in old_indexes.iter().filter(|n| Some(*n) != written.as_ref()) {
            self.store
                .delete_object(ObjectKind::Index, name)
                .map_err(BackupError::Store)?;
        }
        for pack in &unneeded {
            if let Some(entry) = self.packs.remove(pack) {
                self.store
                    .delete_shards(pack, &entry.shards)
                    .map_err(BackupError::Store)?;
                for blob in &entry.blobs {
                    self.index.remove(&blob.id);
                }
            }
        }
        self.cached_packs.clear();
        Ok((forgotten, unneeded.len()))
    }

    /// The hashes of a pack's shards, in index order.
    pub fn shards_of(&self, pack: &str) -> Option<&[String]> {
        self.packs.get(pack).map(|entry| entry.shards.as_slice())
    }

    /// Every snapshot, oldest first.
    pub fn snapshots(&mut self) -> Result<Vec<(String, Snapshot)>, BackupError> {
        let mut snapshots = Vec::new();
        for name in self
            .store
            .list_objects(ObjectKind::Snapshot)
            .map_err(BackupError::Store)?
        {
            snapshots.push((name.clone(), self.snapshot(&name)?));
        }
        snapshots.sort_by_key(|(name, s)| (s.time, name.clone()));
        Ok(snapshots)
    }

    pub fn snapshot(&mut self, id: &str) -> Result<Snapshot, BackupError> {
        let sealed = self
            .store
            .get_object(ObjectKind::Snapshot, id)
            .map_err(|_| BackupError::NoSuchSnapshot(id.to_owned()))?;
        let plain = seal::open(&self.data, id.as_bytes(), &sealed, MAX_BLOB)?;
        Ok(
            serde_json::from_slice(&plain).map_err(|e| Error::Malformed {
                what: "snapshot",
                detail: e.to_string(),
            })?,
        )
    }

    /// Backs `folders` up as one snapshot taken at `time` (milliseconds since the epoch).
    /// With `parent`, files unchanged since it are not read again.
    pub fn backup(
        &mut self,
        folders: &[PathBuf],
        hostname: &str,
        time: i64,
        parent: Option<&Snapshot>,
    ) -> Result<BackupReport, BackupError> {
        let mut summary = Summary::default();
        let mut report = BackupReport::default();
        let mut roots = Vec::new();
        for folder in folders {
            let name = RawName(file_name_bytes(folder));
            let previous = parent
                .and_then(|p| {
                    p.roots
                        .iter()
                        .find(|r| r.path == folder.display().to_string())
                })
                .map(|r| r.node.clone());
            if let Some(node) = self.save(
                folder,
                name.clone(),
                previous.as_ref(),
                &mut summary,
                &mut report,
            )? {
                roots.push(Root {
                    name,
                    path: folder.display().to_string(),
                    node,
                });
            }
        }
        self.commit()?;
        let snapshot = Snapshot {
            time,
            hostname: hostname.to_owned(),
            roots,
            summary,
        };
        let json = serde_json::to_vec(&snapshot).map_err(|e| Error::Malformed {
            what: "snapshot",
            detail: e.to_string(),
        })?;
        let id = blake3::hash(&[json.as_slice(), &time.to_le_bytes()].concat()).to_hex()[..16]
            .to_owned();
        let sealed = seal::seal(&self.data, id.as_bytes(), &json);
        self.store
            .put_object(ObjectKind::Snapshot, &id, &sealed)
            .map_err(BackupError::Store)?;
        report.snapshot_id = id;
        report.snapshot = Some(snapshot);
        Ok(report)
    }

    fn save(
        &mut self,
        path: &Path,
        name: RawName,
        previous: Option<&Node>,
        summary: &mut Summary,
        report: &mut BackupReport,
    ) -> Result<Option<Node>, BackupError> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(error) => {
                report.skipped.push((path.to_owned(), error.to_string()));
                return Ok(None);
            }
        };
        let (mode, mtime_ns, ctime_ns, inode) = unix_metadata(&meta);
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            summary.dirs += 1;
            let previous_tree = match previous.map(|n| &n.kind) {
                Some(NodeKind::Dir { tree }) => self.read_tree(tree).ok(),
                _ => None,
            };
            let mut entries: Vec<(Vec<u8>, PathBuf)> = match std::fs::read_dir(path) {
                Ok(entries) => entries
                    .filter_map(Result::ok)
                    .map(|e| (os_bytes(&e.file_name()), e.path()))
                    .collect(),
                Err(error) => {
                    report.skipped.push((path.to_owned(), error.to_string()));
                    return Ok(None);
                }
            };
            entries.sort();
            let mut tree = Tree::default();
            for (child_name, child_path) in entries {
                let child_previous = previous_tree
                    .as_ref()
                    .and_then(|t| t.nodes.iter().find(|n| n.name.0 == child_name));
                if let Some(node) = self.save(
                    &child_path,
                    RawName(child_name),
                    child_previous,
                    summary,
                    report,
                )? {
                    tree.nodes.push(node);
                }
            }
            let json = serde_json::to_vec(&tree).map_err(|e| Error::Malformed {
                what: "tree",
                detail: e.to_string(),
            })?;
            let (id, _) = self.add_blob(&json)?;
            NodeKind::Dir { tree: id }
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(path).map_err(at(path))?;
            NodeKind::Symlink {
                target: RawName(os_bytes(target.as_os_str())),
            }
        } else if file_type.is_file() {
            summary.files += 1;
            summary.bytes += meta.len();
            let unchanged = previous.and_then(|p| match &p.kind {
                NodeKind::File { size, chunks }
                    if *size == meta.len()
                        && p.mtime_ns == mtime_ns
                        && p.ctime_ns == ctime_ns
                        && p.inode == inode =>
                {
                    Some(chunks.clone())
                }
                _ => None,
            });
            let chunks = match unchanged {
                Some(chunks) if chunks.iter().all(|c| self.index.contains_key(c)) => {
                    summary.unchanged_files += 1;
                    self.progress.bytes(meta.len());
                    chunks
                }
                _ => match self.save_file(path, summary) {
                    Ok(chunks) => chunks,
                    Err(BackupError::Io { path, source }) => {
                        report.skipped.push((path, source.to_string()));
                        return Ok(None);
                    }
                    Err(other) => return Err(other),
                },
            };
            self.progress.file();
            NodeKind::File {
                size: meta.len(),
                chunks,
            }
        } else {
            report.skipped.push((
                path.to_owned(),
                "not a file, folder or symbolic link".into(),
            ));
            return Ok(None);
        };
        Ok(Some(Node {
            name,
            kind,
            mode,
            mtime_ns,
            ctime_ns,
            inode,
        }))
    }

    fn save_file(
        &mut self,
        path: &Path,
        summary: &mut Summary,
    ) -> Result<Vec<ChunkId>, BackupError> {
        let mut file = std::fs::File::open(path).map_err(at(path))?;
        let size = file.metadata().map_err(at(path))?.len();
        let mut chunks = Vec::new();
        if size <= WHOLE_FILE_LIMIT {
            // Read at once and cut in place: no copying of a streaming window.
            let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            io::Read::read_to_end(&mut file, &mut data).map_err(at(path))?;
            let ranges: Vec<_> = crate::chunker::cut(&data).collect();
            if ranges.len() == 1 {
                // A small file is one chunk: it is queued as it was read.
                self.add_chunk(data, &mut chunks, summary)?;
            } else {
                for range in ranges {
                    self.add_chunk(data[range].to_vec(), &mut chunks, summary)?;
                }
            }
        } else {
            for chunk in fastcdc::v2020::StreamCDC::new(file, MIN_SIZE, AVERAGE_SIZE, MAX_SIZE) {
                let chunk = chunk.map_err(|e| BackupError::Io {
                    path: path.to_owned(),
                    source: io::Error::other(e.to_string()),
                })?;
                self.add_chunk(chunk.data, &mut chunks, summary)?;
            }
        }
        Ok(chunks)
    }

    /// Names a chunk of a file and queues it for sealing unless the repository has it.
    fn add_chunk(
        &mut self,
        plaintext: Vec<u8>,
        chunks: &mut Vec<ChunkId>,
        summary: &mut Summary,
    ) -> Result<(), BackupError> {
        let id = self.ids.id(&plaintext);
        chunks.push(id);
        self.progress.bytes(plaintext.len() as u64);
        if self.has(&id) || !self.pending_ids.insert(id) {
            return Ok(());
        }
        summary.new_bytes += plaintext.len() as u64;
        self.pending_bytes += plaintext.len();
        self.pending.push((id, plaintext));
        if self.pending_bytes >= BATCH_BYTES {
            self.seal_pending()?;
        }
        Ok(())
    }

    /// Sends the chunks waiting (from however many files) to be sealed on every core, while the
    /// caller reads on; the batch sent before is added to the open pack first, in order. Sealing,
    /// compression above all, is the costly part of a backup; small files share a batch, so they
    /// are sealed in parallel too.
    fn seal_pending(&mut self) -> Result<(), BackupError> {
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

    /// The files and bytes of a snapshot, or of its part at `only` (`<folder name>/sub/path`).
    pub fn totals(
        &mut self,
        snapshot: &Snapshot,
        only: Option<&Path>,
    ) -> Result<(u64, u64), BackupError> {
        let wanted: Vec<Vec<u8>> = only
            .map(|p| p.iter().map(os_bytes).collect())
            .unwrap_or_default();
        let mut totals = (0, 0);
        for root in &snapshot.roots {
            if wanted.first().is_none_or(|first| *first == root.name.0) {
                self.count(&root.node, &wanted[wanted.len().min(1)..], &mut totals)?;
            }
        }
        Ok(totals)
    }

    fn count(
        &mut self,
        node: &Node,
        wanted: &[Vec<u8>],
        totals: &mut (u64, u64),
    ) -> Result<(), BackupError> {
        match &node.kind {
            NodeKind::Dir { tree } => {
                for child in &self.read_tree(tree)?.nodes {
                    if wanted.first().is_none_or(|first| *first == child.name.0) {
                        self.count(child, &wanted[wanted.len().min(1)..], totals)?;
                    }
                }
            }
            NodeKind::File { size, .. } if wanted.is_empty() => {
                totals.0 += 1;
                totals.1 += size;
            }
            _ => {}
        }
        Ok(())
    }

    /// Restores a snapshot under `target` as `target/<folder name>/...`; with `only`, just that
    /// path (`<folder name>/sub/path`) and what is below it. Files already in place (an
    /// interrupted restore's) are kept.
    pub fn restore(
        &mut self,
        snapshot: &Snapshot,
        target: &Path,
        only: Option<&Path>,
    ) -> Result<RestoreReport, BackupError> {
        std::fs::create_dir_all(target).map_err(at(target))?;
        let mut state = Restoring::default();
        let wanted: Vec<Vec<u8>> = only
            .map(|p| p.iter().map(os_bytes).collect())
            .unwrap_or_default();
        if self.store.fetches_ahead() {
            let wants = self.packs_in_restore_order(snapshot, &wanted)?;
            self.store.fetch_ahead(wants);
        }
        let mut found = wanted.is_empty();
        for root in &snapshot.roots {
            if let Some(first) = wanted.first()
                && *first != root.name.0
            {
                continue;
            }
            found |= self.restore_node(
                &root.node,
                &entry_path(target, &root.name.0)?,
                &wanted[wanted.len().min(1)..],
                false,
                &mut state,
            )?;
        }
        self.write_batch(&mut state)?;
        // Directories' times last, deepest first: writing into a directory changes its time.
        for (path, node) in state.dirs.iter().rev() {
            let dir = std::fs::File::open(path).map_err(at(path))?;
            apply_metadata(&dir, path, node)?;
        }
        if !found {
            return Err(BackupError::NoSuchPath(
                only.map(|p| p.display().to_string()).unwrap_or_default(),
            ));
        }
        Ok(state.report)
    }

    /// The packs of the files a restore of `wanted` writes, in the order it writes them (each
    /// once, where first needed), for a store that fetches ahead. The trees are read now: their
    /// packs are fetched as they are met, and a tree cache keeps them for the restore.
    fn packs_in_restore_order(
        &mut self,
        snapshot: &Snapshot,
        wanted: &[Vec<u8>],
    ) -> Result<Vec<crate::store::PackWant>, BackupError> {
        let mut order = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut stack: Vec<(Node, &[Vec<u8>])> = Vec::new();
        for root in snapshot.roots.iter().rev() {
            if wanted.first().is_none_or(|first| *first == root.name.0) {
                stack.push((root.node.clone(), &wanted[wanted.len().min(1)..]));
            }
        }
        while let Some((node, wanted)) = stack.pop() {
            match node.kind {
                NodeKind::Dir { tree } => {
                    let tree = self.read_tree(&tree)?;
                    for child in tree.nodes.into_iter().rev() {
                        if wanted.first().is_none_or(|first| *first == child.name.0) {
                            stack.push((child, &wanted[wanted.len().min(1)..]));
                        }
                    }
                }
                NodeKind::File { chunks, .. } if wanted.is_empty() => {
                    for chunk in &chunks {
                        if let Some(location) = self.index.get(chunk)
                            && seen.insert(location.pack.clone())
                        {
                            order.push(location.pack.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(order
            .into_iter()
            .filter_map(|pack| {
                let entry = self.packs.get(&pack)?;
                Some(crate::store::PackWant {
                    shards: entry.shards.clone(),
                    needed: usize::from(entry.coding.data),
                    pack,
                })
            })
            .collect())
    }

    /// Restores `node` at `path`, or only the part of it along `wanted`. Returns whether `wanted`
    /// was found. Small files wait in `state` to be written together. `in_new_dir` says that
    /// this restore made the folder `path` is in, so nothing can be in place there already.
    fn restore_node(
        &mut self,
        node: &Node,
        path: &Path,
        wanted: &[Vec<u8>],
        in_new_dir: bool,
        state: &mut Restoring,
    ) -> Result<bool, BackupError> {
        match &node.kind {
            NodeKind::Dir { tree } => {
                let tree = self.read_tree(tree)?;
                let new_dir = match std::fs::create_dir(path) {
                    Ok(()) => true,
                    Err(error) if error.kind() == io::ErrorKind::AlreadyExists => false,
                    Err(_) => {
                        std::fs::create_dir_all(path).map_err(at(path))?;
                        true
                    }
                };
                let mut found = wanted.is_empty();
                for child in &tree.nodes {
                    if let Some(first) = wanted.first()
                        && *first != child.name.0
                    {
                        continue;
                    }
                    found |= self.restore_node(
                        child,
                        &entry_path(path, &child.name.0)?,
                        &wanted[wanted.len().min(1)..],
                        new_dir,
                        state,
                    )?;
                }
                if wanted.is_empty() {
                    state.dirs.push((path.to_owned(), node.clone()));
                }
                Ok(found)
            }
            _ if !wanted.is_empty() => Ok(false),
            NodeKind::File { size, chunks } => {
                if !in_new_dir && in_place(path, node, *size) {
                    state.report.in_place += 1;
                    self.progress.bytes(*size);
                    self.progress.file();
                } else if *size > RESTORE_BATCH_BYTES / 4 {
                    // A large file is written on its own, its chunks opened in parallel.
                    let temp = restore_temp(path);
                    let (file, written) = self.write_file(&temp, chunks)?;
                    finish_file(file, &temp, path, node, written)?;
                    state.report.files += 1;
                    state.report.bytes += written;
                    self.progress.file();
                } else {
                    state.batch.push((path.to_owned(), node.clone()));
                    state.batch_bytes += size;
                    if state.batch_bytes >= RESTORE_BATCH_BYTES {
                        self.write_batch(state)?;
                    }
                }
                Ok(true)
            }
            NodeKind::Symlink { target } => {
                let _ = std::fs::remove_file(path);
                make_symlink(&os_path(&target.0), path).map_err(at(path))?;
                Ok(true)
            }
        }
    }

    /// Writes the small files waiting, on every core: their chunks are fetched in order (packs
    /// rebuilt once each), then each file is opened, written and put in place in parallel.
    fn write_batch(&mut self, state: &mut Restoring) -> Result<(), BackupError> {
        use rayon::prelude::*;
        let batch = std::mem::take(&mut state.batch);
        state.batch_bytes = 0;
        let mut sealed = Vec::with_capacity(batch.len());
        for (_, node) in &batch {
            let chunks = match &node.kind {
                NodeKind::File { chunks, .. } => chunks.as_slice(),
                _ => &[],
            };
            let blobs: Vec<(ChunkId, Vec<u8>)> = chunks
                .iter()
                .map(|id| Ok((*id, self.sealed_blob(id)?)))
                .collect::<Result<_, BackupError>>()?;
            sealed.push(blobs);
        }
        let (data, progress) = (&self.data, &self.progress);
        let written: Vec<u64> = batch
            .par_iter()
            .zip(sealed.par_iter())
            .map(|((path, node), blobs)| {
                let temp = restore_temp(path);
                let mut file = std::fs::File::create(&temp).map_err(at(&temp))?;
                let mut written = 0u64;
                for (id, sealed) in blobs {
                    let bytes = seal::open(data, &id.0, sealed, MAX_BLOB)?;
                    io::Write::write_all(&mut file, &bytes).map_err(at(&temp))?;
                    written += bytes.len() as u64;
                    progress.bytes(bytes.len() as u64);
                }
                finish_file(file, &temp, path, node, written)?;
                progress.file();
                Ok(written)
            })
            .collect::<Result<_, BackupError>>()?;
        state.report.files += written.len() as u64;
        state.report.bytes += written.iter().sum::<u64>();
        Ok(())
    }
}

/// Files up to this many bytes wait to be restored together, several at once.
const RESTORE_BATCH_BYTES: u64 = 16 << 20;

/// A restore under way.
#[derive(Debug, Default)]
struct Restoring {
    report: RestoreReport,
    /// Small files waiting to be written together.
    batch: Vec<(PathBuf, Node)>,
    batch_bytes: u64,
    /// Directories restored, in the order they were entered; their times are set at the end.
    dirs: Vec<(PathBuf, Node)>,
}

/// Where a file is written before it is whole.
fn restore_temp(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.surplus-restore"))
}

/// Checks a file written at `temp`, gives it its metadata through the handle it was written
/// with, and puts it under its name: a file appears under its name only once it is whole.
fn finish_file(
    file: std::fs::File,
    temp: &Path,
    path: &Path,
    node: &Node,
    written: u64,
) -> Result<(), BackupError> {
    let size = match &node.kind {
        NodeKind::File { size, .. } => *size,
        _ => written,
    };
    if written != size {
        let _ = std::fs::remove_file(temp);
        let detail = format!("{} restored {written} of {size} bytes", path.display());
        return Err(Error::Malformed {
            what: "file",
            detail,
        }
        .into());
    }
    apply_metadata(&file, temp, node)?;
    drop(file);
    std::fs::rename(temp, path).map_err(at(path))
}

impl<S: Store> Repository<S> {
    /// Writes the chunks of a file to `path`, opening (decrypting, decompressing) several at a
    /// time on every core. Returns the file and the bytes written.
    fn write_file(
        &mut self,
        path: &Path,
        chunks: &[ChunkId],
    ) -> Result<(std::fs::File, u64), BackupError> {
        use rayon::prelude::*;
        use std::io::Write;
        let file = std::fs::File::create(path).map_err(at(path))?;
        let mut writer = io::BufWriter::with_capacity(1 << 20, file);
        let mut written = 0u64;
        for group in chunks.chunks(8) {
            let sealed: Vec<(ChunkId, Vec<u8>)> = group
                .iter()
                .map(|id| Ok((*id, self.sealed_blob(id)?)))
                .collect::<Result<_, BackupError>>()?;
            let data = &self.data;
            let opened: Vec<Vec<u8>> = sealed
                .par_iter()
                .map(|(id, sealed)| seal::open(data, &id.0, sealed, MAX_BLOB))
                .collect::<Result<_, _>>()?;
            for bytes in opened {
                written += bytes.len() as u64;
                writer.write_all(&bytes).map_err(at(path))?;
                self.progress.bytes(bytes.len() as u64);
            }
        }
        let file = writer.into_inner().map_err(|e| BackupError::Io {
            path: path.to_owned(),
            source: e.into_error(),
        })?;
        Ok((file, written))
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

fn file_name_bytes(path: &Path) -> Vec<u8> {
    path.file_name()
        .map(os_bytes)
        .unwrap_or_else(|| b"root".to_vec())
}

#[cfg(unix)]
fn os_bytes(name: &std::ffi::OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    name.as_bytes().to_vec()
}

#[cfg(not(unix))]
fn os_bytes(name: &std::ffi::OsStr) -> Vec<u8> {
    name.to_string_lossy().into_owned().into_bytes()
}

/// `parent/name` for a name read from a snapshot, which must be one plain path component: a
/// restore never writes outside its target, whatever a tree says.
fn entry_path(parent: &Path, name: &[u8]) -> Result<PathBuf, BackupError> {
    let separator =
        |b: &u8| *b == b'/' || *b == 0 || (cfg!(windows) && (*b == b'\\' || *b == b':'));
    if name.is_empty() || name == b"." || name == b".." || name.iter().any(separator) {
        return Err(BackupError::UnsafeName(
            String::from_utf8_lossy(name).into_owned(),
        ));
    }
    Ok(parent.join(os_path(name)))
}

#[cfg(unix)]
fn os_path(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

#[cfg(not(unix))]
fn os_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(unix)]
fn unix_metadata(meta: &std::fs::Metadata) -> (u32, i64, i64, u64) {
    use std::os::unix::fs::MetadataExt;
    (
        meta.mode() & 0o7777,
        meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        meta.ino(),
    )
}

#[cfg(not(unix))]
fn unix_metadata(meta: &std::fs::Metadata) -> (u32, i64, i64, u64) {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    (
        if meta.permissions().readonly() {
            0o444
        } else {
            0o644
        },
        mtime,
        0,
        0,
    )
}

/// Whether a regular file with the node's size and modification time is at `path` already: a
/// restore puts files under their names only when whole and with their times set, so such a
/// file is one an earlier run restored.
fn in_place(path: &Path, node: &Node, size: u64) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_nanos()).ok());
    meta.is_file() && meta.len() == size && mtime_ns == Some(node.mtime_ns)
}

/// Gives an open file or folder the node's permissions and modification time.
fn apply_metadata(file: &std::fs::File, path: &Path, node: &Node) -> Result<(), BackupError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(node.mode))
            .map_err(at(path))?;
    }
    let mtime = std::time::UNIX_EPOCH
        + std::time::Duration::from_nanos(u64::try_from(node.mtime_ns).unwrap_or(0));
    file.set_modified(mtime).map_err(at(path))?;
    Ok(())
}

#[cfg(unix)]
fn make_symlink(target: &Path, path: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, path)
}

#[cfg(not(unix))]
fn make_symlink(_target: &Path, _path: &Path) -> io::Result<()> {
    Err(io::Error::other("symbolic links are restored on Unix only"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_joins_only_plain_names() {
        let target = Path::new("/restore/here");
        assert_eq!(
            entry_path(target, b"photos").expect("plain"),
            target.join("photos")
        );
        assert!(entry_path(target, b".hidden").is_ok());
        for bad in [
            &b""[..],
            b".",
            b"..",
            b"../../etc",
            b"/etc/passwd",
            b"a/b",
            b"nul\0",
        ] {
            assert!(
                matches!(entry_path(target, bad), Err(BackupError::UnsafeName(_))),
                "{:?} was joined",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
