//! The sandbox against well-behaved and hostile modules, written in WAT so that no toolchain is
//! needed: each is contained without harming the host, and honest runs agree bit for bit. Run
//! twice: with tasks in the test's process (`hostile.rs`) and in processes of their own
//! (`isolated.rs`); each names the sandbox under test as `sandbox()`, and the same on a clock
//! of the test's as `sandbox_on(clock)`.
//!
//! Tasks run on a [`ManualClock`] that moves only when a test advances it, so no task runs out
//! of time because the machine is slow, and a test of budgets and pauses decides exactly how
//! much time a task uses and checks the exact result. Tests wait only for what they can see (a
//! task counted paused, a run ended), never for time to pass.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use surplus_sandbox::{Clock, Floats, Limits, Outcome, Run, Sandbox, SandboxError, TICK, Task};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const WASI: &str = "wasi_snapshot_preview1";

fn module(body: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
            (import "{WASI}" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
            (import "{WASI}" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
            (import "{WASI}" "proc_exit" (func $exit (param i32)))
            (import "{WASI}" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
            (import "{WASI}" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
            (import "{WASI}" "environ_sizes_get" (func $environ (param i32 i32) (result i32)))
            (import "{WASI}" "random_get" (func $random (param i32 i32) (result i32)))
            (import "{WASI}" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
            (memory (export "memory") 1)
            {body})"#
    );
    wat::parse_str(text).expect("valid WAT")
}

/// Copies standard input to standard output.
fn cat() -> Vec<u8> {
    module(
        r#"(func (export "_start") (local $n i32)
            (loop $again
              (i32.store (i32.const 0) (i32.const 1024))
              (i32.store (i32.const 4) (i32.const 4096))
              (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
              (local.set $n (i32.load (i32.const 8)))
              (if (i32.eqz (local.get $n)) (then (return)))
              (i32.store (i32.const 16) (i32.const 1024))
              (i32.store (i32.const 20) (local.get $n))
              (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
              (br $again)))"#,
    )
}

/// Exits with the error number of opening `path` under `/input` with `rights` and `oflags`
/// (0 if it opened).
fn open(path: &str, oflags: i32, rights: i64) -> Vec<u8> {
    module(&format!(
        r#"(data (i32.const 100) "{path}")
           (func (export "_start")
             (call $exit (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const {len})
               (i32.const {oflags}) (i64.const {rights}) (i64.const 0) (i32.const 0) (i32.const 200))))"#,
        len = path.len()
    ))
}

/// A clock that stands still until the test advances it.
pub struct ManualClock {
    origin: Instant,
    advanced: watch::Sender<Duration>,
}

impl ManualClock {
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock {
            origin: Instant::now(),
            advanced: watch::Sender::new(Duration::ZERO),
        })
    }

    pub fn advance(&self, by: Duration) {
        self.advanced.send_modify(|advanced| *advanced += by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.origin + *self.advanced.borrow()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let origin = self.origin;
        let mut advanced = self.advanced.subscribe();
        Box::pin(async move {
            if advanced
                .wait_for(|advanced| origin + *advanced >= deadline)
                .await
                .is_err()
            {
                // The clock is gone: it will never get there.
                std::future::pending::<()>().await;
            }
        })
    }
}

/// Polls until `done` holds, ticking the sandbox's epochs meanwhile so that a task in the test's
/// process reaches its next check. Only a failure waits out the limit.
async fn until(sandbox: &Sandbox, what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "waited a minute for {what}"
        );
        sandbox.tick();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    input: PathBuf,
    /// The time of the fixture's sandbox.
    clock: Arc<ManualClock>,
    sandbox: Sandbox,
}

/// A fixture whose sandbox runs on a [`ManualClock`].
fn fixture(content: &[u8]) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let task_dir = dir.path().join("task");
    std::fs::create_dir_all(&task_dir).expect("dir");
    std::fs::write(dir.path().join("secret.txt"), b"not for the task").expect("secret");
    let input = task_dir.join("numbers.txt");
    std::fs::write(&input, content).expect("input");
    let clock = ManualClock::new();
    Fixture {
        _dir: dir,
        input,
        sandbox: super::sandbox_on(clock.clone()),
        clock,
    }
}

