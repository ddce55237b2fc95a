//! The SQL of graceful exit (allocations being handed over), of what a device holds, and of the
//! bytes moved to keep backups alive.

use std::collections::HashMap;

use sqlx::Row;
use surplus_protocol::{Handover, Holdings, UnixMillis};
use uuid::Uuid;

use super::sql;
use super::{Result, Store, parse_uuid, to_u64};

/// An active allocation on a device: what giving storage up chooses from.
#[derive(Debug, Clone)]
pub struct ActiveAllocation {
    pub id: Uuid,
    /// Its bytes.
    pub amount: u64,
    /// The blob it keeps (storage allocations).
    pub blob_hash: Option<String>,
    /// Whom it serves.
    pub subscriber_id: Uuid,
}

/// An allocation being handed over, with what deciding its next step needs.
#[derive(Debug, Clone)]
pub struct EvacuatingRow {
    pub allocation: Uuid,
    pub device: Uuid,
    pub hash: String,
    pub size: u64,
    pub since: UnixMillis,
    pub staged: bool,
    pub last_heartbeat: Option<UnixMillis>,
    /// An upload of the blob was asked of the holder and is still out.
    pub upload_asked: bool,
    /// Its new copy is confirmed (or its placement is gone): only the delete is left.
    pub replaced: bool,
}

impl Store {
    /// Every storage allocation being handed over whose placement still wants its new copy
    /// (once the placement is done, the old copy is only waiting to be deleted). Allocations
    /// given up before the hub recorded when (older versions) count from the first sweep that
    /// sees them, so that an upgrade gives nobody up at once.
    pub async fn evacuating(&self, now: UnixMillis) -> Result<Vec<EvacuatingRow>> {
        sql!(
            "UPDATE allocations SET evacuating_since = $1 WHERE state = 'evacuating' AND evacuating_since IS NULL",
            now
        )
        .execute(&self.pool)
        .await?;
        let rows = sql!(
            "SELECT a.id, a.device_id, a.blob_hash, b.size, a.evacuating_since, a.created_at, b.staged, d.last_heartbeat, \
             CASE WHEN EXISTS (SELECT 1 FROM instructions i WHERE i.allocation_id = a.id AND i.kind = 'upload_blob' \
               AND i.state IN ('queued', 'delivered')) THEN 1 ELSE 0 END AS asked, \
             CASE WHEN EXISTS (SELECT 1 FROM placements p WHERE p.hash = a.blob_hash \
               AND p.subscriber_id = a.subscriber_id AND p.satisfied_at IS NULL) THEN 0 ELSE 1 END AS replaced \
             FROM allocations a JOIN blobs b ON b.hash = a.blob_hash JOIN devices d ON d.id = a.device_id \
             WHERE a.state = 'evacuating' AND a.kind = 'storage'"
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let since: Option<i64> = row.try_get("evacuating_since")?;
                Ok(EvacuatingRow {
                    allocation: parse_uuid(&row.try_get::<String, _>("id")?)?,
                    device: parse_uuid(&row.try_get::<String, _>("device_id")?)?,
                    hash: row.try_get("blob_hash")?,
                    size: to_u64(row.try_get("size")?),
                    since: since.unwrap_or(now),
                    staged: row.try_get::<i64, _>("staged")? != 0,
                    last_heartbeat: row.try_get("last_heartbeat")?,
                    upload_asked: row.try_get::<i64, _>("asked")? != 0,
                    replaced: row.try_get::<i64, _>("replaced")? != 0,
                })
            })
            .collect()
    }

    /// Counts an allocation whose hand-over did not finish in time lost, and reopens its
    /// placement so repair rebuilds the copy. False when it was no longer being handed over (it
    /// finished, or another process gave up on it first).
    pub async fn give_up_handover(&self, allocation: Uuid, now: UnixMillis) -> Result<bool> {
        self.transaction(async |tx| {
            let lost = sql!(
                "UPDATE allocations SET state = 'lost', released_at = $1 WHERE id = $2 AND state = 'evacuating'",
                now,
                allocation
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if lost == 0 {
                return Ok(false);
            }
            sql!(
                "UPDATE placements SET satisfied_at = NULL WHERE EXISTS (SELECT 1 FROM allocations a \
                 WHERE a.id = $1 AND a.blob_hash = placements.hash AND a.subscriber_id = placements.subscriber_id)",
                allocation
            )
            .execute(&mut *tx)
            .await?;
            Ok(true)
        })
        .await
    }

    /// What the device holds for others, and how far its hand-over is when it gave storage up.
    /// A hand-over that times out after `deadline` ms.
    pub async fn holdings(&self, device_id: Uuid, deadline: i64) -> Result<Holdings> {
        let device = device_id.to_string();
        let row = sql!(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS held, COUNT(*) AS blobs, \
             CAST(COALESCE(SUM(CASE WHEN state = 'evacuating' THEN amount ELSE 0 END), 0) AS BIGINT) AS remaining, \
             CAST(COALESCE(SUM(CASE WHEN state = 'evacuating' THEN 1 ELSE 0 END), 0) AS BIGINT) AS remaining_blobs, \
             MIN(CASE WHEN state = 'evacuating' THEN COALESCE(evacuating_since, created_at) END) AS since \
             FROM allocations WHERE device_id = $1 AND kind = 'storage' AND state IN ('pending', 'active', 'evacuating')",
            &device
        )
        .fetch_one(&self.pool)
        .await?;
        let since: Option<i64> = row.try_get("since")?;
        let handover = match since {
            Some(since) => {
                let moved: i64 = sql!(
                    "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS moved FROM allocations \
                     WHERE device_id = $1 AND kind = 'storage' AND state = 'released' AND evacuating_since >= $2",
                    &device,
                    since
                )
                .fetch_one(&self.pool)
                .await?
                .try_get("moved")?;
                Some(Handover {
                    remaining_bytes: to_u64(row.try_get("remaining")?),
                    remaining_blobs: u32::try_from(row.try_get::<i64, _>("remaining_blobs")?)
                        .unwrap_or(u32::MAX),
                    moved_bytes: to_u64(moved),
                    deadline: since.saturating_add(deadline),
                })
            }
            None => None,
        };
        Ok(Holdings {
            held_bytes: to_u64(row.try_get("held")?),
            held_blobs: u32::try_from(row.try_get::<i64, _>("blobs")?).unwrap_or(u32::MAX),
            handover,
        })
    }
}

