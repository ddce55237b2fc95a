//! The SQL of loss detection: which devices hold data for others, when they were last there, and
//! counting a holder lost, once.

use std::collections::HashMap;

use sqlx::Row;
use surplus_protocol::UnixMillis;
use uuid::Uuid;

use super::sql;
use super::{Result, Store, parse_uuid};

/// A device that holds, or is to hold, data for someone (a revoked one holds nothing: revoking
/// counts what it held lost at once).
#[derive(Debug, Clone)]
pub struct HolderRow {
    pub device: Uuid,
    pub registered_at: UnixMillis,
    pub last_heartbeat: Option<UnixMillis>,
}

impl Store {
    /// Every device with storage allocations still live (pending, active or being moved).
    pub async fn storage_holders(&self) -> Result<Vec<HolderRow>> {
        let rows = sql!(
            "SELECT d.id, d.created_at, d.last_heartbeat FROM devices d \
             WHERE EXISTS (SELECT 1 FROM allocations a WHERE a.device_id = d.id AND a.kind = 'storage' \
             AND a.state IN ('pending', 'active', 'evacuating'))"
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(HolderRow {
                    device: parse_uuid(&row.try_get::<String, _>("id")?)?,
                    registered_at: row.try_get("created_at")?,
                    last_heartbeat: row.try_get("last_heartbeat")?,
                })
            })
            .collect()
    }

    /// The presence slots a device was heard in, from `since_slot` on.
    pub async fn presence_slot_list(&self, device_id: Uuid, since_slot: i64) -> Result<Vec<i64>> {
        let rows = sql!(
            "SELECT slot FROM device_presence WHERE device_id = $1 AND slot >= $2 ORDER BY slot",
            device_id,
            since_slot
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok(row.try_get("slot")?)).collect()
    }

    /// Counts a holder lost, in one transaction: the placements its live storage allocations
    /// served reopen, and those allocations become `lost`. Returns how many; a second call (or
    /// another process's) finds none left and changes nothing.
    pub async fn lose_holder(&self, device_id: Uuid, now: UnixMillis) -> Result<u64> {
        let device = device_id.to_string();
        self.transaction(async |tx| {
            sql!(
                "UPDATE placements SET satisfied_at = NULL WHERE EXISTS (SELECT 1 FROM allocations a \
                 WHERE a.device_id = $1 AND a.kind = 'storage' AND a.state IN ('pending', 'active', 'evacuating') \
                 AND a.blob_hash = placements.hash AND a.subscriber_id = placements.subscriber_id)",
                &device
            )
            .execute(&mut *tx)
            .await?;
            let lost = sql!(
                "UPDATE allocations SET state = 'lost', released_at = $1 WHERE device_id = $2 \
                 AND kind = 'storage' AND state IN ('pending', 'active', 'evacuating')",
                now,
                &device
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            Ok(lost)
        })
        .await
    }
}

/// One shard of a pack that has lost shards, as repair sees it.
#[derive(Debug, Clone)]
pub struct PackShardRow {
    pub owner: Uuid,
    pub pack: String,
    pub hash: String,
    pub data: u32,
    pub parity: u32,
    pub index: u32,
    pub size: u64,
    pub staged: bool,
    /// Its storage allocations that are still live (pending, active or being moved).
    pub holders: Vec<PackShardHolder>,
}

/// A live storage allocation of a shard, with its holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackShardHolder {
    pub allocation: Uuid,
    pub device: Uuid,
    /// The holder confirmed it (the allocation is not pending).
    pub confirmed: bool,
}

