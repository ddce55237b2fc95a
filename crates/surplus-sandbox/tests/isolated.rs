//! The sandbox's suite of well-behaved and hostile modules again, each task in a process of its
//! own (`surplus-task`) with no epoch checks; and what only such a process must do.
#![cfg(unix)]

mod suite;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use surplus_sandbox::{Clock, Runner, Sandbox};

fn runner() -> Runner {
    Runner {
        program: env!("CARGO_BIN_EXE_surplus-task").into(),
        args: Vec::new(),
    }
}

fn sandbox() -> Sandbox {
    Sandbox::isolated(None, runner()).expect("sandbox")
}

fn sandbox_on(clock: Arc<dyn Clock>) -> Sandbox {
    Sandbox::isolated_with_clock(None, runner(), clock).expect("sandbox")
}

#[test]
fn an_isolated_sandbox_says_so() {
    assert!(sandbox().is_isolated());
    assert!(!Sandbox::new(None).expect("sandbox").is_isolated());
}

/// Whether process `pid` has ended: gone, or a zombie no one has reaped yet.
#[cfg(target_os = "linux")]
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// A task has no checks, so nothing inside it ends an endless loop: if the agent that started
/// it is killed, its process must end on its own rather than spin forever.
#[cfg(target_os = "linux")]
#[test]
fn a_task_whose_agent_is_gone_ends_on_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("input"), b"").expect("input");
    let spin = wat::parse_str(
        r#"(module (memory (export "memory") 1)
             (func (export "_start") (loop $forever (br $forever))))"#,
    )
    .expect("wat");
    let mut request = serde_json::to_vec(&serde_json::json!({
        "floats": "Native",
        "cache_dir": null,
        "input_dir": dir.path(),
        "input_name": "input",
        "args": [],
        "seed": 1,
        "memory_bytes": 1 << 20,
        "output_bytes": 1 << 10,
        "module_bytes": spin.len(),
    }))
    .expect("json");
    request.push(b'\n');
    request.extend_from_slice(&spin);
    let request_file = dir.path().join("request");
    std::fs::File::create(&request_file)
        .and_then(|mut file| file.write_all(&request))
        .expect("request");
    // A stand-in agent: a shell that starts the task's process and is gone at once.
    let output = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" --parent $$ < "$1" > /dev/null & echo $!"#)
        .arg(env!("CARGO_BIN_EXE_surplus-task"))
        .arg(&request_file)
        .stdout(Stdio::piped())
        .output()
        .expect("sh");
    let pid: u32 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("a pid");
    let started = Instant::now();
    while !ended(pid) {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("the orphaned task's process spun on for 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A real job (`examples/compute/mandelbrot.wasm`, floats native) gives the same bytes in a
/// process of its own, without epoch checks, as in this process with them.
#[tokio::test]
async fn an_example_job_gives_the_same_bytes_in_its_own_process_as_here() {
    use surplus_sandbox::{Floats, Limits, Outcome, Task};
    let wasm = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/compute/mandelbrot.wasm"
    ))
    .expect("the committed example");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("view.txt"), b"96 64 300\n").expect("input");
    let task = Task {
        input_dir: dir.path().to_owned(),
        input_name: "view.txt".into(),
        args: Vec::new(),
        seed: 7,
    };
    let cache = tempfile::tempdir().expect("cache");
    let mut outputs = Vec::new();
    for sandbox in [
        Sandbox::new(None).expect("in-process"),
        Sandbox::isolated(Some(cache.path()), runner()).expect("isolated"),
    ] {
        let program = sandbox.program(&wasm, Floats::Native).expect("compiles");
        let (_pause, paused) = tokio::sync::watch::channel(false);
        let run = sandbox
            .run(&program, &task, Limits::default(), paused)
            .await
            .expect("runs");
        assert_eq!(run.outcome, Outcome::Success);
        assert!(run.output.starts_with(b"P5"), "a PGM image");
        outputs.push(run.output);
    }
    assert_eq!(outputs[0], outputs[1]);
}
