//! Donated compute on the hub's side: sending tasks to devices whose compute is spare, taking
//! their results, and judging them.
//!
//! Each pass of [`schedule`] first writes off runs whose device went away or missed the deadline,
//! then gives each task that needs runs (by [`validation::judge`]) to devices with a free slot:
//! never to the submitter's own devices unless the job allows it, never twice to one device, and
//! to at most one device of each donor, so that one subscriber's machines cannot vote together;
//! and, unless its job asks for agreement across architectures, only to devices of the
//! architecture class its runs are bound to (homogeneous redundancy: `validation::bound_class`).
//! A run is an allocation in the ledger (its budget in core-milliseconds), a `run_task`
//! instruction and a row in `task_runs`, written in one transaction.

use surplus_protocol::{
    Acknowledgement, BlobRef, Floats, InstructionKind, InstructionResult, RunState, TaskOutcome,
    TaskState,
};
use uuid::Uuid;

use crate::hub::Hub;
use crate::now_ms;
use crate::store::{
    Cancelled, ComputeCandidate, Donor, Duty, InstructionRow, NewRun, OwnedBlob, RunEnd,
    Settlement, StoreError, TaskHeader,
};
use crate::validation::{self, Verdict};

/// The most open tasks one pass looks at.
const TASKS_PER_PASS: i64 = 500;

/// How long after it is sent a run must be done: twice its timeout (it may be paused while the
/// device's user is back) and a minute for fetching its files.
fn deadline(now: i64, timeout_ms: u64) -> i64 {
    let timeout = i64::try_from(timeout_ms).unwrap_or(i64::MAX / 4);
    now.saturating_add(timeout.saturating_mul(2))
        .saturating_add(60_000)
}

/// One scheduling pass. Returns how many runs were sent out.
#[tracing::instrument(skip_all, name = "dispatch")]
pub async fn schedule(hub: &Hub) -> Result<usize, StoreError> {
    // One pass at a time, across replicas too: two passes would count the same free slots.
    let _one_pass = hub.store.exclusive(Duty::Dispatch).await?;
    let store = &hub.store;
    let now = now_ms();
    let online_since = now - hub.settings.online_window_ms();
    // Jobs past their deadline end: what is unfinished expires, and runs still out stop.
    for job in store.jobs_past_deadline(now).await? {
        let Some(started) = store.expire_job(job, now).await? else {
            continue;
        };
        tracing::info!(%job, "a job reached its deadline; its unfinished tasks expired");
        for Cancelled { device_id, run } in started {
            hub.instruct(device_id, InstructionKind::CancelTask { run })
                .await?;
        }
        release_job_files(hub, job).await?;
    }
    for task in store.lose_runs(now, online_since).await? {
        tracing::info!(%task, "a device went away or missed its deadline; its task runs elsewhere");
        review_task(hub, task).await?;
    }
    let mut candidates = store.compute_candidates(online_since).await?;
    // Every device that donates compute at all, busy or not: loaded once a pass, when a task
    // finds no device free, to tell waiting from hopeless.
    let mut donating: Option<Vec<Donor>> = None;
    let mut sent = 0;
    'tasks: for task in store.open_tasks(TASKS_PER_PASS).await? {
        let needed = match validation::judge(task.quorum, &task.runs) {
            Verdict::NeedRuns(needed) => needed,
            Verdict::Waiting => continue,
            // Decided but not recorded (the acknowledgement that should have failed midway):
            // record it now.
            Verdict::Agreed { .. } | Verdict::Failed(_) => {
                review_task(hub, task.id).await?;
                continue;
            }
        };
        // A device that had its chance at the task is not sent it again; one that only lost a
        // run (away, paused) may be, a few times.
        let mut devices: Vec<Uuid> = task
            .runs
            .iter()
            .map(|r| r.device_id)
            .filter(|device| validation::tried(*device, &task.runs))
            .collect();
        // A donor whose run is out or counted does not get a second vote.
        let mut donors: Vec<Uuid> = task
            .runs
            .iter()
            .filter(|r| {
                !matches!(
                    r.state,
                    RunState::Lost | RunState::Failed | RunState::Cancelled
                )
            })
            .map(|r| r.donor_id)
            .collect();
        let first = task.runs.is_empty();
        let sent_before = sent;
        let may_take = |c: &ComputeCandidate, devices: &[Uuid], donors: &[Uuid]| {
            c.free_slots > 0
                && !devices.contains(&c.device_id)
                && !donors.contains(&c.subscriber_id)
                && (task.own_devices || c.subscriber_id != task.submitter)
        };
        let bound = validation::bound_class(task.floats, &task.runs).map(str::to_owned);
        let mut class = bound.clone();
        if class.is_none() && task.floats == Floats::Native {
            class = validation::roomiest_class(
                candidates
                    .iter()
                    .filter(|c| may_take(c, &devices, &donors))
                    .map(|c| (c.arch_class.as_str(), c.subscriber_id)),
            )
            .map(str::to_owned);
        }
        for _ in 0..needed {
            let Some(choice) = candidates
                .iter_mut()
                .filter(|c| {
                    may_take(c, &devices, &donors)
                        && class.as_ref().is_none_or(|class| *class == c.arch_class)
                })
                .max_by_key(|c| (c.free_slots, c.trust_streak, std::cmp::Reverse(c.device_id)))
            else {
                break;
            };
            let alone = first
                && devices.is_empty()
                && task.replicas == surplus_protocol::DEFAULT_REPLICAS
                && hub.settings.replication.accept_alone(choice.trust_streak);
            let Some(run) = store
                .assign_run(
                    &NewRun {
                        task: &task,
                        device_id: choice.device_id,
                        donor_id: choice.subscriber_id,
                        arch_class: choice.arch_class.clone(),
                        alone,
                        deadline: deadline(now, task.limits.timeout_ms),
                    },
                    now,
                )
                .await?
            else {
                // An acknowledgement ended the task since this pass read it.
                continue 'tasks;
            };
            tracing::debug!(task = %task.id, %run, device = %choice.device_id, alone, "task sent");
            choice.free_slots -= 1;
            devices.push(choice.device_id);
            donors.push(choice.subscriber_id);
            hub.metrics.instructions_queued("run_task");
            hub.wake(choice.device_id);
            sent += 1;
            if alone {
                break;
            }
        }
        if sent == sent_before {
            let donating = match &donating {
                Some(donating) => donating,
                None => donating.insert(store.compute_donors().await?),
            };
            // Only donors of the class the task is bound to could help it.
            let eligible: Vec<(Uuid, Uuid)> = donating
                .iter()
                .filter(|d| bound.as_ref().is_none_or(|class| *class == d.arch_class))
                .map(|d| (d.device_id, d.subscriber_id))
                .collect();
            if validation::no_donor_left(&eligible, &task.runs, task.submitter, task.own_devices) {
                let reason = validation::no_donor_reason(&task.runs);
                tracing::info!(task = %task.id, %reason, "a task failed");
                store
                    .settle_task(task.id, task.submitter, &Settlement::Failed(reason), now)
                    .await?;
                if let Some(state) = store.refresh_job(task.job_id, now).await? {
                    tracing::info!(job = %task.job_id, state = state.as_str(), "a job ended");
                    release_job_files(hub, task.job_id).await?;
                }
            }
        }
    }
    Ok(sent)
}