impl Store {
    /// Every shard of every pack that has a lost shard: a placement, not forgotten, whose shard
    /// is neither staged nor allocated to a live holder. Only shards whose place in their pack
    /// is known count.
    pub async fn packs_with_lost_shards(&self) -> Result<Vec<PackShardRow>> {
        let rows = sql!(
            "SELECT p.subscriber_id, p.pack, p.hash, p.pack_data, p.pack_parity, p.shard_index, b.size, b.staged, \
             a.id AS allocation, a.device_id, a.state FROM placements p JOIN blobs b ON b.hash = p.hash \
             LEFT JOIN allocations a ON a.blob_hash = p.hash AND a.subscriber_id = p.subscriber_id \
               AND a.kind = 'storage' AND a.state IN ('pending', 'active', 'evacuating') \
             WHERE p.pack_data IS NOT NULL AND p.dropped_at IS NULL AND EXISTS ( \
               SELECT 1 FROM placements q JOIN blobs c ON c.hash = q.hash \
               WHERE q.subscriber_id = p.subscriber_id AND q.pack = p.pack AND q.pack_data IS NOT NULL \
               AND q.dropped_at IS NULL AND c.staged = 0 AND NOT EXISTS (SELECT 1 FROM allocations l \
                 WHERE l.blob_hash = q.hash AND l.subscriber_id = q.subscriber_id AND l.kind = 'storage' \
                 AND l.state IN ('pending', 'active', 'evacuating'))) \
             ORDER BY p.subscriber_id, p.pack, p.shard_index, p.hash"
        )
        .fetch_all(&self.pool)
        .await?;
        let mut shards: Vec<PackShardRow> = Vec::new();
        for row in &rows {
            let owner = parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?;
            let hash: String = row.try_get("hash")?;
            let holder = match row.try_get::<Option<String>, _>("allocation")? {
                Some(allocation) => Some(PackShardHolder {
                    allocation: parse_uuid(&allocation)?,
                    device: parse_uuid(&row.try_get::<String, _>("device_id")?)?,
                    confirmed: row.try_get::<String, _>("state")?
                        != surplus_protocol::AllocationState::Pending.as_str(),
                }),
                None => None,
            };
            if let Some(last) = shards.last_mut()
                && last.owner == owner
                && last.hash == hash
            {
                last.holders.extend(holder);
                continue;
            }
            let number = |column: &str| -> Result<u32> {
                Ok(u32::try_from(row.try_get::<i64, _>(column)?).unwrap_or(u32::MAX))
            };
            shards.push(PackShardRow {
                owner,
                pack: row.try_get("pack")?,
                hash,
                data: number("pack_data")?,
                parity: number("pack_parity")?,
                index: number("shard_index")?,
                size: super::to_u64(row.try_get("size")?),
                staged: row.try_get::<i64, _>("staged")? != 0,
                holders: holder.into_iter().collect(),
            });
        }
        Ok(shards)
    }
}

/// A copy kept by a holder that came back after it was counted lost, that nobody needs.
#[derive(Debug, Clone)]
pub struct SurplusCopy {
    pub allocation: Uuid,
    pub device: Uuid,
    pub hash: String,
}

impl Store {
    /// Every blob `device` holds for someone as far as the ledger knows: copies pending, active
    /// or being handed over, and lost ones (which may be taken back, or are told to go by
    /// [`Store::claim_delete`]). Anything else in its vault, the ledger does not know.
    pub async fn blobs_to_retain(&self, device: Uuid) -> Result<Vec<String>> {
        let rows = sql!(
            "SELECT DISTINCT blob_hash FROM allocations WHERE device_id = $1 AND kind = 'storage' \
             AND blob_hash IS NOT NULL AND state IN ('pending', 'active', 'evacuating', 'lost') \
             ORDER BY blob_hash",
            device
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok(row.try_get("blob_hash")?))
            .collect()
    }