impl Fixture {
    /// A task of the fixture's input, as the agent makes one: the input in a folder of its own.
    fn task(&self, args: Vec<String>, seed: u64) -> Task {
        Task {
            input_dir: self.input.parent().expect("the task's folder").to_owned(),
            input_name: "numbers.txt".into(),
            args,
            seed,
        }
    }

    async fn run(&self, wasm: &[u8], limits: Limits) -> surplus_sandbox::Run {
        let program = self
            .sandbox
            .program(wasm, Floats::Native)
            .expect("compiles");
        let task = self.task(vec!["--fast".into()], 42);
        let (_pause, paused) = watch::channel(false);
        self.sandbox
            .run(&program, &task, limits, paused)
            .await
            .expect("runs")
    }
}

/// An endless loop, run by the fixture's sandbox in a task of its own. It starts held, so that
/// once it is counted paused the test knows that it has started and read the clock: from then
/// on, the time it runs is exactly what the test advances the clock by while it is not held.
struct Spinning {
    fixture: Arc<Fixture>,
    pause: watch::Sender<bool>,
    run: JoinHandle<Result<Run, SandboxError>>,
}

impl Spinning {
    async fn start(fixture: &Arc<Fixture>, limits: Limits) -> Spinning {
        let spin = module(r#"(func (export "_start") (loop $forever (br $forever)))"#);
        let program = fixture
            .sandbox
            .program(&spin, Floats::Native)
            .expect("compiles");
        let task = fixture.task(vec![], 1);
        let (pause, paused) = watch::channel(true);
        let run = tokio::spawn({
            let fixture = fixture.clone();
            async move { fixture.sandbox.run(&program, &task, limits, paused).await }
        });
        let spinning = Spinning {
            fixture: fixture.clone(),
            pause,
            run,
        };
        spinning.held().await;
        spinning
    }

    /// Pauses the task; returns once it is held.
    async fn hold(&self) {
        self.pause.send(true).expect("pause");
        self.held().await;
    }

    async fn held(&self) {
        let sandbox = &self.fixture.sandbox;
        until(sandbox, "the task to pause", || {
            sandbox.paused_tasks() == 1 || self.run.is_finished()
        })
        .await;
        assert!(!self.run.is_finished(), "the task ended instead of pausing");
    }

    /// Lets the task run again; returns once it is no longer held, and from then on the time
    /// the clock is advanced counts.
    async fn release(&self) {
        self.pause.send(false).expect("resume");
        let sandbox = &self.fixture.sandbox;
        until(sandbox, "the task to resume", || {
            sandbox.paused_tasks() == 0
        })
        .await;
    }

    /// Waits for the run to end, ticking meanwhile; its result.
    async fn end(self) -> Run {
        let sandbox = &self.fixture.sandbox;
        until(sandbox, "the run to end", || self.run.is_finished()).await;
        self.run.await.expect("joins").expect("runs")
    }
}

fn small_limits() -> Limits {
    Limits {
        memory_bytes: 4 << 20,
        timeout: Duration::from_millis(300),
        output_bytes: 64 << 10,
    }
}

#[tokio::test]
async fn a_well_behaved_task_reads_its_input_and_writes_its_output() {
    let fixture = fixture(b"1 2 3\n");
    let run = fixture.run(&cat(), small_limits()).await;
    assert_eq!(run.outcome, Outcome::Success);
    assert_eq!(run.output, b"1 2 3\n");
    // The input is there read-only as /input/NAME.
    let run = fixture
        .run(&open("numbers.txt", 0, 2), small_limits())
        .await;
    assert_eq!(run.outcome, Outcome::Success, "reading /input/numbers.txt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_is_stopped_at_its_budget() {
    let fixture = Arc::new(fixture(b""));
    let limits = small_limits();
    let spinning = Spinning::start(&fixture, limits).await;
    spinning.release().await;
    // A millisecond short of its budget it still runs: it pauses when asked, rather than end.
    fixture
        .clock
        .advance(limits.timeout - Duration::from_millis(1));
    spinning.hold().await;
    spinning.release().await;
    fixture.clock.advance(Duration::from_millis(1));
    let run = spinning.end().await;
    assert_eq!(run.outcome, Outcome::Timeout);
    assert_eq!(run.running, limits.timeout);
}

/// The sandbox as the agent makes it, on the machine's clock with its own ticker (or, isolated,
/// tokio's timers): a task that never ends is stopped once it has run its budget.
#[tokio::test]
async fn on_the_machines_clock_an_endless_loop_is_stopped_too() {
    let fixture = fixture(b"");
    let sandbox = super::sandbox();
    let spin = module(r#"(func (export "_start") (loop $forever (br $forever)))"#);
    let program = sandbox.program(&spin, Floats::Native).expect("compiles");
    let (_pause, paused) = watch::channel(false);
    let run = sandbox
        .run(&program, &fixture.task(vec![], 1), small_limits(), paused)
        .await
        .expect("runs");
    assert_eq!(run.outcome, Outcome::Timeout);
    // Stopped only once its budget is spent; how long after depends on the machine.
    assert!(run.running >= small_limits().timeout, "{:?}", run.running);
}

#[tokio::test]
async fn a_memory_bomb_traps_at_the_cap() {
    let fixture = fixture(b"");
    let bomb = module(
        r#"(func (export "_start")
            (loop $more
              (if (i32.ge_s (memory.grow (i32.const 16)) (i32.const 0)) (then (br $more)))))"#,
    );
    let run = fixture.run(&bomb, small_limits()).await;
    assert_eq!(run.outcome, Outcome::MemoryExceeded);
}

#[tokio::test]
async fn traps_and_exit_statuses_are_failed_runs() {
    let fixture = fixture(b"");
    let trap = module(r#"(func (export "_start") unreachable)"#);
    assert!(matches!(
        fixture.run(&trap, small_limits()).await.outcome,
        Outcome::Trap(_)
    ));
    let exit = module(r#"(func (export "_start") (call $exit (i32.const 3)))"#);
    assert_eq!(
        fixture.run(&exit, small_limits()).await.outcome,
        Outcome::Exit(3)
    );
    let overflow = module(r#"(func $deep (export "_start") (call $deep))"#);
    assert!(matches!(
        fixture.run(&overflow, small_limits()).await.outcome,
        Outcome::Trap(_)
    ));
}

#[tokio::test]
async fn files_outside_the_input_sockets_and_the_environment_are_denied() {
    let fixture = fixture(b"42");
    for (what, wasm) in [
        ("the parent folder", open("../secret.txt", 0, 2)),
        ("an absolute path", open("/etc/passwd", 0, 2)),
        ("writing the input", open("numbers.txt", 8, 64)),
        ("creating a file", open("new.txt", 1, 64)),
    ] {
        let run = fixture.run(&wasm, small_limits()).await;
        assert!(
            matches!(run.outcome, Outcome::Exit(code) if code != 0),
            "{what}: {:?}",
            run.outcome
        );
    }
    let accept = module(
        r#"(func (export "_start") (call $exit (call $accept (i32.const 3) (i32.const 0) (i32.const 200))))"#,
    );
    assert!(matches!(
        fixture.run(&accept, small_limits()).await.outcome,
        Outcome::Exit(code) if code != 0
    ));
    // No environment variables: the count is 0, and the module exits with it.
    let environ = module(
        r#"(func (export "_start")
            (drop (call $environ (i32.const 0) (i32.const 4)))
            (call $exit (i32.load (i32.const 0))))"#,
    );
    assert_eq!(
        fixture.run(&environ, small_limits()).await.outcome,
        Outcome::Success
    );
}

#[tokio::test]
async fn oversized_output_is_cut_at_the_cap_and_fails() {
    let fixture = fixture(b"");
    // Writes 4 KiB a hundred times (400 KiB) and exits 0.
    let flood = module(
        r#"(func (export "_start") (local $i i32)
            (i32.store (i32.const 0) (i32.const 1024))
            (i32.store (i32.const 4) (i32.const 4096))
            (loop $more
              (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $more (i32.lt_u (local.get $i) (i32.const 100)))))"#,
    );
    let run = fixture.run(&flood, small_limits()).await;
    assert_eq!(run.outcome, Outcome::OutputTooLarge);
    assert_eq!(run.output.len(), 64 << 10);
}

#[tokio::test]
async fn clocks_and_random_numbers_are_the_same_on_every_run() {
    let fixture = fixture(b"");
    // Writes 32 random bytes and the wall-clock time.
    let observe = module(
        r#"(func (export "_start")
            (drop (call $random (i32.const 1024) (i32.const 32)))
            (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 1056)))
            (i32.store (i32.const 0) (i32.const 1024))
            (i32.store (i32.const 4) (i32.const 40))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))"#,
    );
    let first = fixture.run(&observe, small_limits()).await;
    let second = fixture.run(&observe, small_limits()).await;
    assert_eq!(first.outcome, Outcome::Success);
    assert_eq!(first.output.len(), 40);
    assert_eq!(first.output, second.output);
    assert_ne!(first.output[..32], [0u8; 32], "random bytes were given");

    let program = fixture
        .sandbox
        .program(&observe, Floats::Native)
        .expect("cached");
    let other_seed = fixture.task(vec![], 7);
    let (_pause, paused) = watch::channel(false);
    let reseeded = fixture
        .sandbox
        .run(&program, &other_seed, small_limits(), paused)
        .await
        .expect("runs");
    assert_ne!(reseeded.output[..32], first.output[..32]);
}

