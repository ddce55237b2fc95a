//! Backing folders up: each folder walked, files unchanged since the parent snapshot
//! recognised, the others cut into chunks and queued for sealing, and the snapshot sealed last.

use std::io;
use std::path::{Path, PathBuf};

use super::platform::{os_bytes, unix_metadata};
use super::{BATCH_BYTES, BackupError, Repository, WHOLE_FILE_LIMIT, at};
use crate::chunker::{AVERAGE_SIZE, MAX_SIZE, MIN_SIZE};
use crate::keys::ChunkId;
use crate::store::{ObjectKind, Store};
use crate::tree::{Node, NodeKind, RawName, Root, Snapshot, Summary, Tree};
use crate::{Error, seal};

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

/// What a backup could not include, by path: the snapshot is complete but for these.
#[derive(Debug, Default)]
pub struct BackupReport {
    pub snapshot_id: String,
    pub snapshot: Option<Snapshot>,
    pub skipped: Vec<(PathBuf, String)>,
}

impl<S: Store> Repository<S> {
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
}

fn file_name_bytes(path: &Path) -> Vec<u8> {
    path.file_name()
        .map(os_bytes)
        .unwrap_or_else(|| b"root".to_vec())
}
