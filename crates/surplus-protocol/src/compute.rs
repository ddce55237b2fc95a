//! Donated compute: jobs of WebAssembly tasks that run on other subscribers' idle machines.
//!
//! A job is one module and one task per input file. Each task runs on several devices (its
//! *runs*), and its result is the output a quorum of them agree on.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{BlobHash, BlobRef, UnixMillis};

/// The most one run of a task may take by default (wall-clock time while running).
pub const DEFAULT_TASK_TIMEOUT_SECONDS: u64 = 600;
/// The memory cap of a task by default.
pub const DEFAULT_TASK_MEMORY_BYTES: u64 = 512 << 20;
/// The most output a task may write.
pub const TASK_OUTPUT_BYTES: u64 = 64 << 20;
/// How many identical outputs make a task's result by default.
pub const DEFAULT_REPLICAS: u32 = 2;
/// A task whose runs fail on this many devices fails.
pub const MAX_TASK_ERRORS: u32 = 3;
/// How long a job may take by default, from its submission: then what is unfinished expires.
pub const DEFAULT_JOB_DEADLINE_SECONDS: u64 = 24 * 3600;
/// The longest deadline a job may ask for.
pub const MAX_JOB_DEADLINE_SECONDS: u64 = 30 * 24 * 3600;

/// What `POST /v1/compute/jobs` takes. The module and the inputs must already be staged by the
/// submitter (`PUT /v1/blobs/{hash}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobRequest {
    /// A WASI preview 1 command module.
    pub module: BlobRef,
    /// One task per input, in this order. Names are unique within a job.
    pub inputs: Vec<JobInput>,
    /// The arguments every task gets after its input's name.
    #[serde(default)]
    pub args: Vec<String>,
    /// How many identical outputs a task's result needs (1-8).
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// The most one run of a task may take, while running.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// The memory cap of each run.
    #[serde(default = "default_memory")]
    pub memory_bytes: u64,
    /// Whether the submitter's own devices may run its tasks.
    #[serde(default)]
    pub own_devices: bool,
    /// How long the job may take, from now: its unfinished tasks then expire (default a day).
    #[serde(default = "default_deadline")]
    pub deadline_seconds: u64,
    /// Whether the runs of a task must agree bit for bit across CPU architectures (x86 and
    /// Arm). Off by default: the runs of each task then go to donors of one architecture class
    /// and run floating point at full speed ([`Floats::Native`]). On, any donor may run them,
    /// with NaNs canonicalised ([`Floats::Portable`]): float-heavy code runs slower.
    #[serde(default)]
    pub cross_architecture: bool,
}

/// How a run's floating point must agree with the other runs of its task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Floats {
    /// The same bits on every architecture: NaNs are canonicalised after every float operation.
    /// What a run is told when its hub does not say.
    #[default]
    Portable,
    /// The same bits within one architecture class (every run of the task is sent to one):
    /// NaNs are left as the hardware makes them.
    Native,
}

impl Floats {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::Native => "native",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "portable" => Some(Self::Portable),
            "native" => Some(Self::Native),
            _ => None,
        }
    }

    /// What a job asks of its runs.
    pub fn of_job(cross_architecture: bool) -> Self {
        if cross_architecture {
            Self::Portable
        } else {
            Self::Native
        }
    }
}

fn default_deadline() -> u64 {
    DEFAULT_JOB_DEADLINE_SECONDS
}
fn default_replicas() -> u32 {
    DEFAULT_REPLICAS
}
fn default_timeout() -> u64 {
    DEFAULT_TASK_TIMEOUT_SECONDS
}
fn default_memory() -> u64 {
    DEFAULT_TASK_MEMORY_BYTES
}

/// One input file of a job: the task sees it on stdin and at `/input/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobInput {
    pub name: String,
    pub hash: BlobHash,
    pub size: u64,
}

impl JobInput {
    /// Why `name` cannot name an input (it becomes a file name on donors and in results), if so.
    pub fn name_problem(name: &str) -> Option<String> {
        if name.is_empty() || name == "." || name == ".." {
            return Some(format!("{name:?} is not a file name"));
        }
        if name.len() > 200 {
            return Some(format!("the input name {name:?} is longer than 200 bytes"));
        }
        if name.contains(['/', '\\', '\0']) {
            return Some(format!(
                "the input name {name:?} contains a path separator or NUL"
            ));
        }
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// No task has started yet.
    Queued,
    /// Some task is running or waits for more runs.
    Running,
    /// Every task has a validated output.
    Completed,
    /// Every task has ended and at least one failed.
    Failed,
    /// The submitter cancelled it.
    Cancelled,
    /// Its deadline passed before every task ended.
    Expired,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "expired" => Self::Expired,
            _ => return None,
        })
    }

    /// Whether nothing more happens to the job.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Cancelled | Self::Expired
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a device.
    Queued,
    /// Runs are out, or returned and waiting for a quorum.
    Running,
    /// A quorum agreed: the output is validated.
    Completed,
    /// Its runs failed on too many devices, or never agreed.
    Failed,
    Cancelled,
    /// Its job's deadline passed before it ended.
    Expired,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "expired" => Self::Expired,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Cancelled | Self::Expired
        )
    }
}

