//! The SQL of loss detection: which devices hold data for others, when they were last there, and
//! counting a holder lost, once.

use sqlx::Row;
use surplus_protocol::UnixMillis;
use uuid::Uuid;

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
        let rows = sqlx::query(
            "SELECT d.id, d.created_at, d.last_heartbeat FROM devices d \
             WHERE EXISTS (SELECT 1 FROM allocations a WHERE a.device_id = d.id AND a.kind = 'storage' \
             AND a.state IN ('pending', 'active', 'evacuating'))",
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
        let rows = sqlx::query(
            "SELECT slot FROM device_presence WHERE device_id = $1 AND slot >= $2 ORDER BY slot",
        )
        .bind(device_id.to_string())
        .bind(since_slot)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok(row.try_get("slot")?)).collect()
    }

    /// Counts a holder lost, in one transaction: the placements its live storage allocations
    /// served reopen, and those allocations become `lost`. Returns how many; a second call (or
    /// another process's) finds none left and changes nothing.
    pub async fn lose_holder(&self, device_id: Uuid, now: UnixMillis) -> Result<u64> {
        let device = device_id.to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE placements SET satisfied_at = NULL WHERE EXISTS (SELECT 1 FROM allocations a \
             WHERE a.device_id = $1 AND a.kind = 'storage' AND a.state IN ('pending', 'active', 'evacuating') \
             AND a.blob_hash = placements.hash AND a.subscriber_id = placements.subscriber_id)",
        )
        .bind(&device)
        .execute(&mut *tx)
        .await?;
        let lost = sqlx::query(
            "UPDATE allocations SET state = 'lost', released_at = $1 WHERE device_id = $2 \
             AND kind = 'storage' AND state IN ('pending', 'active', 'evacuating')",
        )
        .bind(now)
        .bind(&device)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(lost)
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
    /// A storage allocation of it that is still live (pending, active or being moved), with
    /// its holder: (allocation, device, whether the holder confirmed it).
    pub holders: Vec<(Uuid, Uuid, bool)>,
}

impl Store {
    /// Every shard of every pack that has a lost shard: a placement, not forgotten, whose shard
    /// is neither staged nor allocated to a live holder. Only shards whose place in their pack
    /// is known count.
    pub async fn packs_with_lost_shards(&self) -> Result<Vec<PackShardRow>> {
        let rows = sqlx::query(
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
             ORDER BY p.subscriber_id, p.pack, p.shard_index, p.hash",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut shards: Vec<PackShardRow> = Vec::new();
        for row in &rows {
            let owner = parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?;
            let hash: String = row.try_get("hash")?;
            let holder = match row.try_get::<Option<String>, _>("allocation")? {
                Some(allocation) => Some((
                    parse_uuid(&allocation)?,
                    parse_uuid(&row.try_get::<String, _>("device_id")?)?,
                    row.try_get::<String, _>("state")? != "pending",
                )),
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

impl Store {
    /// Copies kept by holders that were counted lost and are back (heard from since `since`),
    /// that nobody needs any more: their shard is confirmed on enough other holders again, or
    /// was let go altogether. (allocation, device, hash), each once: a delete already asked for
    /// is not asked again.
    pub async fn surplus_copies_of_returned(
        &self,
        since: UnixMillis,
    ) -> Result<Vec<(Uuid, Uuid, String)>> {
        let rows = sqlx::query(
            "SELECT a.id, a.device_id, a.blob_hash FROM allocations a JOIN devices d ON d.id = a.device_id \
             LEFT JOIN placements p ON p.hash = a.blob_hash AND p.subscriber_id = a.subscriber_id \
             WHERE a.state = 'lost' AND a.kind = 'storage' AND d.revoked_at IS NULL AND d.last_heartbeat >= $1 \
             AND (p.hash IS NULL OR p.satisfied_at IS NOT NULL) \
             AND NOT EXISTS (SELECT 1 FROM instructions i WHERE i.allocation_id = a.id AND i.kind = 'delete_blob')",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    parse_uuid(&row.try_get::<String, _>("id")?)?,
                    parse_uuid(&row.try_get::<String, _>("device_id")?)?,
                    row.try_get("blob_hash")?,
                ))
            })
            .collect()
    }
}

impl Store {
    /// The subscriber's placed shards whose pack is known, by pack: (pack, data, parity, shard).
    pub async fn placed_shards(
        &self,
        subscriber_id: Uuid,
    ) -> Result<Vec<(String, u32, u32, surplus_rules::health::PlacedShard)>> {
        let rows = sqlx::query(
            "SELECT p.pack, p.pack_data, p.pack_parity, b.staged, \
             (SELECT COUNT(*) FROM allocations a WHERE a.blob_hash = p.hash AND a.subscriber_id = p.subscriber_id \
              AND a.kind = 'storage' AND a.state IN ('active', 'evacuating')) AS held, \
             (SELECT COUNT(*) FROM allocations a WHERE a.blob_hash = p.hash AND a.subscriber_id = p.subscriber_id \
              AND a.kind = 'storage' AND a.state IN ('lost', 'failed')) AS replaced \
             FROM placements p JOIN blobs b ON b.hash = p.hash \
             WHERE p.subscriber_id = $1 AND p.pack_data IS NOT NULL AND p.dropped_at IS NULL ORDER BY p.pack",
        )
        .bind(subscriber_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let number = |column: &str| -> Result<u32> {
                    Ok(u32::try_from(row.try_get::<i64, _>(column)?).unwrap_or(u32::MAX))
                };
                Ok((
                    row.try_get("pack")?,
                    number("pack_data")?,
                    number("pack_parity")?,
                    surplus_rules::health::PlacedShard {
                        held: row.try_get::<i64, _>("held")? > 0,
                        staged: row.try_get::<i64, _>("staged")? != 0,
                        replaced: row.try_get::<i64, _>("replaced")? > 0,
                    },
                ))
            })
            .collect()
    }
}
