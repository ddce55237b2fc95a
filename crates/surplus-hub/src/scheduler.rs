//! Placement: which devices hold a subscriber's blobs.
//!
//! For each placement that wants more holders, the scheduler takes the devices whose storage is
//! spare (from their latest reports, less what is already promised), decides with the rules of
//! [`surplus_rules::placement`], and for each holder chosen records an allocation in the ledger
//! and queues the `store_blob` instruction that uses it, in one transaction. Once every copy is confirmed the
//! staged copy is dropped, and any holder that gave the data up is told to delete it.

use surplus_protocol::InstructionKind;
use surplus_rules::handover::{self, Evacuating, Purpose, Step};
use surplus_rules::placement::{self, Decision, PackHolders, Want};
use surplus_rules::presence::{SLOT_MS, SLOTS_PER_WEEK, Week};
use uuid::Uuid;

use crate::hub::Hub;
use crate::now_ms;
use crate::store::{Duty, NewBlobAllocation, StoreError, Traffic};

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

/// Devices' usual weeks, by device.
pub type Weeks = std::sync::Arc<std::collections::HashMap<Uuid, Week>>;

/// A device's usual week is known once it has been registered this long.
const WEEK_KNOWN_AFTER_MS: i64 = 7 * surplus_rules::DAY_MS;

/// How often the usual weeks are counted again: they change slowly.
const WEEKS_REFRESH_MS: i64 = surplus_rules::HOUR_MS;

/// Every device's usual week over the last 13 weeks (devices registered less than a week ago
/// have none yet), counted at most once an hour.
async fn usual_weeks(hub: &Hub, now: i64) -> Result<Weeks, StoreError> {
    let mut cached = hub.weeks.lock().await;
    if let Some((at, weeks)) = cached.as_ref()
        && now - at < WEEKS_REFRESH_MS
    {
        return Ok(weeks.clone());
    }
    let last = now.div_euclid(SLOT_MS);
    let first = last - 13 * SLOTS_PER_WEEK + 1;
    let weeks: Weeks = std::sync::Arc::new(
        hub.store
            .presence_by_hour(first)
            .await?
            .into_iter()
            .filter(|(_, week)| now - week.registered_at >= WEEK_KNOWN_AFTER_MS)
            .map(|(device, week)| {
                let since = first.max(week.registered_at.div_euclid(SLOT_MS));
                (device, Week::from_hour_counts(&week.heard, since, last))
            })
            .collect(),
    );
    *cached = Some((now, weeks.clone()));
    Ok(weeks)
}

/// Which open placements a run of [`place_pending`] looks at, and which devices it may use.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope<'a> {
    /// Only this blob of this subscriber: the placement a request just asked for. Every other
    /// open placement is left to the scheduler loop, so that a request costs the same however
    /// many placements wait for their holders to confirm.
    pub blob: Option<(&'a str, Uuid)>,
    /// Only these devices as holders (the operator's `start` for one subscriber).
    pub donors: Option<&'a [Uuid]>,
}