/// The random numbers of a seed are part of a task's result, which honest donors must agree on
/// whatever version of the agent they run: these are the ones seed 42 gives. They change only
/// if the generator changes, which would make older and newer donors disagree.
#[tokio::test]
async fn a_seed_gives_the_same_random_numbers_in_every_version() {
    let fixture = fixture(b"");
    // Asks for 300 random bytes and then 5 more (a generator's buffer refilled on the way), and
    // writes them out.
    let observe = module(
        r#"(func (export "_start")
            (drop (call $random (i32.const 1024) (i32.const 300)))
            (drop (call $random (i32.const 1324) (i32.const 5)))
            (i32.store (i32.const 0) (i32.const 1024))
            (i32.store (i32.const 4) (i32.const 305))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))"#,
    );
    let program = fixture
        .sandbox
        .program(&observe, Floats::Native)
        .expect("compiles");
    let (_pause, paused) = watch::channel(false);
    let run = fixture
        .sandbox
        .run(&program, &fixture.task(vec![], 42), small_limits(), paused)
        .await
        .expect("runs");
    assert_eq!(run.outcome, Outcome::Success);
    let hex: String = run.output.iter().map(|b| format!("{b:02x}")).collect();
    let expected = [
        "a2637d13d171b278eadfa8a3fbe8379b5e471e1f3739092e5243da17fc8090ebca7cf321e47a1fc9",
        "bfd032abc31b253f5063521fd5b4c431f2cdd3fee1b4ec00a9b00f69d3b033e7b64acff2672b54fb",
        "b7c31361954251e235395dea8bd6dcac26a8a417b553b18d13027c23e8016c3466b81e7083225436",
        "b55143c127f3c0cbaf3819c82de2e0257c0cc2177dfce6432efa42ca6c04c0b774dbb3c5ca2573cd",
        "893443e10e393bfd0902c404727c6f04d35ef634f9630fe5228cd3a25e836794726a0a94a15fa815",
        "f45b1cc45c3c305cfc9b3fc607b15bc69521e5d10765fb3098fa044e02183724befacd1736a808e5",
        "73183f2f7f8d7a11215b9b09f8d2b1dd974d8ccffd2dc60147bf9495093e1d03efbb16c426761f16",
        "7279634f743fd58e56e3aa854189e2a41f3950b79b64e1e987",
    ]
    .concat();
    assert_eq!(hex, expected);
}

