//! The hub's running state and the work it does between requests.
//!
//! [`Hub`] is shared by every request handler. Besides the store it owns three background tasks:
//! the heartbeat writer (group commit), the instruction watcher (wakes long polls when another
//! process queued something), and the scheduler (places blobs, sends tasks out, expires stale
//! instructions).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument as _;

use surplus_protocol::{
    Acknowledgement, AllocationState, FailureCode, Instruction, InstructionKind, InstructionResult,
    Spare, StatusReport, SubscriberStatus, UnixMillis,
};
use tokio::sync::{Notify, mpsc, oneshot};
use uuid::Uuid;

pub use crate::settings::{Replication, Settings};

use crate::metrics::Metrics;
use crate::scheduler;
use crate::staging::Staging;
use crate::store::{
    ActiveAllocation, DeviceAuth, Duty, HeartbeatRow, InstructionState, PRESENCE_SLOT_MS, Store,
    StoreError,
};
use crate::{now_ms, policy};

/// The shared state of a running hub.
#[derive(Debug)]
pub struct Hub {
    pub store: Store,
    pub staging: Staging,
    pub settings: Settings,
    pub metrics: Metrics,
    /// Rate limits and the bound on password hashing.
    pub limits: crate::limits::Limiters,
    waiters: Mutex<HashMap<Uuid, Arc<Notify>>>,
    heartbeats: mpsc::Sender<PendingHeartbeat>,
    device_lookups: mpsc::Sender<PendingLookup>,
    scheduler_kick: Arc<Notify>,
    /// Asks for a scheduler pass once the scheduler has rested (see [`SCHEDULER_REST`]).
    scheduler_soon: Arc<Notify>,
    /// Counts blobs a holder sent back to staging, so that owners waiting for one wake at once.
    staged_back: tokio::sync::watch::Sender<u64>,
    /// Devices' usual weeks, for placement, and when they were counted.
    pub(crate) weeks: tokio::sync::Mutex<Option<(UnixMillis, crate::scheduler::Weeks)>>,
    /// Cancelled when the hub begins to shut down: long polls return at once.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// A device credential to look up, and who waits for it.
#[derive(Debug)]
struct PendingLookup {
    device_id: Uuid,
    found: oneshot::Sender<Result<Option<DeviceAuth>, String>>,
}

#[derive(Debug)]
struct PendingHeartbeat {
    row: HeartbeatRow,
    done: oneshot::Sender<Result<(), String>>,
}

impl Hub {
    /// Builds the hub and starts its background tasks on the current tokio runtime.
    pub fn start(store: Store, staging: Staging, settings: Settings) -> Arc<Hub> {
        let hub = Self::without_background(store, staging, settings);
        tokio::spawn(watch_instructions(Arc::downgrade(&hub)));
        tokio::spawn(run_scheduler(Arc::downgrade(&hub)));
        hub
    }

