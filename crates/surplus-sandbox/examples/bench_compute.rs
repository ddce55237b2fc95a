//! Measures the compute sandbox, all in one run:
//!
//! - two example jobs in the sandbox against the same source built natively, on the same input
//!   (best of 3 each, the native binary run as a process; the outputs must be identical), with
//!   floats as jobs run them by default ([`Floats::Native`]: every run of a task on one
//!   architecture class) and as a job that asks for agreement across architectures runs them
//!   ([`Floats::Portable`], NaNs canonicalised; one run):
//!   `mandelbrot`, a typical heavy kernel (a few f64 operations per step of its inner loop), and
//!   `primes`, a segmented sieve whose inner loops are a store and an add, the worst case for the
//!   epoch checks the sandbox compiles in at every loop back-edge;
//! - what interrupting a task costs: the same module in a bare wasmtime engine with the
//!   sandbox's code generation settings (floats native) but interrupted by fuel instead of epochs
//!   (yielding every 100 million units), and with no interruption checks at all (one run each);
//! - the start-up of a task whose module is already compiled (the cache lookup and the run of a
//!   module that returns at once), median and p99;
//! - the pause latency: from setting `paused` to the task being counted by `paused_tasks()`.
//!
//! The sandbox is the one the agent uses on Unix: each task in a process of its own, started
//! from `surplus-task` next to this program (built beside it), with a compiled-code cache; or,
//! without `surplus-task`, the in-process sandbox with epoch checks. The first line says which.
//!
//!   bench_compute NATIVE_DIR WASM_DIR [PRIMES_RANGE [MANDELBROT_INPUT]]
//!
//! NATIVE_DIR holds `primes` and `mandelbrot` built for the host (`cargo build --release
//! --manifest-path examples/compute/Cargo.toml`), WASM_DIR `primes.wasm` and `mandelbrot.wasm`
//! (`examples/compute`). PRIMES_RANGE is the input of `primes` (`LO HI`, default
//! `1 2500000000`), MANDELBROT_INPUT that of `mandelbrot` (`WIDTH HEIGHT MAX_ITER [X0 Y0 X1 Y1]`,
//! default `1600 1200 2500`). `scripts/bench-compute` runs it.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use surplus_sandbox::{Floats, Limits, Outcome, Program, Run, Sandbox, TICK, Task};
use tokio::runtime::Runtime;
use tokio::sync::watch;

