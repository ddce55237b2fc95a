//! The compute sandbox: runs one untrusted WebAssembly task with hard limits.
//!
//! A task is a WASI preview 1 command module. It gets its one input file as standard input and,
//! read-only, at `/input/NAME`; its arguments; and nothing else: no environment, no network, no
//! other file. Its output is what it writes to standard output, up to a cap. It may use at most
//! its memory cap and run (while not paused) at most its time budget.
//!
//! The memory cap covers everything a task allocates: its linear memory and its tables, counted
//! together. A module has one linear memory at most (multi-memory is off: with several, a cap
//! checked per memory would be a cap times their number), imports only WASI preview 1
//! functions, and is at most [`MAX_MODULE_BYTES`]; anything else is refused before it runs.
//!
//! Everything a task could observe that might differ between two honest donors is fixed:
//! relaxed SIMD instructions take their deterministic lowering (the fast one differs between x86
//! and Arm), the clocks stand still at the epoch, and the random numbers it may ask for come from
//! a seed that is part of the task. So every honest run of a task gives the same bytes, which is
//! what validation by quorum relies on. The one thing left to the caller is the bits of NaNs,
//! which differ between architectures ([`Floats`]): canonicalising them after every float
//! operation makes float-heavy code several times slower, so it is done only for tasks whose
//! runs go to donors of different architectures.
//!
//! The time budget is enforced with epoch interruption rather than fuel: a ticker advances the
//! engine's epoch every [`TICK`], and at each tick the running task checks its budget and whether
//! it should pause. Fuel would give a deterministic budget, but costs a counter on every block
//! (measured by wasmtime at 10-30%), and the budget is a safety limit here, not part of the
//! result: a run that hits it fails, and the task is tried elsewhere. Pausing is an async yield
//! at the next tick: the task's stack stays in memory and it resumes exactly where it stopped.
//! [`Sandbox::paused_tasks`] counts the tasks that are paused right now, so a caller can see
//! how long a pause takes to land. Running time is read from a [`Clock`]: the machine's
//! ([`SystemClock`]), or one a test advances by hand ([`Sandbox::with_clock`]), ticking the
//! epochs itself ([`Sandbox::tick`]) so that it decides exactly how much time a task has used.
//!
//! Compiled modules are kept by the hash of their bytes, so a task of a module seen before starts
//! without compiling.
//!
//! On Unix, a sandbox made with [`Sandbox::isolated`] runs each task in a process of its own
//! ([`isolated`]), compiled without epoch checks: the operating system pauses it (`SIGSTOP`,
//! `SIGCONT`) and ends it at its budget (`SIGKILL`). The checks cost float-heavy loops about
//! twice their native time, because the call on their slow path makes Cranelift keep the loop's
//! values on the stack; without them, the examples run within a few percent of native.

#[cfg(unix)]
pub mod isolated;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use wasmtime::{
    Config, Engine, InstancePre, Linker, Module, OptLevel, ResourceLimiter, Store, UpdateDeadline,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// How often a running task checks its time budget and whether to pause.
pub const TICK: Duration = Duration::from_millis(10);

/// The most stack a task's WebAssembly may use.
pub const STACK_BYTES: usize = 1 << 20;

/// The largest module the sandbox compiles.
pub const MAX_MODULE_BYTES: usize = 64 << 20;

/// What one table entry is counted as against the memory cap: a reference, as wasmtime keeps it.
const TABLE_ENTRY_BYTES: usize = std::mem::size_of::<usize>();

/// The module name every import must come from.
const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// Where a sandbox reads the time: the running time it charges a task (pauses not counted), and
/// the deadline at which a task in a process of its own has spent its budget.
pub trait Clock: Send + Sync {
    /// The time now: never earlier than any time it gave before.
    fn now(&self) -> Instant;

    /// Resolves once [`Clock::now`] has reached `deadline`.
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The machine's clock, and tokio's timers: what a sandbox uses unless it is given another.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }
}

