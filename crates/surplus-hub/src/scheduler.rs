//! Placement: which devices hold a subscriber's blobs (claims 1, 7, 9, 10, 13).
//!
//! For each placement that wants more holders, the scheduler takes the devices whose storage is
//! spare (from their latest reports, less what is already promised), chooses holders with
//! [`choose_holders`], and for each records an allocation in the ledger and queues the
//! `store_blob` instruction that uses it, in one transaction. Once every copy is confirmed the
//! staged copy is dropped, and any holder that gave the data up is told to delete it.

use std::collections::HashSet;

use surplus_protocol::{AllocationState, InstructionKind};
use uuid::Uuid;

use crate::hub::Hub;
use crate::now_ms;
use crate::store::{Candidate, StoreError};

/// One allocation the scheduler made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAllocation {
    pub allocation_id: Uuid,
    pub instruction_id: Uuid,
    pub device_id: Uuid,
    pub subscriber_id: Uuid,
    pub hash: String,
    pub size: u64,
}

/// How long a device that failed to take a blob is left out for that blob.
const FAILURE_BACKOFF_MS: i64 = 10 * 60 * 1000;

/// Places every open placement it can. With `donors`, only those devices are allocated from
/// (the operator's `start` for one subscriber).
pub async fn place_pending(
    hub: &Hub,
    donors: Option<&[Uuid]>,
) -> Result<Vec<NewAllocation>, StoreError> {
    // One placement run at a time in this process; across processes (replicas, an admin
    // command) the database's unique index on live copies keeps two runs from doubling a copy.
    let _placing = hub.placing.lock().await;
    let store = &hub.store;
    let placements = store.open_placements().await?;
    if placements.is_empty() {
        return Ok(Vec::new());
    }
    let mut candidates = store.storage_candidates().await?;
    if let Some(donors) = donors {
        candidates.retain(|c| donors.contains(&c.device_id));
    }
    let now = now_ms();
    let online_since = now - hub.settings.online_window_ms();
    let mut made = Vec::new();
    for placement in placements {
        let allocations = store
            .blob_allocations(&placement.hash, placement.subscriber_id)
            .await?;
        let confirmed = allocations
            .iter()
            .filter(|a| a.2 == AllocationState::Active)
            .count() as u32;
        if confirmed >= placement.copies {
            finish(hub, &placement.hash, placement.subscriber_id, &allocations).await?;
            continue;
        }
        let live = allocations
            .iter()
            .filter(|a| matches!(a.2, AllocationState::Pending | AllocationState::Active))
            .count() as u32;
        // A blob no longer staged cannot be fetched by a new holder; moving it from a holder is
        // the repair path's job.
        if live >= placement.copies || !placement.staged {
            continue;
        }
        let mut excluded: HashSet<Uuid> = allocations
            .iter()
            .filter(|a| {
                matches!(
                    a.2,
                    AllocationState::Pending
                        | AllocationState::Active
                        | AllocationState::Evacuating
                )
            })
            .map(|a| a.1)
            .collect();
        // A device keeps one file per content: one that holds it for anyone cannot take it again.
        excluded.extend(store.devices_holding(&placement.hash).await?);
        excluded.extend(
            store
                .recent_failures(&placement.hash, now - FAILURE_BACKOFF_MS)
                .await?,
        );
        excluded.extend(placement.source_device_id);
        // The shards of a pack go to distinct devices, and to distinct other subscribers: losing
        // one subscriber's PCs loses at most one shard of a pack. The owner's own other devices
        // may take one each only in household mode.
        if let Some(pack) = &placement.pack {
            let holders = store.pack_holders(placement.subscriber_id, pack).await?;
            excluded.extend(holders.iter().map(|(device, _)| *device));
            let mut barred: HashSet<Uuid> = holders
                .iter()
                .map(|(_, subscriber)| *subscriber)
                .filter(|subscriber| *subscriber != placement.subscriber_id)
                .collect();
            if !placement.household {
                barred.insert(placement.subscriber_id);
            }
            excluded.extend(
                candidates
                    .iter()
                    .filter(|c| barred.contains(&c.subscriber_id))
                    .map(|c| c.device_id),
            );
        }
        let chosen = choose_holders(
            &candidates,
            placement.size,
            placement.copies - live,
            &excluded,
            online_since,
        );
        let expires_at =
            now + i64::try_from(hub.settings.instruction_ttl.as_millis()).unwrap_or(i64::MAX / 2);
        for device_id in chosen {
            let allocated = store
                .allocate_blob_storage(
                    placement.subscriber_id,
                    device_id,
                    &placement.hash,
                    placement.size,
                    now,
                    expires_at,
                )
                .await;
            let (allocation_id, instruction) = match allocated {
                Ok(made) => made,
                // Another process placed this content on the device in the meantime.
                Err(StoreError::Conflict(reason)) => {
                    tracing::debug!(%reason, "skipping a holder");
                    continue;
                }
                Err(other) => return Err(other),
            };
            hub.metrics.allocation("storage");
            hub.metrics.instructions_queued("store_blob");
            hub.wake(device_id);
            if let Some(candidate) = candidates.iter_mut().find(|c| c.device_id == device_id) {
                candidate.free_bytes = candidate.free_bytes.saturating_sub(placement.size);
            }
            tracing::info!(%device_id, hash = %placement.hash, %allocation_id, "allocated storage");
            made.push(NewAllocation {
                allocation_id,
                instruction_id: instruction.id,
                device_id,
                subscriber_id: placement.subscriber_id,
                hash: placement.hash.clone(),
                size: placement.size,
            });
        }
    }
    Ok(made)
}