const DEFAULT_RANGE: &str = "1 2500000000";
const DEFAULT_MANDELBROT: &str = "1600 1200 2500";
const BAR: f64 = 1.2;
const STARTUP_RUNS: usize = 200;
const PAUSE_TRIALS: usize = 20;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (native_dir, wasm_dir) = match &args[..] {
        [native, wasm, ..] if args.len() <= 4 => (PathBuf::from(native), PathBuf::from(wasm)),
        _ => {
            return Err(
                "usage: bench_compute NATIVE_DIR WASM_DIR [PRIMES_RANGE [MANDELBROT_INPUT]]".into(),
            );
        }
    };
    let range = args.get(2).map_or(DEFAULT_RANGE, String::as_str);
    let view = args.get(3).map_or(DEFAULT_MANDELBROT, String::as_str);
    let work = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let sandbox = Arc::new(sandbox_as_the_agent_has_it(&work.path().join("cache"))?);
    let limits = Limits {
        memory_bytes: 256 << 20,
        timeout: Duration::from_secs(600),
        output_bytes: 64 << 20,
    };

    // The kernels, natively and in the sandbox.
    let mandelbrot = Kernel {
        job: "mandelbrot",
        native: native_dir.join("mandelbrot"),
        wasm: wasm_dir.join("mandelbrot.wasm"),
        input: task_input(work.path(), "mandelbrot", "view.txt", view)?,
    };
    let primes = Kernel {
        job: "primes",
        native: native_dir.join("primes"),
        wasm: wasm_dir.join("primes.wasm"),
        input: task_input(work.path(), "primes", "range.txt", range)?,
    };
    let mandelbrot_times = mandelbrot.measure(&runtime, &sandbox, limits, |out| {
        let header = out.split(|&b| b == b'\n').take(2).collect::<Vec<_>>();
        let size = header
            .get(1)
            .map(|s| String::from_utf8_lossy(s).replace(' ', "x"));
        format!("a PGM, {}, {} bytes", size.unwrap_or_default(), out.len())
    })?;
    let primes_times = primes.measure(&runtime, &sandbox, limits, |out| {
        String::from_utf8_lossy(out)
            .lines()
            .skip(1)
            .collect::<Vec<_>>()
            .join(", ")
    })?;
    println!(
        "== what interruption costs: each module in a bare wasmtime engine with the sandbox's \
         code generation, floats native, interrupted by what is named (one run each, outputs \
         checked; times x native)"
    );
    mandelbrot.breakdown(&runtime, &mandelbrot_times)?;
    primes.breakdown(&runtime, &primes_times)?;
    println!("== wasm in the sandbox against native, best running time of 3 each");
    for (job, measured) in [("mandelbrot", &mandelbrot_times), ("primes", &primes_times)] {
        println!(
            "{job} wasm/native: {:.2}x (bar: {BAR}x or better: {}); floats portable {:.2}x",
            measured.ratio(),
            if measured.ratio() <= BAR {
                "met"
            } else {
                "missed"
            },
            measured.portable_ratio()
        );
    }
    println!(
        "note: primes (a sieve: each inner-loop step is a store and an add) is the tight-loop \
         worst case for the epoch checks, one at every loop back-edge, which pausing and time \
         budgets rely on in a sandbox that runs tasks in its own process"
    );
    println!(
        "note: NaN canonicalization (so that NaN bits agree on x86 and Arm), which only jobs \
         that ask for agreement across architectures pay, puts a compare and a blend after every \
         float operation, on the dependency chain of a float kernel"
    );

    // Start-up with the module compiled: the cache lookup (which hashes the bytes) and the run.
    let trivial = wat::parse_str(r#"(module (func (export "_start")))"#)?;
    sandbox.program(&trivial, Floats::Native)?;
    let quick_limits = Limits {
        timeout: Duration::from_secs(10),
        ..limits
    };
    let (median, p99) = startup(&runtime, &sandbox, &trivial, &primes.input, quick_limits)?;
    println!(
        "start-up with cached module: median {median:.2} ms, p99 {p99:.2} ms (bar: under 10 ms; \
         a module whose _start returns, {STARTUP_RUNS} runs)"
    );
    let empty = task_input(work.path(), "empty", "range.txt", "1 1")?;
    let bytes = std::fs::read(&primes.wasm)?;
    let (median, p99) = startup(&runtime, &sandbox, &bytes, &empty, quick_limits)?;
    println!(
        "  the same with primes.wasm on the range `1 1` (Rust's start-up, stdin, stdout): \
         median {median:.2} ms, p99 {p99:.2} ms"
    );

    // Pause latency on a busy task.
    let spin = wat::parse_str(r#"(module (func (export "_start") (loop $l (br $l))))"#)?;
    let spin = sandbox.program(&spin, Floats::Native)?;
    let (pause, paused) = watch::channel(false);
    let busy = runtime.spawn({
        let sandbox = sandbox.clone();
        let input = primes.input.clone();
        async move {
            let task = task_of(&input);
            sandbox.run(&spin, &task, limits, paused).await
        }
    });
    let mut latencies = Vec::new();
    for trial in 0..PAUSE_TRIALS {
        // Runs a while first, a different part of a tick each time.
        std::thread::sleep(Duration::from_millis(20) + TICK * trial as u32 / PAUSE_TRIALS as u32);
        let started = Instant::now();
        pause.send(true)?;
        wait_until(|| sandbox.paused_tasks() == 1, "pause")?;
        latencies.push(started.elapsed());
        pause.send(false)?;
        wait_until(|| sandbox.paused_tasks() == 0, "resume")?;
    }
    pause.send(true)?;
    wait_until(|| sandbox.paused_tasks() == 1, "pause")?;
    busy.abort();
    let _ = runtime.block_on(busy);
    wait_until(|| sandbox.paused_tasks() == 0, "drop")?;
    latencies.sort();
    println!(
        "pause latency (paused set -> paused_tasks() == 1, busy task, {PAUSE_TRIALS} trials): \
         median {:.2} ms, max {:.2} ms (tick {} ms)",
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() - 1]),
        TICK.as_millis()
    );
    Ok(())
}