/// Places every open placement in `scope` that it can.
#[tracing::instrument(skip_all, name = "placement")]
pub async fn place_pending(hub: &Hub, scope: Scope<'_>) -> Result<Vec<NewAllocation>, StoreError> {
    // One placement run at a time, across replicas too: two runs reading the same free space
    // would both fill it. The unique index on live copies is the last line behind this.
    let _placing = hub.store.exclusive(Duty::Placement).await?;
    let store = &hub.store;
    // Copies on their way, or nothing staged to place from: the rules can only wait. Over a
    // hundred thousand open placements, most are such, and cost the pass nothing but this query.
    let deciding: Vec<_> = store
        .open_placements(scope.blob)
        .await?
        .into_iter()
        .filter(|p| !placement::waits(p.active, p.live, p.copies, p.staged))
        .collect();
    if deciding.is_empty() {
        return Ok(Vec::new());
    }
    let mut candidates = store.storage_candidates().await?;
    if let Some(donors) = scope.donors {
        candidates.retain(|c| donors.contains(&c.device_id));
    }
    let now = now_ms();
    let online_since = now - hub.settings.online_window_ms();
    // Each device's usual week, so that a pack's holders cover every hour between them.
    let weeks = usual_weeks(hub, now).await?;
    for candidate in &mut candidates {
        candidate.week = weeks.get(&candidate.device_id).cloned();
    }
    // Once a pass, so that each decision looks at the first devices with room and no further.
    placement::by_presence(&mut candidates, online_since);
    let position: std::collections::HashMap<Uuid, usize> = candidates
        .iter()
        .enumerate()
        .map(|(at, c)| (c.device_id, at))
        .collect();
    // Everything the decisions need, for every placement that has one to make, in two queries.
    let mut context = store
        .placement_context(scope.blob, now - FAILURE_BACKOFF_MS)
        .await?;
    let mut made = Vec::new();
    let mut decided = Vec::with_capacity(WRITE_BATCH);
    for placement in deciding {
        let owner = placement.subscriber_id;
        let pack = placement.pack.as_deref();
        let pack_holders = pack.map_or(&[][..], |pack| context.pack_holders(owner, pack));
        let pack_weeks: Vec<Week> = pack_holders
            .iter()
            .filter_map(|(device, _)| weeks.get(device).cloned())
            .collect();
        let allocations = context.allocations(&placement.hash, owner);
        let want = Want {
            owner,
            source: placement.source_device_id,
            copies: placement.copies,
            size: placement.size,
            staged: placement.staged,
            household: placement.household,
            allocations,
            holding: context.holding(&placement.hash),
            failed_lately: context.failed(&placement.hash),
            pack: pack.map(|pack| PackHolders {
                holders: pack_holders,
                weeks: &pack_weeks,
                networks: context.pack_networks(owner, pack),
                needed: placement.pack_data,
            }),
        };
        let chosen = match placement::decide(&want, &candidates, online_since) {
            Decision::Wait => continue,
            Decision::Done { release } => {
                finish(hub, &placement.hash, placement.subscriber_id, &release).await?;
                continue;
            }
            Decision::Allocate(chosen) => chosen,
        };
        let purpose = Purpose::of(allocations);
        for device_id in chosen {
            let allocation_id = Uuid::now_v7();
            // What the next decisions of this pass see: the holder has less room, and holds this.
            if let Some(&at) = position.get(&device_id) {
                let candidate = &mut candidates[at];
                candidate.free_bytes = candidate.free_bytes.saturating_sub(placement.size);
                context.allocated(
                    allocation_id,
                    &placement.hash,
                    owner,
                    pack,
                    device_id,
                    candidate.subscriber_id,
                    candidate.network.as_deref(),
                );
            }
            decided.push(NewBlobAllocation {
                id: allocation_id,
                owner,
                device: device_id,
                blob: surplus_protocol::BlobRef {
                    hash: placement.hash.clone(),
                    size: placement.size,
                },
                purpose,
            });
        }
        if decided.len() >= WRITE_BATCH {
            write(hub, &mut decided, &mut made).await?;
        }
    }
    write(hub, &mut decided, &mut made).await?;
    Ok(made)
}

/// How many allocations a placement pass writes in one transaction.
const WRITE_BATCH: usize = 256;

/// Writes the allocations a pass decided on, with their instructions, and wakes their holders.
/// One that another process made meanwhile (the same content on the same device) is skipped.
async fn write(
    hub: &Hub,
    decided: &mut Vec<NewBlobAllocation>,
    made: &mut Vec<NewAllocation>,
) -> Result<(), StoreError> {
    let now = now_ms();
    let expires_at = hub.settings.instruction_expiry(now);
    let queued = hub
        .store
        .allocate_blob_storage(decided, now, expires_at)
        .await?;
    for (allocation, instruction) in decided.drain(..).zip(queued) {
        let Some(instruction) = instruction else {
            tracing::debug!(device_id = %allocation.device, hash = %allocation.blob.hash,
                "skipping a holder that already holds this content");
            continue;
        };
        hub.metrics.allocation("storage");
        hub.metrics.instructions_queued("store_blob");
        let traffic = match allocation.purpose {
            Purpose::Store => None,
            Purpose::HandOver => Some(Traffic::Handover),
            Purpose::Repair => Some(Traffic::Repair),
        };
        if let Some(traffic) = traffic {
            hub.store
                .count_traffic(traffic, allocation.blob.size, now)
                .await?;
        }
        hub.wake(allocation.device);
        tracing::info!(device_id = %allocation.device, hash = %allocation.blob.hash,
            allocation_id = %allocation.id, "allocated storage");
        made.push(NewAllocation {
            allocation_id: allocation.id,
            instruction_id: instruction.id,
            device_id: allocation.device,
            subscriber_id: allocation.owner,
            hash: allocation.blob.hash,
            size: allocation.blob.size,
        });
    }
    Ok(())
}