/// How a program's floating point must agree with runs of it elsewhere. Each has an engine of
/// its own: NaN canonicalisation is compiled into the code.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Floats {
    /// The same bits on every architecture: every float operation's NaN result is canonicalised.
    #[default]
    Portable,
    /// The same bits on every machine of one architecture class (x86 or Arm): NaNs are as the
    /// hardware makes them, and float code runs at native speed.
    Native,
}

/// What one run of a task may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most memory the task may use: its linear memory and its tables together.
    pub memory_bytes: usize,
    /// The most time the task may run, not counting time paused.
    pub timeout: Duration,
    /// The most bytes of output; a task that writes more fails, its output cut at the cap.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 512 << 20,
            timeout: Duration::from_secs(600),
            output_bytes: 64 << 20,
        }
    }
}

/// How to start a task's process ([`Sandbox::isolated`]): a program that calls
/// [`isolated::serve`] (the agent's own, with an argument that says so), and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runner {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// One task: its input file `input_name` in `input_dir` (a directory of the task's own, holding
/// nothing else, which the task sees read-only as `/input`), the job's arguments, and the seed
/// of the random numbers it may ask for.
#[derive(Debug, Clone)]
pub struct Task {
    pub input_dir: PathBuf,
    /// One plain path component: no separator, not `.` or `..`.
    pub input_name: String,
    pub args: Vec<String>,
    pub seed: u64,
}

impl Task {
    fn input_path(&self) -> Result<PathBuf, SandboxError> {
        let plain = !self.input_name.is_empty()
            && self.input_name != "."
            && self.input_name != ".."
            && !self.input_name.contains(['/', '\\', '\0']);
        if !plain {
            return Err(SandboxError::Io {
                path: self.input_dir.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{:?} is not a plain file name", self.input_name),
                ),
            });
        }
        Ok(self.input_dir.join(&self.input_name))
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    /// It exited with status 0: its output is the result.
    Success,
    /// It exited with another status.
    Exit(i32),
    /// It trapped (or was stopped by the host), with the reason.
    Trap(String),
    /// It ran out of its time budget.
    Timeout,
    /// It tried to grow its memory past the cap.
    MemoryExceeded,
    /// It wrote more than the output cap.
    OutputTooLarge,
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        *self == Outcome::Success
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Run {
    pub outcome: Outcome,
    /// Standard output, at most the cap.
    pub output: Vec<u8>,
    /// Time spent running, pauses not counted.
    pub running: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the module is not valid WebAssembly: {0}")]
    InvalidModule(String),
    #[error("the module is not a WASI command: {0}")]
    NotACommand(String),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the sandbox: {0}")]
    Engine(String),
}

/// A compiled module with its imports resolved, ready to run any number of tasks.
#[derive(Clone)]
pub struct Program {
    module: InstancePre<TaskState>,
    /// The module's bytes, for a task's own process to compile (from the cache, if the sandbox
    /// has one).
    bytes: Arc<[u8]>,
    pub hash: String,
    pub floats: Floats,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program").field("hash", &self.hash).finish()
    }
}

/// One engine and the WASI functions linked for it.
struct Engined {
    engine: Engine,
    linker: Linker<TaskState>,
}