    /// Takes back the copies of holders that were counted lost and are back (heard from since
    /// `since`), where their shard still wants a copy (not yet rebuilt and confirmed elsewhere):
    /// each becomes active again, marked as taken back at `now` so that it is audited first.
    /// Only copies the holder confirmed storing are taken back: one still pending when its holder
    /// was counted lost was never there. Copies lost to a failed audit or upload, given up in a
    /// hand-over, or already told to go, and those of holders with integrity failures since
    /// `clean_since`, are not taken back either.
    /// One copy at a time, each by a statement that checks the shard still wants it, so a shard
    /// never gets more copies than it asked for this way. Returns how many.
    pub async fn readopt_returned(
        &self,
        since: UnixMillis,
        clean_since: UnixMillis,
        now: UnixMillis,
    ) -> Result<u64> {
        let candidates = sql!(
            "SELECT a.id FROM allocations a JOIN devices d ON d.id = a.device_id \
             JOIN placements p ON p.hash = a.blob_hash AND p.subscriber_id = a.subscriber_id \
             WHERE a.state = 'lost' AND a.kind = 'storage' AND a.evacuating_since IS NULL \
             AND a.delete_asked_at IS NULL AND d.revoked_at IS NULL AND d.last_heartbeat >= $1 \
             AND p.satisfied_at IS NULL AND p.dropped_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM challenges c WHERE c.device_id = a.device_id AND c.state = 'failed' \
               AND (c.allocation_id = a.id OR c.answered_at >= $2)) \
             AND NOT EXISTS (SELECT 1 FROM instructions i WHERE i.allocation_id = a.id \
               AND i.kind IN ('upload_blob', 'delete_blob') AND i.state IN ('queued', 'delivered', 'failed')) \
             AND EXISTS (SELECT 1 FROM instructions i WHERE i.allocation_id = a.id \
               AND i.kind = 'store_blob' AND i.state = 'done')",
            since,
            clean_since
        )
        .fetch_all(&self.pool)
        .await?;
        let mut taken = 0;
        for row in &candidates {
            let id: String = row.try_get("id")?;
            taken += sql!(
                "UPDATE allocations SET state = 'active', released_at = NULL, readopted_at = $1 \
                 WHERE id = $2 AND state = 'lost' AND delete_asked_at IS NULL \
                 AND NOT EXISTS (SELECT 1 FROM allocations l WHERE l.blob_hash = allocations.blob_hash \
                   AND l.device_id = allocations.device_id AND l.state IN ('pending', 'active', 'evacuating')) \
                 AND (SELECT COUNT(*) FROM allocations l WHERE l.blob_hash = allocations.blob_hash \
                   AND l.subscriber_id = allocations.subscriber_id AND l.state IN ('pending', 'active', 'evacuating')) \
                   < (SELECT p.copies FROM placements p WHERE p.hash = allocations.blob_hash \
                      AND p.subscriber_id = allocations.subscriber_id AND p.satisfied_at IS NULL)",
                now,
                &id
            )
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(taken)
    }

    /// Copies kept by holders that were counted lost and are back (heard from since `since`),
    /// that nobody needs any more: their shard is confirmed on enough other holders again, or
    /// was let go altogether. Only a candidate list: each delete is asked for after
    /// [`Store::claim_delete`].
    pub async fn surplus_copies_of_returned(
        &self,
        since: UnixMillis,
        retry_before: UnixMillis,
    ) -> Result<Vec<SurplusCopy>> {
        let rows = sql!(
            "SELECT a.id, a.device_id, a.blob_hash FROM allocations a JOIN devices d ON d.id = a.device_id \
             LEFT JOIN placements p ON p.hash = a.blob_hash AND p.subscriber_id = a.subscriber_id \
             WHERE a.state = 'lost' AND a.kind = 'storage' AND d.revoked_at IS NULL AND d.last_heartbeat >= $1 \
             AND (p.hash IS NULL OR p.satisfied_at IS NOT NULL) \
             AND (a.delete_asked_at IS NULL OR a.delete_asked_at < $2)",
            since,
            retry_before
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SurplusCopy {
                    allocation: parse_uuid(&row.try_get::<String, _>("id")?)?,
                    device: parse_uuid(&row.try_get::<String, _>("device_id")?)?,
                    hash: row.try_get("blob_hash")?,
                })
            })
            .collect()
    }

    /// Claims the right to tell a lost copy's holder to delete it, in one statement that checks
    /// nobody needs it: it is still lost (not taken back), no delete was asked since
    /// `retry_before` (an older one expired unanswered), and its shard has all its copies
    /// confirmed elsewhere or was let go. Only the claimant asks; false for everyone else.
    pub async fn claim_delete(
        &self,
        allocation: Uuid,
        retry_before: UnixMillis,
        now: UnixMillis,
    ) -> Result<bool> {
        let claimed = sql!(
            "UPDATE allocations SET delete_asked_at = $1 WHERE id = $2 AND state = 'lost' \
             AND (delete_asked_at IS NULL OR delete_asked_at < $3) \
             AND (NOT EXISTS (SELECT 1 FROM placements p WHERE p.hash = allocations.blob_hash \
                    AND p.subscriber_id = allocations.subscriber_id) \
                  OR EXISTS (SELECT 1 FROM placements p WHERE p.hash = allocations.blob_hash \
                    AND p.subscriber_id = allocations.subscriber_id AND p.satisfied_at IS NOT NULL \
                    AND (SELECT COUNT(*) FROM allocations l WHERE l.blob_hash = p.hash \
                      AND l.subscriber_id = p.subscriber_id AND l.state = 'active') >= p.copies))",
            now,
            allocation,
            retry_before
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(claimed > 0)
    }
}

/// A placed shard whose pack is known, as its pack's health sees it.
#[derive(Debug, Clone)]
pub struct PlacedShardRow {
    pub owner: Uuid,
    pub pack: String,
    pub data: u32,
    pub parity: u32,
    /// Holders that confirmed it and still hold it (active, or being handed over).
    pub held_by: Vec<Uuid>,
    pub staged: bool,
    /// It had a holder that was lost or failed.
    pub replaced: bool,
}

