//! Donated compute on the device: the tasks the hub sends, run in the sandbox while the machine
//! is idle.
//!
//! A `run_task` fetches its module (kept under `<data-dir>/compute/modules`, by hash) and its
//! input from the hub, runs in [`surplus_sandbox`] on a thread of its own (so that a busy task
//! never slows the worker's heartbeats and polls), uploads its output, and is answered with how it
//! ended. Its names and limits passed [`crate::untrusted`] before it came here; its input is
//! written into a fresh private folder of its own (`compute/runs/<run>/input`), which is the
//! only folder the task sees, and which is removed when it ends. All running tasks share one pause switch, which [`hold_reason`] drives: when the user
//! comes back (or pauses donation, withdraws consent, a full-screen window takes the focus, the
//! CPU runs hot, the charger is unplugged, the schedule window ends) every task is paused at its next epoch tick, and resumes where it stopped once the
//! machine is free again. A task that stays paused past its deadline is abandoned; the hub has
//! sent it elsewhere by then.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use surplus_protocol::{
    BlobRef, ComfortHold, FailureCode, Floats, InstructionResult, JobInput, TaskLimits,
    TaskOutcome, UnixMillis, UserActivity,
};
use surplus_sandbox::{Limits, Outcome, Sandbox, Task};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::client::HubClient;
use crate::probe::Comfort;
use crate::settings::{ComputeSettings, Settings};
use crate::untrusted;

/// Set (to anything but empty) only by tests, and honoured only by a build with the `test-hooks`
/// feature: outputs are corrupted before upload, to play a dishonest donor that validation must
/// outvote.
#[cfg(feature = "test-hooks")]
pub const CORRUPT_OUTPUTS_ENV: &str = "SURPLUS_TEST_CORRUPT_OUTPUTS";

/// How often the user's activity is looked at while tasks run.
pub const GUARD_INTERVAL: Duration = Duration::from_millis(200);

/// One task to run, as the `run_task` instruction gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOrder {
    pub run: Uuid,
    pub module: BlobRef,
    pub input: JobInput,
    pub args: Vec<String>,
    pub seed: u64,
    pub limits: TaskLimits,
    /// How its floating point must agree with the task's other runs.
    pub floats: Floats,
    pub deadline: UnixMillis,
}

/// The device's compute: the sandbox (made on first use), the pause switch, and the runs.
pub struct Compute {
    dir: PathBuf,
    sandbox: Mutex<Option<Arc<Sandbox>>>,
    pause: watch::Sender<bool>,
    cancels: Mutex<HashMap<Uuid, watch::Sender<bool>>>,
    /// Woken when a task is admitted, so that the guard sleeps while nothing runs.
    admitted: Notify,
    corrupt: bool,
    /// How to start a task's own process, when tasks run in processes of their own.
    runner: Option<surplus_sandbox::Runner>,
}

impl std::fmt::Debug for Compute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compute")
            .field("dir", &self.dir)
            .field("running", &self.running())
            .finish_non_exhaustive()
    }
}

pub use surplus_sandbox::Runner;

/// Runs the one compute task that standard input asks for, in this process of its own: the body
/// of the argument a [`surplus_sandbox::Runner`] gives the program that embeds the agent.
#[cfg(unix)]
pub fn serve_task() -> std::process::ExitCode {
    surplus_sandbox::isolated::serve()
}

/// Why the machine's compute is not free now, if it is not.
pub fn hold_reason(
    settings: &Settings,
    user: UserActivity,
    comfort: Option<ComfortHold>,
    on_battery: Option<bool>,
    now: UnixMillis,
    local_minute: u16,
) -> Option<&'static str> {
    if !settings.consent.compute {
        return Some("compute consent withdrawn");
    }
    if settings.pause.is_paused(now) {
        return Some("donation paused");
    }
    if let Some(reason) = user_holds(user, settings) {
        return Some(reason);
    }
    if let Some(hold) = comfort {
        return Some(describe_comfort(hold));
    }
    if on_battery == Some(true) && !settings.compute.on_battery {
        return Some("on battery");
    }
    if let Some(window) = settings.compute.window
        && !window.contains(local_minute)
    {
        return Some("outside the schedule window");
    }
    None
}

