//! The SQL of undoable forgetting: a forgotten backup object or a let-go placement is marked,
//! hidden from its owner's listings and kept (holders keep their shards) until the grace period
//! ends; until then its owner can recover it. Purging what is past its grace is settled once,
//! however many processes sweep at the same time.

use sqlx::Row;
use surplus_protocol::{AllocationState, InstructionKind, Recovered, UnixMillis};
use uuid::Uuid;

use super::sql;
use super::{
    Result, Store, enqueue_on, parse_allocation_state, parse_uuid, set_allocation_state_on, to_u64,
};

/// What `Store::let_go_of_placement` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LetGo {
    /// The placement is marked: it ends when the grace period does, unless recovered.
    Marked,
    /// There is no placement (the blob was uploaded but never placed): nothing to keep.
    NotPlaced,
}

/// A backup object forgotten but still kept.
#[derive(Debug, Clone)]
pub struct ForgottenObject {
    pub kind: String,
    pub name: String,
    pub forgotten_at: UnixMillis,
}

/// A placement let go: the blob and its owner.
#[derive(Debug, Clone)]
pub struct DroppedPlacement {
    pub hash: String,
    pub subscriber_id: Uuid,
}

/// A subscriber's forgotten objects and let-go shards.
#[derive(Debug, Clone, Default)]
pub struct ForgottenRows {
    /// Oldest first.
    pub objects: Vec<ForgottenObject>,
    pub shards: u64,
    pub shard_bytes: u64,
    /// When the first shard was let go.
    pub first_dropped_at: Option<UnixMillis>,
}

