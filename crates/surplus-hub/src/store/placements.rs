//! Placements: a subscriber's wish to keep a blob on a number of holders, and the storage
//! allocations that serve it.

use sqlx::Row;
use surplus_backup::erasure::ShardInfo;
use surplus_protocol::{AllocationState, UnixMillis};
use uuid::Uuid;

pub use surplus_rules::placement::Candidate;

/// A subscriber's placement of a blob, as they see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementRow {
    pub size: u64,
    pub copies: u32,
    pub created_at: UnixMillis,
    pub staged: bool,
}

/// One allocation of a blob's storage on a holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobAllocation {
    pub id: Uuid,
    pub device_id: Uuid,
    pub state: AllocationState,
    pub created_at: UnixMillis,
}

use super::sql;
use super::{Result, Store, parse_allocation_state, parse_uuid, to_u64};

/// A placement that still wants holders.
#[derive(Debug, Clone)]
pub struct OpenPlacement {
    pub hash: String,
    pub size: u64,
    pub subscriber_id: Uuid,
    pub source_device_id: Option<Uuid>,
    pub copies: u32,
    pub staged: bool,
    /// The pack this blob is a shard of, if it is one.
    pub pack: Option<String>,
    /// How many of the pack's shards rebuild it, when the shard's header was read.
    pub pack_data: Option<u32>,
    /// Whether the owner lets their own other devices hold it.
    pub household: bool,
    /// Its copies confirmed, and confirmed or on their way.
    pub active: u32,
    pub live: u32,
}