/// The sandbox as the agent makes it: each task in a process of its own on Unix, when
/// `surplus-task` is next to this program.
fn sandbox_as_the_agent_has_it(cache: &Path) -> Result<Sandbox> {
    #[cfg(unix)]
    {
        let exe = std::env::current_exe()?;
        // Examples are built in `examples/` beside the package's binaries.
        let runner = exe
            .parent()
            .and_then(Path::parent)
            .map(|dir| dir.join("surplus-task"))
            .filter(|path| path.is_file());
        if let Some(program) = runner {
            println!(
                "== the sandbox: each task in a process of its own ({}), no epoch checks",
                program.display()
            );
            let runner = surplus_sandbox::Runner {
                program,
                args: Vec::new(),
            };
            return Ok(Sandbox::isolated(Some(cache), runner)?);
        }
    }
    println!("== the sandbox: tasks in this process, with epoch checks");
    Ok(Sandbox::new(None)?)
}

/// An example job, natively and in the sandbox, on one input.
struct Kernel {
    job: &'static str,
    native: PathBuf,
    wasm: PathBuf,
    input: PathBuf,
}

impl Kernel {
    /// Runs the job 3 times natively and 3 times in the sandbox, checks that every output is the
    /// same, prints the times, and returns the best of each. `describe` sums an output up on one
    /// line.
    fn measure(
        &self,
        runtime: &Runtime,
        sandbox: &Sandbox,
        limits: Limits,
        describe: impl Fn(&[u8]) -> String,
    ) -> Result<Measured> {
        let job = self.job;
        let mut native_times = Vec::new();
        let mut native_output: Option<Vec<u8>> = None;
        for _ in 0..3 {
            let started = Instant::now();
            let out = Command::new(&self.native)
                .stdin(std::fs::File::open(&self.input)?)
                .stdout(Stdio::piped())
                .output()
                .map_err(|e| format!("{}: {e}", self.native.display()))?;
            native_times.push(started.elapsed());
            if !out.status.success() {
                return Err(format!("{}: {}", self.native.display(), out.status).into());
            }
            if let Some(first) = &native_output {
                same(job, "two native runs", first, &out.stdout)?;
            }
            native_output = Some(out.stdout);
        }
        let native_output = native_output.unwrap_or_default();
        let bytes =
            std::fs::read(&self.wasm).map_err(|e| format!("{}: {e}", self.wasm.display()))?;
        let started = Instant::now();
        let program = sandbox.program(&bytes, Floats::Native)?;
        let compile = started.elapsed();
        let mut wasm_times = Vec::new();
        let mut wasm_walls = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let run = runtime.block_on(run(sandbox, &program, &self.input, limits))?;
            wasm_walls.push(started.elapsed());
            if run.outcome != Outcome::Success {
                return Err(format!("{}: {:?}", self.wasm.display(), run.outcome).into());
            }
            same(job, "native and wasm", &native_output, &run.output)?;
            wasm_times.push(run.running);
        }
        let portable = sandbox.program(&bytes, Floats::Portable)?;
        let run = runtime.block_on(run(sandbox, &portable, &self.input, limits))?;
        if run.outcome != Outcome::Success {
            return Err(format!("{}: {:?}", self.wasm.display(), run.outcome).into());
        }
        same(job, "native and portable wasm", &native_output, &run.output)?;
        let portable = run.running;
        let best_native = native_times.iter().min().copied().unwrap_or_default();
        let best_wasm = wasm_times.iter().min().copied().unwrap_or_default();
        let input = std::fs::read_to_string(&self.input)?;
        println!(
            "== {job} on {:?} ({})",
            input.trim_end(),
            describe(&native_output)
        );
        println!(
            "native, best of 3 wall times:              {:.3} s  ({})",
            best_native.as_secs_f64(),
            list(&native_times)
        );
        println!(
            "wasm in the sandbox, best of 3 running:    {:.3} s  ({}; wall {})",
            best_wasm.as_secs_f64(),
            list(&wasm_times),
            list(&wasm_walls)
        );
        println!(
            "the same, floats portable (NaNs canonical): {:.3} s  (one run)",
            portable.as_secs_f64()
        );
        println!("outputs identical: yes");
        println!(
            "cold compile of {} ({} bytes): {:.0} ms",
            self.wasm
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("?"),
            bytes.len(),
            ms(compile)
        );
        Ok(Measured {
            native: best_native,
            wasm: best_wasm,
            portable,
            output: native_output,
        })
    }

    /// Runs the module once in a bare engine with epoch checks as the sandbox's, once interrupted
    /// by fuel instead, and once with no interruption checks, and prints the times against
    /// native.
    fn breakdown(&self, runtime: &Runtime, measured: &Measured) -> Result<()> {
        let bytes = std::fs::read(&self.wasm)?;
        let input = std::fs::read(&self.input)?;
        let mut line = format!(
            "{}: the sandbox {:.3} s ({:.2}x)",
            self.job,
            measured.wasm.as_secs_f64(),
            measured.ratio()
        );
        for (what, checks) in [
            ("bare engine, epochs", Interruption::Epoch),
            ("fuel", Interruption::Fuel),
            ("no checks", Interruption::None),
        ] {
            let (time, output) = runtime.block_on(bare(&bytes, &input, checks))?;
            same(self.job, what, &measured.output, &output)?;
            line.push_str(&format!(
                "; {what} {:.3} s ({:.2}x)",
                time.as_secs_f64(),
                time.as_secs_f64() / measured.native.as_secs_f64()
            ));
        }
        println!("{line}");
        Ok(())
    }
}

