//! The SQL of audits: what the hub challenges on its own schedule, and what it remembers of the
//! answers (the `challenges` table, shared with `surplus verify`).

use std::collections::HashMap;

use sqlx::Row;
use surplus_protocol::UnixMillis;
use uuid::Uuid;

use super::sql;
use super::{Result, Store, parse_uuid, to_u64};

/// A shard held for someone, as an audit round sees it.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub allocation: Uuid,
    pub holder: Uuid,
    pub owner: Uuid,
    pub hash: String,
    pub size: u64,
    pub stored_at: UnixMillis,
    /// When it last passed a challenge.
    pub last_audit: Option<UnixMillis>,
    /// Whether a challenge of it sent after `pending_since` is unanswered.
    pub pending: bool,
    /// When its holder came back after being counted lost and the hub took this copy back.
    pub readopted_at: Option<UnixMillis>,
}

/// A device's answered challenges: how many passed and how many failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditScore {
    pub passed: u64,
    pub failed: u64,
}

impl Store {
    /// Every shard held for someone (active or being moved), with its audit history.
    pub async fn audit_rows(&self, pending_since: UnixMillis) -> Result<Vec<AuditRow>> {
        let rows = sql!(
            "SELECT a.id, a.device_id, a.subscriber_id, a.blob_hash, b.size, a.created_at, a.readopted_at, \
             (SELECT MAX(c.answered_at) FROM challenges c WHERE c.allocation_id = a.id AND c.state = 'passed') AS last_audit, \
             (SELECT COUNT(*) FROM challenges c WHERE c.allocation_id = a.id AND c.state = 'waiting' \
              AND c.created_at > $1) AS pending \
             FROM allocations a JOIN blobs b ON b.hash = a.blob_hash \
             WHERE a.kind = 'storage' AND a.state IN ('active', 'evacuating')",
            pending_since
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditRow {
                    allocation: parse_uuid(&row.try_get::<String, _>("id")?)?,
                    holder: parse_uuid(&row.try_get::<String, _>("device_id")?)?,
                    owner: parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?,
                    hash: row.try_get("blob_hash")?,
                    size: to_u64(row.try_get("size")?),
                    stored_at: row.try_get("created_at")?,
                    last_audit: row.try_get("last_audit")?,
                    pending: row.try_get::<i64, _>("pending")? > 0,
                    readopted_at: row.try_get("readopted_at")?,
                })
            })
            .collect()
    }

    /// Failed challenges (integrity failures) per device answered since `since`.
    pub async fn integrity_failures(&self, since: UnixMillis) -> Result<HashMap<Uuid, u32>> {
        let rows = sql!(
            "SELECT device_id, COUNT(*) AS failures FROM challenges \
             WHERE state = 'failed' AND answered_at >= $1 GROUP BY device_id",
            since
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    parse_uuid(&row.try_get::<String, _>("device_id")?)?,
                    u32::try_from(row.try_get::<i64, _>("failures")?).unwrap_or(u32::MAX),
                ))
            })
            .collect()
    }

    /// Challenges answered since `since`, per device.
    pub async fn audit_scores(&self, since: UnixMillis) -> Result<HashMap<Uuid, AuditScore>> {
        let rows = sql!(
            "SELECT device_id, \
             CAST(SUM(CASE WHEN state = 'passed' THEN 1 ELSE 0 END) AS BIGINT) AS passed, \
             CAST(SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) AS BIGINT) AS failed \
             FROM challenges WHERE answered_at >= $1 GROUP BY device_id",
            since
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    parse_uuid(&row.try_get::<String, _>("device_id")?)?,
                    AuditScore {
                        passed: to_u64(row.try_get("passed")?),
                        failed: to_u64(row.try_get("failed")?),
                    },
                ))
            })
            .collect()
    }

    /// When each device that ever came back after a long absence last did.
    pub async fn returned(&self) -> Result<HashMap<Uuid, UnixMillis>> {
        let rows = sql!("SELECT id, returned_at FROM devices WHERE returned_at IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    parse_uuid(&row.try_get::<String, _>("id")?)?,
                    row.try_get("returned_at")?,
                ))
            })
            .collect()
    }

    /// Devices heard from since `since`.
    pub async fn devices_heard_since(&self, since: UnixMillis) -> Result<Vec<Uuid>> {
        let rows = sql!(
            "SELECT id FROM devices WHERE revoked_at IS NULL AND last_heartbeat >= $1",
            since
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| parse_uuid(&row.try_get::<String, _>("id")?))
            .collect()
    }
}