impl Store {
    /// The placed shards whose pack is known, of one subscriber or of all, by owner and pack.
    pub async fn placed_shards(&self, subscriber_id: Option<Uuid>) -> Result<Vec<PlacedShardRow>> {
        let rows = sql!(
            "SELECT p.subscriber_id, p.pack, p.hash, p.pack_data, p.pack_parity, b.staged, h.device_id AS holder, \
             (SELECT COUNT(*) FROM allocations a WHERE a.blob_hash = p.hash AND a.subscriber_id = p.subscriber_id \
              AND a.kind = 'storage' AND a.state IN ('lost', 'failed')) AS replaced \
             FROM placements p JOIN blobs b ON b.hash = p.hash \
             LEFT JOIN allocations h ON h.blob_hash = p.hash AND h.subscriber_id = p.subscriber_id \
               AND h.kind = 'storage' AND h.state IN ('active', 'evacuating') \
             WHERE ($1 IS NULL OR p.subscriber_id = $1) AND p.pack_data IS NOT NULL AND p.dropped_at IS NULL \
             ORDER BY p.subscriber_id, p.pack, p.hash",
            subscriber_id.map(|id| id.to_string())
        )
        .fetch_all(&self.pool)
        .await?;
        let mut shards: Vec<(String, PlacedShardRow)> = Vec::new();
        for row in &rows {
            let owner = parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?;
            let hash: String = row.try_get("hash")?;
            let holder = row
                .try_get::<Option<String>, _>("holder")?
                .map(|id| parse_uuid(&id))
                .transpose()?;
            if let Some((last_hash, last)) = shards.last_mut()
                && last.owner == owner
                && *last_hash == hash
            {
                last.held_by.extend(holder);
                continue;
            }
            let number = |column: &str| -> Result<u32> {
                Ok(u32::try_from(row.try_get::<i64, _>(column)?).unwrap_or(u32::MAX))
            };
            shards.push((
                hash,
                PlacedShardRow {
                    owner,
                    pack: row.try_get("pack")?,
                    data: number("pack_data")?,
                    parity: number("pack_parity")?,
                    held_by: holder.into_iter().collect(),
                    staged: row.try_get::<i64, _>("staged")? != 0,
                    replaced: row.try_get::<i64, _>("replaced")? > 0,
                },
            ));
        }
        Ok(shards.into_iter().map(|(_, shard)| shard).collect())
    }
}

/// How often a device was heard in each hour of the week, and when it registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceWeek {
    pub registered_at: UnixMillis,
    /// Presence slots heard in each hour of the week.
    pub heard: [u32; surplus_rules::presence::HOURS_PER_WEEK],
}

impl Store {
    /// How many presence slots of each hour of the week each device was heard in, from slot
    /// `first` on, with when it registered: what its usual week is made from, counted by the
    /// database (168 numbers a device) rather than read slot by slot.
    pub async fn presence_by_hour(&self, first: i64) -> Result<HashMap<Uuid, DeviceWeek>> {
        // A slot is 5 minutes, so an hour is 12 of them; the epoch fell 72 hours into its week.
        let rows = sql!(
            "SELECT p.device_id, d.created_at, (p.slot / 12 + 72) % 168 AS hour, COUNT(*) AS heard \
             FROM device_presence p JOIN devices d ON d.id = p.device_id \
             WHERE d.revoked_at IS NULL AND p.slot >= $1 \
             GROUP BY p.device_id, d.created_at, (p.slot / 12 + 72) % 168",
            first
        )
        .fetch_all(&self.pool)
        .await?;
        let mut counts = HashMap::new();
        for row in &rows {
            let device = parse_uuid(&row.try_get::<String, _>("device_id")?)?;
            let hour = usize::try_from(row.try_get::<i64, _>("hour")?).unwrap_or(0);
            let heard = u32::try_from(row.try_get::<i64, _>("heard")?).unwrap_or(u32::MAX);
            let entry = counts.entry(device).or_insert(DeviceWeek {
                registered_at: row.try_get("created_at")?,
                heard: [0u32; surplus_rules::presence::HOURS_PER_WEEK],
            });
            if let Some(count) = entry.heard.get_mut(hour) {
                *count = heard;
            }
        }
        Ok(counts)
    }
}
