//! Blobs in staging and who owns them.

use sqlx::Row;
use surplus_protocol::UnixMillis;
use uuid::Uuid;

use super::sql;
use super::{Result, Store, parse_uuid, to_u64};

/// A blob a subscriber owns: its size, and whether the hub has it staged now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnedBlob {
    pub size: u64,
    pub staged: bool,
}

impl Store {
    /// Bytes of blobs a subscriber owns that sit in staging now.
    pub async fn staged_bytes(&self, subscriber_id: Uuid) -> Result<u64> {
        let total: Option<i64> = sql!(
            "SELECT CAST(SUM(b.size) AS BIGINT) AS total FROM blobs b JOIN blob_owners o ON o.hash = b.hash \
             WHERE o.subscriber_id = $1 AND b.staged = 1",
            subscriber_id
        )
        .fetch_one(&self.pool)
        .await?
        .try_get("total")?;
        Ok(total.map(to_u64).unwrap_or(0))
    }

    /// Records a staged blob and that `subscriber_id` owns it.
    pub async fn record_blob(
        &self,
        hash: &str,
        size: u64,
        subscriber_id: Uuid,
        device_id: Option<Uuid>,
        now: UnixMillis,
    ) -> Result<()> {
        self.transaction(async |tx| {
            sql!(
                "INSERT INTO blobs (hash, size, created_at, staged, staged_at) VALUES ($1, $2, $3, 1, $3) \
                 ON CONFLICT (hash) DO UPDATE SET staged = 1, staged_at = $3",
                hash,
                size,
                now
            )
            .execute(&mut *tx)
            .await?;
            sql!(
                "INSERT INTO blob_owners (hash, subscriber_id, device_id, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (hash, subscriber_id) DO NOTHING",
                hash,
                subscriber_id,
                device_id.map(|d| d.to_string()),
                now
            )
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
        .await
    }

    /// The blob's size and whether it is staged, if `subscriber_id` owns it.
    pub async fn owned_blob(&self, hash: &str, subscriber_id: Uuid) -> Result<Option<OwnedBlob>> {
        let row = sql!(
            "SELECT b.size, b.staged FROM blobs b JOIN blob_owners o ON o.hash = b.hash \
             WHERE b.hash = $1 AND o.subscriber_id = $2",
            hash,
            subscriber_id
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(OwnedBlob {
                size: to_u64(row.try_get("size")?),
                staged: row.try_get::<i64, _>("staged")? != 0,
            })
        })
        .transpose()
    }

    /// Whether a device holds, or has been asked to hold, a blob.
    pub async fn device_allocated_blob(&self, device_id: Uuid, hash: &str) -> Result<bool> {
        Ok(sql!(
            "SELECT 1 AS one FROM allocations WHERE device_id = $1 AND blob_hash = $2 \
             AND state IN ('pending', 'active', 'evacuating')",
            device_id,
            hash
        )
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    pub async fn set_blob_staged(&self, hash: &str, staged: bool, now: UnixMillis) -> Result<()> {
        sql!(
            "UPDATE blobs SET staged = $1, staged_at = $2 WHERE hash = $3",
            i64::from(staged),
            staged.then_some(now),
            hash
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether any owner still needs the staged copy of a blob: one whose placement is not yet
    /// satisfied, or one who uploaded it and has not placed it yet.
    pub async fn blob_still_needed_in_staging(&self, hash: &str) -> Result<bool> {
        let row = sql!(
            "SELECT 1 AS one FROM blob_owners o WHERE o.hash = $1 AND NOT EXISTS \
             (SELECT 1 FROM placements p WHERE p.hash = o.hash AND p.subscriber_id = o.subscriber_id \
              AND p.satisfied_at IS NOT NULL)",
            hash
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Blobs staged since before `cutoff` that no owner needs staged any more: copies holders
    /// uploaded for a restore, which has had its time to fetch them.
    pub async fn stale_staged_blobs(&self, cutoff: UnixMillis) -> Result<Vec<String>> {
        let rows = sql!(
            "SELECT b.hash FROM blobs b WHERE b.staged = 1 AND b.staged_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM blob_owners o WHERE o.hash = b.hash AND NOT EXISTS \
               (SELECT 1 FROM placements p WHERE p.hash = o.hash AND p.subscriber_id = o.subscriber_id \
                AND p.satisfied_at IS NOT NULL))",
            cutoff
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok(row.try_get("hash")?)).collect()
    }

    /// Devices that hold, or are to hold, this content for any subscriber.
    pub async fn devices_holding(&self, hash: &str) -> Result<Vec<Uuid>> {
        let rows = sql!(
            "SELECT device_id FROM allocations WHERE blob_hash = $1 AND state IN ('pending', 'active', 'evacuating')",
            hash
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| parse_uuid(&row.try_get::<String, _>("device_id")?))
            .collect()
    }
}
