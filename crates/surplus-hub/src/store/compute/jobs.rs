//! Jobs: submitting, listing, cancelling and expiring them, and bringing a job's state in line
//! with its tasks'.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;
use surplus_protocol::{
    BlobRef, Floats, Job, JobRequest, JobState, JobTask, RunState, TaskCounts, TaskRun, TaskState,
    UnixMillis, core_seconds,
};
use uuid::Uuid;

use super::super::sql;
use super::super::{Result, Store, StoreError, parse_uuid, to_i64, to_json, to_u64};
use super::runs::end_run_on;
use super::{Cancelled, parse_floats, parse_run_state, parse_task_state};

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

/// Ends a job's unfinished tasks as `state` (with `error`, if any) and cancels its runs still
/// out, inside the transaction that claimed the job's end: returns those runs and their
/// devices, to be told to stop.
pub(super) async fn end_unfinished_on(
    tx: &mut sqlx::AnyConnection,
    job_id: Uuid,
    state: TaskState,
    error: Option<&str>,
    now: UnixMillis,
) -> Result<Vec<Cancelled>> {
    sql!(
        "UPDATE tasks SET state = $1, finished_at = $2, error = COALESCE($3, error) \
         WHERE job_id = $4 AND state IN ('queued', 'running')",
        state.as_str(),
        now,
        error,
        job_id
    )
    .execute(&mut *tx)
    .await?;
    let runs = sql!(
        "SELECT r.id, r.device_id FROM task_runs r JOIN tasks t ON t.id = r.task_id \
         WHERE t.job_id = $1 AND r.state = 'assigned'",
        job_id
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut started = Vec::new();
    for row in &runs {
        let run = parse_uuid(&row.try_get::<String, _>("id")?)?;
        let device = parse_uuid(&row.try_get::<String, _>("device_id")?)?;
        if end_run_on(tx, run, RunState::Cancelled, now).await? {
            started.push(Cancelled {
                device_id: device,
                run,
            });
        }
    }
    Ok(started)
}

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
        self.transaction(async |tx| {
            sql!(
                "INSERT INTO jobs (id, subscriber_id, module_hash, module_size, args, replicas, timeout_ms, \
                 memory_bytes, output_bytes, own_devices, state, created_at, deadline, floats) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued', $11, $12, $13)",
                id,
                subscriber_id,
                &request.module.hash,
                request.module.size,
                args,
                i64::from(request.replicas),
                request.timeout_seconds.saturating_mul(1000),
                request.memory_bytes,
                output_bytes,
                i64::from(request.own_devices),
                now,
                now.saturating_add(to_i64(request.deadline_seconds.saturating_mul(1000))),
                Floats::of_job(request.cross_architecture).as_str()
            )
            .execute(&mut *tx)
            .await?;
            for (position, input) in request.inputs.iter().enumerate() {
                // Every donor running the task gets the same seed, so honest runs agree.
                let seed = rand::random::<i64>();
                sql!(
                    "INSERT INTO tasks (id, job_id, position, input_name, input_hash, input_size, seed, quorum, state) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued')",
                    Uuid::now_v7().to_string(),
                    id,
                    i64::try_from(position).unwrap_or(i64::MAX),
                    &input.name,
                    &input.hash,
                    input.size,
                    seed,
                    i64::from(request.replicas)
                )
                .execute(&mut *tx)
                .await?;
            }
            Ok(id)
        })
        .await
    }

    /// A subscriber's job with its tasks and their runs; `NotFound` for anyone else's.
    pub async fn job(&self, subscriber_id: Uuid, job_id: Uuid) -> Result<Job> {
        let row = sql!(
            &format!("{JOB_SELECT} WHERE j.id = $1 AND j.subscriber_id = $2"),
            job_id,
            subscriber_id
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let mut job = job_from_row(&row)?;
        let task_rows = sql!(
            "SELECT id, input_name, state, output_hash, output_size, error FROM tasks \
             WHERE job_id = $1 ORDER BY position",
            job_id
        )
        .fetch_all(&self.pool)
        .await?;
        let run_rows = sql!(
            "SELECT r.id, r.task_id, r.state, r.outcome, r.output_hash, r.running_ms, r.created_at, \
             r.finished_at FROM task_runs r JOIN tasks t ON t.id = r.task_id WHERE t.job_id = $1 \
             ORDER BY r.created_at, r.id",
            job_id
        )
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
        let rows = sql!(
            &format!(
                "{JOB_SELECT} WHERE j.subscriber_id = $1 ORDER BY j.created_at DESC, j.id LIMIT $2"
            ),
            subscriber_id,
            limit
        )
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
        self.transaction(async |tx| {
            let done = sql!(
                "UPDATE jobs SET state = 'cancelled', finished_at = $1 WHERE id = $2 AND subscriber_id = $3 \
                 AND state IN ('queued', 'running')",
                now,
                job_id,
                subscriber_id
            )
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(None);
            }
            let started = end_unfinished_on(tx, job_id, TaskState::Cancelled, None, now).await?;
            Ok(Some(started))
        })
        .await
    }

    /// Live jobs whose deadline has passed (jobs from before deadlines get the default one).
    pub async fn jobs_past_deadline(&self, now: UnixMillis) -> Result<Vec<Uuid>> {
        let rows = sql!(
            "SELECT id FROM jobs WHERE state IN ('queued', 'running') \
             AND COALESCE(deadline, created_at + $2) <= $1",
            now,
            surplus_protocol::DEFAULT_JOB_DEADLINE_SECONDS * 1000,
        )
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
        self.transaction(async |tx| {
            let done = sql!(
                "UPDATE jobs SET state = 'expired', finished_at = $1 WHERE id = $2 \
                 AND state IN ('queued', 'running')",
                now,
                job_id
            )
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(None);
            }
            let started = end_unfinished_on(
                tx,
                job_id,
                TaskState::Expired,
                Some("the job reached its deadline before this task ended"),
                now,
            )
            .await?;
            Ok(Some(started))
        })
        .await
    }

    /// Brings a job's state in line with its tasks. Returns the state when the job just ended.
    pub async fn refresh_job(&self, job_id: Uuid, now: UnixMillis) -> Result<Option<JobState>> {
        let rows = sql!(
            "SELECT state, COUNT(*) AS n FROM tasks WHERE job_id = $1 GROUP BY state",
            job_id
        )
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
        let done = sql!(
            "UPDATE jobs SET state = $1, finished_at = $2 WHERE id = $3 AND state IN ('queued', 'running')",
            state.as_str(),
            now,
            job_id
        )
        .execute(&self.pool)
        .await?;
        Ok((done.rows_affected() == 1).then_some(state))
    }
}