/// Why the user's activity keeps the machine's compute from being free, if it does: nobody has
/// been away for the minutes the user chose, or whether anybody is cannot be read. The one rule
/// for "the user is away", used by the guard that pauses tasks and by the reporter that tells
/// the hub at once when it changes.
pub fn user_holds(user: UserActivity, settings: &Settings) -> Option<&'static str> {
    match user {
        UserActivity::None => None,
        UserActivity::Unknown => Some("the user's idle time cannot be read"),
        UserActivity::Idle { idle_seconds } => (idle_seconds
            < u64::from(settings.compute.idle_minutes) * 60)
            .then_some("the user is back"),
    }
}

/// A comfort rule that holds compute, as the tray says it.
pub fn describe_comfort(hold: ComfortHold) -> &'static str {
    match hold {
        ComfortHold::FullScreen => "you are in a full-screen app",
        ComfortHold::TooHot => "the CPU is too hot",
    }
}

/// How long after a full-screen window last had the focus donated work stays held: a film that
/// leaves full screen for a moment, or a game between two scenes, does not let it back in.
pub const FULL_SCREEN_LINGER_MS: UnixMillis = 60_000;

/// Degrees below the user's temperature limit the CPU must cool to before held work resumes:
/// donated work heats it, so without this margin it would stop and start around the limit.
pub const HEAT_HYSTERESIS: f32 = 5.0;

/// The comfort rules and what they remember between readings, which keeps them from flapping:
/// a full-screen window holds compute at once and for [`FULL_SCREEN_LINGER_MS`] after it last
/// had the focus; a hot CPU holds it above the user's limit and until it is [`HEAT_HYSTERESIS`]
/// degrees below.
#[derive(Debug, Default)]
pub struct ComfortRules {
    full_screen_seen: Option<UnixMillis>,
    hot: bool,
}

impl ComfortRules {
    /// The rule that holds compute after this reading at `now`, if any. What cannot be read
    /// holds nothing (the idle time remains the condition for donating).
    pub fn judge(
        &mut self,
        settings: &ComputeSettings,
        comfort: Comfort,
        now: UnixMillis,
    ) -> Option<ComfortHold> {
        if comfort.full_screen == Some(true) {
            self.full_screen_seen = Some(now);
        }
        let full_screen = settings.pause_in_full_screen
            && self
                .full_screen_seen
                .is_some_and(|seen| now.saturating_sub(seen) < FULL_SCREEN_LINGER_MS);
        self.hot = match (settings.max_cpu_celsius, comfort.cpu_celsius) {
            (Some(limit), Some(celsius)) => {
                let limit = f32::from(limit);
                if self.hot {
                    celsius > limit - HEAT_HYSTERESIS
                } else {
                    celsius > limit
                }
            }
            _ => false,
        };
        if full_screen {
            Some(ComfortHold::FullScreen)
        } else if self.hot {
            Some(ComfortHold::TooHot)
        } else {
            None
        }
    }
}

/// Points below the user's busy threshold that other programs' CPU use must fall to before
/// held work resumes: without this margin, work near the threshold flaps on and off.
pub const BUSY_HYSTERESIS: f32 = 10.0;

/// How much each reading moves the smoothed CPU use the guard judges by (a reading every
/// [`GUARD_INTERVAL`]: a burst of a second barely counts, a sustained load does within seconds).
pub const BUSY_SMOOTHING: f32 = 0.2;

/// Whether other programs' CPU use (smoothed, 0-100) holds donated work, given whether it held
/// it until now: above `limit` it does; once held, until use falls [`BUSY_HYSTERESIS`] points
/// below it.
pub fn busy_holds(limit: u8, busy: f32, held: bool) -> bool {
    let limit = f32::from(limit);
    if held {
        busy > limit - BUSY_HYSTERESIS
    } else {
        busy > limit
    }
}