/// The best times of a kernel, and its output.
struct Measured {
    native: Duration,
    wasm: Duration,
    /// One run with floats portable.
    portable: Duration,
    output: Vec<u8>,
}

impl Measured {
    fn ratio(&self) -> f64 {
        self.wasm.as_secs_f64() / self.native.as_secs_f64()
    }

    fn portable_ratio(&self) -> f64 {
        self.portable.as_secs_f64() / self.native.as_secs_f64()
    }
}

/// How a bare engine lets the host interrupt a running module.
#[derive(Clone, Copy, PartialEq)]
enum Interruption {
    /// The sandbox's way: a check of the engine's epoch at every loop back-edge and call.
    Epoch,
    /// Fuel: a counter kept on every block, yielding every `FUEL_QUANTUM` units.
    Fuel,
    /// No checks: a module that loops forever cannot be stopped.
    None,
}

/// How much fuel a task burns between two yields when fuel interrupts it.
const FUEL_QUANTUM: u64 = 100_000_000;

/// Runs `bytes` with `input` on standard input in an engine of its own with the sandbox's code
/// generation settings for native floats (`Sandbox::new`), interrupted as asked: the running
/// time of `_start` and its output. The epoch never advances, so epoch checks run but never fire;
/// fuel yields every [`FUEL_QUANTUM`].
async fn bare(bytes: &[u8], input: &[u8], checks: Interruption) -> Result<(Duration, Vec<u8>)> {
    use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

    let mut config = wasmtime::Config::new();
    config
        .epoch_interruption(checks == Interruption::Epoch)
        .consume_fuel(checks == Interruption::Fuel)
        .cranelift_nan_canonicalization(false)
        .relaxed_simd_deterministic(true)
        .cranelift_opt_level(wasmtime::OptLevel::Speed)
        .max_wasm_stack(surplus_sandbox::STACK_BYTES);
    let engine = wasmtime::Engine::new(&config)?;
    let module = wasmtime::Module::new(&engine, bytes)?;
    let mut linker = wasmtime::Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |wasi| wasi)?;
    let stdout = MemoryOutputPipe::new(64 << 20);
    let wasi = wasmtime_wasi::WasiCtxBuilder::new()
        .stdin(MemoryInputPipe::new(input.to_vec()))
        .stdout(stdout.clone())
        .build_p1();
    let mut store = wasmtime::Store::new(&engine, wasi);
    match checks {
        Interruption::Epoch => store.set_epoch_deadline(u64::MAX / 2),
        Interruption::Fuel => {
            store.set_fuel(u64::MAX)?;
            store.fuel_async_yield_interval(Some(FUEL_QUANTUM))?;
        }
        Interruption::None => {}
    }
    let instance = linker.instantiate_async(&mut store, &module).await?;
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
    let started = Instant::now();
    if let Err(e) = start.call_async(&mut store, ()).await {
        // A command returns through proc_exit: success is exit status 0.
        match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(wasmtime_wasi::I32Exit(0)) => {}
            _ => return Err(format!("{e:#}").into()),
        }
    }
    let time = started.elapsed();
    Ok((time, stdout.contents().to_vec()))
}