/// The engines (one for each kind of [`Floats`]), their compiled modules, and the ticker that
/// drives time budgets and pauses.
pub struct Sandbox {
    /// The engine for each kind of floats this sandbox runs (a task's own process needs one).
    portable: Option<Engined>,
    native: Option<Engined>,
    programs: Mutex<HashMap<(String, Floats), Program>>,
    /// Whether the engines' code checks their epochs (else the operating system stops tasks).
    epochs: bool,
    /// Advances the engines' epochs every [`TICK`], unless the sandbox's owner does
    /// ([`Sandbox::tick`]).
    ticker: Option<std::thread::JoinHandle<()>>,
    /// Where running time is read.
    clock: Arc<dyn Clock>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// How many tasks are paused right now.
    paused: Arc<AtomicUsize>,
    /// Where compiled code is kept across runs and processes.
    cache_dir: Option<PathBuf>,
    /// Runs each task in a process of its own, when set.
    #[cfg(unix)]
    runner: Option<Runner>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").finish_non_exhaustive()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

/// The host side of one running task.
struct TaskState {
    wasi: WasiP1Ctx,
    limiter: Limiter,
}

/// Enforces the memory cap over everything the task allocates, its linear memory and its tables
/// together, and remembers that the task hit it.
struct Limiter {
    memory_bytes: usize,
    /// Bytes of memory and table entries allocated so far.
    used: usize,
    hit: bool,
}

impl Limiter {
    /// Grows the count by `more` bytes, or refuses (and remembers) a growth past the cap.
    fn grow(&mut self, more: usize) -> wasmtime::Result<bool> {
        match self.used.checked_add(more) {
            Some(total) if total <= self.memory_bytes => {
                self.used = total;
                Ok(true)
            }
            _ => {
                self.hit = true;
                Err(wasmtime::Error::msg(format!(
                    "the memory cap of {} bytes is reached",
                    self.memory_bytes
                )))
            }
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(desired.saturating_sub(current))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(
            desired
                .saturating_sub(current)
                .saturating_mul(TABLE_ENTRY_BYTES),
        )
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        100
    }
}

/// A clock that stands still: a task sees the same time on every donor.
struct StillClock;

impl HostWallClock for StillClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for StillClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Counts one paused task for as long as it lives: made when a paused task starts waiting, and
/// dropped when it resumes or when its run is dropped while it waits.
struct PausedTask(Arc<AtomicUsize>);

impl PausedTask {
    fn new(count: &Arc<AtomicUsize>) -> PausedTask {
        count.fetch_add(1, Ordering::SeqCst);
        PausedTask(count.clone())
    }
}

impl Drop for PausedTask {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The time budget of a run: running time counted at each tick, pauses not counted.
struct Budget {
    last: Instant,
    running: Duration,
    timed_out: bool,
}

impl Budget {
    /// Counts the time from the last tick to `now` as running; returns the running time so far.
    fn tick(&mut self, now: Instant) -> Duration {
        self.running += now.saturating_duration_since(self.last);
        self.last = now;
        self.running
    }
}

impl Engined {
    /// An engine with the sandbox's code generation: deterministic relaxed SIMD, one memory at
    /// most, NaNs canonicalised for [`Floats::Portable`], and epoch checks when the sandbox
    /// interrupts tasks itself (`epochs`) rather than through the operating system.
    fn new(
        floats: Floats,
        cache: Option<wasmtime::Cache>,
        epochs: bool,
    ) -> Result<Engined, SandboxError> {
        let mut config = Config::new();
        config
            .epoch_interruption(epochs)
            .cranelift_nan_canonicalization(floats == Floats::Portable)
            .relaxed_simd_deterministic(true)
            .wasm_multi_memory(false)
            .cranelift_opt_level(OptLevel::Speed)
            .max_wasm_stack(STACK_BYTES);
        config.cache(cache);
        let engine = Engine::new(&config).map_err(engine_error)?;
        let mut linker: Linker<TaskState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut TaskState| {
            &mut state.wasi
        })
        .map_err(engine_error)?;
        Ok(Engined { engine, linker })
    }
}

impl Sandbox {
    /// A sandbox with its own engine and epoch ticker; `cache_dir` keeps compiled code across
    /// restarts (wasmtime's own cache, keyed by the module's bytes and the engine).
    pub fn new(cache_dir: Option<&Path>) -> Result<Sandbox, SandboxError> {
        Sandbox::build(cache_dir, true, &[Floats::Portable, Floats::Native], None)
    }

    /// A sandbox like [`Sandbox::new`] whose time is `clock`'s and which has no ticker: its
    /// tasks check their budgets and whether to pause only when its owner calls
    /// [`Sandbox::tick`]. For tests and simulations that decide when time passes.
    pub fn with_clock(
        cache_dir: Option<&Path>,
        clock: Arc<dyn Clock>,
    ) -> Result<Sandbox, SandboxError> {
        Sandbox::build(
            cache_dir,
            true,
            &[Floats::Portable, Floats::Native],
            Some(clock),
        )
    }

