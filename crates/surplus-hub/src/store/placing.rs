//! The SQL of a placement pass: everything the decisions on the open placements need, read in
//! two queries for the whole pass rather than five for each placement.
//!
//! The scheduler then decides in memory, and notes each allocation it makes in the
//! [`PlacementContext`] so that the next decisions of the pass see it (two shards of one pack
//! never go to one holder, whichever order they are decided in).

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use sqlx::Row;
use surplus_protocol::{AllocationState, Instruction, InstructionKind, ResourceKind, UnixMillis};
use surplus_rules::placement::Allocation;
use uuid::Uuid;

use super::sql;
use super::{Backend, Result, Store, parse_allocation_state, parse_uuid, to_i64, to_json};

/// What deciding on the open placements needs, keyed by placement (`(hash, owner)`), by content
/// (`hash`) and by pack (`(owner, pack)`).
#[derive(Debug, Default)]
pub struct PlacementContext {
    /// Each placement's allocations, oldest first.
    allocations: HashMap<(String, Uuid), Vec<Allocation>>,
    /// The devices that hold, or are to hold, each content for anyone.
    holding: HashMap<String, Vec<Uuid>>,
    /// The devices to leave out of each content's next placement: those that failed to take it
    /// lately, and those that lost it.
    failed: HashMap<String, Vec<Uuid>>,
    /// The holders of each pack's shards (device, its subscriber).
    pack_holders: HashMap<(Uuid, String), Vec<(Uuid, Uuid)>>,
    /// The networks of each pack's holders, where known.
    pack_networks: HashMap<(Uuid, String), Vec<String>>,
}

impl PlacementContext {
    pub fn allocations(&self, hash: &str, owner: Uuid) -> &[Allocation] {
        self.allocations
            .get(&(hash.to_owned(), owner))
            .map_or(&[], Vec::as_slice)
    }

    pub fn holding(&self, hash: &str) -> &[Uuid] {
        self.holding.get(hash).map_or(&[], Vec::as_slice)
    }

    pub fn failed(&self, hash: &str) -> &[Uuid] {
        self.failed.get(hash).map_or(&[], Vec::as_slice)
    }

