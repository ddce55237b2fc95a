//! Forgetting snapshots by a retention policy ([`crate::forget`]), then pruning: the packs only
//! forgotten snapshots needed are let go and the index is rewritten without them.

use super::{BackupError, PackEntry, Repository};
use crate::store::{ObjectKind, Store};

impl<S: Store> Repository<S> {
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
}