    /// A sandbox that runs each task in a process of its own, started by `runner`: a program
    /// that calls [`isolated::serve`]. Its code has no epoch checks.
    #[cfg(unix)]
    pub fn isolated(cache_dir: Option<&Path>, runner: Runner) -> Result<Sandbox, SandboxError> {
        Sandbox::isolated_on(cache_dir, runner, None)
    }

    /// A sandbox like [`Sandbox::isolated`] whose time is `clock`'s: a task's budget is spent
    /// when `clock` says so. For tests that decide when time passes.
    #[cfg(unix)]
    pub fn isolated_with_clock(
        cache_dir: Option<&Path>,
        runner: Runner,
        clock: Arc<dyn Clock>,
    ) -> Result<Sandbox, SandboxError> {
        Sandbox::isolated_on(cache_dir, runner, Some(clock))
    }

    #[cfg(unix)]
    fn isolated_on(
        cache_dir: Option<&Path>,
        runner: Runner,
        clock: Option<Arc<dyn Clock>>,
    ) -> Result<Sandbox, SandboxError> {
        let mut sandbox =
            Sandbox::build(cache_dir, false, &[Floats::Portable, Floats::Native], clock)?;
        sandbox.runner = Some(runner);
        Ok(sandbox)
    }

    /// Whether tasks run in processes of their own.
    pub fn is_isolated(&self) -> bool {
        #[cfg(unix)]
        return self.runner.is_some();
        #[cfg(not(unix))]
        false
    }

