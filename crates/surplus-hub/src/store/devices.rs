//! Devices: registering, listing and revoking them, and their latest report.

use sqlx::Row;
use sqlx::any::AnyRow;
use surplus_protocol::{Spare, StatusReport, UnixMillis};
use uuid::Uuid;

use super::sql;
use super::{Result, Store, StoreError, parse_uuid, to_json};

/// The architecture class a device's report puts it in, as the hub keeps it: at most 32
/// characters of whatever an agent claims.
pub fn arch_class(report: &StatusReport) -> String {
    surplus_protocol::architecture_class(&report.arch)
        .chars()
        .take(32)
        .collect()
}

/// A device row as the API lists it, before availability is added.
#[derive(Debug, Clone)]
pub struct DeviceRow {
    pub id: Uuid,
    pub name: String,
    pub subscriber_id: Uuid,
    pub subscriber_email: String,
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
    pub last_heartbeat: Option<UnixMillis>,
    pub report: Option<StatusReport>,
    pub spare: Spare,
}

fn device_from_row(row: &AnyRow) -> Result<DeviceRow> {
    let report: Option<String> = row.try_get("report")?;
    let spare: Option<String> = row.try_get("spare")?;
    Ok(DeviceRow {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        name: row.try_get("name")?,
        subscriber_id: parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?,
        subscriber_email: row.try_get("email")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_heartbeat: row.try_get("last_heartbeat")?,
        report: report
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        spare: spare
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?
            .unwrap_or_default(),
    })
}

impl Store {
    pub async fn create_device(
        &self,
        subscriber_id: Uuid,
        name: &str,
        secret_hash: &str,
        now: UnixMillis,
    ) -> Result<Uuid> {
        let id = Uuid::now_v7();
        sql!(
            "INSERT INTO devices (id, subscriber_id, name, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
            id,
            subscriber_id,
            name,
            secret_hash,
            now
        )
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    pub async fn count_live_devices(&self, subscriber_id: Uuid) -> Result<u32> {
        let count: i64 = sql!(
            "SELECT COUNT(*) AS n FROM devices WHERE subscriber_id = $1 AND revoked_at IS NULL",
            subscriber_id
        )
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// Devices, all of them or one subscriber's, oldest first.
    pub async fn devices(&self, subscriber_id: Option<Uuid>) -> Result<Vec<DeviceRow>> {
        const SELECT: &str = "SELECT d.id, d.name, d.subscriber_id, s.email, d.created_at, d.revoked_at, \
             d.last_heartbeat, d.report, d.spare FROM devices d JOIN subscribers s ON s.id = d.subscriber_id";
        let rows = match subscriber_id {
            Some(id) => {
                sql!(
                    &format!(
                        "{SELECT}{}",
                        " WHERE d.subscriber_id = $1 ORDER BY d.created_at, d.id"
                    ),
                    id
                )
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sql!(&format!(
                    "{SELECT}{}",
                    " ORDER BY s.email, d.created_at, d.id"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(device_from_row).collect()
    }

    pub async fn device(&self, device_id: Uuid) -> Result<DeviceRow> {
        let row = sql!(
            "SELECT d.id, d.name, d.subscriber_id, s.email, d.created_at, d.revoked_at, \
             d.last_heartbeat, d.report, d.spare FROM devices d JOIN subscribers s ON s.id = d.subscriber_id \
             WHERE d.id = $1",
            device_id
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        device_from_row(&row)
    }

    /// Revokes one of a subscriber's devices. Its pending instructions are cancelled.
    pub async fn revoke_device(
        &self,
        subscriber_id: Uuid,
        device_id: Uuid,
        now: UnixMillis,
    ) -> Result<()> {
        self.transaction(async |tx| {
            let done = sql!(
                "UPDATE devices SET revoked_at = $1 WHERE id = $2 AND subscriber_id = $3 AND revoked_at IS NULL",
                now,
                device_id,
                subscriber_id
            )
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                let exists = sql!(
                    "SELECT 1 AS one FROM devices WHERE id = $1 AND subscriber_id = $2",
                    device_id,
                    subscriber_id
                )
                .fetch_optional(&mut *tx)
                .await?;
                return if exists.is_some() {
                    Ok(())
                } else {
                    Err(StoreError::NotFound)
                };
            }
            sql!(
                "UPDATE instructions SET state = 'cancelled', completed_at = $1 \
                 WHERE device_id = $2 AND state IN ('queued', 'delivered')",
                now,
                device_id
            )
            .execute(&mut *tx)
            .await?;
            // What the device held is lost with it: its placements want a new holder.
            sql!(
                "UPDATE placements SET satisfied_at = NULL WHERE EXISTS (SELECT 1 FROM allocations a \
                 WHERE a.device_id = $1 AND a.blob_hash = placements.hash AND a.subscriber_id = placements.subscriber_id \
                 AND a.state IN ('pending', 'active', 'evacuating'))",
                device_id
            )
            .execute(&mut *tx)
            .await?;
            // A revoked holder has left for good: what it held counts as lost at once (runs it had
            // simply fail).
            sql!(
                "UPDATE allocations SET state = CASE WHEN kind = 'storage' THEN 'lost' ELSE 'failed' END, \
                 released_at = $1 WHERE device_id = $2 AND state IN ('pending', 'active', 'evacuating')",
                now,
                device_id
            )
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
        .await
    }

    /// Replaces a device's latest report and spare resources, unless a newer heartbeat has been
    /// recorded since `seen_heartbeat` (that one is fresher, and wins).
    pub async fn update_report_if_unchanged(
        &self,
        device_id: Uuid,
        seen_heartbeat: UnixMillis,
        report: &StatusReport,
        spare: Spare,
    ) -> Result<()> {
        let class = arch_class(report);
        let report = to_json(report)?;
        let spare_json = to_json(&spare)?;
        sql!(
            "UPDATE devices SET report = $1, spare = $2, spare_storage_bytes = $3, compute_slots = $4, \
             arch_class = $7 WHERE id = $5 AND last_heartbeat = $6",
            report,
            spare_json,
            spare.storage_bytes,
            i64::from(spare.compute_slots),
            device_id,
            seen_heartbeat,
            class
        )
        .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How many presence slots a device has since `since`.
    pub async fn presence_slots(&self, device_id: Uuid, since_slot: i64) -> Result<i64> {
        Ok(sql!(
            "SELECT COUNT(*) AS n FROM device_presence WHERE device_id = $1 AND slot >= $2",
            device_id,
            since_slot
        )
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?)
    }
}