/// Every copy is confirmed: close the placement, drop the staged copy if no other placement
/// needs it, and tell holders that gave the data up to delete it.
async fn finish(
    hub: &Hub,
    hash: &str,
    subscriber_id: Uuid,
    release: &[(Uuid, Uuid)],
) -> Result<(), StoreError> {
    let store = &hub.store;
    let now = now_ms();
    // Only the process that closes the placement, while its copies are all still there, lets
    // the holders that gave it up delete theirs.
    if !store
        .mark_placement_satisfied(hash, subscriber_id, now)
        .await?
    {
        return Ok(());
    }
    for (allocation_id, device_id) in release {
        let kind = InstructionKind::DeleteBlob {
            hash: hash.to_owned(),
            allocation_id: Some(*allocation_id),
        };
        let expires_at = hub.settings.instruction_expiry(now);
        store
            .enqueue(*device_id, Some(*allocation_id), &kind, now, expires_at)
            .await?;
        hub.wake(*device_id);
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
    let keep_ms = crate::millis(hub.settings.restore_staging);
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
    let grace_ms = crate::millis(hub.settings.forget_grace);
    let cutoff = now.saturating_sub(grace_ms);
    let objects = hub.store.purge_forgotten_objects(cutoff).await?;
    let expires = hub.settings.instruction_expiry(now);
    let mut ended = 0;
    for dropped in hub.store.placements_dropped_before(cutoff).await? {
        let hash = dropped.hash;
        let Some(holders) = hub
            .store
            .end_dropped_placement(&hash, dropped.subscriber_id, cutoff, now, expires)
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

/// Counts holders lost that went silent past `Settings::lost_after` (revoked ones are counted
/// lost when revoked). By [`surplus_rules::presence`], a holder away longer than it usually is
/// is only at risk until then. A lost holder's storage allocations become `lost` and their
/// placements reopen, once, in one transaction. Returns the devices counted lost now.
pub async fn detect_losses(hub: &Hub, now: i64) -> Result<Vec<Uuid>, StoreError> {
    use surplus_rules::presence::{self, SLOT_MS, Standing};
    let policy = hub.settings.presence_policy();
    let mut lost = Vec::new();
    for holder in hub.store.storage_holders().await? {
        // Only a holder past the cap can be lost, whatever its history: read that only then.
        let away = now.saturating_sub(holder.last_heartbeat.unwrap_or(holder.registered_at));
        if away < policy.lost_after {
            continue;
        }
        let since = (now - 30 * surplus_rules::DAY_MS).div_euclid(SLOT_MS);
        let heard = hub.store.presence_slot_list(holder.device, since).await?;
        let standing = policy.standing(
            holder.last_heartbeat,
            holder.registered_at,
            presence::usual_absence(&heard),
            now,
        );
        if standing != Standing::Lost {
            continue;
        }
        let allocations = hub.store.lose_holder(holder.device, now).await?;
        if allocations > 0 {
            tracing::warn!(device = %holder.device, allocations, "holder silent past the cap, counted lost; what it held is to be rebuilt");
            lost.push(holder.device);
        }
    }
    if !lost.is_empty() {
        hub.kick_scheduler();
    }
    Ok(lost)
}

/// Moves hand-overs along ([`surplus_rules::handover`]): a holder that gave storage up is asked
/// to upload each blob the hub no longer has staged, once, while it is online; the placement,
/// reopened when it gave the blob up, then finds a new holder, and the old copy is deleted once
/// the new one is confirmed. What is not handed over by `Settings::handover_deadline` is counted
/// lost, once, and repaired. Returns (uploads asked, allocations given up).
pub async fn hand_over(hub: &Hub, now: i64) -> Result<(usize, usize), StoreError> {
    let deadline = crate::millis(hub.settings.handover_deadline);
    let online_since = now - hub.settings.online_window_ms();
    let expires = hub.settings.instruction_expiry(now);
    let (mut asked, mut given_up) = (0, 0);
    for row in hub.store.evacuating(now).await? {
        let allocation = Evacuating {
            since: row.since,
            staged: row.staged,
            upload_asked: row.upload_asked,
            holder_online: row.last_heartbeat.is_some_and(|t| t >= online_since),
            replaced: row.replaced,
        };
        match handover::step(&allocation, now, deadline) {
            Step::Wait => {}
            Step::AskUpload => {
                let kind = InstructionKind::UploadBlob {
                    hash: row.hash.clone(),
                };
                hub.store
                    .enqueue(row.device, Some(row.allocation), &kind, now, expires)
                    .await?;
                hub.metrics.instructions_queued(kind.name());
                hub.wake(row.device);
                hub.store
                    .count_traffic(Traffic::Handover, row.size, now)
                    .await?;
                asked += 1;
            }
            Step::GiveUp => {
                if hub.store.give_up_handover(row.allocation, now).await? {
                    tracing::warn!(device = %row.device, hash = %row.hash, "a hand-over did not finish in time; the copy is counted lost and rebuilt");
                    given_up += 1;
                }
            }
        }
    }
    if given_up > 0 {
        hub.kick_scheduler();
    }
    Ok((asked, given_up))
}

/// Settles the copies of holders that were counted lost and came back. Where the shard still
/// wants a copy (not rebuilt and confirmed elsewhere yet), the returning copy is taken back and
/// audited before anything else; the rebuild, if under way, then ends as surplus (its placement
/// is done). The copies nobody needs any more (rebuilt and confirmed elsewhere meanwhile, or let
/// go) are deleted: each allocation is released when the holder confirms. Returns how many
/// deletes were asked for.
pub async fn release_returned(hub: &Hub, now: i64) -> Result<usize, StoreError> {
    let since = now - hub.settings.online_window_ms();
    let clean_since = now - surplus_rules::audit::AuditPolicy::DEFAULT.failure_window;
    let readopted = hub.store.readopt_returned(since, clean_since, now).await?;
    if readopted > 0 {
        tracing::info!(
            copies = readopted,
            "holders counted lost are back; their copies are taken back, to be audited first"
        );
        hub.kick_scheduler();
    }
    let ttl = hub.settings.instruction_ttl_ms();
    let expires = hub.settings.instruction_expiry(now);
    // A delete asked longer ago than an instruction lives went unanswered: ask again.
    let retry_before = now.saturating_sub(ttl);
    let mut surplus = Vec::new();
    for copy in hub
        .store
        .surplus_copies_of_returned(since, retry_before)
        .await?
    {
        if hub
            .store
            .claim_delete(copy.allocation, retry_before, now)
            .await?
        {
            surplus.push(copy);
        }
    }
    for copy in &surplus {
        let kind = InstructionKind::DeleteBlob {
            hash: copy.hash.clone(),
            allocation_id: Some(copy.allocation),
        };
        hub.store
            .enqueue(copy.device, Some(copy.allocation), &kind, now, expires)
            .await?;
        hub.metrics.instructions_queued(kind.name());
        hub.wake(copy.device);
    }
    if !surplus.is_empty() {
        tracing::info!(
            copies = surplus.len(),
            "holders counted lost are back; their surplus copies go"
        );
    }
    Ok(surplus.len())
}

/// Drops a blob's staged copy: the record first, so nobody is offered a file about to go.
pub(crate) async fn unstage(hub: &Hub, hash: &str, now: i64) -> Result<(), StoreError> {
    hub.store.set_blob_staged(hash, false, now).await?;
    if let Err(error) = hub.staging.delete(hash).await {
        tracing::warn!(%error, hash, "dropping a staged blob");
    }
    Ok(())
}
