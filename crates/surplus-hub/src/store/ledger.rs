//! The allocation ledger: every portion of a device's resources given to a subscriber.

use sqlx::Row;
use surplus_protocol::{Allocation, AllocationState, ResourceKind, UnixMillis};
use uuid::Uuid;

use super::sql;
use super::{Result, Store, StoreError, parse_allocation_state, parse_uuid, to_u64};

/// How a subscriber's ledger names another subscriber.
pub const OTHER_SUBSCRIBER: &str = "another subscriber";

/// How a subscriber's ledger names another subscriber's device.
pub const OTHER_DEVICE: &str = "another subscriber's device";

pub(super) async fn set_allocation_state_on(
    conn: &mut sqlx::AnyConnection,
    allocation_id: Uuid,
    state: AllocationState,
    now: UnixMillis,
) -> Result<()> {
    let released = matches!(
        state,
        AllocationState::Released | AllocationState::Failed | AllocationState::Lost
    )
    .then_some(now);
    sql!(
        "UPDATE allocations SET state = $1, released_at = COALESCE($2, released_at) WHERE id = $3",
        state.as_str(),
        released,
        allocation_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    pub async fn set_allocation_state(
        &self,
        allocation_id: Uuid,
        state: AllocationState,
        now: UnixMillis,
    ) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        set_allocation_state_on(&mut conn, allocation_id, state, now).await
    }

    pub async fn allocation_state(&self, allocation_id: Uuid) -> Result<Option<AllocationState>> {
        let row = sql!("SELECT state FROM allocations WHERE id = $1", allocation_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| parse_allocation_state(&row.try_get::<String, _>("state")?))
            .transpose()
    }

    /// The ledger, all of it or one subscriber's (as beneficiary or as donor), newest first.
    pub async fn ledger(&self, viewer: Option<Uuid>, limit: i64) -> Result<Vec<Allocation>> {
        const SELECT: &str = "SELECT a.id, s.email AS subscriber, a.subscriber_id, a.device_id, d.name AS device_name, \
             o.email AS donor, d.subscriber_id AS donor_id, a.kind, a.amount, a.purpose, a.state, a.created_at, \
             a.released_at FROM allocations a JOIN subscribers s ON s.id = a.subscriber_id \
             JOIN devices d ON d.id = a.device_id JOIN subscribers o ON o.id = d.subscriber_id";
        const MINE: &str = " WHERE a.subscriber_id = $1 OR d.subscriber_id = $1";
        const ORDER: &str = " ORDER BY a.created_at DESC, a.id";
        // The instructions of the same page of allocations, in one query rather than one each.
        const INSTRUCTIONS: &str = "SELECT i.allocation_id, i.id FROM instructions i WHERE i.allocation_id IN \
             (SELECT a.id FROM allocations a JOIN devices d ON d.id = a.device_id";
        let (rows, instruction_rows) = match viewer {
            Some(id) => {
                let page = format!("{SELECT}{MINE}{ORDER} LIMIT $2");
                let instructions =
                    format!("{INSTRUCTIONS}{MINE}{ORDER} LIMIT $2) ORDER BY i.created_at, i.id");
                (
                    sql!(&page, id, limit).fetch_all(&self.pool).await?,
                    sql!(&instructions, id, limit).fetch_all(&self.pool).await?,
                )
            }
            None => {
                let page = format!("{SELECT}{ORDER} LIMIT $1");
                let instructions =
                    format!("{INSTRUCTIONS}{ORDER} LIMIT $1) ORDER BY i.created_at, i.id");
                (
                    sql!(&page, limit).fetch_all(&self.pool).await?,
                    sql!(&instructions, limit).fetch_all(&self.pool).await?,
                )
            }
        };
        let mut instructions: std::collections::HashMap<String, Vec<Uuid>> =
            std::collections::HashMap::new();
        for row in &instruction_rows {
            instructions
                .entry(row.try_get("allocation_id")?)
                .or_default()
                .push(parse_uuid(&row.try_get::<String, _>("id")?)?);
        }
        let mut ledger = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            let mut allocation = Allocation {
                id: parse_uuid(&id)?,
                subscriber: row.try_get("subscriber")?,
                device_id: parse_uuid(&row.try_get::<String, _>("device_id")?)?,
                device_name: row.try_get("device_name")?,
                donor: row.try_get("donor")?,
                kind: ResourceKind::parse(&row.try_get::<String, _>("kind")?)
                    .ok_or_else(|| StoreError::Corrupt("allocation kind".into()))?,
                amount: to_u64(row.try_get("amount")?),
                purpose: row.try_get("purpose")?,
                state: parse_allocation_state(&row.try_get::<String, _>("state")?)?,
                instructions: instructions.remove(&id).unwrap_or_default(),
                created_at: row.try_get("created_at")?,
                released_at: row.try_get("released_at")?,
            };
            // A subscriber sees that their storage serves someone, or that someone's device
            // serves them, but not who: other subscribers' identities stay private.
            if let Some(viewer) = viewer {
                if parse_uuid(&row.try_get::<String, _>("subscriber_id")?)? != viewer {
                    allocation.subscriber = OTHER_SUBSCRIBER.to_owned();
                }
                if parse_uuid(&row.try_get::<String, _>("donor_id")?)? != viewer {
                    allocation.donor = OTHER_SUBSCRIBER.to_owned();
                    allocation.device_name = OTHER_DEVICE.to_owned();
                }
            }
            ledger.push(allocation);
        }
        Ok(ledger)
    }
}