impl Store {
    /// Marks one of the subscriber's live backup objects forgotten; whether there was one.
    pub async fn forget_backup_object(
        &self,
        subscriber_id: Uuid,
        kind: &str,
        name: &str,
        now: UnixMillis,
    ) -> Result<bool> {
        let done = sql!(
            "UPDATE backup_objects SET deleted_at = $1 \
             WHERE subscriber_id = $2 AND kind = $3 AND name = $4 AND deleted_at IS NULL",
            now,
            subscriber_id,
            kind,
            name
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Marks the subscriber's placement of a blob let go, if it is not already (a second call
    /// keeps the first time, so the grace period is never extended by asking again).
    pub async fn let_go_of_placement(
        &self,
        hash: &str,
        subscriber_id: Uuid,
        now: UnixMillis,
    ) -> Result<LetGo> {
        let done = sql!(
            "UPDATE placements SET dropped_at = COALESCE(dropped_at, $1) \
             WHERE hash = $2 AND subscriber_id = $3",
            now,
            hash,
            subscriber_id
        )
        .execute(&self.pool)
        .await?;
        Ok(if done.rows_affected() > 0 {
            LetGo::Marked
        } else {
            LetGo::NotPlaced
        })
    }

    /// What the subscriber forgot that is still kept.
    pub async fn forgotten(&self, subscriber_id: Uuid) -> Result<ForgottenRows> {
        let subscriber = subscriber_id.to_string();
        let objects = sql!(
            "SELECT kind, name, deleted_at FROM backup_objects \
             WHERE subscriber_id = $1 AND deleted_at IS NOT NULL ORDER BY deleted_at, kind, name",
            &subscriber
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(ForgottenObject {
                kind: row.try_get("kind")?,
                name: row.try_get("name")?,
                forgotten_at: row.try_get("deleted_at")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let row = sql!(
            "SELECT COUNT(*) AS shards, CAST(COALESCE(SUM(b.size), 0) AS BIGINT) AS bytes, \
             MIN(p.dropped_at) AS first FROM placements p JOIN blobs b ON b.hash = p.hash \
             WHERE p.subscriber_id = $1 AND p.dropped_at IS NOT NULL",
            &subscriber
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(ForgottenRows {
            objects,
            shards: to_u64(row.try_get("shards")?),
            shard_bytes: to_u64(row.try_get("bytes")?),
            first_dropped_at: row.try_get("first")?,
        })
    }

    /// Brings back everything the subscriber forgot that is still kept, in one transaction.
    pub async fn recover_forgotten(&self, subscriber_id: Uuid) -> Result<Recovered> {
        let subscriber = subscriber_id.to_string();
        self.transaction(async |tx| {
            let mut objects = [0u64; 2];
            for (count, kind) in objects.iter_mut().zip(["snapshot", "index"]) {
                *count = sql!(
                    "UPDATE backup_objects SET deleted_at = NULL \
                     WHERE subscriber_id = $1 AND kind = $2 AND deleted_at IS NOT NULL",
                    &subscriber,
                    kind
                )
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            let shards = sql!(
                "UPDATE placements SET dropped_at = NULL WHERE subscriber_id = $1 AND dropped_at IS NOT NULL",
                &subscriber
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            Ok(Recovered {
                snapshots: objects[0],
                indexes: objects[1],
                shards,
            })
        })
        .await
    }

    /// Deletes the backup objects forgotten at or before `cutoff`; how many.
    pub async fn purge_forgotten_objects(&self, cutoff: UnixMillis) -> Result<u64> {
        Ok(sql!(
            "DELETE FROM backup_objects WHERE deleted_at IS NOT NULL AND deleted_at <= $1",
            cutoff
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Placements let go at or before `cutoff`, first let go first.
    pub async fn placements_dropped_before(
        &self,
        cutoff: UnixMillis,
    ) -> Result<Vec<DroppedPlacement>> {
        let rows = sql!(
            "SELECT hash, subscriber_id FROM placements \
             WHERE dropped_at IS NOT NULL AND dropped_at <= $1 ORDER BY dropped_at",
            cutoff
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DroppedPlacement {
                    hash: row.try_get("hash")?,
                    subscriber_id: parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?,
                })
            })
            .collect()
    }

    /// Ends a placement let go at or before `cutoff`, in one transaction: the placement and the
    /// subscriber's ownership go, allocations not stored yet are given back, and every holder is
    /// told to delete the blob (its allocation is released when it confirms). Returns the
    /// devices told, or `None` when the placement was recovered, placed again or ended by
    /// another process meanwhile.
    pub async fn end_dropped_placement(
        &self,
        hash: &str,
        subscriber_id: Uuid,
        cutoff: UnixMillis,
        now: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<Option<Vec<Uuid>>> {
        let subscriber = subscriber_id.to_string();
        self.transaction(async |tx| {
            let ended = sql!(
                "DELETE FROM placements WHERE hash = $1 AND subscriber_id = $2 \
                 AND dropped_at IS NOT NULL AND dropped_at <= $3",
                hash,
                &subscriber,
                cutoff
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if ended == 0 {
                return Ok(None);
            }
            sql!(
                "DELETE FROM blob_owners WHERE hash = $1 AND subscriber_id = $2",
                hash,
                &subscriber
            )
            .execute(&mut *tx)
            .await?;
            let allocations = sql!(
                "SELECT id, device_id, state FROM allocations WHERE blob_hash = $1 AND subscriber_id = $2 \
                 ORDER BY created_at, id",
                hash,
                &subscriber
            )
            .fetch_all(&mut *tx)
            .await?;
            let mut told = Vec::new();
            for row in &allocations {
                let allocation = parse_uuid(&row.try_get::<String, _>("id")?)?;
                let device = parse_uuid(&row.try_get::<String, _>("device_id")?)?;
                match parse_allocation_state(&row.try_get::<String, _>("state")?)? {
                    // Not stored yet: given back now (a late store is deleted when it is acknowledged).
                    AllocationState::Pending => {
                        set_allocation_state_on(tx, allocation, AllocationState::Failed, now)
                            .await?;
                    }
                    AllocationState::Active | AllocationState::Evacuating => {
                        let kind = InstructionKind::DeleteBlob {
                            hash: hash.to_owned(),
                            allocation_id: Some(allocation),
                        };
                        enqueue_on(tx, device, Some(allocation), &kind, now, expires_at).await?;
                        told.push(device);
                    }
                    _ => {}
                }
            }
            Ok(Some(told))
        })
        .await
    }
}