impl Compute {
    /// Compute in `data_dir`; tasks in processes of their own started by `runner`, if given
    /// (on Unix).
    pub fn new(data_dir: &Path, runner: Option<surplus_sandbox::Runner>) -> Compute {
        // Compiled out of a build without the feature: a shipped binary never reads it.
        #[cfg(feature = "test-hooks")]
        let corrupt = std::env::var_os(CORRUPT_OUTPUTS_ENV).is_some_and(|v| !v.is_empty());
        #[cfg(not(feature = "test-hooks"))]
        let corrupt = false;
        if corrupt {
            tracing::warn!("this agent corrupts its task outputs (a test hook)");
        }
        Compute {
            dir: data_dir.join("compute"),
            sandbox: Mutex::new(None),
            pause: watch::Sender::new(false),
            cancels: Mutex::new(HashMap::new()),
            admitted: Notify::new(),
            corrupt,
            runner,
        }
    }

    /// The sandbox, made on first use (its engines cost nothing until a task comes). On Unix,
    /// given a runner, each task runs in a process of its own, at nearly native speed; otherwise
    /// tasks run here, with epoch checks.
    pub fn sandbox(&self) -> Result<Arc<Sandbox>, surplus_sandbox::SandboxError> {
        let mut slot = self.sandbox.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sandbox) = slot.as_ref() {
            return Ok(sandbox.clone());
        }
        let cache = self.dir.join("cache");
        let sandbox = match self.runner.clone() {
            #[cfg(unix)]
            Some(runner) => {
                tracing::info!(runner = %runner.program.display(), "compute tasks run in processes of their own");
                Sandbox::isolated(Some(&cache), runner)?
            }
            _ => {
                tracing::info!("compute tasks run in the agent's process, with epoch checks");
                Sandbox::new(Some(&cache))?
            }
        };
        let sandbox = Arc::new(sandbox);
        *slot = Some(sandbox.clone());
        Ok(sandbox)
    }

    /// How many tasks run (or are paused) now.
    pub fn running(&self) -> usize {
        self.cancels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// How many tasks are paused right now (stopped at an epoch tick).
    pub fn paused_tasks(&self) -> usize {
        self.sandbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, |s| s.paused_tasks())
    }

    /// Pauses or resumes every task. Returns whether that changed anything.
    pub fn set_paused(&self, paused: bool) -> bool {
        self.pause.send_if_modified(|current| {
            let changed = *current != paused;
            *current = paused;
            changed
        })
    }

    pub fn is_paused(&self) -> bool {
        *self.pause.borrow()
    }

    /// Waits until a task is admitted (at once if one was since the last wait).
    pub async fn admitted(&self) {
        self.admitted.notified().await;
    }

    /// Takes one of `slots` places for `run`, or refuses when all are taken: the count and the
    /// taking happen under one lock, so tasks started at the same moment never exceed `slots`.
    /// Returns the run's cancel switch.
    fn admit(&self, run: Uuid, slots: usize) -> Result<watch::Receiver<bool>, untrusted::Refusal> {
        let mut cancels = self.cancels.lock().unwrap_or_else(PoisonError::into_inner);
        if cancels.len() >= slots {
            return Err(untrusted::Refusal(format!(
                "this device already runs {} task(s), as many as its user lends cores for",
                cancels.len()
            )));
        }
        let (cancel, cancelled) = watch::channel(false);
        cancels.insert(run, cancel);
        self.admitted.notify_one();
        Ok(cancelled)
    }

    /// Stops a run. Returns whether it was running here.
    pub fn cancel(&self, run: Uuid) -> bool {
        match self
            .cancels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&run)
        {
            Some(cancel) => {
                let _ = cancel.send(true);
                true
            }
            None => false,
        }
    }

    /// Runs one task to its end and answers the instruction. `None` means a passing fault (the
    /// hub unreachable for a file or the output): the hub sends the task again.
    ///
    /// At most `slots` tasks run at once (the user's share of the cores): one past them is
    /// refused, whatever the hub thinks is free.
    #[tracing::instrument(skip_all, name = "task_run", fields(run = %order.run, input = %order.input.name))]
    pub async fn run(
        &self,
        client: &HubClient,
        token: &str,
        order: TaskOrder,
        slots: usize,
    ) -> Option<InstructionResult> {
        let cancelled = match self.admit(order.run, slots) {
            Ok(cancelled) => cancelled,
            Err(refusal) => return Some(failed(FailureCode::Refused, refusal.to_string())),
        };
        let work = self.dir.join("runs").join(order.run.simple().to_string());
        let result = self.run_in(client, token, &order, &work, cancelled).await;
        self.cancels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&order.run);
        if let Err(error) = std::fs::remove_dir_all(&work)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, dir = %work.display(), "removing a finished task's files");
        }
        result
    }

    async fn run_in(
        &self,
        client: &HubClient,
        token: &str,
        order: &TaskOrder,
        work: &Path,
        cancelled: watch::Receiver<bool>,
    ) -> Option<InstructionResult> {
        let module = match self.module(client, token, &order.module).await {
            Ok(bytes) => bytes,
            Err(fault) => return fault,
        };
        let input_dir = work.join("input");
        match fetch(client, token, &order.input.hash, order.input.size).await {
            Ok(bytes) => {
                if let Err(error) = write_input(work, &input_dir, &order.input.name, &bytes) {
                    return Some(failed(
                        FailureCode::Io,
                        format!("writing the input: {error}"),
                    ));
                }
            }
            Err(fault) => return fault,
        }
        let sandbox = match self.sandbox() {
            Ok(sandbox) => sandbox,
            Err(error) => return Some(failed(FailureCode::Io, error.to_string())),
        };
        let floats = match order.floats {
            Floats::Portable => surplus_sandbox::Floats::Portable,
            Floats::Native => surplus_sandbox::Floats::Native,
        };
        let program = match sandbox.program(&module, floats) {
            Ok(program) => program,
            // The module is the job's fault: the run failed, and so will every other.
            Err(error) => return Some(ran(order.run, trap(error.to_string()), None, 0)),
        };
        let task = Task {
            input_dir,
            input_name: order.input.name.clone(),
            args: order.args.clone(),
            seed: order.seed,
        };
        let limits = Limits {
            memory_bytes: usize::try_from(order.limits.memory_bytes).unwrap_or(usize::MAX),
            timeout: Duration::from_millis(order.limits.timeout_ms),
            output_bytes: usize::try_from(order.limits.output_bytes).unwrap_or(usize::MAX),
        };
        let until_deadline = Duration::from_millis(
            u64::try_from(order.deadline - crate::clock::now_ms()).unwrap_or(0),
        );
        let paused = self.pause.subscribe();
        let (done, finished) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name(format!(
                "surplus-task-{}",
                &order.run.simple().to_string()[..8]
            ))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let ended = match runtime {
                    Ok(runtime) => runtime.block_on(async move {
                        let mut cancelled = cancelled;
                        tokio::select! {
                            run = sandbox.run(&program, &task, limits, paused) => Ended::Ran(run),
                            _ = cancelled.wait_for(|c| *c) => Ended::Cancelled,
                            () = tokio::time::sleep(until_deadline) => Ended::Deadline,
                        }
                    }),
                    Err(error) => Ended::Ran(Err(surplus_sandbox::SandboxError::Engine(
                        error.to_string(),
                    ))),
                };
                let _ = done.send(ended);
            });
        if let Err(error) = spawned {
            return Some(failed(
                FailureCode::Io,
                format!("starting a task thread: {error}"),
            ));
        }
        let run = match finished.await {
            Ok(Ended::Ran(Ok(run))) => run,
            Ok(Ended::Ran(Err(error))) => {
                return Some(failed(FailureCode::Io, error.to_string()));
            }
            Ok(Ended::Cancelled) => {
                tracing::info!(run = %order.run, "task cancelled");
                return Some(InstructionResult::Cancelled { run: order.run });
            }
            Ok(Ended::Deadline) | Err(_) => {
                return Some(failed(
                    FailureCode::Expired,
                    "the task's deadline passed before it finished",
                ));
            }
        };
        // Any run used some time: a task of a few microseconds counts as a millisecond, never 0.
        let running_ms = u64::try_from(run.running.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
        let outcome = outcome(run.outcome);
        tracing::info!(run = %order.run, outcome = %outcome.describe(), running_ms, "task ran");
        if outcome != TaskOutcome::Success {
            return Some(ran(order.run, outcome, None, running_ms));
        }
        let mut output = run.output;
        if self.corrupt {
            output.push(b'!');
        }
        let mut backoff = Duration::from_millis(200);
        for attempt in 1..=5 {
            match client.upload_output(token, order.run, output.clone()).await {
                Ok(blob) => return Some(ran(order.run, outcome, Some(blob), running_ms)),
                // The hub no longer wants it (lost, cancelled): say so, it changes nothing.
                Err(error) if error.code() == Some(surplus_protocol::ErrorCode::NotFound) => {
                    return Some(failed(FailureCode::Expired, error.to_string()));
                }
                Err(error) if attempt < 5 && error.retryable() => {
                    tracing::warn!(%error, "uploading a task's output; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(error) => {
                    tracing::warn!(%error, "uploading a task's output failed");
                    return None;
                }
            }
        }
        None
    }

    /// The module's bytes, from this device's copy or fetched (and kept) from the hub.
    async fn module(
        &self,
        client: &HubClient,
        token: &str,
        module: &BlobRef,
    ) -> Result<Vec<u8>, Option<InstructionResult>> {
        let path = self
            .dir
            .join("modules")
            .join(format!("{}.wasm", module.hash));
        if let Ok(bytes) = std::fs::read(&path)
            && blake3::hash(&bytes).to_hex().as_str() == module.hash
        {
            return Ok(bytes);
        }
        let bytes = fetch(client, token, &module.hash, module.size).await?;
        if let Some(dir) = path.parent()
            && let Err(error) = untrusted::private_dir_all(dir)
        {
            tracing::warn!(%error, dir = %dir.display(), "making the modules folder");
        }
        if let Err(error) =
            crate::atomic_file::write(&path, &bytes, crate::atomic_file::Visibility::Ordinary)
        {
            tracing::warn!(%error, "keeping a module on this device");
        }
        Ok(bytes)
    }
}

