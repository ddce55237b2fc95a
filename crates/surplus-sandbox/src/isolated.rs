//! A task in a process of its own: the operating system pauses and stops it, so its code needs
//! no epoch checks and runs at nearly native speed.
//!
//! The agent starts a [`Runner`] (a program that calls [`serve`]) for each task, writes it a
//! [`Request`] line and the module's bytes, and reads back a [`Response`] line and the task's
//! output. While the task runs, the agent pauses it with `SIGSTOP`, resumes it with `SIGCONT`,
//! and ends it with `SIGKILL` when its budget (running time, pauses not counted) is spent or the
//! run is dropped. The task's process keeps the in-process sandbox's other limits: its memory
//! cap, its output cap, its one read-only input folder, and no environment. It ends on its own
//! if the agent that started it is gone, since no one would stop it otherwise.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::{Floats, Limits, MAX_MODULE_BYTES, Outcome, PausedTask, Program, Run, Runner, Sandbox};
use crate::{SandboxError, Task};

/// The longest request or response line.
const MAX_LINE: usize = 1 << 20;

/// How often a task's process checks that the agent that started it is still there.
const ORPHAN_CHECK: Duration = Duration::from_secs(1);

/// What a task's process is asked to run.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    floats: Floats,
    cache_dir: Option<PathBuf>,
    input_dir: PathBuf,
    input_name: String,
    args: Vec<String>,
    seed: u64,
    memory_bytes: usize,
    output_bytes: usize,
    /// The bytes of the module that follow the request's line.
    module_bytes: usize,
}

/// What a task's process answers: followed, for a run, by `output_bytes` of output.
#[derive(Debug, Serialize, Deserialize)]
enum Response {
    Ran {
        outcome: Outcome,
        output_bytes: usize,
    },
    /// The module could not be compiled or the task could not start.
    Refused { error: String },
}

/// Runs the one task that standard input asks for and writes its result to standard output.
/// The body of a [`Runner`]'s program, started with `--parent PID`: the agent that waits for
/// it.
pub fn serve() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let parent = args
        .windows(2)
        .find(|pair| pair[0] == "--parent")
        .and_then(|pair| pair[1].parse().ok())
        .unwrap_or_else(std::os::unix::process::parent_id);
    watch_for_orphaning(parent);
    let mut input = std::io::stdin().lock();
    let response = match read_request(&mut input) {
        Ok((request, module)) => run_request(&request, &module),
        Err(error) => Err(error),
    };
    let (response, output) = match response {
        Ok(run) => (
            Response::Ran {
                outcome: run.outcome,
                output_bytes: run.output.len(),
            },
            run.output,
        ),
        Err(error) => (
            Response::Refused {
                error: error.to_string(),
            },
            Vec::new(),
        ),
    };
    let mut stdout = std::io::stdout().lock();
    let written = serde_json::to_writer(&mut stdout, &response)
        .map_err(std::io::Error::from)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.write_all(&output))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// Ends this process once `parent`, the agent that started it, is gone (this process is then
/// someone else's child): a task without checks would otherwise run on, unstoppable.
fn watch_for_orphaning(parent: u32) {
    let orphaned = move || std::os::unix::process::parent_id() != parent;
    if orphaned() {
        std::process::exit(3);
    }
    let _ = std::thread::Builder::new()
        .name("surplus-task-orphan-check".into())
        .spawn(move || {
            loop {
                std::thread::sleep(ORPHAN_CHECK);
                if orphaned() {
                    std::process::exit(3);
                }
            }
        });
}

fn read_request(input: &mut impl BufRead) -> Result<(Request, Vec<u8>), SandboxError> {
    let mut line = Vec::new();
    input
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .map_err(stdin_error)?;
    let request: Request = serde_json::from_slice(&line)
        .map_err(|e| SandboxError::Engine(format!("a task's request is not valid: {e}")))?;
    if request.module_bytes > MAX_MODULE_BYTES {
        return Err(SandboxError::InvalidModule(format!(
            "it is {} bytes, more than the {MAX_MODULE_BYTES} a module may be",
            request.module_bytes
        )));
    }
    let mut module = vec![0; request.module_bytes];
    input.read_exact(&mut module).map_err(stdin_error)?;
    Ok((request, module))
}

fn stdin_error(source: std::io::Error) -> SandboxError {
    SandboxError::Io {
        path: PathBuf::from("<standard input>"),
        source,
    }
}

fn run_request(request: &Request, module: &[u8]) -> Result<Run, SandboxError> {
    // One engine, for the task's kind of floats: each costs start-up time.
    let sandbox = Sandbox::build(request.cache_dir.as_deref(), false, &[request.floats], None)?;
    let program = sandbox.program(module, request.floats)?;
    let task = Task {
        input_dir: request.input_dir.clone(),
        input_name: request.input_name.clone(),
        args: request.args.clone(),
        seed: request.seed,
    };
    let limits = Limits {
        memory_bytes: request.memory_bytes,
        // The agent ends this process at the budget; nothing here counts it.
        timeout: Duration::MAX,
        output_bytes: request.output_bytes,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SandboxError::Engine(format!("a runtime for the task: {e}")))?;
    let (_never, paused) = watch::channel(false);
    runtime.block_on(sandbox.run_here(&program, &task, limits, paused))
}