/// Takes a device's answer to a `run_task`.
#[tracing::instrument(skip_all, fields(instruction = %row.instruction.id))]
pub async fn acknowledge_run(
    hub: &Hub,
    row: &InstructionRow,
    ack: &Acknowledgement,
) -> Result<(), StoreError> {
    let InstructionKind::RunTask { run, limits, .. } = &row.instruction.kind else {
        return Ok(());
    };
    let now = now_ms();
    let ended = match &ack.result {
        InstructionResult::Ran {
            run: answered,
            outcome,
            output,
            running_ms,
        } if answered == run => {
            let (state, output) = match (outcome, output) {
                (TaskOutcome::Success, Some(output)) => {
                    if output_staged(hub, *run, output, limits.output_bytes).await? {
                        (RunState::Returned, Some(output.clone()))
                    } else {
                        tracing::warn!(%run, hash = %output.hash, "a device reported an output it did not upload");
                        (RunState::Lost, None)
                    }
                }
                (TaskOutcome::Success, None) => (RunState::Lost, None),
                _ => (RunState::Failed, None),
            };
            RunEnd {
                state,
                outcome: Some(outcome.clone()),
                output,
                running_ms: *running_ms,
            }
        }
        InstructionResult::Cancelled { .. } => RunEnd {
            state: RunState::Cancelled,
            outcome: None,
            output: None,
            running_ms: 0,
        },
        // The device could not run it (paused, no consent, the hub unreachable for its files):
        // that says nothing about the task, which runs elsewhere.
        other => {
            if let InstructionResult::Failed { code, message } = other {
                tracing::info!(%run, code = code.as_str(), %message, "a device could not run a task");
            }
            RunEnd {
                state: RunState::Lost,
                outcome: None,
                output: None,
                running_ms: 0,
            }
        }
    };
    let result =
        serde_json::to_string(&ack.result).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    match hub
        .store
        .finish_run(row.instruction.id, &result, *run, &ended, now)
        .await?
    {
        Some(task) => review_task(hub, task).await?,
        // The run had ended already (lost, cancelled): an output it sent is nobody's result.
        None => {
            if let Some(output) = &ended.output {
                drop_output(hub, *run, &output.hash).await?;
            }
        }
    }
    hub.kick_scheduler();
    Ok(())
}

