//! The SQL of the hot path: device credentials looked up many at a time, and heartbeats written
//! many to a statement.
//!
//! Every statement costs a round trip to the database's connection (on SQLite, a hand-over to
//! the connection's own thread and back), whatever it does. At thousands of heartbeats a second,
//! those round trips, not the work in them, are what the hub spends its time on, so a batch is
//! written in one or two statements rather than a few per heartbeat.
//!
//! A batch travels as one JSON parameter that the database unpacks (`json_each` on SQLite,
//! `jsonb_to_recordset` on PostgreSQL), so each statement's text is the same for every batch and
//! is prepared once per connection. A `VALUES` list with a placeholder per value would be a new
//! statement for every batch size, and SQLite takes longer to prepare one of fifty rows than to
//! run it.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;
use surplus_protocol::{Plan, Spare, SubscriberStatus, UnixMillis};
use uuid::Uuid;

use super::sql;
use super::{Backend, Result, Store, parse_plan, parse_status, parse_uuid, to_i64, to_json};

/// What authenticating a device yields.
#[derive(Debug, Clone)]
pub struct DeviceAuth {
    pub device_id: Uuid,
    pub subscriber_id: Uuid,
    pub secret_hash: String,
    pub revoked: bool,
    pub status: SubscriberStatus,
    pub plan: Plan,
}

/// One heartbeat, ready to be written.
#[derive(Debug, Clone)]
pub struct HeartbeatRow {
    pub device_id: Uuid,
    pub at: UnixMillis,
    /// The device's report as JSON, encoded by the request that brought it rather than by the
    /// one writer.
    pub report: String,
    pub spare: Spare,
    /// The presence slot to record, when it is one the writer has not recorded yet.
    pub new_slot: Option<i64>,
    /// The network it came from (`surplus_rules::placement::network_of`), recorded with each
    /// new presence slot.
    pub network: Option<String>,
    /// Its architecture class (`surplus_protocol::architecture_class` of its report's).
    pub arch_class: String,
}

/// The length of one presence slot.
pub const PRESENCE_SLOT_MS: i64 = 5 * 60 * 1000;

/// Away longer than this, a device that comes back is audited first: the at-risk floor of
/// [`surplus_rules::presence::PresencePolicy`].
const LONG_ABSENCE_MS: i64 = surplus_rules::presence::PresencePolicy::DEFAULT.at_risk_floor;

/// Back after a long absence: `returned_at` notes when, so that its shards are audited first.
/// The network is noted with each new presence slot.
const UPDATE_SET: &str = "UPDATE devices SET last_heartbeat = v.at, report = v.report, spare = v.spare, \
     spare_storage_bytes = v.storage, compute_slots = v.slots, arch_class = v.arch_class, \
     returned_at = CASE WHEN devices.last_heartbeat < v.absent_before THEN v.at ELSE devices.returned_at END, \
     network = CASE WHEN v.new_slot = 1 THEN v.network ELSE devices.network END";

const SQLITE_UPDATE_FROM: &str = "FROM (SELECT value ->> 'id' AS id, value ->> 'at' AS at, \
     value ->> 'report' AS report, value ->> 'spare' AS spare, value ->> 'storage' AS storage, \
     value ->> 'slots' AS slots, value ->> 'absent_before' AS absent_before, \
     value ->> 'new_slot' AS new_slot, value ->> 'network' AS network, \
     value ->> 'arch_class' AS arch_class FROM json_each($1)) AS v \
     WHERE devices.id = v.id";

const POSTGRES_UPDATE_FROM: &str = "FROM jsonb_to_recordset($1::jsonb) AS v(id TEXT, at BIGINT, \
     report TEXT, spare TEXT, storage BIGINT, slots BIGINT, absent_before BIGINT, new_slot BIGINT, \
     network TEXT, arch_class TEXT) WHERE devices.id = v.id";

/// (`WHERE true` keeps SQLite from reading `ON CONFLICT` as part of the `SELECT`.)
const SQLITE_INSERT_PRESENCE: &str = "INSERT INTO device_presence (device_id, slot) \
     SELECT value ->> 'device', value ->> 'slot' FROM json_each($1) WHERE true ON CONFLICT DO NOTHING";

