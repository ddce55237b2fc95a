//! Measures the compute sandbox, all in one run:
//!
//! - the `primes` example job in the sandbox against the same source built natively, on the same
//!   range (best of 3 each; the outputs must be identical);
//! - the start-up of a task whose module is already compiled (the cache lookup and the run of a
//!   module that returns at once), median and p99;
//! - the pause latency: from setting `paused` to the task being counted by `paused_tasks()`.
//!
//!   bench_compute NATIVE_PRIMES PRIMES_WASM [RANGE]
//!
//! NATIVE_PRIMES is `examples/compute` built for the host (`cargo build --release --manifest-path
//! examples/compute/Cargo.toml`), PRIMES_WASM the module (`examples/compute/primes.wasm`), RANGE
//! the input of both (`LO HI`, default `1 2500000000`). `scripts/bench-compute` runs it.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use surplus_sandbox::{Limits, Outcome, Program, Run, Sandbox, TICK, Task};
use tokio::runtime::Runtime;
use tokio::sync::watch;

const DEFAULT_RANGE: &str = "1 2500000000";
const STARTUP_RUNS: usize = 200;
const PAUSE_TRIALS: usize = 20;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (native, wasm, range) = match &args[..] {
        [native, wasm] => (PathBuf::from(native), PathBuf::from(wasm), DEFAULT_RANGE),
        [native, wasm, range] => (PathBuf::from(native), PathBuf::from(wasm), range.as_str()),
        _ => return Err("usage: bench_compute NATIVE_PRIMES PRIMES_WASM [RANGE]".into()),
    };
    let work = tempfile::tempdir()?;
    let task_dir = work.path().join("task");
    std::fs::create_dir(&task_dir)?;
    let input = task_dir.join("range.txt");
    std::fs::write(&input, format!("{range}\n"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let sandbox = Arc::new(Sandbox::new(None)?);

    // The CPU-bound kernel, natively and in the sandbox.
    let mut native_times = Vec::new();
    let mut native_output = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let out = Command::new(&native)
            .stdin(std::fs::File::open(&input)?)
            .stdout(Stdio::piped())
            .output()?;
        native_times.push(started.elapsed());
        if !out.status.success() {
            return Err(format!("{} failed: {}", native.display(), out.status).into());
        }
        native_output = out.stdout;
    }
    let bytes = std::fs::read(&wasm).map_err(|e| format!("{}: {e}", wasm.display()))?;
    let started = Instant::now();
    let primes = sandbox.program(&bytes)?;
    let compile = started.elapsed();
    let limits = Limits {
        memory_bytes: 256 << 20,
        timeout: Duration::from_secs(600),
        output_bytes: 1 << 20,
    };
    let mut wasm_times = Vec::new();
    let mut wasm_walls = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let run = runtime.block_on(run(&sandbox, &primes, &input, limits))?;
        wasm_walls.push(started.elapsed());
        if run.outcome != Outcome::Success {
            return Err(format!("primes.wasm: {:?}", run.outcome).into());
        }
        if run.output != native_output {
            return Err(format!(
                "the outputs differ: native {:?}, wasm {:?}",
                String::from_utf8_lossy(&native_output),
                String::from_utf8_lossy(&run.output)
            )
            .into());
        }
        wasm_times.push(run.running);
    }
    let best_native = native_times.iter().min().copied().unwrap_or_default();
    let best_wasm = wasm_times.iter().min().copied().unwrap_or_default();
    println!("== primes on {range:?} ({})", summary(&native_output));
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
    println!("outputs identical: yes");
    println!(
        "wasm/native: {:.2}x (bar: 1.5x or better)",
        best_wasm.as_secs_f64() / best_native.as_secs_f64()
    );
    println!(
        "cold compile of {} ({} bytes): {:.0} ms",
        wasm.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
        bytes.len(),
        ms(compile)
    );

    // Start-up with the module compiled: the cache lookup (which hashes the bytes) and the run.
    let trivial = wat::parse_str(r#"(module (func (export "_start")))"#)?;
    sandbox.program(&trivial)?;
    let quick_limits = Limits {
        timeout: Duration::from_secs(10),
        ..limits
    };
    let (median, p99) = startup(&runtime, &sandbox, &trivial, &input, quick_limits)?;
    println!(
        "start-up with cached module: median {median:.2} ms, p99 {p99:.2} ms (bar: under 10 ms; \
         a module whose _start returns, {STARTUP_RUNS} runs)"
    );
    let empty_dir = work.path().join("empty");
    std::fs::create_dir(&empty_dir)?;
    let empty = empty_dir.join("range.txt");
    std::fs::write(&empty, "1 1\n")?;
    let (median, p99) = startup(&runtime, &sandbox, &bytes, &empty, quick_limits)?;
    println!(
        "  the same with primes.wasm on the range `1 1` (Rust's start-up, stdin, stdout): \
         median {median:.2} ms, p99 {p99:.2} ms"
    );

    // Pause latency on a busy task.
    let spin = wat::parse_str(r#"(module (func (export "_start") (loop $l (br $l))))"#)?;
    let spin = sandbox.program(&spin)?;
    let (pause, paused) = watch::channel(false);
    let busy = runtime.spawn({
        let sandbox = sandbox.clone();
        let input = input.clone();
        async move {
            let task = Task {
                input,
                args: vec![],
                seed: 1,
            };
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

async fn run(sandbox: &Sandbox, program: &Program, input: &Path, limits: Limits) -> Result<Run> {
    let task = Task {
        input: input.to_owned(),
        args: vec![],
        seed: 1,
    };
    let (_pause, paused) = watch::channel(false);
    Ok(sandbox.run(program, &task, limits, paused).await?)
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
        let program = sandbox.program(bytes)?;
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

/// The output's lines on one line.
fn summary(output: &[u8]) -> String {
    String::from_utf8_lossy(output)
        .lines()
        .skip(1)
        .collect::<Vec<_>>()
        .join(", ")
}