/// Whether the run's output is staged as reported, within the job's cap.
async fn output_staged(
    hub: &Hub,
    run: Uuid,
    output: &BlobRef,
    cap: u64,
) -> Result<bool, StoreError> {
    if output.size > cap {
        return Ok(false);
    }
    let Some(owner) = hub.store.run_owner(run).await? else {
        return Ok(false);
    };
    Ok(matches!(
        hub.store.owned_blob(&output.hash, owner.submitter).await?,
        Some(OwnedBlob { size, staged: true }) if size == output.size
    ))
}

/// Judges a task after one of its runs changed, records the verdict, and ends the job when it
/// was its last task.
#[tracing::instrument(skip(hub))]
pub async fn review_task(hub: &Hub, task: Uuid) -> Result<(), StoreError> {
    let store = &hub.store;
    let now = now_ms();
    let TaskHeader {
        state,
        quorum,
        job_id: job,
        submitter,
    } = store.task_header(task).await?;
    if matches!(
        state,
        TaskState::Failed | TaskState::Cancelled | TaskState::Expired
    ) {
        return Ok(());
    }
    let runs = store.task_runs(task).await?;
    match validation::judge(quorum, &runs) {
        Verdict::Agreed {
            output,
            valid,
            invalid,
        } => {
            if !invalid.is_empty() {
                tracing::warn!(%task, invalid = invalid.len(), "outvoted results; their devices lose trust");
            }
            store
                .settle_task(
                    task,
                    submitter,
                    &Settlement::Completed {
                        output,
                        valid,
                        invalid: invalid.clone(),
                    },
                    now,
                )
                .await?;
            for run in runs.iter().filter(|r| invalid.contains(&r.id)) {
                if let Some(output) = &run.output {
                    drop_output(hub, run.id, &output.hash).await?;
                }
            }
        }
        Verdict::Failed(reason) => {
            tracing::info!(%task, %reason, "a task failed");
            store
                .settle_task(task, submitter, &Settlement::Failed(reason), now)
                .await?;
        }
        Verdict::Waiting | Verdict::NeedRuns(_) => {}
    }
    if let Some(state) = store.refresh_job(job, now).await? {
        tracing::info!(%job, state = state.as_str(), "a job ended");
        release_job_files(hub, job).await?;
    }
    Ok(())
}

/// Cancels a job: its runs on devices are told to stop, and its files leave staging. False if
/// the job is not the subscriber's or had already ended.
#[tracing::instrument(skip(hub))]
pub async fn cancel_job(hub: &Hub, subscriber: Uuid, job: Uuid) -> Result<bool, StoreError> {
    let Some(started) = hub.store.cancel_job(subscriber, job, now_ms()).await? else {
        return Ok(false);
    };
    for Cancelled { device_id, run } in started {
        hub.instruct(device_id, InstructionKind::CancelTask { run })
            .await?;
    }
    release_job_files(hub, job).await?;
    Ok(true)
}

/// Drops the staged module, inputs and outputs of an ended job that nothing else needs: every
/// output but the tasks' results.
async fn release_job_files(hub: &Hub, job: Uuid) -> Result<(), StoreError> {
    let mut released = hub.store.release_job_files(job).await?;
    released.extend(hub.store.release_leftover_outputs(job).await?);
    for hash in released {
        if !hub.store.blob_still_needed_in_staging(&hash).await? {
            crate::scheduler::unstage(hub, &hash, now_ms()).await?;
        }
    }
    Ok(())
}

/// Drops the results of jobs that ended more than `Settings::output_retention` ago: their
/// submitter no longer owns them (they stop counting against the staging quota) and the staged
/// copies go unless something else needs them. Each job's are dropped once, by whichever
/// process claims it. Returns how many jobs'.
pub async fn drop_old_results(hub: &Hub, now: i64) -> Result<usize, StoreError> {
    let keep = crate::millis(hub.settings.output_retention);
    let mut dropped = 0;
    for job in hub
        .store
        .jobs_with_old_results(now.saturating_sub(keep))
        .await?
    {
        let Some(hashes) = hub.store.drop_job_results(job, now).await? else {
            continue;
        };
        for hash in hashes {
            if !hub.store.blob_still_needed_in_staging(&hash).await? {
                crate::scheduler::unstage(hub, &hash, now).await?;
            }
        }
        tracing::info!(%job, "results kept past their retention dropped");
        dropped += 1;
    }
    Ok(dropped)
}

/// Drops an output that is not a result (an invalid or late run's), unless it is one elsewhere.
async fn drop_output(hub: &Hub, run: Uuid, hash: &str) -> Result<(), StoreError> {
    let Some(owner) = hub.store.run_owner(run).await? else {
        return Ok(());
    };
    if hub.store.release_output(owner.submitter, hash).await?
        && !hub.store.blob_still_needed_in_staging(hash).await?
    {
        crate::scheduler::unstage(hub, hash, now_ms()).await?;
    }
    Ok(())
}
