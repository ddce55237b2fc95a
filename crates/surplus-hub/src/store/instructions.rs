//! Each device's queue of instructions: queued, delivered (leased), acknowledged or expired.

use sqlx::Row;
use surplus_protocol::{AllocationState, Instruction, InstructionKind, UnixMillis};
use uuid::Uuid;

use super::sql;
use super::{Result, Store, StoreError, parse_uuid, set_allocation_state_on, text_enum, to_json};

text_enum! {
    /// Where an instruction stands in its device's queue.
    pub enum InstructionState {
        /// Waiting for the device's next poll.
        Queued = "queued",
        /// Handed to the device; handed out again if no acknowledgement comes within the lease.
        Delivered = "delivered",
        /// Acknowledged as carried out.
        Done = "done",
        /// Acknowledged as failed.
        Failed = "failed",
        /// Withdrawn by the hub (the device was revoked, the run was cancelled).
        Cancelled = "cancelled",
        /// Not acknowledged before it expired.
        Expired = "expired",
    }
}

/// An instruction's stored state.
#[derive(Debug, Clone)]
pub struct InstructionRow {
    pub instruction: Instruction,
    pub device_id: Uuid,
    pub allocation_id: Option<Uuid>,
    pub state: InstructionState,
    pub result: Option<String>,
}

pub(super) async fn enqueue_on(
    conn: &mut sqlx::AnyConnection,
    device_id: Uuid,
    allocation_id: Option<Uuid>,
    kind: &InstructionKind,
    now: UnixMillis,
    expires_at: UnixMillis,
) -> Result<Instruction> {
    // Version 7 UUIDs sort by creation time, which keeps a device's queue in order.
    let id = Uuid::now_v7();
    let body = to_json(kind)?;
    sql!(
        "INSERT INTO instructions (id, device_id, allocation_id, kind, body, state, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7)",
        id,
        device_id,
        allocation_id.map(|a| a.to_string()),
        kind.name(),
        body,
        now,
        expires_at
    )
    .execute(&mut *conn)
    .await?;
    Ok(Instruction {
        id,
        created_at: now,
        expires_at,
        kind: kind.clone(),
    })
}

impl Store {
    /// Queues an instruction for a device.
    pub async fn enqueue(
        &self,
        device_id: Uuid,
        allocation_id: Option<Uuid>,
        kind: &InstructionKind,
        now: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<Instruction> {
        let mut conn = self.pool.acquire().await?;
        enqueue_on(&mut conn, device_id, allocation_id, kind, now, expires_at).await
    }

    /// Hands out what a device should do now: queued instructions, and delivered ones whose
    /// acknowledgement has not come within `lease_ms` (at-least-once delivery).
    pub async fn take_deliverable(
        &self,
        device_id: Uuid,
        now: UnixMillis,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Instruction>> {
        let rows = sql!(
            "SELECT id, kind, body, created_at, expires_at FROM instructions WHERE device_id = $1 \
             AND expires_at > $2 AND (state = 'queued' OR (state = 'delivered' AND delivered_at < $3)) \
             ORDER BY created_at, id LIMIT $4",
            device_id,
            now,
            now - lease_ms,
            limit
        )
        .fetch_all(&self.pool)
        .await?;
        let mut batch = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            sql!(
                "UPDATE instructions SET state = 'delivered', delivered_at = $1, attempts = attempts + 1 \
                 WHERE id = $2 AND state IN ('queued', 'delivered')",
                now,
                &id
            )
            .execute(&self.pool)
            .await?;
            let body: String = row.try_get("body")?;
            batch.push(Instruction {
                id: parse_uuid(&id)?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
                kind: serde_json::from_str(&body)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            });
        }
        Ok(batch)
    }

    pub async fn instruction(&self, id: Uuid) -> Result<InstructionRow> {
        let row = sql!(
            "SELECT id, device_id, allocation_id, body, state, created_at, expires_at, result \
             FROM instructions WHERE id = $1",
            id
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let body: String = row.try_get("body")?;
        Ok(InstructionRow {
            instruction: Instruction {
                id,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
                kind: serde_json::from_str(&body)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            },
            device_id: parse_uuid(&row.try_get::<String, _>("device_id")?)?,
            allocation_id: row
                .try_get::<Option<String>, _>("allocation_id")?
                .as_deref()
                .map(parse_uuid)
                .transpose()?,
            state: row.try_get::<String, _>("state")?.parse()?,
            result: row.try_get("result")?,
        })
    }

    /// Records how an instruction ended and, in the same transaction, what that means for the
    /// allocation it served. Returns false if it had already ended (a repeated acknowledgement),
    /// in which case nothing changes.
    pub async fn complete_instruction(
        &self,
        id: Uuid,
        state: InstructionState,
        result: &str,
        now: UnixMillis,
        allocation: Option<(Uuid, AllocationState)>,
    ) -> Result<bool> {
        self.transaction(async |tx| {
            let done = sql!(
                "UPDATE instructions SET state = $1, result = $2, completed_at = $3 \
                 WHERE id = $4 AND state IN ('queued', 'delivered')",
                state.as_str(),
                result,
                now,
                id
            )
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
            if let Some((allocation_id, allocation_state)) = allocation {
                set_allocation_state_on(tx, allocation_id, allocation_state, now).await?;
            }
            Ok(true)
        })
        .await
    }

    /// Devices with instructions queued since `since`, for waking long polls in other processes.
    pub async fn devices_with_new_instructions(&self, since: UnixMillis) -> Result<Vec<Uuid>> {
        let rows = sql!(
            "SELECT DISTINCT device_id FROM instructions WHERE state = 'queued' AND created_at >= $1",
            since
        )
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| parse_uuid(&row.try_get::<String, _>("device_id")?))
            .collect()
    }

    /// Marks instructions past their expiry as expired and fails the allocations they served.
    /// Returns how many expired.
    pub async fn expire_instructions(&self, now: UnixMillis) -> Result<u64> {
        self.transaction(async |tx| {
            sql!(
                "UPDATE allocations SET state = 'failed', released_at = $1 WHERE state = 'pending' AND id IN \
                 (SELECT allocation_id FROM instructions WHERE state IN ('queued', 'delivered') AND expires_at <= $1 \
                  AND allocation_id IS NOT NULL AND kind = 'store_blob')",
                now
            )
            .execute(&mut *tx)
            .await?;
            let done = sql!(
                "UPDATE instructions SET state = 'expired', completed_at = $1 \
                 WHERE state IN ('queued', 'delivered') AND expires_at <= $1",
                now
            )
            .execute(&mut *tx)
            .await?;
            Ok(done.rows_affected())
        })
        .await
    }

    /// Whether a device already has an upload of this blob waiting or under way.
    pub async fn upload_requested(&self, device_id: Uuid, hash: &str) -> Result<bool> {
        let pattern = format!("%\"hash\":\"{hash}\"%");
        Ok(sql!(
            "SELECT 1 AS one FROM instructions WHERE device_id = $1 AND kind = 'upload_blob' \
             AND state IN ('queued', 'delivered') AND body LIKE $2",
            device_id,
            pattern
        )
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }
}