/// An error unless the two outputs are the same bytes.
fn same(job: &str, what: &str, a: &[u8], b: &[u8]) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    Err(format!(
        "{job}: the outputs of {what} differ ({} and {} bytes, first at byte {at})",
        a.len(),
        b.len()
    )
    .into())
}

/// A task's input in a folder of its own, as on a donor.
fn task_input(work: &Path, folder: &str, name: &str, text: &str) -> Result<PathBuf> {
    let dir = work.join(folder);
    std::fs::create_dir(&dir)?;
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}\n"))?;
    Ok(path)
}

async fn run(sandbox: &Sandbox, program: &Program, input: &Path, limits: Limits) -> Result<Run> {
    let task = task_of(input);
    let (_pause, paused) = watch::channel(false);
    Ok(sandbox.run(program, &task, limits, paused).await?)
}

/// A task of the input file at `input`, which sits in a folder of its own.
fn task_of(input: &Path) -> Task {
    Task {
        input_dir: input.parent().unwrap_or(Path::new(".")).to_owned(),
        input_name: input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        args: vec![],
        seed: 1,
    }
}

/// Median and p99, in milliseconds, of the cache lookup plus run of `bytes`, already compiled.
fn startup(
    runtime: &Runtime,
    sandbox: &Sandbox,
    bytes: &[u8],
    input: &Path,
    limits: Limits,
) -> Result<(f64, f64)> {
    let mut times = Vec::with_capacity(STARTUP_RUNS);
    for _ in 0..STARTUP_RUNS {
        let started = Instant::now();
        let program = sandbox.program(bytes, Floats::Native)?;
        let run = runtime.block_on(run(sandbox, &program, input, limits))?;
        times.push(started.elapsed());
        if run.outcome != Outcome::Success {
            return Err(format!("start-up run: {:?}", run.outcome).into());
        }
    }
    times.sort();
    let p99 = times[(times.len() * 99).div_ceil(100) - 1];
    Ok((ms(times[times.len() / 2]), ms(p99)))
}

/// Polls `done` until it holds, for at most 10 s.
fn wait_until(done: impl Fn() -> bool, what: &str) -> Result<()> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > Duration::from_secs(10) {
            return Err(format!("{what}: not seen within 10 s").into());
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn list(times: &[Duration]) -> String {
    times
        .iter()
        .map(|t| format!("{:.3}", t.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}
