//! Repair: rebuilding the shards of packs whose holders were lost, with nobody's PC but the
//! holders' online.
//!
//! The hub rebuilds, through its staging: every transfer passes through the hub anyway, so this
//! moves the fewest bytes through it (`data` shards in, the lost ones out; a donor rebuilding
//! would move `data - 1` in and out, then the rebuilt ones in and out again). Each round, the
//! packs whose health needs repair ([`surplus_rules::health`]) are taken closest to loss first,
//! within a byte budget. A pack's repair runs over rounds and keeps no state of its own:
//!
//! 1. **Gather**: until `data` of its shards are staged, holders of live shards that are online
//!    are asked to upload theirs (once; as for a restore).
//! 2. **Rebuild**: [`surplus_backup::erasure::reshard`] makes the pack's shards again, byte for
//!    byte, without the key; each lost one is checked against its name and staged.
//! 3. **Place**: a lost shard's placement was reopened when its holder was counted lost, so the
//!    scheduler now places the staged shard on a new holder under the usual rules, and drops
//!    the staged copies once every copy is confirmed.
//!
//! Every step is idempotent (content-addressed staging, uploads asked once), so rounds that
//! overlap, in one process or several, repeat work at worst and never double it in the ledger.

use std::collections::HashSet;

use surplus_protocol::InstructionKind;
use surplus_rules::health::{PackHealth, RepairCandidate, plan_repairs};
use uuid::Uuid;

use crate::hub::Hub;
use crate::store::{PackShardRow, StoreError, Traffic};

/// How often a round runs (the scheduler's 10-second sweep): a round's budget is this many
/// seconds of [`surplus_rules::health::repair_rate`].
const ROUND_SECONDS: u64 = 10;

/// One round of repairs. Returns the shards rebuilt and staged in it.
#[tracing::instrument(skip(hub), name = "repair")]
pub async fn round(hub: &Hub, now: i64) -> Result<usize, StoreError> {
    let rows = hub.store.packs_with_lost_shards().await?;
    if rows.is_empty() {
        return Ok(0);
    }
    // The budget grows with what the hub keeps: a fixed one makes repairs queue at scale.
    let budget = surplus_rules::health::repair_rate(hub.store.stored_bytes().await?)
        .saturating_mul(ROUND_SECONDS);
    let mut packs: Vec<Vec<PackShardRow>> = Vec::new();
    for row in rows {
        match packs.last_mut() {
            Some(pack) if pack[0].owner == row.owner && pack[0].pack == row.pack => pack.push(row),
            _ => packs.push(vec![row]),
        }
    }
    let threshold = hub.settings.repair_threshold;
    let candidates: Vec<RepairCandidate<usize>> = packs
        .iter()
        .enumerate()
        .filter_map(|(at, shards)| {
            let health = health_of(shards);
            health.needs_repair(threshold).then(|| RepairCandidate {
                pack: at,
                health,
                bytes: shards[0].size * u64::from(health.needed + health.lost),
            })
        })
        .collect();
    let online: HashSet<Uuid> = hub
        .store
        .devices_heard_since(now - hub.settings.online_window_ms())
        .await?
        .into_iter()
        .collect();
    let mut rebuilt = 0;
    for candidate in plan_repairs(candidates, budget) {
        rebuilt += repair_pack(hub, &packs[candidate.pack], &online, now).await?;
    }
    Ok(rebuilt)
}

/// A pack's health from its placed shards: live when staged or held, lost otherwise. (Shards
/// not placed yet, as while a backup is still uploading, count neither way.)
fn health_of(shards: &[PackShardRow]) -> PackHealth {
    let lost = shards.iter().filter(|s| is_lost(s)).count() as u32;
    PackHealth {
        needed: shards[0].data,
        shards: shards[0].data + shards[0].parity,
        live: shards.len() as u32 - lost,
        at_risk: 0,
        lost,
    }
}

fn is_lost(shard: &PackShardRow) -> bool {
    !shard.staged && shard.holders.is_empty()
}

async fn repair_pack(
    hub: &Hub,
    shards: &[PackShardRow],
    online: &HashSet<Uuid>,
    now: i64,
) -> Result<usize, StoreError> {
    let needed = shards[0].data as usize;
    let staged: Vec<&PackShardRow> = shards.iter().filter(|s| s.staged).collect();
    if staged.len() < needed {
        gather(hub, shards, needed - staged.len(), online, now).await?;
        return Ok(0);
    }
    let mut pieces = Vec::with_capacity(staged.len());
    for shard in &staged {
        match hub.staging.read_range(&shard.hash, 0, shard.size).await {
            Ok(Some(bytes)) => pieces.push(bytes),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, hash = %shard.hash, "reading a staged shard"),
        }
    }
    let gathered: u64 = pieces.iter().map(|piece| piece.len() as u64).sum();
    hub.store
        .count_traffic(Traffic::Repair, gathered, now)
        .await?;
    let made = match surplus_backup::erasure::reshard(pieces.iter().map(Vec::as_slice)) {
        Ok(made) => made,
        Err(error) => {
            tracing::warn!(%error, pack = %shards[0].pack, "cannot rebuild a pack's shards");
            return Ok(0);
        }
    };
    let mut rebuilt = 0;
    for lost in shards.iter().filter(|s| is_lost(s)) {
        let Some(bytes) = made.get(lost.index as usize) else {
            continue;
        };
        if blake3::hash(bytes).to_hex().as_str() != lost.hash {
            tracing::warn!(pack = %lost.pack, index = lost.index, "a rebuilt shard does not match its name");
            continue;
        }
        let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(
            bytes.clone(),
        ))]);
        if let Err(error) = hub.staging.put(&lost.hash, body, bytes.len() as u64).await {
            tracing::warn!(%error, hash = %lost.hash, "staging a rebuilt shard");
            continue;
        }
        hub.store.set_blob_staged(&lost.hash, true, now).await?;
        hub.metrics.repaired(bytes.len() as u64);
        tracing::info!(pack = %lost.pack, index = lost.index, hash = %lost.hash, "shard rebuilt; placing it on a new holder");
        rebuilt += 1;
    }
    if rebuilt > 0 {
        hub.kick_scheduler();
    }
    Ok(rebuilt)
}

/// Asks online holders of `wanted` more of the pack's shards to upload theirs, once each.
async fn gather(
    hub: &Hub,
    shards: &[PackShardRow],
    wanted: usize,
    online: &HashSet<Uuid>,
    now: i64,
) -> Result<(), StoreError> {
    let expires = hub.settings.instruction_expiry(now);
    let mut asked = 0;
    for shard in shards.iter().filter(|s| !s.staged) {
        if asked >= wanted {
            break;
        }
        let Some(holder) = shard
            .holders
            .iter()
            .find(|holder| holder.confirmed && online.contains(&holder.device))
        else {
            continue;
        };
        let (allocation, device) = (holder.allocation, holder.device);
        asked += 1;
        if hub.store.upload_requested(device, &shard.hash).await? {
            continue;
        }
        let kind = InstructionKind::UploadBlob {
            hash: shard.hash.clone(),
        };
        hub.store
            .enqueue(device, Some(allocation), &kind, now, expires)
            .await?;
        hub.metrics.instructions_queued(kind.name());
        hub.wake(device);
    }
    Ok(())
}