const POSTGRES_INSERT_PRESENCE: &str = "INSERT INTO device_presence (device_id, slot) \
     SELECT device, slot FROM jsonb_to_recordset($1::jsonb) AS v(device TEXT, slot BIGINT) \
     ON CONFLICT DO NOTHING";

const SELECT_AUTH: &str = "SELECT d.id, d.subscriber_id, d.secret_hash, d.revoked_at, s.status, s.plan \
     FROM devices d JOIN subscribers s ON s.id = d.subscriber_id WHERE d.id IN ";

const SQLITE_IDS: &str = "(SELECT value FROM json_each($1))";

const POSTGRES_IDS: &str = "(SELECT jsonb_array_elements_text($1::jsonb))";

/// One device's row of a batch, as the statements above unpack it.
#[derive(Serialize)]
struct DeviceUpdate<'a> {
    id: Uuid,
    at: i64,
    report: &'a str,
    spare: String,
    storage: i64,
    slots: i64,
    absent_before: i64,
    new_slot: i64,
    network: Option<&'a str>,
    arch_class: &'a str,
}

#[derive(Serialize)]
struct PresenceSlot {
    device: Uuid,
    slot: i64,
}

impl Store {
    /// The credentials and standing of `device_ids`, for those that exist.
    pub async fn device_auths(&self, device_ids: &[Uuid]) -> Result<Vec<DeviceAuth>> {
        let ids = match self.backend {
            Backend::Sqlite => SQLITE_IDS,
            Backend::Postgres => POSTGRES_IDS,
        };
        let rows = sql!(&format!("{SELECT_AUTH}{ids}"), to_json(device_ids)?)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(DeviceAuth {
                    device_id: parse_uuid(&row.try_get::<String, _>("id")?)?,
                    subscriber_id: parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?,
                    secret_hash: row.try_get("secret_hash")?,
                    revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
                    status: parse_status(&row.try_get::<String, _>("status")?)?,
                    plan: parse_plan(&row.try_get::<String, _>("plan")?)?,
                })
            })
            .collect()
    }

    /// Writes a batch of heartbeats in one transaction (group commit): each device's newest
    /// report, and every presence slot the batch is the first to see.
    pub async fn record_heartbeats(&self, batch: &[HeartbeatRow]) -> Result<()> {
        // The newest heartbeat of each device is the one its row keeps. Devices go in id order,
        // so that two replicas writing overlapping batches lock rows in the same order.
        let mut newest: BTreeMap<Uuid, &HeartbeatRow> = BTreeMap::new();
        for beat in batch {
            let entry = newest.entry(beat.device_id).or_insert(beat);
            if beat.at >= entry.at {
                *entry = beat;
            }
        }
        let updates = newest
            .into_values()
            .map(|beat| {
                Ok(DeviceUpdate {
                    id: beat.device_id,
                    at: beat.at,
                    report: &beat.report,
                    spare: to_json(&beat.spare)?,
                    storage: to_i64(beat.spare.storage_bytes),
                    slots: i64::from(beat.spare.compute_slots),
                    absent_before: beat.at - LONG_ABSENCE_MS,
                    new_slot: i64::from(beat.new_slot.is_some()),
                    network: beat.network.as_deref(),
                    arch_class: &beat.arch_class,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut slots: Vec<(Uuid, i64)> = batch
            .iter()
            .filter_map(|beat| Some((beat.device_id, beat.new_slot?)))
            .collect();
        slots.sort_unstable();
        slots.dedup();
        let slots: Vec<PresenceSlot> = slots
            .into_iter()
            .map(|(device, slot)| PresenceSlot { device, slot })
            .collect();

        let (update_from, insert_presence) = match self.backend {
            Backend::Sqlite => (SQLITE_UPDATE_FROM, SQLITE_INSERT_PRESENCE),
            Backend::Postgres => (POSTGRES_UPDATE_FROM, POSTGRES_INSERT_PRESENCE),
        };
        let update_sql = format!("{UPDATE_SET} {update_from}");
        let update = sql!(&update_sql, to_json(&updates)?);
        if slots.is_empty() {
            // One statement is a transaction of its own.
            update.execute(&self.pool).await?;
            return Ok(());
        }
        let slots = to_json(&slots)?;
        self.transaction(async |tx| {
            update.execute(&mut *tx).await?;
            sql!(insert_presence, slots).execute(&mut *tx).await?;
            Ok(())
        })
        .await
    }
}
