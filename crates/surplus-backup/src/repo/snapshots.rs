//! Reading snapshots back: every snapshot, one by id, the entries of a folder in one, its
//! totals, and the packs it uses.

use std::path::Path;

use super::platform::os_bytes;
use super::{BackupError, MAX_BLOB, Repository};
use crate::store::{ObjectKind, Store};
use crate::tree::{Node, NodeKind, Snapshot};
use crate::{Error, seal};

impl<S: Store> Repository<S> {
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

    /// The entries of a snapshot whose name holds `needle` (letter case aside), each with its
    /// path (`<folder name>/sub/name`, the form [`Repository::list`] and a restore take), in
    /// the order of a walk of its trees; at most `limit` of them, and whether there were more.
    pub fn find(
        &mut self,
        snapshot: &Snapshot,
        needle: &str,
        limit: usize,
    ) -> Result<(Vec<(String, Node)>, bool), BackupError> {
        let needle = needle.to_lowercase();
        let mut found = Vec::new();
        let mut stack: Vec<(String, Node)> = snapshot
            .roots
            .iter()
            .rev()
            .map(|root| {
                let node = Node {
                    name: root.name.clone(),
                    ..root.node.clone()
                };
                (root.name.display(), node)
            })
            .collect();
        while let Some((path, node)) = stack.pop() {
            if node.name.display().to_lowercase().contains(&needle) {
                if found.len() == limit {
                    return Ok((found, true));
                }
                found.push((path.clone(), node.clone()));
            }
            if let NodeKind::Dir { tree } = &node.kind {
                let children = self.read_tree(tree)?.nodes;
                stack.extend(
                    children
                        .into_iter()
                        .rev()
                        .map(|child| (format!("{path}/{}", child.name.display()), child)),
                );
            }
        }
        Ok((found, false))
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
}
