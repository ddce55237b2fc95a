//! Restoring a snapshot, or a part of it: packs fetched ahead in the order they are needed,
//! small files written together and large ones chunk by chunk, each file put under its name
//! only once whole and with its metadata, and files an interrupted restore left in place kept.

use std::io;
use std::path::{Path, PathBuf};

use super::platform::{make_symlink, os_bytes, os_path};
use super::{BackupError, MAX_BLOB, Repository, at};
use crate::keys::ChunkId;
use crate::store::Store;
use crate::tree::{Node, NodeKind, Snapshot};
use crate::{Error, seal};

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
    /// Files that were there already, different, and written over ([`Existing::Replace`]).
    pub replaced: u64,
    /// Files that were there already, different, and kept, the restored copy written beside
    /// them as `name (restored).ext` ([`Existing::KeepBoth`]).
    pub kept_both: u64,
}

impl std::ops::AddAssign for RestoreReport {
    /// Counts another restore's work in, as for several paths restored one after another.
    fn add_assign(&mut self, other: RestoreReport) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.in_place += other.in_place;
        self.replaced += other.replaced;
        self.kept_both += other.kept_both;
    }
}

/// What a restore does with a different file already where it restores one (a file found in
/// place, the same size and time, is always left as it is).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Writes over it: into a folder of restored files, or when the user chose to.
    #[default]
    Replace,
    /// Keeps it, and writes the restored copy beside it under a name of its own.
    KeepBoth,
}

impl<S: Store> Repository<S> {
    /// Restores a snapshot under `target` as `target/<folder name>/...`; with `only`, just that
    /// path (`<folder name>/sub/path`) and what is below it. Files already in place (an
    /// interrupted restore's) are kept.
    pub fn restore(
        &mut self,
        snapshot: &Snapshot,
        target: &Path,
        only: Option<&Path>,
    ) -> Result<RestoreReport, BackupError> {
        self.restore_with(snapshot, target, only, Existing::Replace)
    }

    /// Like [`Repository::restore`], doing with files already there what `existing` says.
    pub fn restore_with(
        &mut self,
        snapshot: &Snapshot,
        target: &Path,
        only: Option<&Path>,
        existing: Existing,
    ) -> Result<RestoreReport, BackupError> {
        std::fs::create_dir_all(target).map_err(at(target))?;
        let mut state = Restoring {
            existing,
            ..Restoring::default()
        };
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
                    return Ok(true);
                }
                let path = if in_new_dir {
                    path.to_owned()
                } else {
                    state.make_way(path)?
                };
                if *size > RESTORE_BATCH_BYTES / 4 {
                    // A large file is written on its own, its chunks opened in parallel.
                    let temp = restore_temp(&path);
                    let (file, written) = self.write_file(&temp, chunks)?;
                    finish_file(file, &temp, &path, node, written)?;
                    state.report.files += 1;
                    state.report.bytes += written;
                    self.progress.file();
                } else {
                    state.batch.push((path, node.clone()));
                    state.batch_bytes += size;
                    if state.batch_bytes >= RESTORE_BATCH_BYTES {
                        self.write_batch(state)?;
                    }
                }
                Ok(true)
            }
            NodeKind::Symlink { target } => {
                let target = os_path(&target.0);
                if !in_new_dir && std::fs::read_link(path).is_ok_and(|there| there == target) {
                    return Ok(true);
                }
                let path = if in_new_dir {
                    path.to_owned()
                } else {
                    state.make_way(path)?
                };
                let _ = std::fs::remove_file(&path);
                make_symlink(&target, &path).map_err(at(&path))?;
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
    existing: Existing,
    report: RestoreReport,
    /// Small files waiting to be written together.
    batch: Vec<(PathBuf, Node)>,
    batch_bytes: u64,
    /// Directories restored, in the order they were entered; their times are set at the end.
    dirs: Vec<(PathBuf, Node)>,
}

impl Restoring {
    /// Where to restore an entry meant for `path`, in a folder that was there before: `path`
    /// itself when nothing is there or it is to be replaced, else a free name beside it.
    fn make_way(&mut self, path: &Path) -> Result<PathBuf, BackupError> {
        if std::fs::symlink_metadata(path).is_err() {
            return Ok(path.to_owned());
        }
        match self.existing {
            Existing::Replace => {
                self.report.replaced += 1;
                Ok(path.to_owned())
            }
            Existing::KeepBoth => {
                self.report.kept_both += 1;
                beside(path)
            }
        }
    }
}

/// A free name next to `path` for a restored copy: `notes (restored).txt`, then
/// `notes (restored 2).txt` and on.
fn beside(path: &Path) -> Result<PathBuf, BackupError> {
    const TRIES: u32 = 1_000;
    let stem = path.file_stem().unwrap_or_default();
    for attempt in 1..=TRIES {
        let mut name = stem.to_owned();
        name.push(match attempt {
            1 => " (restored)".to_owned(),
            n => format!(" (restored {n})"),
        });
        if let Some(extension) = path.extension() {
            name.push(".");
            name.push(extension);
        }
        let candidate = path.with_file_name(name);
        if std::fs::symlink_metadata(&candidate).is_err() {
            return Ok(candidate);
        }
    }
    Err(BackupError::Io {
        path: path.to_owned(),
        source: io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{TRIES} restored copies are there already"),
        ),
    })
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