/// Every copy is confirmed: close the placement, drop the staged copy if no other placement
/// needs it, and tell holders that gave the data up to delete it.
async fn finish(
    hub: &Hub,
    hash: &str,
    subscriber_id: Uuid,
    allocations: &[(Uuid, Uuid, AllocationState, i64)],
) -> Result<(), StoreError> {
    let store = &hub.store;
    let now = now_ms();
    store
        .mark_placement_satisfied(hash, subscriber_id, now)
        .await?;
    for (allocation_id, device_id, state, _) in allocations {
        if *state == AllocationState::Evacuating {
            let kind = InstructionKind::DeleteBlob {
                hash: hash.to_owned(),
                allocation_id: Some(*allocation_id),
            };
            let expires_at = now
                + i64::try_from(hub.settings.instruction_ttl.as_millis()).unwrap_or(i64::MAX / 2);
            store
                .enqueue(*device_id, Some(*allocation_id), &kind, now, expires_at)
                .await?;
            hub.wake(*device_id);
        }
    }
    if !store.blob_still_needed_in_staging(hash).await? {
        unstage(hub, hash, now).await?;
        tracing::info!(hash, "every copy confirmed; staged copy dropped");
    }
    Ok(())
}

/// Drops the copies holders sent back for restores once their owners have had
/// `Settings::restore_staging` to fetch them. Returns how many were dropped.
pub async fn drop_stale_staging(hub: &Hub, now: i64) -> Result<usize, StoreError> {
    let keep_ms = i64::try_from(hub.settings.restore_staging.as_millis()).unwrap_or(i64::MAX);
    let stale = hub
        .store
        .stale_staged_blobs(now.saturating_sub(keep_ms))
        .await?;
    for hash in &stale {
        unstage(hub, hash, now).await?;
        tracing::info!(hash, "dropped a copy staged for a restore");
    }
    Ok(stale.len())
}

/// Ends what was forgotten more than `Settings::forget_grace` before `now`: forgotten objects
/// are deleted, and the holders of let-go shards are told to delete them. Each placement is
/// ended by one transaction that only one sweeping process can win. Returns (objects deleted,
/// placements ended).
pub async fn purge_forgotten(hub: &Hub, now: i64) -> Result<(u64, usize), StoreError> {
    let grace_ms = i64::try_from(hub.settings.forget_grace.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now.saturating_sub(grace_ms);
    let objects = hub.store.purge_forgotten_objects(cutoff).await?;
    let expires =
        now + i64::try_from(hub.settings.instruction_ttl.as_millis()).unwrap_or(i64::MAX / 2);
    let mut ended = 0;
    for (hash, subscriber) in hub.store.placements_dropped_before(cutoff).await? {
        let Some(holders) = hub
            .store
            .end_dropped_placement(&hash, subscriber, cutoff, now, expires)
            .await?
        else {
            continue;
        };
        ended += 1;
        for device in holders {
            hub.metrics.instructions_queued("delete_blob");
            hub.wake(device);
        }
        if !hub.store.blob_still_needed_in_staging(&hash).await? {
            unstage(hub, &hash, now).await?;
        }
    }
    if objects > 0 || ended > 0 {
        tracing::info!(
            objects,
            placements = ended,
            "forgotten past the grace period, purged"
        );
    }
    Ok((objects, ended))
}

/// Drops a blob's staged copy: the record first, so nobody is offered a file about to go.
pub(crate) async fn unstage(hub: &Hub, hash: &str, now: i64) -> Result<(), StoreError> {
    hub.store.set_blob_staged(hash, false, now).await?;
    if let Err(error) = hub.staging.delete(hash).await {
        tracing::warn!(%error, hash, "dropping a staged blob");
    }
    Ok(())
}

/// Chooses up to `wanted` distinct holders with room for `size` bytes, none of them `excluded`:
/// online devices first, then those heard from most recently (a device that is off now will
/// fetch its blob when it comes back).
pub fn choose_holders(
    candidates: &[Candidate],
    size: u64,
    wanted: u32,
    excluded: &HashSet<Uuid>,
    online_since: i64,
) -> Vec<Uuid> {
    let mut eligible: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.free_bytes >= size && !excluded.contains(&c.device_id))
        .collect();
    eligible.sort_by_key(|c| {
        let online = c.last_heartbeat.is_some_and(|t| t >= online_since);
        (!online, std::cmp::Reverse(c.last_heartbeat), c.device_id)
    });
    eligible
        .into_iter()
        .take(wanted as usize)
        .map(|c| c.device_id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(n: u128, free: u64, heard: Option<i64>) -> Candidate {
        Candidate {
            device_id: Uuid::from_u128(n),
            subscriber_id: Uuid::from_u128(100 + n),
            free_bytes: free,
            last_heartbeat: heard,
        }
    }

    #[test]
    fn prefers_online_devices_with_room() {
        let candidates = [
            candidate(1, 10, Some(1_000)),
            candidate(2, 1_000, Some(50)),
            candidate(3, 1_000, Some(900)),
            candidate(4, 1_000, None),
            candidate(5, 1_000, Some(950)),
        ];
        let chosen = choose_holders(&candidates, 100, 3, &HashSet::new(), 800);
        assert_eq!(
            chosen,
            vec![Uuid::from_u128(5), Uuid::from_u128(3), Uuid::from_u128(2)]
        );
    }

    #[test]
    fn never_chooses_an_excluded_device_or_one_twice() {
        let candidates = [candidate(1, 1_000, Some(1)), candidate(2, 1_000, Some(2))];
        let excluded = HashSet::from([Uuid::from_u128(2)]);
        assert_eq!(
            choose_holders(&candidates, 1, 5, &excluded, 0),
            vec![Uuid::from_u128(1)]
        );
        assert!(choose_holders(&candidates, 2_000, 1, &HashSet::new(), 0).is_empty());
    }
}
