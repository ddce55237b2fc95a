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
