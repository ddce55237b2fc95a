//! Runs: which devices may take a task now, sending a task to one (allocation, instruction and
//! run together), and a run's end, reported or not.

use std::collections::HashMap;

use sqlx::Row;
use surplus_protocol::{
    AllocationState, BlobRef, InstructionKind, JobInput, ResourceKind, RunState, TaskLimits,
    TaskOutcome, UnixMillis,
};
use uuid::Uuid;

use super::super::sql;
use super::super::{
    InstructionState, Result, Store, StoreError, enqueue_on, parse_uuid, to_i64, to_u64,
};
use super::{
    ComputeCandidate, Donor, NewRun, OpenTask, RunOwner, RunRow, TaskHeader, parse_floats,
    parse_run_state, parse_task_state, run_from_row,
};

/// How a run ended, as `finish_run` records it.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub state: RunState,
    pub outcome: Option<TaskOutcome>,
    pub output: Option<BlobRef>,
    pub running_ms: u64,
}

/// What a run's end makes of its allocation: failed when the run was lost, released otherwise.
fn allocation_after(run: RunState) -> AllocationState {
    if run == RunState::Lost {
        AllocationState::Failed
    } else {
        AllocationState::Released
    }
}

/// Ends an assigned run that never reported (lost, or cancelled): the run, its allocation
/// (failed when lost, released with nothing used when cancelled) and its instruction if the device
/// has not answered it. Returns whether the run was still assigned.
pub(super) async fn end_run_on(
    conn: &mut sqlx::AnyConnection,
    run: Uuid,
    state: RunState,
    now: UnixMillis,
) -> Result<bool> {
    let done = sql!(
        "UPDATE task_runs SET state = $1, finished_at = $2 WHERE id = $3 AND state = 'assigned'",
        state.as_str(),
        now,
        run
    )
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    let allocation = allocation_after(state).as_str();
    sql!(
        "UPDATE allocations SET state = $1, amount = 0, released_at = $2 WHERE id = $3 AND state = 'pending'",
        allocation,
        now,
        run
    )
    .execute(&mut *conn)
    .await?;
    sql!(
        "UPDATE instructions SET state = 'cancelled', completed_at = $1 WHERE allocation_id = $2 \
         AND state IN ('queued', 'delivered')",
        now,
        run
    )
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

impl Store {
    /// Runs whose device went away (not heard from since `online_since`, or revoked) or whose
    /// deadline passed: they are lost, so that their tasks run elsewhere. Returns the tasks.
    pub async fn lose_runs(&self, now: UnixMillis, online_since: UnixMillis) -> Result<Vec<Uuid>> {
        let rows = sql!(
            "SELECT r.id, r.task_id FROM task_runs r JOIN devices d ON d.id = r.device_id \
             WHERE r.state = 'assigned' AND (r.deadline <= $1 OR d.revoked_at IS NOT NULL \
             OR d.last_heartbeat IS NULL OR d.last_heartbeat < $2)",
            now,
            online_since
        )
        .fetch_all(&self.pool)
        .await?;
        let mut tasks = Vec::new();
        for row in &rows {
            let run = parse_uuid(&row.try_get::<String, _>("id")?)?;
            let lost = self
                .transaction(async |tx| end_run_on(tx, run, RunState::Lost, now).await)
                .await?;
            if lost {
                tasks.push(parse_uuid(&row.try_get::<String, _>("task_id")?)?);
            }
        }
        Ok(tasks)
    }

    /// Devices whose compute is spare now, with their free slots and trust.
    pub async fn compute_candidates(
        &self,
        online_since: UnixMillis,
    ) -> Result<Vec<ComputeCandidate>> {
        let rows = sql!(
            "SELECT d.id, d.subscriber_id, d.compute_slots, d.trust_streak, d.arch_class, \
             (SELECT COUNT(*) FROM task_runs r WHERE r.device_id = d.id AND r.state = 'assigned') AS busy \
             FROM devices d JOIN subscribers s ON s.id = d.subscriber_id \
             WHERE d.revoked_at IS NULL AND s.status = 'active' AND d.compute_slots > 0 \
             AND d.last_heartbeat >= $1",
            online_since
        )
        .fetch_all(&self.pool)
        .await?;
        let mut candidates = Vec::new();
        for row in &rows {
            let slots: i64 = row.try_get("compute_slots")?;
            let busy: i64 = row.try_get("busy")?;
            if slots <= busy {
                continue;
            }
            candidates.push(ComputeCandidate {
                device_id: parse_uuid(&row.try_get::<String, _>("id")?)?,
                subscriber_id: parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?,
                free_slots: u32::try_from(slots - busy).unwrap_or(u32::MAX),
                trust_streak: u32::try_from(row.try_get::<i64, _>("trust_streak")?).unwrap_or(0),
                arch_class: row.try_get("arch_class")?,
            });
        }
        Ok(candidates)
    }

    /// Every device that donates compute at all (its latest report consents to it), online or
    /// not, busy or not, of an active subscriber.
    pub async fn compute_donors(&self) -> Result<Vec<Donor>> {
        let rows = sql!(
            "SELECT d.id, d.subscriber_id, d.arch_class, d.report FROM devices d JOIN subscribers s ON s.id = d.subscriber_id \
             WHERE d.revoked_at IS NULL AND s.status = 'active' AND d.report IS NOT NULL"
        )
        .fetch_all(&self.pool)
        .await?;
        let mut donors = Vec::new();
        for row in &rows {
            let report: Option<surplus_protocol::StatusReport> =
                serde_json::from_str(&row.try_get::<String, _>("report")?).ok();
            if report.is_some_and(|r| r.consent.compute) {
                donors.push(Donor {
                    device_id: parse_uuid(&row.try_get::<String, _>("id")?)?,
                    subscriber_id: parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?,
                    arch_class: row.try_get("arch_class")?,
                });
            }
        }
        Ok(donors)
    }

    /// Tasks that may want more runs, oldest job first: unfinished tasks of live jobs whose
    /// submitter still has credit.
    pub async fn open_tasks(&self, limit: i64) -> Result<Vec<OpenTask>> {
        let rows = sql!(
            "SELECT t.id, t.job_id, t.input_name, t.input_hash, t.input_size, t.seed, t.quorum, \
             j.subscriber_id, j.own_devices, j.replicas, j.module_hash, j.module_size, j.args, \
             j.timeout_ms, j.memory_bytes, j.output_bytes, j.floats FROM tasks t JOIN jobs j ON j.id = t.job_id \
             WHERE t.state IN ('queued', 'running') AND j.state IN ('queued', 'running') \
             AND (SELECT COALESCE(SUM(c.amount_ms), 0) FROM credits c WHERE c.subscriber_id = j.subscriber_id) > 0 \
             ORDER BY j.created_at, j.id, t.position LIMIT $1",
            limit
        )
        .fetch_all(&self.pool)
        .await?;
        let mut tasks = Vec::with_capacity(rows.len());
        for row in &rows {
            let id = parse_uuid(&row.try_get::<String, _>("id")?)?;
            let args: String = row.try_get("args")?;
            tasks.push(OpenTask {
                id,
                job_id: parse_uuid(&row.try_get::<String, _>("job_id")?)?,
                submitter: parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?,
                own_devices: row.try_get::<i64, _>("own_devices")? != 0,
                quorum: u32::try_from(row.try_get::<i64, _>("quorum")?).unwrap_or(1),
                replicas: u32::try_from(row.try_get::<i64, _>("replicas")?).unwrap_or(1),
                module: BlobRef {
                    hash: row.try_get("module_hash")?,
                    size: to_u64(row.try_get("module_size")?),
                },
                input: JobInput {
                    name: row.try_get("input_name")?,
                    hash: row.try_get("input_hash")?,
                    size: to_u64(row.try_get("input_size")?),
                },
                args: serde_json::from_str(&args)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                seed: u64::from_ne_bytes(row.try_get::<i64, _>("seed")?.to_ne_bytes()),
                limits: TaskLimits {
                    timeout_ms: to_u64(row.try_get("timeout_ms")?),
                    memory_bytes: to_u64(row.try_get("memory_bytes")?),
                    output_bytes: to_u64(row.try_get("output_bytes")?),
                },
                floats: parse_floats(&row.try_get::<String, _>("floats")?)?,
                runs: Vec::new(),
            });
        }
        // The runs of all those tasks in one query, not one per task: this runs every tick. A task
        // that ended between the two queries shows no runs; `assign_run` then refuses it.
        let runs = sql!(
            "SELECT r.id, r.task_id, r.device_id, r.donor_id, r.state, r.output_hash, r.output_size, \
             r.running_ms, r.outcome, r.arch_class FROM task_runs r JOIN tasks t ON t.id = r.task_id JOIN jobs j ON j.id = t.job_id \
             WHERE t.state IN ('queued', 'running') AND j.state IN ('queued', 'running') \
             ORDER BY r.created_at, r.id"
        )
        .fetch_all(&self.pool)
        .await?;
        let mut by_task: HashMap<Uuid, Vec<RunRow>> = HashMap::new();
        for row in &runs {
            let task = parse_uuid(&row.try_get::<String, _>("task_id")?)?;
            by_task.entry(task).or_default().push(run_from_row(row)?);
        }
        for task in &mut tasks {
            task.runs = by_task.remove(&task.id).unwrap_or_default();
        }
        Ok(tasks)
    }

    /// The runs of one task, oldest first.
    pub async fn task_runs(&self, task_id: Uuid) -> Result<Vec<RunRow>> {
        let rows = sql!(
            "SELECT id, device_id, donor_id, state, output_hash, output_size, running_ms, outcome, arch_class \
             FROM task_runs WHERE task_id = $1 ORDER BY created_at, id",
            task_id
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// Sends a task to a device: the allocation (its budget in core-milliseconds), the
    /// `run_task` instruction and the run, in one transaction. `None`, and nothing written, when
    /// the task ended since it was read (an acknowledgement settled it, the job was cancelled):
    /// an ended task is never reopened, so its verdict, credit and trust stay settled once.
    pub async fn assign_run(&self, new: &NewRun<'_>, now: UnixMillis) -> Result<Option<Uuid>> {
        let task = new.task;
        let run = Uuid::now_v7();
        self.transaction(async |tx| {
            // The claim comes first: it takes the task's row, so that a settlement at the same time
            // either ends the task before it (and the claim fails) or waits for this run to exist.
            // A run accepted alone lowers the quorum to one; any other run restores the job's, so
            // that a task whose trusted run was lost is not then accepted on anyone's result alone.
            let quorum = if new.alone {
                1
            } else {
                i64::from(task.replicas)
            };
            let claimed = sql!(
                "UPDATE tasks SET state = 'running', quorum = $1 WHERE id = $2 \
                 AND state IN ('queued', 'running')",
                quorum,
                task.id
            )
            .execute(&mut *tx)
            .await?;
            if claimed.rows_affected() != 1 {
                return Ok(None);
            }
            sql!(
                "INSERT INTO allocations (id, subscriber_id, device_id, kind, amount, purpose, blob_hash, state, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, 'pending', $7)",
                run,
                task.submitter,
                new.device_id,
                ResourceKind::Compute.as_str(),
                task.limits.timeout_ms,
                format!("task:{}", task.id),
                now
            )
            .execute(&mut *tx)
            .await?;
            let kind = InstructionKind::RunTask {
                run,
                module: task.module.clone(),
                input: task.input.clone(),
                args: task.args.clone(),
                seed: task.seed,
                limits: task.limits,
                floats: task.floats,
            };
            let instruction =
                enqueue_on(tx, new.device_id, Some(run), &kind, now, new.deadline).await?;
            sql!(
                "INSERT INTO task_runs (id, task_id, device_id, donor_id, instruction_id, state, deadline, created_at, arch_class) \
                 VALUES ($1, $2, $3, $4, $5, 'assigned', $6, $7, $8)",
                run,
                task.id,
                new.device_id,
                new.donor_id,
                instruction.id,
                new.deadline,
                now,
                &new.arch_class
            )
            .execute(&mut *tx)
            .await?;
            sql!(
                "UPDATE jobs SET state = 'running' WHERE id = $1 AND state = 'queued'",
                task.job_id
            )
            .execute(&mut *tx)
            .await?;
            Ok(Some(run))
        })
        .await
    }

    /// Records how a run ended on its device, with its instruction and its allocation (released,
    /// its amount now the core-milliseconds used), in one transaction. Returns the task, or
    /// `None` when the run had already ended (lost, cancelled, or a repeated acknowledgement).
    pub async fn finish_run(
        &self,
        instruction_id: Uuid,
        result: &str,
        run: Uuid,
        ended: &RunEnd,
        now: UnixMillis,
    ) -> Result<Option<Uuid>> {
        let instruction = if ended.state == RunState::Returned {
            InstructionState::Done
        } else {
            InstructionState::Failed
        };
        self.transaction(async |tx| {
            let done = sql!(
                "UPDATE instructions SET state = $1, result = $2, completed_at = $3 \
                 WHERE id = $4 AND state IN ('queued', 'delivered')",
                instruction,
                result,
                now,
                instruction_id
            )
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(None);
            }
            let outcome = ended
                .outcome
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let updated = sql!(
                "UPDATE task_runs SET state = $1, outcome = $2, output_hash = $3, output_size = $4, \
                 running_ms = $5, finished_at = $6 WHERE id = $7 AND state = 'assigned'",
                ended.state.as_str(),
                outcome,
                ended.output.as_ref().map(|o| o.hash.clone()),
                ended.output.as_ref().map(|o| to_i64(o.size)),
                ended.running_ms,
                now,
                run
            )
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() != 1 {
                return Ok(None);
            }
            let allocation = allocation_after(ended.state).as_str();
            sql!(
                "UPDATE allocations SET state = $1, amount = $2, released_at = $3 WHERE id = $4",
                allocation,
                ended.running_ms,
                now,
                run
            )
            .execute(&mut *tx)
            .await?;
            let task = sql!("SELECT task_id FROM task_runs WHERE id = $1", run)
                .fetch_one(&mut *tx)
                .await?;
            Ok(Some(parse_uuid(&task.try_get::<String, _>("task_id")?)?))
        })
        .await
    }

    /// The task's state, quorum, job and submitter.
    pub async fn task_header(&self, task_id: Uuid) -> Result<TaskHeader> {
        let row = sql!(
            "SELECT t.state, t.quorum, t.job_id, j.subscriber_id FROM tasks t JOIN jobs j ON j.id = t.job_id \
             WHERE t.id = $1",
            task_id
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(TaskHeader {
            state: parse_task_state(&row.try_get::<String, _>("state")?)?,
            quorum: u32::try_from(row.try_get::<i64, _>("quorum")?).unwrap_or(1),
            job_id: parse_uuid(&row.try_get::<String, _>("job_id")?)?,
            submitter: parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?,
        })
    }

    /// Whether a device runs a task now that needs this blob (its module or input).
    pub async fn device_runs_with(&self, device_id: Uuid, hash: &str) -> Result<bool> {
        let row = sql!(
            "SELECT 1 AS one FROM task_runs r JOIN tasks t ON t.id = r.task_id JOIN jobs j ON j.id = t.job_id \
             WHERE r.device_id = $1 AND r.state = 'assigned' AND (t.input_hash = $2 OR j.module_hash = $2) \
             LIMIT 1",
            device_id,
            hash
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Whose a run is: its job's submitter and output cap, and the device and state of the run.
    pub async fn run_owner(&self, run: Uuid) -> Result<Option<RunOwner>> {
        let row = sql!(
            "SELECT j.subscriber_id, j.output_bytes, r.device_id, r.state FROM task_runs r \
             JOIN tasks t ON t.id = r.task_id JOIN jobs j ON j.id = t.job_id WHERE r.id = $1",
            run
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(RunOwner {
                submitter: parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?,
                output_bytes: to_u64(row.try_get("output_bytes")?),
                device_id: parse_uuid(&row.try_get::<String, _>("device_id")?)?,
                state: parse_run_state(&row.try_get::<String, _>("state")?)?,
            })
        })
        .transpose()
    }
}