    /// The engines for `kinds` of floats, with epoch checks when `epochs`; on `clock`, or on
    /// the machine's with a ticker for the epochs.
    fn build(
        cache_dir: Option<&Path>,
        epochs: bool,
        kinds: &[Floats],
        clock: Option<Arc<dyn Clock>>,
    ) -> Result<Sandbox, SandboxError> {
        let cache = match cache_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| SandboxError::Io {
                    path: dir.to_owned(),
                    source,
                })?;
                let mut cache = wasmtime::CacheConfig::new();
                cache.with_directory(dir);
                Some(wasmtime::Cache::new(cache).map_err(engine_error)?)
            }
            None => None,
        };
        let engined = |floats: Floats| -> Result<Option<Engined>, SandboxError> {
            kinds
                .contains(&floats)
                .then(|| Engined::new(floats, cache.clone(), epochs))
                .transpose()
        };
        let portable = engined(Floats::Portable)?;
        let native = engined(Floats::Native)?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = if !epochs || clock.is_some() {
            None
        } else {
            let engines: Vec<Engine> = [&portable, &native]
                .into_iter()
                .flatten()
                .map(|engined| engined.engine.clone())
                .collect();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("surplus-sandbox-ticker".into())
                .spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        for engine in &engines {
                            engine.increment_epoch();
                        }
                    }
                })
                .map(Some)
                .map_err(|e| SandboxError::Engine(e.to_string()))?
        };
        Ok(Sandbox {
            portable,
            native,
            programs: Mutex::new(HashMap::new()),
            epochs,
            ticker,
            clock: clock.unwrap_or_else(|| Arc::new(SystemClock)),
            stop,
            paused: Arc::new(AtomicUsize::new(0)),
            cache_dir: cache_dir.map(Path::to_owned),
            #[cfg(unix)]
            runner: None,
        })
    }

    /// Advances the epochs by one tick, as the ticker of a sandbox on the machine's clock does
    /// every [`TICK`]: each running task checks its budget and whether to pause. Tasks in
    /// processes of their own have no checks; nothing changes for them.
    pub fn tick(&self) {
        for engined in [&self.portable, &self.native].into_iter().flatten() {
            engined.engine.increment_epoch();
        }
    }

    /// How many tasks are paused right now: stopped at a tick, waiting for their `paused` to
    /// turn false. A task asked to pause is counted from the tick at which it stops running.
    pub fn paused_tasks(&self) -> usize {
        self.paused.load(Ordering::SeqCst)
    }

    /// The module compiled, from memory if it was compiled before. Text (WAT) is not accepted:
    /// a job is a binary module of at most [`MAX_MODULE_BYTES`], with one memory at most, that
    /// imports WASI preview 1 functions only.
    pub fn program(&self, bytes: &[u8], floats: Floats) -> Result<Program, SandboxError> {
        let hash = blake3::hash(bytes).to_hex().to_string();
        let key = (hash, floats);
        if let Some(program) = self
            .programs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(program.clone());
        }
        if bytes.len() > MAX_MODULE_BYTES {
            return Err(SandboxError::InvalidModule(format!(
                "it is {} bytes, more than the {MAX_MODULE_BYTES} a module may be",
                bytes.len()
            )));
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(SandboxError::InvalidModule(
                "it does not start with the WebAssembly magic number".into(),
            ));
        }
        let engined = match floats {
            Floats::Portable => &self.portable,
            Floats::Native => &self.native,
        };
        let engined = engined.as_ref().ok_or_else(|| {
            SandboxError::Engine(format!("this sandbox has no engine for {floats:?} floats"))
        })?;
        let module = Module::from_binary(&engined.engine, bytes)
            .map_err(|e| SandboxError::InvalidModule(format!("{e:#}")))?;
        if module.get_export("_start").is_none() {
            return Err(SandboxError::NotACommand(
                "it exports no `_start` function".into(),
            ));
        }
        if let Some(import) = module.imports().find(|i| i.module() != WASI_MODULE) {
            return Err(SandboxError::NotACommand(format!(
                "it imports {}::{}, which is not part of WASI preview 1",
                import.module(),
                import.name()
            )));
        }
        let module = engined.linker.instantiate_pre(&module).map_err(|e| {
            SandboxError::NotACommand(format!(
                "it needs an import WASI preview 1 does not offer: {e:#}"
            ))
        })?;
        let (hash, floats) = key;
        let program = Program {
            module,
            bytes: bytes.into(),
            hash,
            floats,
        };
        self.programs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((program.hash.clone(), floats), program.clone());
        Ok(program)
    }

    /// Runs one task. `paused` pauses it (within a tick, or at once in a process of its own)
    /// while it is true; the task resumes where it stopped when it turns false again.
    pub async fn run(
        &self,
        program: &Program,
        task: &Task,
        limits: Limits,
        paused: watch::Receiver<bool>,
    ) -> Result<Run, SandboxError> {
        #[cfg(unix)]
        if let Some(runner) = &self.runner {
            return isolated::run(self, runner, program, task, limits, paused).await;
        }
        self.run_here(program, task, limits, paused).await
    }

    /// Runs one task in this process. Without epoch checks, nothing pauses or stops it: the
    /// process it runs in is paused and stopped from outside.
    async fn run_here(
        &self,
        program: &Program,
        task: &Task,
        limits: Limits,
        paused: watch::Receiver<bool>,
    ) -> Result<Run, SandboxError> {
        let path = task.input_path()?;
        let input = tokio::fs::read(&path)
            .await
            .map_err(|source| SandboxError::Io { path, source })?;
        let stdout = MemoryOutputPipe::new(limits.output_bytes.saturating_add(1));
        let mut args = vec![task.input_name.clone()];
        args.extend(task.args.iter().cloned());
        let wasi = WasiCtxBuilder::new()
            .args(&args)
            .stdin(MemoryInputPipe::new(input))
            .stdout(stdout.clone())
            .preopened_dir(&task.input_dir, "/input", FsPerms::ReadOnly)
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?
            .wall_clock(StillClock)
            .monotonic_clock(StillClock)
            .secure_random(seeded(task.seed))
            .insecure_random(seeded(task.seed ^ 0x5eed))
            .insecure_random_seed(u128::from(task.seed))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build_p1();
        let mut store = Store::new(
            program.module.module().engine(),
            TaskState {
                wasi,
                limiter: Limiter {
                    memory_bytes: limits.memory_bytes,
                    used: 0,
                    hit: false,
                },
            },
        );
        store.limiter(|state| &mut state.limiter);
        let budget = Arc::new(Mutex::new(Budget {
            last: self.clock.now(),
            running: Duration::ZERO,
            timed_out: false,
        }));
        if self.epochs {
            store.set_epoch_deadline(1);
            let budget = budget.clone();
            let timeout = limits.timeout;
            let paused_tasks = self.paused.clone();
            let clock = self.clock.clone();
            store.epoch_deadline_callback(move |_| {
                let mut b = budget.lock().unwrap_or_else(PoisonError::into_inner);
                if b.tick(clock.now()) >= timeout {
                    b.timed_out = true;
                    return Ok(UpdateDeadline::Interrupt);
                }
                if *paused.borrow() {
                    let mut waiting = paused.clone();
                    let budget = budget.clone();
                    let paused_tasks = paused_tasks.clone();
                    let clock = clock.clone();
                    return Ok(UpdateDeadline::YieldCustom(
                        1,
                        Box::pin(async move {
                            // Counted while it waits. The future lives on the task's stack, so if
                            // the run is dropped meanwhile, wasmtime unwinds it and the count
                            // drops too. Time counts again before the count drops, so that
                            // whoever sees it drop knows the task's time runs from then.
                            let counted = PausedTask::new(&paused_tasks);
                            let _ = waiting.wait_for(|p| !*p).await;
                            budget.lock().unwrap_or_else(PoisonError::into_inner).last =
                                clock.now();
                            drop(counted);
                        }),
                    ));
                }
                Ok(UpdateDeadline::Continue(1))
            });
        }
        let started = program.module.instantiate_async(&mut store).await;
        let result = match started {
            Ok(instance) => match instance.get_typed_func::<(), ()>(&mut store, "_start") {
                Ok(start) => start.call_async(&mut store, ()).await,
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        let (running, timed_out) = {
            let mut b = budget.lock().unwrap_or_else(PoisonError::into_inner);
            (b.tick(self.clock.now()), b.timed_out)
        };
        let memory_hit = store.data().limiter.hit;
        drop(store);
        let mut output = stdout.contents().to_vec();
        let too_large = output.len() > limits.output_bytes;
        output.truncate(limits.output_bytes);
        let outcome = match result {
            _ if too_large => Outcome::OutputTooLarge,
            _ if timed_out => Outcome::Timeout,
            _ if memory_hit => Outcome::MemoryExceeded,
            Ok(()) => Outcome::Success,
            Err(error) => match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) if exit.0 == 0 => Outcome::Success,
                Some(exit) => Outcome::Exit(exit.0),
                None => Outcome::Trap(format!("{error:#}")),
            },
        };
        Ok(Run {
            outcome,
            output,
            running,
        })
    }
}

/// A random number generator from a seed: rand's `StdRng` (ChaCha12), the numbers a task sees
/// pinned by a test, since honest donors must agree on them bit for bit.
fn seeded(seed: u64) -> Seeded {
    use rand::SeedableRng;
    Seeded(rand::rngs::StdRng::seed_from_u64(seed))
}

/// The workspace's generator (rand 0.8) as wasmtime-wasi takes one: a generator of rand_core
/// 0.10, whose rand wasmtime-wasi is built on.
struct Seeded(rand::rngs::StdRng);

impl rand_core::TryRng for Seeded {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(rand::RngCore::next_u32(&mut self.0))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(rand::RngCore::next_u64(&mut self.0))
    }

    fn try_fill_bytes(&mut self, bytes: &mut [u8]) -> Result<(), Self::Error> {
        rand::RngCore::fill_bytes(&mut self.0, bytes);
        Ok(())
    }
}

fn engine_error(error: wasmtime::Error) -> SandboxError {
    SandboxError::Engine(format!("{error:#}"))
}
