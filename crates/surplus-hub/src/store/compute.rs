//! The SQL of donated compute: jobs, tasks, their runs on devices, trust, and credit.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;
use surplus_protocol::{
    BlobRef, Credits, Floats, InstructionKind, Job, JobInput, JobRequest, JobState, JobTask,
    ResourceKind, RunState, TaskCounts, TaskLimits, TaskOutcome, TaskRun, TaskState, UnixMillis,
    core_seconds,
};
use uuid::Uuid;

use super::{Result, Store, StoreError, enqueue_on, parse_uuid, to_i64, to_json, to_u64};

/// A task that wants more runs, with what a run of it needs.
#[derive(Debug, Clone)]
pub struct OpenTask {
    pub id: Uuid,
    pub job_id: Uuid,
    pub submitter: Uuid,
    pub own_devices: bool,
    pub quorum: u32,
    pub replicas: u32,
    pub module: BlobRef,
    pub input: JobInput,
    pub args: Vec<String>,
    pub seed: u64,
    pub limits: TaskLimits,
    pub floats: Floats,
    pub runs: Vec<RunRow>,
}

/// One run of a task, as validation and scheduling see it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: Uuid,
    pub device_id: Uuid,
    pub donor_id: Uuid,
    pub state: RunState,
    pub output: Option<BlobRef>,
    pub running_ms: u64,
    /// How it ended on its device, once it did.
    pub outcome: Option<TaskOutcome>,
    /// The architecture class of its device.
    pub arch_class: String,
}

/// Whose a run is, for accepting its output and dropping outputs that are no result.
#[derive(Debug, Clone, Copy)]
pub struct RunOwner {
    pub submitter: Uuid,
    pub output_bytes: u64,
    pub device_id: Uuid,
    pub state: RunState,
}

/// A device that may take tasks now.
#[derive(Debug, Clone)]
pub struct ComputeCandidate {
    pub device_id: Uuid,
    pub subscriber_id: Uuid,
    /// Slots its latest report leaves spare, less the runs it has now.
    pub free_slots: u32,
    pub trust_streak: u32,
    pub arch_class: String,
}

/// A device that donates compute, busy or not, online or not.
#[derive(Debug, Clone)]
pub struct Donor {
    pub device_id: Uuid,
    pub subscriber_id: Uuid,
    pub arch_class: String,
}

/// A run that is being sent out: the allocation, the instruction and the run row are written
/// together.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub task: &'a OpenTask,
    pub device_id: Uuid,
    pub donor_id: Uuid,
    /// The device's architecture class.
    pub arch_class: String,
    /// Accept this run's result alone (the device is trusted and the dice said so).
    pub alone: bool,
    pub deadline: UnixMillis,
}

/// How a task's runs were judged.
#[derive(Debug, Clone)]
pub enum Settlement {
    Completed {
        output: BlobRef,
        valid: Vec<Uuid>,
        invalid: Vec<Uuid>,
    },
    Failed(String),
}

/// A run a device should stop: the device and the run.
pub type Cancelled = (Uuid, Uuid);