impl Store {
    /// Creates or updates a subscriber's wish to keep a blob on `copies` holders. A shard of a
    /// pack comes with the pack's name and, when its header could be read, its place in the pack.
    pub async fn upsert_placement(
        &self,
        hash: &str,
        subscriber_id: Uuid,
        source_device_id: Option<Uuid>,
        copies: u32,
        pack: Option<(&str, Option<ShardInfo>)>,
        now: UnixMillis,
    ) -> Result<()> {
        let shard = pack.and_then(|(_, shard)| shard);
        sql!(
            "INSERT INTO placements (hash, subscriber_id, source_device_id, copies, created_at, pack, \
             pack_data, pack_parity, shard_index) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (hash, subscriber_id) DO UPDATE SET copies = excluded.copies, pack = excluded.pack, \
             satisfied_at = NULL, dropped_at = NULL, \
             pack_data = COALESCE(excluded.pack_data, placements.pack_data), \
             pack_parity = COALESCE(excluded.pack_parity, placements.pack_parity), \
             shard_index = COALESCE(excluded.shard_index, placements.shard_index)",
            hash,
            subscriber_id,
            source_device_id.map(|d| d.to_string()),
            i64::from(copies),
            now,
            pack.map(|(name, _)| name),
            shard.map(|s| i64::from(s.coding.data)),
            shard.map(|s| i64::from(s.coding.parity)),
            shard.map(|s| s.index as i64)
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The placement of a blob for a subscriber.
    pub async fn placement(&self, hash: &str, subscriber_id: Uuid) -> Result<Option<PlacementRow>> {
        let row = sql!(
            "SELECT b.size, p.copies, p.created_at, b.staged FROM placements p JOIN blobs b ON b.hash = p.hash \
             WHERE p.hash = $1 AND p.subscriber_id = $2",
            hash,
            subscriber_id
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(PlacementRow {
                size: to_u64(row.try_get("size")?),
                copies: u32::try_from(row.try_get::<i64, _>("copies")?).unwrap_or(0),
                created_at: row.try_get("created_at")?,
                staged: row.try_get::<i64, _>("staged")? != 0,
            })
        })
        .transpose()
    }

    /// Placements that still want holders, from active subscribers only.
    /// The placements that want holders, oldest first; with `only`, just that blob's of that
    /// subscriber (if it wants any).
    pub async fn open_placements(&self, only: Option<(&str, Uuid)>) -> Result<Vec<OpenPlacement>> {
        let (hash, subscriber) = match only {
            Some((hash, subscriber)) => (Some(hash), Some(subscriber.to_string())),
            None => (None, None),
        };
        let rows = sql!(
            "SELECT p.hash, b.size, p.subscriber_id, p.source_device_id, p.copies, b.staged, p.pack, \
             p.pack_data, s.backup_household, \
             (SELECT COUNT(*) FROM allocations a WHERE a.blob_hash = p.hash AND a.subscriber_id = p.subscriber_id \
               AND a.kind = 'storage' AND a.state = 'active') AS active, \
             (SELECT COUNT(*) FROM allocations a WHERE a.blob_hash = p.hash AND a.subscriber_id = p.subscriber_id \
               AND a.kind = 'storage' AND a.state IN ('pending', 'active')) AS live \
             FROM placements p JOIN blobs b ON b.hash = p.hash JOIN subscribers s ON s.id = p.subscriber_id \
             WHERE p.satisfied_at IS NULL AND p.dropped_at IS NULL AND s.status = 'active' \
             AND ($1 IS NULL OR p.hash = $1) AND ($2 IS NULL OR p.subscriber_id = $2) ORDER BY p.created_at",
            hash,
            subscriber
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OpenPlacement {
                    hash: row.try_get("hash")?,
                    size: to_u64(row.try_get("size")?),
                    subscriber_id: parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?,
                    source_device_id: row
                        .try_get::<Option<String>, _>("source_device_id")?
                        .as_deref()
                        .map(parse_uuid)
                        .transpose()?,
                    copies: u32::try_from(row.try_get::<i64, _>("copies")?).unwrap_or(0),
                    staged: row.try_get::<i64, _>("staged")? != 0,
                    pack: row.try_get("pack")?,
                    pack_data: row
                        .try_get::<Option<i64>, _>("pack_data")?
                        .and_then(|n| u32::try_from(n).ok()),
                    household: row.try_get::<i64, _>("backup_household")? != 0,
                    active: u32::try_from(row.try_get::<i64, _>("active")?).unwrap_or(u32::MAX),
                    live: u32::try_from(row.try_get::<i64, _>("live")?).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    /// Closes a placement whose copies are all confirmed, in one statement that checks it
    /// still has them: false if a copy was lost or the placement reopened in the meantime (then
    /// nothing is released on the strength of it).
    pub async fn mark_placement_satisfied(
        &self,
        hash: &str,
        subscriber_id: Uuid,
        now: UnixMillis,
    ) -> Result<bool> {
        let closed = sql!(
            "UPDATE placements SET satisfied_at = $1 WHERE hash = $2 AND subscriber_id = $3 \
             AND satisfied_at IS NULL AND (SELECT COUNT(*) FROM allocations a WHERE a.blob_hash = placements.hash \
               AND a.subscriber_id = placements.subscriber_id AND a.kind = 'storage' AND a.state = 'active') >= copies",
            now,
            hash,
            subscriber_id
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(closed > 0)
    }

    /// Storage allocations of one blob for one subscriber, oldest first.
    pub async fn blob_allocations(
        &self,
        hash: &str,
        subscriber_id: Uuid,
    ) -> Result<Vec<BlobAllocation>> {
        let rows = sql!(
            "SELECT id, device_id, state, created_at FROM allocations WHERE blob_hash = $1 AND subscriber_id = $2 \
             ORDER BY created_at, id",
            hash,
            subscriber_id
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(BlobAllocation {
                    id: parse_uuid(&row.try_get::<String, _>("id")?)?,
                    device_id: parse_uuid(&row.try_get::<String, _>("device_id")?)?,
                    state: parse_allocation_state(&row.try_get::<String, _>("state")?)?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Devices whose storage may be allocated now: not revoked, owner active, with spare storage
    /// left after what is already promised to pending allocations.
    pub async fn storage_candidates(&self) -> Result<Vec<Candidate>> {
        let rows = sql!(
            "SELECT d.id, d.subscriber_id, d.spare_storage_bytes, d.last_heartbeat, d.network, \
             CAST(COALESCE((SELECT SUM(a.amount) FROM allocations a WHERE a.device_id = d.id AND a.state = 'pending'), 0) AS BIGINT) AS promised \
             FROM devices d JOIN subscribers s ON s.id = d.subscriber_id \
             WHERE d.revoked_at IS NULL AND s.status = 'active' AND d.spare_storage_bytes > 0"
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let spare = to_u64(row.try_get("spare_storage_bytes")?);
                let promised = to_u64(row.try_get::<i64, _>("promised")?);
                Ok(Candidate {
                    device_id: parse_uuid(&row.try_get::<String, _>("id")?)?,
                    subscriber_id: parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?,
                    free_bytes: spare.saturating_sub(promised),
                    last_heartbeat: row.try_get("last_heartbeat")?,
                    week: None,
                    network: row.try_get("network")?,
                })
            })
            .collect()
    }

    /// Forgets a subscriber's placement and ownership of a blob.
    pub async fn drop_placement(&self, hash: &str, subscriber_id: Uuid) -> Result<()> {
        self.transaction(async |tx| {
            for statement in [
                "DELETE FROM placements WHERE hash = $1 AND subscriber_id = $2",
                "DELETE FROM blob_owners WHERE hash = $1 AND subscriber_id = $2",
            ] {
                sql!(statement, hash, subscriber_id)
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(())
        })
        .await
    }

    /// Reopens the placement an allocation served, so the scheduler finds the blob a new holder.
    pub async fn reopen_placement_of(&self, allocation_id: Uuid) -> Result<()> {
        sql!(
            "UPDATE placements SET satisfied_at = NULL WHERE EXISTS (SELECT 1 FROM allocations a \
             WHERE a.id = $1 AND a.blob_hash = placements.hash AND a.subscriber_id = placements.subscriber_id)",
            allocation_id
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