/// How a task's thread ended.
enum Ended {
    Ran(Result<surplus_sandbox::Run, surplus_sandbox::SandboxError>),
    Cancelled,
    Deadline,
}

/// Writes a task's input into a fresh folder of the task's own, which is all the task will see.
/// The run's folder is made anew too, so nothing an earlier run left there (nor a link) is used.
fn write_input(work: &Path, input_dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(runs) = work.parent() {
        untrusted::private_dir_all(runs)?;
    }
    untrusted::fresh_private_dir(work)?;
    untrusted::fresh_private_dir(input_dir)?;
    let mut file = untrusted::create_new(input_dir, name)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A job file of `size` bytes from the hub's staging store, checked against its hash; a hub that
/// sends more than that is cut off. The error is the answer to give: `None` for a passing fault,
/// or a failure that sends the task elsewhere.
async fn fetch(
    client: &HubClient,
    token: &str,
    hash: &str,
    size: u64,
) -> Result<Vec<u8>, Option<InstructionResult>> {
    match client.download_bytes(token, hash, size).await {
        Ok(bytes) if blake3::hash(&bytes).to_hex().as_str() == hash => Ok(bytes),
        Ok(_) => Err(Some(failed(
            FailureCode::Corrupt,
            format!("the job file {hash} did not match its hash"),
        ))),
        Err(error) if error.code() == Some(surplus_protocol::ErrorCode::NotFound) => {
            Err(Some(failed(
                FailureCode::NotFound,
                format!("the hub no longer offers {hash}"),
            )))
        }
        Err(error) if error.retryable() => Err(None),
        Err(error) => Err(Some(failed(FailureCode::Io, error.to_string()))),
    }
}

fn outcome(outcome: Outcome) -> TaskOutcome {
    match outcome {
        Outcome::Success => TaskOutcome::Success,
        Outcome::Exit(code) => TaskOutcome::Exit { code },
        Outcome::Trap(message) => trap(message),
        Outcome::Timeout => TaskOutcome::Timeout,
        Outcome::MemoryExceeded => TaskOutcome::MemoryExceeded,
        Outcome::OutputTooLarge => TaskOutcome::OutputTooLarge,
    }
}

/// A trap's message, kept short enough for the hub's records.
fn trap(message: String) -> TaskOutcome {
    let mut message = message;
    if message.len() > 2000 {
        let mut cut = 2000;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    TaskOutcome::Trap { message }
}

fn ran(
    run: Uuid,
    outcome: TaskOutcome,
    output: Option<BlobRef>,
    running_ms: u64,
) -> InstructionResult {
    InstructionResult::Ran {
        run,
        outcome,
        output,
        running_ms,
    }
}

fn failed(code: FailureCode, message: impl Into<String>) -> InstructionResult {
    InstructionResult::Failed {
        code,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use surplus_protocol::{PauseState, TimeWindow};

    fn consenting() -> Settings {
        let mut settings = Settings::default();
        settings.consent.compute = true;
        settings
    }

    const AWAY: UserActivity = UserActivity::Idle { idle_seconds: 3600 };

    #[test]
    fn other_programs_busy_hold_work_with_a_margin_before_it_resumes() {
        // The default threshold is 25%.
        assert!(!busy_holds(25, 20.0, false));
        assert!(busy_holds(25, 30.0, false));
        // Held: still held just under the threshold, resumed well below it.
        assert!(busy_holds(25, 22.0, true));
        assert!(!busy_holds(25, 14.0, true));
    }

    #[test]
    fn no_more_tasks_run_at_once_than_the_user_lends_cores_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let compute = Compute::new(dir.path(), None);
        let (first, second, third) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert!(compute.admit(first, 2).is_ok());
        assert!(compute.admit(second, 2).is_ok());
        assert!(
            compute.admit(third, 2).is_err(),
            "a third task on two slots"
        );
        assert_eq!(compute.running(), 2);
        // A run that ends gives its place back.
        compute
            .cancels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&first);
        assert!(compute.admit(third, 2).is_ok());
        // Two threads racing for the last place: exactly one gets it.
        let compute = std::sync::Arc::new(Compute::new(dir.path(), None));
        let taken: usize = (0..8)
            .map(|_| {
                let compute = compute.clone();
                std::thread::spawn(move || compute.admit(Uuid::new_v4(), 1).is_ok())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| usize::from(t.join().expect("thread")))
            .sum();
        assert_eq!(taken, 1);
    }

    #[test]
    fn compute_is_held_for_the_user_and_their_settings() {
        let settings = consenting();
        assert_eq!(
            hold_reason(&settings, AWAY, None, Some(false), 0, 600),
            None
        );
        assert_eq!(
            hold_reason(&settings, UserActivity::None, None, None, 0, 600),
            None
        );
        let back = UserActivity::Idle { idle_seconds: 3 };
        assert_eq!(
            hold_reason(&settings, back, None, Some(false), 0, 600),
            Some("the user is back")
        );
        assert!(hold_reason(&settings, UserActivity::Unknown, None, None, 0, 600).is_some());
        assert_eq!(
            hold_reason(&settings, AWAY, None, Some(true), 0, 600),
            Some("on battery")
        );
        assert_eq!(
            hold_reason(&Settings::default(), AWAY, None, None, 0, 600),
            Some("compute consent withdrawn")
        );
        let mut paused = consenting();
        paused.pause = PauseState::Until { until: 1000 };
        assert_eq!(
            hold_reason(&paused, AWAY, None, None, 999, 600),
            Some("donation paused")
        );
        assert_eq!(hold_reason(&paused, AWAY, None, None, 1000, 600), None);
        let mut night = consenting();
        night.compute.window = Some(TimeWindow {
            start_minute: 22 * 60,
            end_minute: 6 * 60,
        });
        assert_eq!(hold_reason(&night, AWAY, None, None, 0, 23 * 60), None);
        assert_eq!(
            hold_reason(&night, AWAY, None, None, 0, 12 * 60),
            Some("outside the schedule window")
        );
        let full_screen = Some(ComfortHold::FullScreen);
        assert_eq!(
            hold_reason(&settings, AWAY, full_screen, Some(false), 0, 600),
            Some("you are in a full-screen app")
        );
        assert_eq!(
            hold_reason(&settings, back, full_screen, Some(false), 0, 600),
            Some("the user is back")
        );
    }

    #[test]
    fn a_full_screen_window_holds_compute_until_it_has_been_gone_a_minute() {
        let settings = ComputeSettings::default();
        let mut rules = ComfortRules::default();
        let seen = |full_screen| Comfort {
            full_screen,
            cpu_celsius: None,
        };
        assert_eq!(rules.judge(&settings, seen(Some(false)), 0), None);
        assert_eq!(
            rules.judge(&settings, seen(Some(true)), 1_000),
            Some(ComfortHold::FullScreen)
        );
        // Gone, or unreadable: held for the linger after it was last seen, then free.
        let left = 1_000 + FULL_SCREEN_LINGER_MS;
        assert_eq!(
            rules.judge(&settings, seen(Some(false)), left - 1),
            Some(ComfortHold::FullScreen)
        );
        assert_eq!(
            rules.judge(&settings, seen(None), left - 1),
            Some(ComfortHold::FullScreen)
        );
        assert_eq!(rules.judge(&settings, seen(Some(false)), left), None);
        // Back in full screen for a moment: the linger starts again from then.
        assert_eq!(
            rules.judge(&settings, seen(Some(true)), left + 5),
            Some(ComfortHold::FullScreen)
        );
        assert_eq!(
            rules.judge(&settings, seen(Some(false)), left + 6),
            Some(ComfortHold::FullScreen)
        );
        // A user who turned the rule off is never held by it.
        let off = ComputeSettings {
            pause_in_full_screen: false,
            ..ComputeSettings::default()
        };
        assert_eq!(rules.judge(&off, seen(Some(true)), left + 7), None);
    }

    #[test]
    fn a_hot_cpu_holds_compute_until_it_has_cooled_by_the_margin() {
        let settings = ComputeSettings {
            max_cpu_celsius: Some(80),
            ..ComputeSettings::default()
        };
        let mut rules = ComfortRules::default();
        let at = |celsius| Comfort {
            full_screen: None,
            cpu_celsius: Some(celsius),
        };
        assert_eq!(rules.judge(&settings, at(80.0), 0), None);
        assert_eq!(
            rules.judge(&settings, at(80.5), 0),
            Some(ComfortHold::TooHot)
        );
        assert_eq!(
            rules.judge(&settings, at(75.5), 0),
            Some(ComfortHold::TooHot)
        );
        assert_eq!(rules.judge(&settings, at(75.0), 0), None);
        assert_eq!(rules.judge(&settings, at(79.0), 0), None);
        // No limit set, or no sensor to read: never held.
        assert_eq!(rules.judge(&ComputeSettings::default(), at(99.0), 0), None);
        let unreadable = Comfort::default();
        assert_eq!(
            rules.judge(&settings, at(90.0), 0),
            Some(ComfortHold::TooHot)
        );
        assert_eq!(rules.judge(&settings, unreadable, 0), None);
        // A full screen and a hot CPU at once: the full screen is named.
        let both = Comfort {
            full_screen: Some(true),
            cpu_celsius: Some(90.0),
        };
        assert_eq!(
            rules.judge(&settings, both, 0),
            Some(ComfortHold::FullScreen)
        );
    }
}