    pub fn pack_holders(&self, owner: Uuid, pack: &str) -> &[(Uuid, Uuid)] {
        self.pack_holders
            .get(&(owner, pack.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    pub fn pack_networks(&self, owner: Uuid, pack: &str) -> &[String] {
        self.pack_networks
            .get(&(owner, pack.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    /// Notes an allocation the pass just made: `holder` (of subscriber `holder_owner`, on
    /// `network`) is to hold `hash` for `owner`, a shard of `pack`.
    #[allow(clippy::too_many_arguments)]
    pub fn allocated(
        &mut self,
        allocation: Uuid,
        hash: &str,
        owner: Uuid,
        pack: Option<&str>,
        holder: Uuid,
        holder_owner: Uuid,
        network: Option<&str>,
    ) {
        self.allocations
            .entry((hash.to_owned(), owner))
            .or_default()
            .push(Allocation {
                id: allocation,
                device: holder,
                state: AllocationState::Pending,
            });
        push_new(self.holding.entry(hash.to_owned()).or_default(), holder);
        if let Some(pack) = pack {
            let key = (owner, pack.to_owned());
            push_new(
                self.pack_holders.entry(key.clone()).or_default(),
                (holder, holder_owner),
            );
            if let Some(network) = network {
                push_new(
                    self.pack_networks.entry(key).or_default(),
                    network.to_owned(),
                );
            }
        }
    }
}

fn push_new<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

impl Store {
    /// What the decisions on the open placements need: all of them, or only the placement of
    /// `only` (a request placing one blob costs the same however many others wait). A failure
    /// older than `failed_since` no longer keeps a device out.
    pub async fn placement_context(
        &self,
        only: Option<(&str, Uuid)>,
        failed_since: UnixMillis,
    ) -> Result<PlacementContext> {
        let (hash, owner) = match only {
            Some((hash, owner)) => (Some(hash), Some(owner.to_string())),
            None => (None, None),
        };
        let mut context = PlacementContext::default();
        // Every allocation of content an open placement wants, for anyone.
        let rows = sql!(
            "SELECT a.id, a.blob_hash, a.subscriber_id, a.device_id, a.state, a.released_at FROM allocations a \
             WHERE a.blob_hash IN (SELECT p.hash FROM placements p WHERE p.satisfied_at IS NULL \
               AND p.dropped_at IS NULL AND ($1 IS NULL OR p.hash = $1)) \
             ORDER BY a.created_at, a.id",
            hash
        )
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let id = parse_uuid(&row.try_get::<String, _>("id")?)?;
            let hash: String = row.try_get("blob_hash")?;
            let owner = parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?;
            let device = parse_uuid(&row.try_get::<String, _>("device_id")?)?;
            let state = parse_allocation_state(&row.try_get::<String, _>("state")?)?;
            let released_at: Option<i64> = row.try_get("released_at")?;
            use AllocationState::{Active, Evacuating, Failed, Lost, Pending};
            if matches!(state, Pending | Active | Evacuating) {
                push_new(context.holding.entry(hash.clone()).or_default(), device);
            }
            let failed_lately = state == Failed && released_at.is_some_and(|at| at >= failed_since);
            if failed_lately || state == Lost {
                push_new(context.failed.entry(hash.clone()).or_default(), device);
            }
            context
                .allocations
                .entry((hash, owner))
                .or_default()
                .push(Allocation { id, device, state });
        }
        // The live holders of every pack an open placement belongs to.
        let rows = sql!(
            "SELECT DISTINCT p.subscriber_id, p.pack, d.id, d.subscriber_id AS holder_owner, d.network \
             FROM placements p \
             JOIN allocations a ON a.blob_hash = p.hash AND a.subscriber_id = p.subscriber_id \
             JOIN devices d ON d.id = a.device_id \
             WHERE a.state IN ('pending', 'active', 'evacuating') AND p.pack IS NOT NULL \
             AND EXISTS (SELECT 1 FROM placements o WHERE o.subscriber_id = p.subscriber_id \
               AND o.pack = p.pack AND o.satisfied_at IS NULL AND o.dropped_at IS NULL \
               AND ($1 IS NULL OR (o.hash = $1 AND o.subscriber_id = $2)))",
            hash,
            owner
        )
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let owner = parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?;
            let pack: String = row.try_get("pack")?;
            let holder = parse_uuid(&row.try_get::<String, _>("id")?)?;
            let holder_owner = parse_uuid(&row.try_get::<String, _>("holder_owner")?)?;
            let network: Option<String> = row.try_get("network")?;
            let key = (owner, pack);
            push_new(
                context.pack_holders.entry(key.clone()).or_default(),
                (holder, holder_owner),
            );
            if let Some(network) = network {
                push_new(context.pack_networks.entry(key).or_default(), network);
            }
        }
        Ok(context)
    }
}

/// One allocation a placement pass decided on, to be written with the others of its batch.
#[derive(Debug, Clone)]
pub struct NewBlobAllocation {
    pub id: Uuid,
    pub owner: Uuid,
    pub device: Uuid,
    pub blob: surplus_protocol::BlobRef,
    pub purpose: surplus_rules::handover::Purpose,
}

#[derive(Serialize)]
struct AllocationRow<'a> {
    id: Uuid,
    owner: Uuid,
    device: Uuid,
    amount: i64,
    purpose: String,
    hash: &'a str,
}

#[derive(Serialize)]
struct InstructionRow {
    id: Uuid,
    device: Uuid,
    allocation: Uuid,
    body: String,
}

const SQLITE_INSERT_ALLOCATIONS: &str = "INSERT INTO allocations (id, subscriber_id, device_id, kind, amount, purpose, blob_hash, state, created_at) \
     SELECT value ->> 'id', value ->> 'owner', value ->> 'device', $2, value ->> 'amount', \
     value ->> 'purpose', value ->> 'hash', 'pending', $3 FROM json_each($1) WHERE true \
     ON CONFLICT DO NOTHING RETURNING id";

const POSTGRES_INSERT_ALLOCATIONS: &str = "INSERT INTO allocations (id, subscriber_id, device_id, kind, amount, purpose, blob_hash, state, created_at) \
     SELECT v.id, v.owner, v.device, $2, v.amount, v.purpose, v.hash, 'pending', $3 \
     FROM jsonb_to_recordset($1::jsonb) AS v(id TEXT, owner TEXT, device TEXT, amount BIGINT, purpose TEXT, hash TEXT) \
     ON CONFLICT DO NOTHING RETURNING id";

const SQLITE_INSERT_INSTRUCTIONS: &str = "INSERT INTO instructions (id, device_id, allocation_id, kind, body, state, created_at, expires_at) \
     SELECT value ->> 'id', value ->> 'device', value ->> 'allocation', $2, value ->> 'body', 'queued', $3, $4 \
     FROM json_each($1)";

const POSTGRES_INSERT_INSTRUCTIONS: &str = "INSERT INTO instructions (id, device_id, allocation_id, kind, body, state, created_at, expires_at) \
     SELECT v.id, v.device, v.allocation, $2, v.body, 'queued', $3, $4 \
     FROM jsonb_to_recordset($1::jsonb) AS v(id TEXT, device TEXT, allocation TEXT, body TEXT)";

impl Store {
    /// Allocates storage for a batch of blobs (each for its purpose: first store, hand-over or
    /// repair) and queues the instructions that use them, in one transaction: the ledger never
    /// shows an allocation without its instruction, nor the reverse. An allocation that would
    /// put a second live copy of a content on one device (another process placed it meanwhile)
    /// is left out: its place in the answer is `None`.
    pub async fn allocate_blob_storage(
        &self,
        batch: &[NewBlobAllocation],
        now: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<Vec<Option<Instruction>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let rows = batch
            .iter()
            .map(|a| AllocationRow {
                id: a.id,
                owner: a.owner,
                device: a.device,
                amount: to_i64(a.blob.size),
                purpose: a.purpose.describe(&a.blob.hash),
                hash: &a.blob.hash,
            })
            .collect::<Vec<_>>();
        let (insert_allocations, insert_instructions) = match self.backend {
            Backend::Sqlite => (SQLITE_INSERT_ALLOCATIONS, SQLITE_INSERT_INSTRUCTIONS),
            Backend::Postgres => (POSTGRES_INSERT_ALLOCATIONS, POSTGRES_INSERT_INSTRUCTIONS),
        };
        self.transaction(async |tx| {
            let inserted: HashSet<Uuid> = sql!(
                insert_allocations,
                to_json(&rows)?,
                ResourceKind::Storage.as_str(),
                now
            )
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| parse_uuid(&row.try_get::<String, _>("id")?))
            .collect::<Result<_>>()?;
            let mut queued = Vec::with_capacity(batch.len());
            let mut instructions = Vec::with_capacity(inserted.len());
            for allocation in batch {
                if !inserted.contains(&allocation.id) {
                    queued.push(None);
                    continue;
                }
                // Version 7 UUIDs sort by creation time, which keeps a device's queue in order.
                let id = Uuid::now_v7();
                let kind = InstructionKind::StoreBlob {
                    blob: allocation.blob.clone(),
                    allocation_id: allocation.id,
                };
                instructions.push(InstructionRow {
                    id,
                    device: allocation.device,
                    allocation: allocation.id,
                    body: to_json(&kind)?,
                });
                queued.push(Some(Instruction {
                    id,
                    created_at: now,
                    expires_at,
                    kind,
                }));
            }
            if !instructions.is_empty() {
                sql!(
                    insert_instructions,
                    to_json(&instructions)?,
                    "store_blob",
                    now,
                    expires_at
                )
                .execute(&mut *tx)
                .await?;
            }
            Ok(queued)
        })
        .await
    }
}