/// How a task's process ended, as the agent saw it.
enum Ended {
    Exited(std::io::Result<std::process::ExitStatus>),
    OutOfTime,
}

/// Runs `task` in a process of its own started by `runner`.
pub(crate) async fn run(
    sandbox: &Sandbox,
    runner: &Runner,
    program: &Program,
    task: &Task,
    limits: Limits,
    mut paused: watch::Receiver<bool>,
) -> Result<Run, SandboxError> {
    task.input_path()?;
    let request = Request {
        floats: program.floats,
        cache_dir: sandbox.cache_dir.clone(),
        input_dir: task.input_dir.clone(),
        input_name: task.input_name.clone(),
        args: task.args.clone(),
        seed: task.seed,
        memory_bytes: limits.memory_bytes,
        output_bytes: limits.output_bytes,
        module_bytes: program.bytes.len(),
    };
    let mut line = serde_json::to_vec(&request)
        .map_err(|e| SandboxError::Engine(format!("a task's request: {e}")))?;
    line.push(b'\n');
    let mut child = tokio::process::Command::new(&runner.program)
        .args(&runner.args)
        .arg("--parent")
        .arg(std::process::id().to_string())
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SandboxError::Io {
            path: runner.program.clone(),
            source,
        })?;
    let pid = child
        .id()
        .and_then(|id| Pid::from_raw(id as i32))
        .ok_or_else(|| SandboxError::Engine("a task's process has no id".into()))?;
    // Fed and read beside the wait, so that neither pipe fills while the task runs.
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(SandboxError::Engine("a task's process has no pipes".into()));
    };
    let module = program.bytes.clone();
    let feeding = tokio::spawn(async move {
        stdin.write_all(&line).await?;
        stdin.write_all(&module).await?;
        stdin.shutdown().await
    });
    let most = (MAX_LINE + limits.output_bytes + 1) as u64;
    let reading = tokio::spawn(async move {
        let mut answer = Vec::new();
        stdout
            .take(most)
            .read_to_end(&mut answer)
            .await
            .map(|_| answer)
    });

    let clock = &sandbox.clock;
    let started = clock.now();
    let mut paused_for = Duration::ZERO;
    let mut held: Option<(Instant, PausedTask)> = None;
    let mut watching = true;
    let mut hold = *paused.borrow_and_update();
    let ended = loop {
        if hold && held.is_none() {
            signal(pid, Signal::STOP);
            held = Some((clock.now(), PausedTask::new(&sandbox.paused)));
        } else if !hold && let Some((since, counted)) = held.take() {
            signal(pid, Signal::CONT);
            paused_for += clock.now().saturating_duration_since(since);
            drop(counted);
        }
        let deadline = started + paused_for + limits.timeout;
        tokio::select! {
            status = child.wait() => break Ended::Exited(status),
            () = clock.sleep_until(deadline), if held.is_none() => {
                break Ended::OutOfTime;
            }
            changed = paused.changed(), if watching => match changed {
                Ok(()) => hold = *paused.borrow_and_update(),
                // No one can pause it any more: it runs to its end.
                Err(_) => {
                    watching = false;
                    hold = false;
                }
            },
        }
    };
    let now = clock.now();
    let running = now.saturating_duration_since(started).saturating_sub(
        paused_for
            + held.as_ref().map_or(Duration::ZERO, |(since, _)| {
                now.saturating_duration_since(*since)
            }),
    );
    drop(held);
    let status = match ended {
        Ended::Exited(status) => status,
        Ended::OutOfTime => {
            let _ = child.kill().await;
            return Ok(Run {
                outcome: Outcome::Timeout,
                output: Vec::new(),
                running,
            });
        }
    };
    let _ = feeding.await;
    let answer = match reading.await {
        Ok(Ok(answer)) => answer,
        Ok(Err(error)) => return Err(SandboxError::Engine(format!("a task's result: {error}"))),
        Err(error) => return Err(SandboxError::Engine(format!("a task's result: {error}"))),
    };
    let Some((head, body)) = answer
        .iter()
        .position(|&b| b == b'\n')
        .map(|at| (&answer[..at], &answer[at + 1..]))
    else {
        let status = match status {
            Ok(status) => status.to_string(),
            Err(error) => error.to_string(),
        };
        return Ok(Run {
            outcome: Outcome::Trap(format!(
                "the task's process ended without a result ({status})"
            )),
            output: Vec::new(),
            running,
        });
    };
    match serde_json::from_slice::<Response>(head) {
        Ok(Response::Ran {
            outcome,
            output_bytes,
        }) if output_bytes == body.len() => Ok(Run {
            outcome,
            output: body.to_vec(),
            running,
        }),
        Ok(Response::Ran { .. }) => Ok(Run {
            outcome: Outcome::Trap("the task's process sent a cut result".into()),
            output: Vec::new(),
            running,
        }),
        Ok(Response::Refused { error }) => Err(SandboxError::Engine(error)),
        Err(error) => Err(SandboxError::Engine(format!(
            "a task's process answered in a way not understood: {error}"
        ))),
    }
}

/// Sends `signal` to a task's process. It may have ended meanwhile (`ESRCH`), which the wait
/// sees; nothing else can fail for a child of this process.
fn signal(pid: Pid, signal: Signal) {
    let _ = kill_process(pid, signal);
}