impl Store {
    /// Creates a job and its tasks, one per input.
    pub async fn create_job(
        &self,
        subscriber_id: Uuid,
        request: &JobRequest,
        output_bytes: u64,
        now: UnixMillis,
    ) -> Result<Uuid> {
        let id = Uuid::now_v7();
        let args = to_json(&request.args)?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO jobs (id, subscriber_id, module_hash, module_size, args, replicas, timeout_ms, \
             memory_bytes, output_bytes, own_devices, state, created_at, deadline, floats) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued', $11, $12, $13)",
        )
        .bind(id.to_string())
        .bind(subscriber_id.to_string())
        .bind(&request.module.hash)
        .bind(to_i64(request.module.size))
        .bind(args)
        .bind(i64::from(request.replicas))
        .bind(to_i64(request.timeout_seconds.saturating_mul(1000)))
        .bind(to_i64(request.memory_bytes))
        .bind(to_i64(output_bytes))
        .bind(i64::from(request.own_devices))
        .bind(now)
        .bind(now.saturating_add(to_i64(request.deadline_seconds.saturating_mul(1000))))
        .bind(Floats::of_job(request.cross_architecture).as_str())
        .execute(&mut *tx)
        .await?;
        for (position, input) in request.inputs.iter().enumerate() {
            // Every donor running the task gets the same seed, so honest runs agree.
            let seed = rand::random::<i64>();
            sqlx::query(
                "INSERT INTO tasks (id, job_id, position, input_name, input_hash, input_size, seed, quorum, state) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued')",
            )
            .bind(Uuid::now_v7().to_string())
            .bind(id.to_string())
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .bind(&input.name)
            .bind(&input.hash)
            .bind(to_i64(input.size))
            .bind(seed)
            .bind(i64::from(request.replicas))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// A subscriber's job with its tasks and their runs; `NotFound` for anyone else's.
    pub async fn job(&self, subscriber_id: Uuid, job_id: Uuid) -> Result<Job> {
        let row = sqlx::query(&format!(
            "{JOB_SELECT} WHERE j.id = $1 AND j.subscriber_id = $2"
        ))
        .bind(job_id.to_string())
        .bind(subscriber_id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let mut job = job_from_row(&row)?;
        let task_rows = sqlx::query(
            "SELECT id, input_name, state, output_hash, output_size, error FROM tasks \
             WHERE job_id = $1 ORDER BY position",
        )
        .bind(job_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let run_rows = sqlx::query(
            "SELECT r.id, r.task_id, r.state, r.outcome, r.output_hash, r.running_ms, r.created_at, \
             r.finished_at FROM task_runs r JOIN tasks t ON t.id = r.task_id WHERE t.job_id = $1 \
             ORDER BY r.created_at, r.id",
        )
        .bind(job_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut runs: HashMap<String, Vec<TaskRun>> = HashMap::new();
        for row in &run_rows {
            let outcome: Option<String> = row.try_get("outcome")?;
            runs.entry(row.try_get("task_id")?)
                .or_default()
                .push(TaskRun {
                    id: parse_uuid(&row.try_get::<String, _>("id")?)?,
                    state: parse_run_state(&row.try_get::<String, _>("state")?)?,
                    outcome: outcome
                        .map(|o| serde_json::from_str(&o))
                        .transpose()
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    output: row.try_get("output_hash")?,
                    core_seconds: core_seconds(row.try_get("running_ms")?),
                    created_at: row.try_get("created_at")?,
                    finished_at: row.try_get("finished_at")?,
                });
        }
        for row in &task_rows {
            let id: String = row.try_get("id")?;
            let output_hash: Option<String> = row.try_get("output_hash")?;
            let output_size: Option<i64> = row.try_get("output_size")?;
            job.tasks.push(JobTask {
                id: parse_uuid(&id)?,
                input: row.try_get("input_name")?,
                state: parse_task_state(&row.try_get::<String, _>("state")?)?,
                output: output_hash.map(|hash| BlobRef {
                    hash,
                    size: output_size.map(to_u64).unwrap_or(0),
                }),
                error: row.try_get("error")?,
                runs: runs.remove(&id).unwrap_or_default(),
            });
        }
        Ok(job)
    }

    /// A subscriber's jobs, newest first, without their tasks.
    pub async fn jobs(&self, subscriber_id: Uuid, limit: i64) -> Result<Vec<Job>> {
        let rows = sqlx::query(&format!(
            "{JOB_SELECT} WHERE j.subscriber_id = $1 ORDER BY j.created_at DESC, j.id LIMIT $2"
        ))
        .bind(subscriber_id.to_string())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Cancels a job: its unfinished tasks and their runs. Returns the runs a device may have
    /// started, which it should be told to stop; `None` if the job is not the subscriber's or had
    /// already ended.
    pub async fn cancel_job(
        &self,
        subscriber_id: Uuid,
        job_id: Uuid,
        now: UnixMillis,
    ) -> Result<Option<Vec<Cancelled>>> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', finished_at = $1 WHERE id = $2 AND subscriber_id = $3 \
             AND state IN ('queued', 'running')",
        )
        .bind(now)
        .bind(job_id.to_string())
        .bind(subscriber_id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let started = end_unfinished_on(&mut tx, job_id, TaskState::Cancelled, None, now).await?;
        tx.commit().await?;
        Ok(Some(started))
    }

    /// Live jobs whose deadline has passed (jobs from before deadlines get the default one).
    pub async fn jobs_past_deadline(&self, now: UnixMillis) -> Result<Vec<Uuid>> {
        let rows = sqlx::query(
            "SELECT id FROM jobs WHERE state IN ('queued', 'running') \
             AND COALESCE(deadline, created_at + $2) <= $1",
        )
        .bind(now)
        .bind(to_i64(
            surplus_protocol::DEFAULT_JOB_DEADLINE_SECONDS * 1000,
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| parse_uuid(&row.try_get::<String, _>("id")?))
            .collect()
    }

    /// Ends a job whose deadline passed, in one transaction that only one process wins: its
    /// unfinished tasks expire with the reason, and its runs still out are cancelled (returned,
    /// for their devices to be told). None if the job had already ended.
    pub async fn expire_job(
        &self,
        job_id: Uuid,
        now: UnixMillis,
    ) -> Result<Option<Vec<Cancelled>>> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE jobs SET state = 'expired', finished_at = $1 WHERE id = $2 \
             AND state IN ('queued', 'running')",
        )
        .bind(now)
        .bind(job_id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let started = end_unfinished_on(
            &mut tx,
            job_id,
            TaskState::Expired,
            Some("the job reached its deadline before this task ended"),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(started))
    }

    /// Runs whose device went away (not heard from since `online_since`, or revoked) or whose
    /// deadline passed: they are lost, so that their tasks run elsewhere. Returns the tasks.
    pub async fn lose_runs(&self, now: UnixMillis, online_since: UnixMillis) -> Result<Vec<Uuid>> {
        let rows = sqlx::query(
            "SELECT r.id, r.task_id FROM task_runs r JOIN devices d ON d.id = r.device_id \
             WHERE r.state = 'assigned' AND (r.deadline <= $1 OR d.revoked_at IS NOT NULL \
             OR d.last_heartbeat IS NULL OR d.last_heartbeat < $2)",
        )
        .bind(now)
        .bind(online_since)
        .fetch_all(&self.pool)
        .await?;
        let mut tasks = Vec::new();
        for row in &rows {
            let run = parse_uuid(&row.try_get::<String, _>("id")?)?;
            let mut tx = self.pool.begin().await?;
            if end_run_on(&mut tx, run, RunState::Lost, now).await? {
                tasks.push(parse_uuid(&row.try_get::<String, _>("task_id")?)?);
            }
            tx.commit().await?;
        }
        Ok(tasks)
    }

    /// Devices whose compute is spare now, with their free slots and trust.
    pub async fn compute_candidates(
        &self,
        online_since: UnixMillis,
    ) -> Result<Vec<ComputeCandidate>> {
        let rows = sqlx::query(
            "SELECT d.id, d.subscriber_id, d.compute_slots, d.trust_streak, d.arch_class, \
             (SELECT COUNT(*) FROM task_runs r WHERE r.device_id = d.id AND r.state = 'assigned') AS busy \
             FROM devices d JOIN subscribers s ON s.id = d.subscriber_id \
             WHERE d.revoked_at IS NULL AND s.status = 'active' AND d.compute_slots > 0 \
             AND d.last_heartbeat >= $1",
        )
        .bind(online_since)
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
        let rows = sqlx::query(
            "SELECT d.id, d.subscriber_id, d.arch_class, d.report FROM devices d JOIN subscribers s ON s.id = d.subscriber_id \
             WHERE d.revoked_at IS NULL AND s.status = 'active' AND d.report IS NOT NULL",
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
        let rows = sqlx::query(
            "SELECT t.id, t.job_id, t.input_name, t.input_hash, t.input_size, t.seed, t.quorum, \
             j.subscriber_id, j.own_devices, j.replicas, j.module_hash, j.module_size, j.args, \
             j.timeout_ms, j.memory_bytes, j.output_bytes, j.floats FROM tasks t JOIN jobs j ON j.id = t.job_id \
             WHERE t.state IN ('queued', 'running') AND j.state IN ('queued', 'running') \
             AND (SELECT COALESCE(SUM(c.amount_ms), 0) FROM credits c WHERE c.subscriber_id = j.subscriber_id) > 0 \
             ORDER BY j.created_at, j.id, t.position LIMIT $1",
        )
        .bind(limit)
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
        let runs = sqlx::query(
            "SELECT r.id, r.task_id, r.device_id, r.donor_id, r.state, r.output_hash, r.output_size, \
             r.running_ms, r.outcome, r.arch_class FROM task_runs r JOIN tasks t ON t.id = r.task_id JOIN jobs j ON j.id = t.job_id \
             WHERE t.state IN ('queued', 'running') AND j.state IN ('queued', 'running') \
             ORDER BY r.created_at, r.id",
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
        let rows = sqlx::query(
            "SELECT id, device_id, donor_id, state, output_hash, output_size, running_ms, outcome, arch_class \
             FROM task_runs WHERE task_id = $1 ORDER BY created_at, id",
        )
        .bind(task_id.to_string())
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
        let mut tx = self.pool.begin().await?;
        // The claim comes first: it takes the task's row, so that a settlement at the same time
        // either ends the task before it (and the claim fails) or waits for this run to exist.
        // A run accepted alone lowers the quorum to one; any other run restores the job's, so
        // that a task whose trusted run was lost is not then accepted on anyone's result alone.
        let quorum = if new.alone {
            1
        } else {
            i64::from(task.replicas)
        };
        let claimed = sqlx::query(
            "UPDATE tasks SET state = 'running', quorum = $1 WHERE id = $2 \
             AND state IN ('queued', 'running')",
        )
        .bind(quorum)
        .bind(task.id.to_string())
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() != 1 {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO allocations (id, subscriber_id, device_id, kind, amount, purpose, blob_hash, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, 'pending', $7)",
        )
        .bind(run.to_string())
        .bind(task.submitter.to_string())
        .bind(new.device_id.to_string())
        .bind(ResourceKind::Compute.as_str())
        .bind(to_i64(task.limits.timeout_ms))
        .bind(format!("task:{}", task.id))
        .bind(now)
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
            enqueue_on(&mut tx, new.device_id, Some(run), &kind, now, new.deadline).await?;
        sqlx::query(
            "INSERT INTO task_runs (id, task_id, device_id, donor_id, instruction_id, state, deadline, created_at, arch_class) \
             VALUES ($1, $2, $3, $4, $5, 'assigned', $6, $7, $8)",
        )
        .bind(run.to_string())
        .bind(task.id.to_string())
        .bind(new.device_id.to_string())
        .bind(new.donor_id.to_string())
        .bind(instruction.id.to_string())
        .bind(new.deadline)
        .bind(now)
        .bind(&new.arch_class)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE jobs SET state = 'running' WHERE id = $1 AND state = 'queued'")
            .bind(task.job_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(run))
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
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE instructions SET state = $1, result = $2, completed_at = $3 \
             WHERE id = $4 AND state IN ('queued', 'delivered')",
        )
        .bind(if ended.state == RunState::Returned {
            "done"
        } else {
            "failed"
        })
        .bind(result)
        .bind(now)
        .bind(instruction_id.to_string())
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
        let updated = sqlx::query(
            "UPDATE task_runs SET state = $1, outcome = $2, output_hash = $3, output_size = $4, \
             running_ms = $5, finished_at = $6 WHERE id = $7 AND state = 'assigned'",
        )
        .bind(ended.state.as_str())
        .bind(outcome)
        .bind(ended.output.as_ref().map(|o| o.hash.clone()))
        .bind(ended.output.as_ref().map(|o| to_i64(o.size)))
        .bind(to_i64(ended.running_ms))
        .bind(now)
        .bind(run.to_string())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            tx.commit().await?;
            return Ok(None);
        }
        let allocation = if ended.state == RunState::Lost {
            "failed"
        } else {
            "released"
        };
        sqlx::query(
            "UPDATE allocations SET state = $1, amount = $2, released_at = $3 WHERE id = $4",
        )
        .bind(allocation)
        .bind(to_i64(ended.running_ms))
        .bind(now)
        .bind(run.to_string())
        .execute(&mut *tx)
        .await?;
        let task = sqlx::query("SELECT task_id FROM task_runs WHERE id = $1")
            .bind(run.to_string())
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(parse_uuid(&task.try_get::<String, _>("task_id")?)?))
    }

    /// The task's state, quorum, job and submitter.
    pub async fn task_header(&self, task_id: Uuid) -> Result<(TaskState, u32, Uuid, Uuid)> {
        let row = sqlx::query(
            "SELECT t.state, t.quorum, t.job_id, j.subscriber_id FROM tasks t JOIN jobs j ON j.id = t.job_id \
             WHERE t.id = $1",
        )
        .bind(task_id.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok((
            parse_task_state(&row.try_get::<String, _>("state")?)?,
            u32::try_from(row.try_get::<i64, _>("quorum")?).unwrap_or(1),
            parse_uuid(&row.try_get::<String, _>("job_id")?)?,
            parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?,
        ))
    }

    /// Records a task's verdict: its output (or why it failed), which runs were valid and which
    /// not, the credit that moves for valid runs (the donor earns what the submitter spends), and
    /// each device's trust.
    pub async fn settle_task(
        &self,
        task_id: Uuid,
        submitter: Uuid,
        settlement: &Settlement,
        now: UnixMillis,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        match settlement {
            Settlement::Completed {
                output,
                valid,
                invalid,
            } => {
                sqlx::query(
                    "UPDATE tasks SET state = 'completed', output_hash = $1, output_size = $2, \
                     finished_at = $3 WHERE id = $4 AND state IN ('queued', 'running', 'completed')",
                )
                .bind(&output.hash)
                .bind(to_i64(output.size))
                .bind(now)
                .bind(task_id.to_string())
                .execute(&mut *tx)
                .await?;
                // Devices' rows are updated in one order (by id) in every transaction, so that
                // two settlements at once never wait on each other's locks.
                let mut trust: Vec<(String, bool)> = Vec::new();
                for run in valid {
                    let row = sqlx::query(
                        "UPDATE task_runs SET state = 'valid' WHERE id = $1 AND state = 'returned' \
                         RETURNING device_id, donor_id, running_ms",
                    )
                    .bind(run.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some(row) = row else { continue };
                    let device: String = row.try_get("device_id")?;
                    let donor: String = row.try_get("donor_id")?;
                    let used: i64 = row.try_get("running_ms")?;
                    for (subscriber, amount, reason) in [
                        (donor, used, "earned"),
                        (submitter.to_string(), -used, "spent"),
                    ] {
                        sqlx::query(
                            "INSERT INTO credits (id, subscriber_id, amount_ms, reason, run_id, created_at) \
                             VALUES ($1, $2, $3, $4, $5, $6)",
                        )
                        .bind(Uuid::now_v7().to_string())
                        .bind(subscriber)
                        .bind(amount)
                        .bind(reason)
                        .bind(run.to_string())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    trust.push((device, true));
                }
                for run in invalid {
                    let row = sqlx::query(
                        "UPDATE task_runs SET state = 'invalid' WHERE id = $1 AND state = 'returned' \
                         RETURNING device_id",
                    )
                    .bind(run.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some(row) = row else { continue };
                    trust.push((row.try_get("device_id")?, false));
                }
                trust.sort();
                for (device, valid) in trust {
                    let statement = if valid {
                        "UPDATE devices SET trust_streak = trust_streak + 1, results_valid = results_valid + 1 \
                         WHERE id = $1"
                    } else {
                        "UPDATE devices SET trust_streak = 0, results_invalid = results_invalid + 1 \
                         WHERE id = $1"
                    };
                    sqlx::query(statement)
                        .bind(device)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            Settlement::Failed(reason) => {
                sqlx::query(
                    "UPDATE tasks SET state = 'failed', error = $1, finished_at = $2 WHERE id = $3 \
                     AND state IN ('queued', 'running')",
                )
                .bind(reason)
                .bind(now)
                .bind(task_id.to_string())
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Brings a job's state in line with its tasks. Returns the state when the job just ended.
    pub async fn refresh_job(&self, job_id: Uuid, now: UnixMillis) -> Result<Option<JobState>> {
        let rows =
            sqlx::query("SELECT state, COUNT(*) AS n FROM tasks WHERE job_id = $1 GROUP BY state")
                .bind(job_id.to_string())
                .fetch_all(&self.pool)
                .await?;
        let mut counts = TaskCounts::default();
        for row in &rows {
            let n = u32::try_from(row.try_get::<i64, _>("n")?).unwrap_or(u32::MAX);
            match parse_task_state(&row.try_get::<String, _>("state")?)? {
                TaskState::Queued => counts.queued = n,
                TaskState::Running => counts.running = n,
                TaskState::Completed => counts.completed = n,
                TaskState::Failed => counts.failed = n,
                TaskState::Cancelled => counts.cancelled = n,
                TaskState::Expired => counts.expired = n,
            }
        }
        if counts.queued + counts.running > 0 {
            return Ok(None);
        }
        let state = if counts.failed > 0 {
            JobState::Failed
        } else {
            JobState::Completed
        };
        let done = sqlx::query(
            "UPDATE jobs SET state = $1, finished_at = $2 WHERE id = $3 AND state IN ('queued', 'running')",
        )
        .bind(state.as_str())
        .bind(now)
        .bind(job_id.to_string())
        .execute(&self.pool)
        .await?;
        Ok((done.rows_affected() == 1).then_some(state))
    }

    /// The job's module and inputs that nothing else of the submitter needs staged any more:
    /// their ownership is given up, so that the caller may drop the staged copies.
    pub async fn release_job_files(&self, job_id: Uuid) -> Result<Vec<String>> {
        let job = sqlx::query("SELECT subscriber_id, module_hash FROM jobs WHERE id = $1")
            .bind(job_id.to_string())
            .fetch_one(&self.pool)
            .await?;
        let submitter: String = job.try_get("subscriber_id")?;
        let mut hashes: Vec<String> = vec![job.try_get("module_hash")?];
        for row in sqlx::query("SELECT DISTINCT input_hash FROM tasks WHERE job_id = $1")
            .bind(job_id.to_string())
            .fetch_all(&self.pool)
            .await?
        {
            hashes.push(row.try_get("input_hash")?);
        }
        let mut released = Vec::new();
        for hash in hashes {
            let in_use = sqlx::query(
                "SELECT 1 AS one FROM jobs j WHERE j.subscriber_id = $1 AND j.state IN ('queued', 'running') \
                 AND (j.module_hash = $2 OR EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = j.id AND t.input_hash = $2)) \
                 UNION ALL SELECT 1 AS one FROM placements p WHERE p.subscriber_id = $1 AND p.hash = $2 \
                 UNION ALL SELECT 1 AS one FROM tasks t JOIN jobs j ON j.id = t.job_id \
                   WHERE j.subscriber_id = $1 AND t.output_hash = $2",
            )
            .bind(&submitter)
            .bind(&hash)
            .fetch_optional(&self.pool)
            .await?;
            if in_use.is_none() {
                sqlx::query("DELETE FROM blob_owners WHERE hash = $1 AND subscriber_id = $2")
                    .bind(&hash)
                    .bind(&submitter)
                    .execute(&self.pool)
                    .await?;
                released.push(hash);
            }
        }
        Ok(released)
    }

    /// Gives up the submitter's ownership of an output no task of theirs has as its result
    /// (an invalid run's). Returns whether it did.
    pub async fn release_output(&self, submitter: Uuid, hash: &str) -> Result<bool> {
        let in_use = sqlx::query(
            "SELECT 1 AS one FROM tasks t JOIN jobs j ON j.id = t.job_id WHERE j.subscriber_id = $1 \
             AND t.output_hash = $2 UNION ALL SELECT 1 AS one FROM task_runs r JOIN tasks t ON t.id = r.task_id \
             JOIN jobs j ON j.id = t.job_id WHERE j.subscriber_id = $1 AND r.output_hash = $2 \
             AND r.state = 'returned' UNION ALL SELECT 1 AS one FROM placements p \
             WHERE p.subscriber_id = $1 AND p.hash = $2",
        )
        .bind(submitter.to_string())
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        if in_use.is_some() {
            return Ok(false);
        }
        sqlx::query("DELETE FROM blob_owners WHERE hash = $1 AND subscriber_id = $2")
            .bind(hash)
            .bind(submitter.to_string())
            .execute(&self.pool)
            .await?;
        Ok(true)
    }

    /// Records that an assigned run of `device_id` uploads the output `hash`. A run has one
    /// output: false when it uploaded another one already (the same one again is fine).
    pub async fn claim_output(&self, run: Uuid, device_id: Uuid, hash: &str) -> Result<bool> {
        let claimed = sqlx::query(
            "UPDATE task_runs SET uploaded_hash = $1 WHERE id = $2 AND device_id = $3 \
             AND state = 'assigned' AND (uploaded_hash IS NULL OR uploaded_hash = $1)",
        )
        .bind(hash)
        .bind(run.to_string())
        .bind(device_id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(claimed.rows_affected() == 1)
    }

    /// The outputs an ended job's runs uploaded that are no task's result: their submitter no
    /// longer owns them. Returns them, to be dropped from staging when nothing else needs them.
    pub async fn release_leftover_outputs(&self, job_id: Uuid) -> Result<Vec<String>> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT DISTINCT r.uploaded_hash AS hash, j.subscriber_id FROM task_runs r \
             JOIN tasks t ON t.id = r.task_id JOIN jobs j ON j.id = t.job_id \
             WHERE t.job_id = $1 AND r.uploaded_hash IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM tasks t2 JOIN jobs j2 ON j2.id = t2.job_id \
               WHERE j2.subscriber_id = j.subscriber_id AND t2.output_hash = r.uploaded_hash) \
             AND NOT EXISTS (SELECT 1 FROM placements p \
               WHERE p.subscriber_id = j.subscriber_id AND p.hash = r.uploaded_hash)",
        )
        .bind(job_id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        let released = give_up_ownership_on(&mut tx, &rows).await?;
        tx.commit().await?;
        Ok(released)
    }

    /// Ended jobs whose results are still kept and ended before `ended_before`.
    pub async fn jobs_with_old_results(&self, ended_before: UnixMillis) -> Result<Vec<Uuid>> {
        let rows = sqlx::query(
            "SELECT id FROM jobs WHERE state IN ('completed', 'failed', 'cancelled', 'expired') \
             AND outputs_dropped_at IS NULL AND finished_at <= $1",
        )
        .bind(ended_before)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| parse_uuid(&row.try_get::<String, _>("id")?))
            .collect()
    }

    /// Gives up the submitter's ownership of an ended job's results, in one transaction that
    /// only one process wins (None for the others): each result that no other job of theirs
    /// still keeps, and that they did not place as a backup. Returns the hashes let go.
    pub async fn drop_job_results(
        &self,
        job_id: Uuid,
        now: UnixMillis,
    ) -> Result<Option<Vec<String>>> {
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "UPDATE jobs SET outputs_dropped_at = $1 WHERE id = $2 AND outputs_dropped_at IS NULL",
        )
        .bind(now)
        .bind(job_id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT DISTINCT t.output_hash AS hash, j.subscriber_id FROM tasks t JOIN jobs j ON j.id = t.job_id \
             WHERE t.job_id = $1 AND t.output_hash IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM tasks t2 JOIN jobs j2 ON j2.id = t2.job_id \
               WHERE j2.subscriber_id = j.subscriber_id AND j2.id <> j.id AND j2.outputs_dropped_at IS NULL \
               AND t2.output_hash = t.output_hash) \
             AND NOT EXISTS (SELECT 1 FROM placements p \
               WHERE p.subscriber_id = j.subscriber_id AND p.hash = t.output_hash)",
        )
        .bind(job_id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        let released = give_up_ownership_on(&mut tx, &rows).await?;
        tx.commit().await?;
        Ok(Some(released))
    }

    /// Whether a device runs a task now that needs this blob (its module or input).
    pub async fn device_runs_with(&self, device_id: Uuid, hash: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM task_runs r JOIN tasks t ON t.id = r.task_id JOIN jobs j ON j.id = t.job_id \
             WHERE r.device_id = $1 AND r.state = 'assigned' AND (t.input_hash = $2 OR j.module_hash = $2) \
             LIMIT 1",
        )
        .bind(device_id.to_string())
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Whose a run is: its job's submitter and output cap, and the device and state of the run.
    pub async fn run_owner(&self, run: Uuid) -> Result<Option<RunOwner>> {
        let row = sqlx::query(
            "SELECT j.subscriber_id, j.output_bytes, r.device_id, r.state FROM task_runs r \
             JOIN tasks t ON t.id = r.task_id JOIN jobs j ON j.id = t.job_id WHERE r.id = $1",
        )
        .bind(run.to_string())
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

    /// The subscriber's credit, and the validated runs their devices did.
    pub async fn credits(&self, subscriber_id: Uuid) -> Result<Credits> {
        let rows = sqlx::query(
            "SELECT reason, CAST(SUM(amount_ms) AS BIGINT) AS total, COUNT(*) AS n FROM credits \
             WHERE subscriber_id = $1 GROUP BY reason",
        )
        .bind(subscriber_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut credits = Credits {
            balance: 0.0,
            earned: 0.0,
            spent: 0.0,
            granted: 0.0,
            runs_done: 0,
        };
        let mut balance = 0i64;
        for row in &rows {
            let total: i64 = row.try_get::<Option<i64>, _>("total")?.unwrap_or(0);
            balance += total;
            match row.try_get::<String, _>("reason")?.as_str() {
                "earned" => {
                    credits.earned = core_seconds(total);
                    credits.runs_done = to_u64(row.try_get("n")?);
                }
                "spent" => credits.spent = core_seconds(-total),
                _ => credits.granted += core_seconds(total),
            }
        }
        credits.balance = core_seconds(balance);
        Ok(credits)
    }

    /// Grants credit (a new subscriber's starting credit, or the operator's grant).
    pub async fn grant_credit(
        &self,
        subscriber_id: Uuid,
        amount_ms: i64,
        now: UnixMillis,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO credits (id, subscriber_id, amount_ms, reason, run_id, created_at) \
             VALUES ($1, $2, $3, 'granted', NULL, $4)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(subscriber_id.to_string())
        .bind(amount_ms)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A device's trust: its streak of valid results, and its valid and invalid results.
    pub async fn device_trust(&self, device_id: Uuid) -> Result<(u32, u64, u64)> {
        let row = sqlx::query(
            "SELECT trust_streak, results_valid, results_invalid FROM devices WHERE id = $1",
        )
        .bind(device_id.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok((
            u32::try_from(row.try_get::<i64, _>("trust_streak")?).unwrap_or(0),
            to_u64(row.try_get("results_valid")?),
            to_u64(row.try_get("results_invalid")?),
        ))
    }
}

/// How a run ended, as `finish_run` records it.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub state: RunState,
    pub outcome: Option<TaskOutcome>,
    pub output: Option<BlobRef>,
    pub running_ms: u64,
}

/// Ends an assigned run that never reported (lost, or cancelled): the run, its allocation
/// (failed when lost, released with nothing used when cancelled) and its instruction if the device
/// has not answered it. Returns whether the run was still assigned.
async fn end_run_on(
    conn: &mut sqlx::AnyConnection,
    run: Uuid,
    state: RunState,
    now: UnixMillis,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE task_runs SET state = $1, finished_at = $2 WHERE id = $3 AND state = 'assigned'",
    )
    .bind(state.as_str())
    .bind(now)
    .bind(run.to_string())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    let allocation = if state == RunState::Lost {
        "failed"
    } else {
        "released"
    };
    sqlx::query(
        "UPDATE allocations SET state = $1, amount = 0, released_at = $2 WHERE id = $3 AND state = 'pending'",
    )
    .bind(allocation)
    .bind(now)
    .bind(run.to_string())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE instructions SET state = 'cancelled', completed_at = $1 WHERE allocation_id = $2 \
         AND state IN ('queued', 'delivered')",
    )
    .bind(now)
    .bind(run.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

const JOB_SELECT: &str = "SELECT j.id, j.state, j.module_hash, j.args, j.replicas, j.timeout_ms, \
     j.memory_bytes, j.own_devices, j.floats, j.created_at, j.finished_at, j.deadline, j.outputs_dropped_at, \
     (SELECT COUNT(*) FROM tasks t WHERE t.job_id = j.id AND t.state = 'queued') AS queued, \
     (SELECT COUNT(*) FROM tasks t WHERE t.job_id = j.id AND t.state = 'running') AS running, \
     (SELECT COUNT(*) FROM tasks t WHERE t.job_id = j.id AND t.state = 'completed') AS completed, \
     (SELECT COUNT(*) FROM tasks t WHERE t.job_id = j.id AND t.state = 'failed') AS failed, \
     (SELECT COUNT(*) FROM tasks t WHERE t.job_id = j.id AND t.state = 'cancelled') AS cancelled, \
     (SELECT COUNT(*) FROM tasks t WHERE t.job_id = j.id AND t.state = 'expired') AS expired, \
     (SELECT CAST(COALESCE(SUM(r.running_ms), 0) AS BIGINT) FROM task_runs r JOIN tasks t ON t.id = r.task_id \
      WHERE t.job_id = j.id AND r.state = 'valid') AS used_ms FROM jobs j";

fn job_from_row(row: &AnyRow) -> Result<Job> {
    let count = |name: &str| -> Result<u32> {
        Ok(u32::try_from(row.try_get::<i64, _>(name)?).unwrap_or(u32::MAX))
    };
    let args: String = row.try_get("args")?;
    Ok(Job {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        state: JobState::parse(&row.try_get::<String, _>("state")?)
            .ok_or_else(|| StoreError::Corrupt("job state".into()))?,
        module: row.try_get("module_hash")?,
        args: serde_json::from_str(&args).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        replicas: u32::try_from(row.try_get::<i64, _>("replicas")?).unwrap_or(1),
        timeout_seconds: to_u64(row.try_get("timeout_ms")?) / 1000,
        memory_bytes: to_u64(row.try_get("memory_bytes")?),
        own_devices: row.try_get::<i64, _>("own_devices")? != 0,
        floats: parse_floats(&row.try_get::<String, _>("floats")?)?,
        deadline: row.try_get("deadline")?,
        results_dropped_at: row.try_get("outputs_dropped_at")?,
        counts: TaskCounts {
            queued: count("queued")?,
            running: count("running")?,
            completed: count("completed")?,
            failed: count("failed")?,
            cancelled: count("cancelled")?,
            expired: count("expired")?,
        },
        core_seconds: core_seconds(row.try_get("used_ms")?),
        created_at: row.try_get("created_at")?,
        finished_at: row.try_get("finished_at")?,
        tasks: Vec::new(),
    })
}

/// Gives up the ownership of each (`hash`, `subscriber_id`) row, inside `tx`: the blobs stop
/// counting against their owner's staging quota. Returns the hashes, for the caller to drop
/// the staged copies nothing else needs.
async fn give_up_ownership_on(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    rows: &[AnyRow],
) -> Result<Vec<String>> {
    let mut released = Vec::with_capacity(rows.len());
    for row in rows {
        let hash: String = row.try_get("hash")?;
        let submitter: String = row.try_get("subscriber_id")?;
        sqlx::query("DELETE FROM blob_owners WHERE hash = $1 AND subscriber_id = $2")
            .bind(&hash)
            .bind(&submitter)
            .execute(&mut **tx)
            .await?;
        released.push(hash);
    }
    Ok(released)
}

/// Ends a job's unfinished tasks as `state` (with `error`, if any) and cancels its runs still
/// out, inside the transaction that claimed the job's end: returns those runs and their
/// devices, to be told to stop.
async fn end_unfinished_on(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    job_id: Uuid,
    state: TaskState,
    error: Option<&str>,
    now: UnixMillis,
) -> Result<Vec<Cancelled>> {
    sqlx::query(
        "UPDATE tasks SET state = $1, finished_at = $2, error = COALESCE($3, error) \
         WHERE job_id = $4 AND state IN ('queued', 'running')",
    )
    .bind(state.as_str())
    .bind(now)
    .bind(error)
    .bind(job_id.to_string())
    .execute(&mut **tx)
    .await?;
    let runs = sqlx::query(
        "SELECT r.id, r.device_id FROM task_runs r JOIN tasks t ON t.id = r.task_id \
         WHERE t.job_id = $1 AND r.state = 'assigned'",
    )
    .bind(job_id.to_string())
    .fetch_all(&mut **tx)
    .await?;
    let mut started = Vec::new();
    for row in &runs {
        let run = parse_uuid(&row.try_get::<String, _>("id")?)?;
        let device = parse_uuid(&row.try_get::<String, _>("device_id")?)?;
        if end_run_on(tx, run, RunState::Cancelled, now).await? {
            started.push((device, run));
        }
    }
    Ok(started)
}

fn run_from_row(row: &AnyRow) -> Result<RunRow> {
    let hash: Option<String> = row.try_get("output_hash")?;
    let size: Option<i64> = row.try_get("output_size")?;
    Ok(RunRow {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        device_id: parse_uuid(&row.try_get::<String, _>("device_id")?)?,
        donor_id: parse_uuid(&row.try_get::<String, _>("donor_id")?)?,
        state: parse_run_state(&row.try_get::<String, _>("state")?)?,
        output: hash.map(|hash| BlobRef {
            hash,
            size: size.map(to_u64).unwrap_or(0),
        }),
        running_ms: to_u64(row.try_get("running_ms")?),
        // An outcome that does not parse (written by another version) counts as unknown.
        outcome: row
            .try_get::<Option<String>, _>("outcome")?
            .and_then(|text| serde_json::from_str(&text).ok()),
        arch_class: row.try_get("arch_class")?,
    })
}

fn parse_floats(text: &str) -> Result<Floats> {
    Floats::parse(text).ok_or_else(|| StoreError::Corrupt(format!("bad floats {text:?}")))
}

fn parse_run_state(text: &str) -> Result<RunState> {
    RunState::parse(text).ok_or_else(|| StoreError::Corrupt(format!("bad run state {text:?}")))
}

fn parse_task_state(text: &str) -> Result<TaskState> {
    TaskState::parse(text).ok_or_else(|| StoreError::Corrupt(format!("bad task state {text:?}")))
}