#[tokio::test]
async fn relaxed_simd_gives_the_same_result_on_every_host() {
    let fixture = fixture(b"");
    // Truncating 1e10, NaN, -1e10 and 1.5: x86's fast lowering gives i32::MIN for the first
    // three, Arm's saturates; the deterministic lowering saturates everywhere.
    let relaxed = module(
        r#"(func (export "_start")
            (v128.store (i32.const 1024)
              (i32x4.relaxed_trunc_f32x4_s (v128.const f32x4 1e10 nan -1e10 1.5)))
            (i32.store (i32.const 0) (i32.const 1024))
            (i32.store (i32.const 4) (i32.const 16))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))"#,
    );
    let run = fixture.run(&relaxed, small_limits()).await;
    assert_eq!(run.outcome, Outcome::Success);
    let expected: Vec<u8> = [i32::MAX, 0, i32::MIN, 1]
        .iter()
        .flat_map(|n| n.to_le_bytes())
        .collect();
    assert_eq!(run.output, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_held_paused_does_not_count_toward_the_budget() {
    let fixture = Arc::new(fixture(b""));
    let limits = Limits {
        timeout: Duration::from_millis(400),
        ..small_limits()
    };
    let spinning = Spinning::start(&fixture, limits).await;
    // Held for an hour, far past its budget, before it runs at all.
    fixture.clock.advance(Duration::from_secs(3600));
    spinning.release().await;
    fixture.clock.advance(Duration::from_millis(250));
    // Held again between two stretches of running, for another hour.
    spinning.hold().await;
    fixture.clock.advance(Duration::from_secs(3600));
    spinning.release().await;
    fixture.clock.advance(Duration::from_millis(149));
    // 399 ms of running: not out of time, so it pauses when asked.
    spinning.hold().await;
    spinning.release().await;
    fixture.clock.advance(Duration::from_millis(1));
    let run = spinning.end().await;
    assert_eq!(run.outcome, Outcome::Timeout);
    assert_eq!(
        run.running, limits.timeout,
        "running time counts only while running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_tasks_counts_a_task_while_it_is_held() {
    let fixture = Arc::new(fixture(b""));
    let limits = Limits {
        timeout: Duration::from_millis(500),
        ..small_limits()
    };
    let spinning = Spinning::start(&fixture, limits).await;
    spinning.release().await;
    // Counted from the tick at which it stops running (`hold` waits for that).
    spinning.hold().await;
    // Held, it stays counted, however much time passes and however often it is ticked.
    for _ in 0..5 {
        fixture.clock.advance(TICK);
        fixture.sandbox.tick();
    }
    assert_eq!(fixture.sandbox.paused_tasks(), 1);
    spinning.release().await;
    fixture.clock.advance(limits.timeout);
    let run = spinning.end().await;
    assert_eq!(run.outcome, Outcome::Timeout);
    assert_eq!(run.running, limits.timeout);
    assert_eq!(fixture.sandbox.paused_tasks(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_dropped_while_paused_is_no_longer_counted() {
    let fixture = Arc::new(fixture(b""));
    let limits = Limits {
        timeout: Duration::from_secs(60),
        ..small_limits()
    };
    let spinning = Spinning::start(&fixture, limits).await;
    spinning.run.abort();
    assert!(spinning.run.await.is_err_and(|e| e.is_cancelled()));
    let sandbox = &fixture.sandbox;
    until(sandbox, "the dropped run to be uncounted", || {
        sandbox.paused_tasks() == 0
    })
    .await;
}

#[test]
fn modules_are_compiled_once_and_bad_ones_are_refused() {
    let sandbox = super::sandbox();
    let first = sandbox.program(&cat(), Floats::Native).expect("compiles");
    let again = sandbox.program(&cat(), Floats::Native).expect("cached");
    assert_eq!(first.hash, again.hash);
    assert!(matches!(
        sandbox.program(b"hello", Floats::Native),
        Err(SandboxError::InvalidModule(_))
    ));
    let library = wat::parse_str("(module (func (export \"helper\")))").expect("wat");
    assert!(matches!(
        sandbox.program(&library, Floats::Native),
        Err(SandboxError::NotACommand(_))
    ));
}

/// A module with only the given text, no imports and no memory of the helper's.
fn bare(text: &str) -> Vec<u8> {
    wat::parse_str(format!("(module {text})")).expect("valid WAT")
}

#[test]
fn a_module_with_more_than_one_memory_is_refused() {
    // Sixteen memories of 1 MiB each would be sixteen times a cap checked per memory.
    let memories: String = (0..16).map(|_| "(memory 16)").collect();
    let many = bare(&format!(r#"{memories} (func (export "_start"))"#));
    let sandbox = super::sandbox();
    match sandbox.program(&many, Floats::Native) {
        Err(SandboxError::InvalidModule(message)) => {
            assert!(message.contains("memor"), "{message}");
        }
        other => panic!("a module of 16 memories was accepted: {other:?}"),
    }
}

#[tokio::test]
async fn tables_count_against_the_memory_cap_all_together() {
    let fixture = fixture(b"");
    // 64 tables of 100,000 entries: each one under any per-table bound, 50 MiB or more in all.
    let tables: String = (0..64).map(|_| "(table 100000 funcref)").collect();
    let many = bare(&format!(r#"{tables} (func (export "_start"))"#));
    let run = fixture.run(&many, small_limits()).await;
    assert_eq!(run.outcome, Outcome::MemoryExceeded);
    // One table grown without end stops at the cap too.
    let growing = bare(
        r#"(table 1 funcref)
           (func (export "_start")
             (loop $more
               (if (i32.ge_s (table.grow (ref.null func) (i32.const 65536)) (i32.const 0))
                 (then (br $more)))))"#,
    );
    let run = fixture.run(&growing, small_limits()).await;
    assert_eq!(run.outcome, Outcome::MemoryExceeded);
    // A huge table declared up front as well.
    let huge = bare(r#"(table 50000000 funcref) (func (export "_start"))"#);
    let run = fixture.run(&huge, small_limits()).await;
    assert_eq!(run.outcome, Outcome::MemoryExceeded);
}

#[tokio::test]
async fn memory_and_tables_share_one_cap() {
    let fixture = fixture(b"");
    // 3 MiB of memory and 2 MiB of table entries: each under the 4 MiB cap, not both.
    let both = bare(r#"(memory 48) (table 262144 funcref) (func (export "_start"))"#);
    let run = fixture.run(&both, small_limits()).await;
    assert_eq!(run.outcome, Outcome::MemoryExceeded);
    let memory_only = bare(r#"(memory 48) (func (export "_start"))"#);
    let run = fixture.run(&memory_only, small_limits()).await;
    assert_eq!(run.outcome, Outcome::Success);
}

#[tokio::test]
async fn a_huge_data_segment_is_contained() {
    let fixture = fixture(b"");
    // 5 MiB of data in a memory declared big enough for it: past the 4 MiB cap.
    let data = "\\00".repeat(5 << 20);
    let declared = bare(&format!(
        r#"(memory 80) (data (i32.const 0) "{data}") (func (export "_start"))"#
    ));
    let run = fixture.run(&declared, small_limits()).await;
    assert_eq!(run.outcome, Outcome::MemoryExceeded);
    // The same data in a memory of one page: it does not fit, and the module traps.
    let overflowing = bare(&format!(
        r#"(memory 1) (data (i32.const 0) "{data}") (func (export "_start"))"#
    ));
    let run = fixture.run(&overflowing, small_limits()).await;
    assert!(matches!(run.outcome, Outcome::Trap(_)), "{:?}", run.outcome);
}

#[tokio::test]
async fn deep_recursion_across_many_functions_traps() {
    let fixture = fixture(b"");
    // 500 functions that call each other in a ring, each with a large frame.
    let count = 500;
    let functions: String = (0..count)
        .map(|i| {
            format!(
                "(func $f{i} (local i64 i64 i64 i64 i64 i64 i64 i64) (call $f{next}))",
                next = (i + 1) % count
            )
        })
        .collect();
    let ring = bare(&format!(
        r#"{functions} (func (export "_start") (call $f0))"#
    ));
    let run = fixture.run(&ring, small_limits()).await;
    match run.outcome {
        Outcome::Trap(message) => assert!(message.contains("stack"), "{message}"),
        other => panic!("deep recursion gave {other:?}"),
    }
}

#[test]
fn imports_from_outside_wasi_preview_1_are_refused() {
    let sandbox = super::sandbox();
    for import in [
        r#"(import "env" "system" (func (param i32)))"#,
        r#"(import "wasi:cli/environment@0.2.0" "get-environment" (func))"#,
        r#"(import "wasi_snapshot_preview1" "no_such_call" (func))"#,
        r#"(import "env" "memory" (memory 1))"#,
    ] {
        let wasm = bare(&format!(r#"{import} (func (export "_start"))"#));
        match sandbox.program(&wasm, Floats::Native) {
            Err(SandboxError::NotACommand(message)) => {
                assert!(message.contains("import"), "{import}: {message}");
            }
            other => panic!("{import} was accepted: {other:?}"),
        }
    }
}