impl Store {
    /// Bytes of backups the hub keeps on holders (confirmed storage allocations).
    pub async fn stored_bytes(&self) -> Result<u64> {
        let total: i64 = sql!(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS total FROM allocations \
             WHERE kind = 'storage' AND state IN ('active', 'evacuating')"
        )
        .fetch_one(&self.pool)
        .await?
        .try_get("total")?;
        Ok(to_u64(total))
    }
}

/// What moved bytes were for, in [`Store::count_traffic`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Traffic {
    /// Shards gathered for a rebuild, and rebuilt shards sent to their new holders.
    Repair,
    /// Audit challenges' slices.
    Audit,
    /// Shards uploaded by holders handing them over, and sent on to their new holders.
    Handover,
}

impl Traffic {
    pub fn as_str(self) -> &'static str {
        match self {
            Traffic::Repair => "repair",
            Traffic::Audit => "audit",
            Traffic::Handover => "handover",
        }
    }
}

const HOUR_MS: i64 = 3_600_000;

impl Store {
    /// Adds `bytes` moved at `now` for `kind` to its hour.
    pub async fn count_traffic(&self, kind: Traffic, bytes: u64, now: UnixMillis) -> Result<()> {
        sql!(
            "INSERT INTO durability_traffic (hour, kind, bytes) VALUES ($1, $2, $3) \
             ON CONFLICT (hour, kind) DO UPDATE SET bytes = durability_traffic.bytes + excluded.bytes",
            now.div_euclid(HOUR_MS),
            kind.as_str(),
            bytes
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Bytes moved per kind in the hours from `since` on.
    pub async fn traffic_since(&self, since: UnixMillis) -> Result<HashMap<String, u64>> {
        let rows = sql!(
            "SELECT kind, CAST(SUM(bytes) AS BIGINT) AS bytes FROM durability_traffic WHERE hour >= $1 GROUP BY kind",
            since.div_euclid(HOUR_MS)
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("kind")?, to_u64(row.try_get("bytes")?))))
            .collect()
    }

    /// Forgets the traffic of hours before `before`.
    pub async fn prune_traffic(&self, before: UnixMillis) -> Result<()> {
        sql!(
            "DELETE FROM durability_traffic WHERE hour < $1",
            before.div_euclid(HOUR_MS)
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl Store {
    /// Active allocations on a device, newest first.
    pub async fn active_allocations_on(&self, device_id: Uuid) -> Result<Vec<ActiveAllocation>> {
        let rows = sql!(
            "SELECT id, amount, blob_hash, subscriber_id FROM allocations WHERE device_id = $1 AND state = 'active' \
             ORDER BY created_at DESC, id",
            device_id
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ActiveAllocation {
                    id: parse_uuid(&row.try_get::<String, _>("id")?)?,
                    amount: to_u64(row.try_get("amount")?),
                    blob_hash: row.try_get("blob_hash")?,
                    subscriber_id: parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?,
                })
            })
            .collect()
    }

    /// Bytes on a device already marked to move away.
    pub async fn evacuating_bytes(&self, device_id: Uuid) -> Result<u64> {
        let total: Option<i64> = sql!(
            "SELECT CAST(SUM(amount) AS BIGINT) AS total FROM allocations WHERE device_id = $1 AND state = 'evacuating'",
            device_id
        )
        .fetch_one(&self.pool)
        .await?
        .try_get("total")?;
        Ok(total.map(to_u64).unwrap_or(0))
    }

    /// Marks allocations as evacuating (handed over from `now`) and reopens their placements so
    /// the scheduler finds them new holders.
    pub async fn evacuate(&self, allocations: &[ActiveAllocation], now: UnixMillis) -> Result<()> {
        self.transaction(async |tx| {
            for allocation in allocations {
                sql!(
                    "UPDATE allocations SET state = 'evacuating', evacuating_since = $2 WHERE id = $1 AND state = 'active'",
                    allocation.id,
                    now
                )
                .execute(&mut *tx)
                .await?;
                if let Some(hash) = &allocation.blob_hash {
                    sql!(
                        "UPDATE placements SET satisfied_at = NULL WHERE hash = $1 AND subscriber_id = $2",
                        hash,
                        allocation.subscriber_id
                    )
                        .execute(&mut *tx)
                        .await?;
                }
            }
            Ok(())
        })
        .await
    }
}
