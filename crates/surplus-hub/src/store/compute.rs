//! The SQL of donated compute: jobs, tasks, their runs on devices, trust, and credit.

use sqlx::Row;
use sqlx::any::AnyRow;
use surplus_protocol::{
    BlobRef, Floats, JobInput, RunState, TaskLimits, TaskOutcome, TaskState, UnixMillis,
};
use uuid::Uuid;

use super::{Result, StoreError, parse_uuid, to_u64};

mod credit;
mod jobs;
mod results;
mod runs;

pub use credit::CreditReason;
pub use runs::RunEnd;

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

/// A run a device should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled {
    pub device_id: Uuid,
    pub run: Uuid,
}

/// What judging a task starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskHeader {
    pub state: TaskState,
    /// How many identical results it needs.
    pub quorum: u32,
    pub job_id: Uuid,
    pub submitter: Uuid,
}

/// A device's trust: its streak of valid results, and all its valid and invalid ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceTrust {
    pub streak: u32,
    pub valid: u64,
    pub invalid: u64,
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