/// Where one run of a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Sent to a device; no result yet.
    Assigned,
    /// An output came back and waits for others to compare with.
    Returned,
    /// Its output agreed with the quorum.
    Valid,
    /// Its output disagreed with the quorum.
    Invalid,
    /// The task failed on the device: it trapped, exited non-zero, or hit a limit.
    Failed,
    /// The device went away, missed the deadline, or could not run it: it runs elsewhere.
    Lost,
    /// The job was cancelled or the task finished without it.
    Cancelled,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Assigned => "assigned",
            Self::Returned => "returned",
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::Failed => "failed",
            Self::Lost => "lost",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "assigned" => Self::Assigned,
            "returned" => Self::Returned,
            "valid" => Self::Valid,
            "invalid" => Self::Invalid,
            "failed" => Self::Failed,
            "lost" => Self::Lost,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

/// How one run of a task ended on its device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TaskOutcome {
    /// Exit status 0: the output is its result.
    Success,
    /// Another exit status.
    Exit { code: i32 },
    /// A trap (an error in the module, or a denied operation it could not survive).
    Trap { message: String },
    /// It ran longer than the job's timeout.
    Timeout,
    /// It tried to grow past the job's memory cap.
    MemoryExceeded,
    /// It wrote more output than allowed.
    OutputTooLarge,
}

impl TaskOutcome {
    pub fn describe(&self) -> String {
        match self {
            Self::Success => "success".into(),
            Self::Exit { code } => format!("exited with status {code}"),
            Self::Trap { message } => format!("trapped: {message}"),
            Self::Timeout => "ran past its timeout".into(),
            Self::MemoryExceeded => "hit its memory cap".into(),
            Self::OutputTooLarge => "wrote more than the output cap".into(),
        }
    }
}

/// What one run of a task is limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskLimits {
    pub timeout_ms: u64,
    pub memory_bytes: u64,
    pub output_bytes: u64,
}

/// One run of a task as the submitter sees it. Which device ran it stays private.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskRun {
    pub id: Uuid,
    pub state: RunState,
    pub outcome: Option<TaskOutcome>,
    /// The output's hash, once it came back.
    pub output: Option<BlobHash>,
    pub core_seconds: f64,
    pub created_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
}

/// One task of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobTask {
    pub id: Uuid,
    /// The input's name; its result is written as `NAME.out`.
    pub input: String,
    pub state: TaskState,
    /// The validated output.
    pub output: Option<BlobRef>,
    /// Why it failed.
    pub error: Option<String>,
    pub runs: Vec<TaskRun>,
}

/// How many of a job's tasks are in each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct TaskCounts {
    pub queued: u32,
    pub running: u32,
    pub completed: u32,
    pub failed: u32,
    pub cancelled: u32,
    #[serde(default)]
    pub expired: u32,
}

/// A job as its submitter sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: Uuid,
    pub state: JobState,
    pub module: BlobHash,
    pub args: Vec<String>,
    pub replicas: u32,
    pub timeout_seconds: u64,
    pub memory_bytes: u64,
    pub own_devices: bool,
    /// How its runs' floating point must agree: across architectures, or within one class.
    #[serde(default)]
    pub floats: Floats,
    /// When its unfinished tasks expire.
    pub deadline: Option<UnixMillis>,
    /// When its results were dropped, kept the hub's retention time after it ended.
    pub results_dropped_at: Option<UnixMillis>,
    pub counts: TaskCounts,
    /// Core-seconds of validated runs: what the job cost in credit.
    pub core_seconds: f64,
    pub created_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
    /// The tasks, in input order (empty in listings).
    pub tasks: Vec<JobTask>,
}

/// A subscriber's compute credit, in core-seconds: earned by their devices for validated work,
/// spent on their jobs' validated runs, plus what their plan started them with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Credits {
    pub balance: f64,
    pub earned: f64,
    pub spent: f64,
    pub granted: f64,
    /// Validated runs this subscriber's devices did for others.
    pub runs_done: u64,
}

/// Core-milliseconds (how the hub counts) as core-seconds (how people read it).
pub fn core_seconds(core_ms: i64) -> f64 {
    core_ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_request_fills_in_its_defaults() {
        let json = serde_json::json!({
            "module": {"hash": "ab", "size": 3},
            "inputs": [{"name": "a.txt", "hash": "cd", "size": 1}],
        });
        let request: JobRequest = serde_json::from_value(json).expect("decodes");
        assert_eq!(request.replicas, 2);
        assert_eq!(request.timeout_seconds, 600);
        assert_eq!(request.memory_bytes, 512 << 20);
        assert_eq!(request.deadline_seconds, 24 * 3600);
        assert!(!request.own_devices);
        assert!(request.args.is_empty());
    }

    #[test]
    fn input_names_are_plain_file_names() {
        assert_eq!(JobInput::name_problem("range-1.txt"), None);
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0b"] {
            assert!(JobInput::name_problem(bad).is_some(), "{bad:?}");
        }
        assert!(JobInput::name_problem(&"x".repeat(201)).is_some());
    }

    #[test]
    fn states_round_trip() {
        for state in [
            JobState::Queued,
            JobState::Running,
            JobState::Completed,
            JobState::Failed,
            JobState::Cancelled,
            JobState::Expired,
        ] {
            assert_eq!(JobState::parse(state.as_str()), Some(state));
        }
        for state in [
            RunState::Assigned,
            RunState::Returned,
            RunState::Valid,
            RunState::Invalid,
            RunState::Failed,
            RunState::Lost,
            RunState::Cancelled,
        ] {
            assert_eq!(RunState::parse(state.as_str()), Some(state));
        }
        let outcome = serde_json::to_value(TaskOutcome::Exit { code: 3 }).expect("json");
        assert_eq!(outcome, serde_json::json!({"outcome": "exit", "code": 3}));
    }
}