    /// Builds the hub with only its heartbeat writer: what an admin command needs to act on the
    /// same database as the serving hubs without scheduling work of its own.
    pub fn without_background(store: Store, staging: Staging, settings: Settings) -> Arc<Hub> {
        let (sender, receiver) = mpsc::channel(16 * 1024);
        let scheduler_soon = Arc::new(Notify::new());
        tokio::spawn(write_heartbeats(
            store.clone(),
            receiver,
            scheduler_soon.clone(),
        ));
        let (device_lookups, lookups) = mpsc::channel(16 * 1024);
        tokio::spawn(look_devices_up(store.clone(), lookups));
        Arc::new(Hub {
            store,
            staging,
            limits: crate::limits::Limiters::new(&settings.rate_limits),
            settings,
            metrics: Metrics::default(),
            waiters: Mutex::new(HashMap::new()),
            heartbeats: sender,
            device_lookups,
            scheduler_kick: Arc::new(Notify::new()),
            scheduler_soon,
            staged_back: tokio::sync::watch::Sender::new(0),
            weeks: tokio::sync::Mutex::new(None),
            shutdown: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// The notification a long poll of `device_id` waits on.
    pub fn waiter(&self, device_id: Uuid) -> Arc<Notify> {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        waiters.entry(device_id).or_default().clone()
    }

    /// Whether a long poll of `device_id` is waiting on this hub now.
    pub fn long_poll_waiting(&self, device_id: Uuid) -> bool {
        let waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        waiters
            .get(&device_id)
            .is_some_and(|notify| Arc::strong_count(notify) > 1)
    }

    /// Tells owners waiting on this hub that a holder sent a blob back to staging.
    pub fn blob_staged_back(&self) {
        self.staged_back
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    /// What an owner waiting for a blob to come back watches (see [`Hub::blob_staged_back`]).
    pub fn staged_back_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.staged_back.subscribe()
    }

    /// Wakes a device's long poll, if one is waiting here.
    pub fn wake(&self, device_id: Uuid) {
        let waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(notify) = waiters.get(&device_id) {
            notify.notify_one();
        }
    }

    /// A device's credential and standing, looked up together with the other requests' that
    /// arrive meanwhile (see [`look_devices_up`]).
    pub async fn device_auth(&self, device_id: Uuid) -> Result<Option<DeviceAuth>, StoreError> {
        let (found, answer) = oneshot::channel();
        self.device_lookups
            .send(PendingLookup { device_id, found })
            .await
            .map_err(|_| StoreError::Batch("the device lookup has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Batch("the device lookup has stopped".into()))?
            .map_err(StoreError::Batch)
    }

    /// Asks the scheduler to look for work now.
    pub fn kick_scheduler(&self) {
        self.scheduler_kick.notify_one();
    }

    /// Queues an instruction and wakes the device's long poll.
    pub async fn instruct(
        &self,
        device_id: Uuid,
        kind: InstructionKind,
    ) -> Result<Instruction, StoreError> {
        let now = now_ms();
        let instruction = self
            .store
            .enqueue(
                device_id,
                None,
                &kind,
                now,
                self.settings.instruction_expiry(now),
            )
            .await?;
        self.metrics.instructions_queued(kind.name());
        self.wake(device_id);
        Ok(instruction)
    }

    /// Records a heartbeat (the device's operating information) and decides what
    /// is spare on the device. Returns once the report is durable.
    pub async fn heartbeat(
        &self,
        device_id: Uuid,
        status: SubscriberStatus,
        report: StatusReport,
    ) -> Result<Spare, StoreError> {
        self.heartbeat_from(device_id, None, status, report).await
    }

    /// A heartbeat that came from `address`: the device's network is recorded with it, for
    /// placement to spread a pack's shards over networks.
    pub async fn heartbeat_from(
        &self,
        device_id: Uuid,
        address: Option<std::net::IpAddr>,
        status: SubscriberStatus,
        report: StatusReport,
    ) -> Result<Spare, StoreError> {
        let now = now_ms();
        let spare = policy::spare(&report, status, now);
        let (done, written) = oneshot::channel();
        let needs_evacuation = report.gives_storage_up();
        let vault = report.vault.clone();
        let consent = report.consent.storage;
        let pending = PendingHeartbeat {
            row: HeartbeatRow {
                device_id,
                at: now,
                report: serde_json::to_string(&report)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                spare,
                new_slot: None,
                network: address.and_then(surplus_rules::placement::network_of),
                arch_class: crate::store::arch_class(&report),
            },
            done,
        };
        self.heartbeats
            .send(pending)
            .await
            .map_err(|_| StoreError::Batch("the heartbeat writer has stopped".into()))?;
        written
            .await
            .map_err(|_| StoreError::Batch("the heartbeat writer has stopped".into()))?
            .map_err(StoreError::Batch)?;
        self.metrics.heartbeat();
        if needs_evacuation {
            self.evacuate(device_id, consent, vault.used_bytes, vault.quota_bytes)
                .await?;
        }
        Ok(spare)
    }

    /// What a device holds for others, and how far its hand-over is.
    pub async fn holdings(
        &self,
        device_id: Uuid,
    ) -> Result<surplus_protocol::Holdings, StoreError> {
        let deadline = crate::millis(self.settings.handover_deadline);
        self.store.holdings(device_id, deadline).await
    }

    /// A device gave up storage (consent withdrawn, or quota shrunk below what it holds): the
    /// hub records which allocations must move away, newest first, and reopens their placements.
    async fn evacuate(
        &self,
        device_id: Uuid,
        consent: bool,
        used: u64,
        quota: u64,
    ) -> Result<(), StoreError> {
        let active = self.store.active_allocations_on(device_id).await?;
        let already = self.store.evacuating_bytes(device_id).await?;
        let sizes: Vec<(usize, u64)> = active
            .iter()
            .enumerate()
            .map(|(at, allocation)| (at, allocation.amount))
            .collect();
        let moving: Vec<ActiveAllocation> =
            surplus_rules::handover::to_give_up(&sizes, consent, used, quota, already)
                .into_iter()
                .filter_map(|at| active.get(at).cloned())
                .collect();
        if !moving.is_empty() {
            tracing::info!(%device_id, allocations = moving.len(), "device gave up storage; data marked to move");
            self.store.evacuate(&moving, now_ms()).await?;
            self.kick_scheduler();
        }
        Ok(())
    }

    /// Applies a device's acknowledgement of one of its instructions. Acknowledging twice is
    /// harmless: the second changes nothing.
    pub async fn acknowledge(
        &self,
        device_id: Uuid,
        status: SubscriberStatus,
        instruction_id: Uuid,
        ack: Acknowledgement,
    ) -> Result<(), StoreError> {
        let row = self.store.instruction(instruction_id).await?;
        if row.device_id != device_id {
            return Err(StoreError::NotFound);
        }
        if matches!(row.instruction.kind, InstructionKind::RunTask { .. }) {
            return crate::compute::acknowledge_run(self, &row, &ack).await;
        }
        let now = now_ms();
        // A challenge's answer is judged here: a slice that does not match the shard's hash, or
        // a shard lost or altered, fails the challenge and the holder's allocation.
        let challenge = match (&row.instruction.kind, &ack.result) {
            (
                InstructionKind::VerifyBlob {
                    hash,
                    offset,
                    length,
                },
                InstructionResult::Verified { proof, .. },
            ) => Some(crate::challenge::check(hash, *offset, *length, proof)),
            (InstructionKind::VerifyBlob { .. }, InstructionResult::Failed { message, .. }) => {
                Some(Err(message.clone()))
            }
            _ => None,
        };
        let failed = matches!(ack.result, InstructionResult::Failed { .. })
            || matches!(challenge, Some(Err(_)));
        let result_json =
            serde_json::to_string(&ack.result).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let state = if failed {
            InstructionState::Failed
        } else {
            InstructionState::Done
        };
        // What the result means for the allocation the instruction served.
        let allocation = match (&row.instruction.kind, &ack.result, row.allocation_id) {
            (
                InstructionKind::StoreBlob { blob, .. },
                InstructionResult::Stored { hash, .. },
                Some(allocation),
            ) if *hash == blob.hash => Some((allocation, AllocationState::Active)),
            (InstructionKind::StoreBlob { .. }, result, Some(allocation)) => {
                if let InstructionResult::Failed { code, message } = result {
                    tracing::info!(%device_id, code = code.as_str(), %message, "device could not store a blob");
                }
                Some((allocation, AllocationState::Failed))
            }
            // A holder that cannot give back what it was to keep has lost it (or it was altered,
            // which its vault detects): that copy is lost, and its placement reopens for repair.
            (
                InstructionKind::UploadBlob { .. },
                InstructionResult::Failed {
                    code: FailureCode::NotFound | FailureCode::Corrupt,
                    ..
                },
                Some(allocation),
            ) => Some((allocation, AllocationState::Lost)),
            (
                InstructionKind::VerifyBlob { .. },
                InstructionResult::Verified { .. }
                | InstructionResult::Failed {
                    code: FailureCode::NotFound | FailureCode::Corrupt,
                    ..
                },
                Some(allocation),
            ) if matches!(challenge, Some(Err(_))) => Some((allocation, AllocationState::Lost)),
            (
                InstructionKind::DeleteBlob { .. },
                InstructionResult::Deleted { .. }
                | InstructionResult::Failed {
                    code: FailureCode::NotFound,
                    ..
                },
                Some(allocation),
            ) => Some((allocation, AllocationState::Released)),
            _ => None,
        };
        // A delete of a copy that counts (it should never be asked for one) reopens its
        // placement, so that the copy is replaced rather than silently missing.
        let deleted_live = match (&row.instruction.kind, allocation) {
            (InstructionKind::DeleteBlob { .. }, Some((id, AllocationState::Released))) => {
                matches!(
                    self.store.allocation_state(id).await?,
                    Some(AllocationState::Active | AllocationState::Pending)
                )
                .then_some(id)
            }
            _ => None,
        };
        if !self
            .store
            .complete_instruction(instruction_id, state, &result_json, now, allocation)
            .await?
        {
            return self
                .late_acknowledgement(device_id, &row, &ack.result)
                .await;
        }
        if let Some(verdict) = &challenge {
            let detail = verdict.as_ref().err().map(String::as_str);
            self.store
                .answer_challenge(instruction_id, verdict.is_ok(), detail, now)
                .await?;
        }
        if let Some(allocation) = deleted_live {
            tracing::warn!(%device_id, %allocation, "a copy that counted was deleted; finding its shard a new holder");
            self.store.reopen_placement_of(allocation).await?;
        }
        if let (
            Some((allocation, AllocationState::Lost)),
            InstructionKind::UploadBlob { hash } | InstructionKind::VerifyBlob { hash, .. },
        ) = (allocation, &row.instruction.kind)
        {
            tracing::warn!(%device_id, %hash, "a holder lost or altered a blob; finding it a new holder");
            self.store.reopen_placement_of(allocation).await?;
        }
        if let (InstructionKind::ReportStatus, InstructionResult::Reported { report }) =
            (&row.instruction.kind, &ack.result)
        {
            self.heartbeat(device_id, status, (**report).clone())
                .await?;
        } else if let Some(vault) = ack.vault {
            let device = self.store.device(device_id).await?;
            if let (Some(mut report), Some(seen)) = (device.report, device.last_heartbeat) {
                report.vault = vault;
                let spare = policy::spare(&report, status, now);
                self.store
                    .update_report_if_unchanged(device_id, seen, &report, spare)
                    .await?;
            }
        }
        self.kick_scheduler();
        Ok(())
    }

    /// An acknowledgement of an instruction that had already ended (repeated, or arriving after
    /// the instruction expired or was cancelled). A blob stored that late belongs to no live
    /// allocation: the device is told to delete it, so that it does not hold space for nothing.
    async fn late_acknowledgement(
        &self,
        device_id: Uuid,
        row: &crate::store::InstructionRow,
        result: &InstructionResult,
    ) -> Result<(), StoreError> {
        let (
            InstructionKind::StoreBlob { blob, .. },
            InstructionResult::Stored { .. },
            Some(allocation),
        ) = (&row.instruction.kind, result, row.allocation_id)
        else {
            return Ok(());
        };
        let live = matches!(
            self.store.allocation_state(allocation).await?,
            Some(AllocationState::Pending | AllocationState::Active | AllocationState::Evacuating)
        );
        if !live
            && !self
                .store
                .devices_holding(&blob.hash)
                .await?
                .contains(&device_id)
        {
            tracing::info!(%device_id, hash = %blob.hash, "a blob was stored after its allocation ended; deleting it");
            self.instruct(
                device_id,
                InstructionKind::DeleteBlob {
                    hash: blob.hash.clone(),
                    allocation_id: None,
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Queues a `report_status` for each of the given devices.
    pub async fn probe(&self, devices: &[Uuid]) -> Result<Vec<Instruction>, StoreError> {
        let mut queued = Vec::with_capacity(devices.len());
        for &device in devices {
            queued.push(self.instruct(device, InstructionKind::ReportStatus).await?);
        }
        Ok(queued)
    }
}

/// Writes heartbeats in batches: whatever arrived while the previous batch was being committed
/// goes into the next transaction. One commit per batch, not per heartbeat, is what lets SQLite
/// keep up with thousands of devices.
///
/// A device that has something spare, when its previous heartbeat here had nothing, asks for a
/// scheduler pass: there may be work for it now. One still spare since its last heartbeat does
/// not; its regular tick looks again.
async fn write_heartbeats(
    store: Store,
    mut receiver: mpsc::Receiver<PendingHeartbeat>,
    scheduler_soon: Arc<Notify>,
) {
    const MAX_BATCH: usize = 2048;
    let mut last_slot: HashMap<Uuid, i64> = HashMap::new();
    let mut spare_before: std::collections::HashSet<Uuid> = std::collections::HashSet::new();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut rows = Vec::with_capacity(batch.len());
        let mut waiting = Vec::with_capacity(batch.len());
        for PendingHeartbeat { mut row, done } in batch.drain(..) {
            let slot = row.at.div_euclid(PRESENCE_SLOT_MS);
            row.new_slot = (last_slot.get(&row.device_id) != Some(&slot)).then_some(slot);
            rows.push(row);
            waiting.push(done);
        }
        let outcome = store
            .record_heartbeats(&rows)
            .await
            .map_err(|e| e.to_string());
        match &outcome {
            Ok(()) => {
                let mut newly_spare = false;
                for row in &rows {
                    if let Some(slot) = row.new_slot {
                        last_slot.insert(row.device_id, slot);
                    }
                    if row.spare.storage_bytes > 0 || row.spare.compute_slots > 0 {
                        newly_spare |= spare_before.insert(row.device_id);
                    } else {
                        spare_before.remove(&row.device_id);
                    }
                }
                if newly_spare {
                    scheduler_soon.notify_one();
                }
            }
            Err(error) => {
                tracing::error!(%error, heartbeats = rows.len(), "writing heartbeats failed");
            }
        }
        for done in waiting {
            let _ = done.send(outcome.clone());
        }
    }
}

/// Looks device credentials up in batches, as [`write_heartbeats`] writes: whatever arrived while
/// the previous lookup ran goes into the next query. Every device request starts with one, so
/// under load this turns thousands of queries a second into tens.
async fn look_devices_up(store: Store, mut receiver: mpsc::Receiver<PendingLookup>) {
    const MAX_BATCH: usize = 1024;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut ids: Vec<Uuid> = batch.iter().map(|lookup| lookup.device_id).collect();
        ids.sort_unstable();
        ids.dedup();
        match store.device_auths(&ids).await {
            Ok(found) => {
                let found: HashMap<Uuid, DeviceAuth> = found
                    .into_iter()
                    .map(|auth| (auth.device_id, auth))
                    .collect();
                for lookup in batch.drain(..) {
                    let _ = lookup.found.send(Ok(found.get(&lookup.device_id).cloned()));
                }
            }
            Err(error) => {
                let error = error.to_string();
                tracing::error!(%error, devices = ids.len(), "looking device credentials up failed");
                for lookup in batch.drain(..) {
                    let _ = lookup.found.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Wakes long polls for instructions that another process (an admin command, another replica)
/// queued: the database is the only thing the processes share.
async fn watch_instructions(hub: std::sync::Weak<Hub>) {
    let mut since = now_ms();
    loop {
        let Some(hub) = hub.upgrade() else { return };
        let tick = hub.settings.watch_tick;
        let checked_at = now_ms();
        match hub.store.devices_with_new_instructions(since).await {
            Ok(devices) => {
                for device in devices {
                    hub.wake(device);
                }
                // Overlap the windows generously: an instruction is stamped before its transaction
                // commits, and replicas' clocks differ. Waking a poll twice costs one query.
                since = checked_at - 30_000;
            }
            Err(error) => tracing::warn!(%error, "checking for new instructions"),
        }
        drop(hub);
        tokio::time::sleep(tick).await;
    }
}

/// The least time between the end of a scheduler pass and the next one that heartbeats asked for.
/// Devices becoming spare arrive by the hundred a second on a large hub; each needs a pass soon,
/// not a pass of its own. A request that needs one now (a placement, a job) still gets it at once.
const SCHEDULER_REST: Duration = Duration::from_millis(250);

async fn run_scheduler(hub: std::sync::Weak<Hub>) {
    let mut last_expiry = 0;
    let mut last_health = 0;
    loop {
        let Some(hub) = hub.upgrade() else { return };
        let now = now_ms();
        // One span per pass, so that a slow pass is found in the logs with all it did.
        async {
            // The sweeps run in one replica at a time; a replica that finds another sweeping leaves
            // this round to it.
            let upkeep = hub
                .store
                .try_exclusive(Duty::Upkeep)
                .await
                .inspect_err(|error| tracing::warn!(%error, "taking the upkeep duty"))
                .ok()
                .flatten();
            if upkeep.is_some() && now - last_expiry > 10_000 {
                last_expiry = now;
                match hub.store.expire_instructions(now).await {
                    Ok(0) => {}
                    Ok(count) => tracing::info!(count, "instructions expired"),
                    Err(error) => tracing::warn!(%error, "expiring instructions"),
                }
                // Repair first: it reads shards holders sent back, which the next step drops once
                // they are old.
                if let Err(error) = crate::repair::round(&hub, now).await {
                    tracing::warn!(%error, "repairing packs");
                }
                if let Err(error) = scheduler::drop_stale_staging(&hub, now).await {
                    tracing::warn!(%error, "dropping copies staged for restores");
                }
                if let Err(error) = scheduler::purge_forgotten(&hub, now).await {
                    tracing::warn!(%error, "purging what was forgotten past its grace period");
                }
                if let Err(error) = crate::challenge::audit_round(&hub, now).await {
                    tracing::warn!(%error, "auditing held shards");
                }
                if let Err(error) = scheduler::detect_losses(&hub, now).await {
                    tracing::warn!(%error, "looking for lost holders");
                }
                if let Err(error) = scheduler::release_returned(&hub, now).await {
                    tracing::warn!(%error, "releasing the copies of holders that came back");
                }
                if let Err(error) = crate::compute::drop_old_results(&hub, now).await {
                    tracing::warn!(%error, "dropping the results of jobs ended long ago");
                }
                if let Err(error) = hub.store.prune_traffic(now - 30 * 24 * 3_600_000).await {
                    tracing::warn!(%error, "pruning old traffic counts");
                }
            }
            // The durability figures of /metrics, counted once a minute by every replica: each
            // answers its own scrapes.
            if now - last_health >= 60_000 {
                last_health = now;
                hub.limits.shrink();
                match crate::health::report(&hub, now).await {
                    Ok(report) => hub.metrics.durability(&report),
                    Err(error) => tracing::warn!(%error, "counting packs by health"),
                }
            }
            if let Some(upkeep) = upkeep {
                if let Err(error) = scheduler::hand_over(&hub, now).await {
                    tracing::warn!(%error, "moving hand-overs along");
                }
                if let Err(error) = upkeep.release().await {
                    tracing::warn!(%error, "releasing the upkeep duty");
                }
            }
            if let Err(error) = scheduler::place_pending(&hub, scheduler::Scope::default()).await {
                tracing::warn!(%error, "placing blobs");
            }
            if let Err(error) = crate::compute::schedule(&hub).await {
                tracing::warn!(%error, "sending tasks out");
            }
        }
        .instrument(tracing::info_span!("scheduler_pass", now))
        .await;
        let tick = hub.settings.scheduler_tick;
        let kick = hub.scheduler_kick.clone();
        let soon = hub.scheduler_soon.clone();
        // Hold no strong reference while waiting, so the hub can shut down.
        drop(hub);
        let rested = tokio::time::Instant::now() + SCHEDULER_REST;
        tokio::select! {
            () = kick.notified() => {}
            () = async {
                soon.notified().await;
                tokio::time::sleep_until(rested).await;
            } => {}
            () = tokio::time::sleep(tick) => {}
        }
    }
}

impl Hub {
    /// A device as the API shows it, with its availability over the last 7 and 30 days.
    pub async fn device_view(
        &self,
        row: crate::store::DeviceRow,
    ) -> Result<surplus_protocol::Device, StoreError> {
        let now = now_ms();
        let availability_7d = self.availability(&row, now, 7).await?;
        let availability_30d = self.availability(&row, now, 30).await?;
        let online = row.revoked_at.is_none()
            && row
                .last_heartbeat
                .is_some_and(|t| now - t <= self.settings.online_window_ms());
        Ok(surplus_protocol::Device {
            id: row.id,
            name: row.name,
            subscriber: row.subscriber_email,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
            last_heartbeat: row.last_heartbeat,
            online,
            availability_7d,
            availability_30d,
            spare_storage_bytes: row.spare.storage_bytes,
            compute_slots: row.spare.compute_slots,
            spare: row.spare,
            report: row.report,
        })
    }

    /// The share of presence slots in the window (or since registration) the device was heard in.
    async fn availability(
        &self,
        row: &crate::store::DeviceRow,
        now: UnixMillis,
        days: i64,
    ) -> Result<f64, StoreError> {
        let start = (now - days * 86_400_000).max(row.created_at);
        let first_slot = start.div_euclid(PRESENCE_SLOT_MS);
        let possible = now.div_euclid(PRESENCE_SLOT_MS) - first_slot + 1;
        let present = self.store.presence_slots(row.id, first_slot).await?;
        Ok((present as f64 / possible.max(1) as f64).min(1.0))
    }
}
