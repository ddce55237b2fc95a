//! Donated compute end to end: a subscriber's WebAssembly job runs on other subscribers' agents
//! (real processes, the committed example modules), its results are validated by quorum, a
//! dishonest donor is outvoted, a killed donor's task runs elsewhere, a task pauses while the
//! donor's user is at the machine or other programs are busy, and every job ends.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use surplus_e2e::{Cluster, count_in_database, wait_for};

use crate::on_each_database;

/// The committed example modules.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/compute")
        .join(name)
}

/// What the probe of a donor reports: a machine nobody sits at, with 4 cores.
const AWAY: &str = r#"{"user": {"session": "none"}, "cores": 4, "busy_percent": 0}"#;
const BACK: &str =
    r#"{"user": {"session": "idle", "idle_seconds": 0}, "cores": 4, "busy_percent": 0}"#;
/// Nobody at the machine, but other programs use 90% of its CPU.
const BUSY: &str = r#"{"user": {"session": "none"}, "cores": 4, "busy_percent": 90}"#;

/// Writes the probe override of a donor (atomically: the agent reads it at any moment).
fn set_probe(path: &Path, text: &str) {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, text).expect("write the probe override");
    std::fs::rename(&temp, path).expect("rename the probe override");
}

/// Adds a donor that consents to compute only, and starts it.
fn donor(cluster: &mut Cluster, name: &str, extra_env: &[(&str, &str)]) -> usize {
    let index = cluster.add_agent(name, &format!("{name}@example.org"), false, "1MiB");
    let probe = cluster.dir.path().join(format!("{name}-probe.json"));
    set_probe(&probe, AWAY);
    let agent = cluster.agent(index);
    agent.set_env("SURPLUS_PROBE_OVERRIDE", probe.to_str().expect("utf-8"));
    for (key, value) in extra_env {
        agent.set_env(key, value);
    }
    agent.ok(&["consent", "--compute", "on"]);
    agent.ok(&["limits", "--cores", "50%"]);
    agent.start();
    index
}

/// The primes counted in 1..=n, by the test's own sieve.
pub(crate) fn primes_up_to(n: usize) -> usize {
    let mut composite = vec![false; n + 1];
    let mut count = 0;
    for i in 2..=n {
        if !composite[i] {
            count += 1;
            let mut j = i * i;
            while j <= n {
                composite[j] = true;
                j += i;
            }
        }
    }
    count
}

fn job_status(agent: &surplus_e2e::Agent, job: &str) -> Value {
    agent.json(&["compute", "status", job])
}

fn submit(agent: &surplus_e2e::Agent, module: &Path, inputs: &[PathBuf], extra: &[&str]) -> String {
    let mut args = vec!["compute", "submit", module.to_str().expect("utf-8")];
    for input in inputs {
        args.extend(["--input", input.to_str().expect("utf-8")]);
    }
    args.extend(extra);
    let submitted = agent.json(&args);
    submitted["job"].as_str().expect("a job id").to_owned()
}

fn wait_job(agent: &surplus_e2e::Agent, job: &str, state: &str, limit: Duration) -> Value {
    let mut last = Value::Null;
    wait_for(&format!("job {job} to be {state}"), limit, || {
        last = job_status(agent, job);
        last["state"] == state
    });
    last
}

#[test]
fn a_job_of_twenty_tasks_runs_on_two_other_subscribers_agents() {
    on_each_database(|cluster| {
        // Every task is agreed on by two donors, however trusted they become: the hub's coin
        // for accepting a trusted donor's result alone is turned off, so the outcome is exact.
        cluster.hub.configure("adaptive_replication = false");
        let submitter = cluster.add_agent("sam-pc", "sam@example.org", false, "1MiB");
        let ann = donor(cluster, "ann-pc", &[]);
        let ben = donor(cluster, "ben-pc", &[]);
        cluster.agent(ann).wait_connected_after(0);
        cluster.agent(ben).wait_connected_after(0);
        let inputs_dir = cluster.dir.path().join("inputs");
        std::fs::create_dir_all(&inputs_dir).expect("inputs");
        let inputs: Vec<PathBuf> = (1..=20)
            .map(|n| {
                let path = inputs_dir.join(format!("range-{n:02}.txt"));
                std::fs::write(&path, format!("1 {}\n", n * 5000)).expect("input");
                path
            })
            .collect();
        let sam = &cluster.agents[submitter];
        // Bad input is refused with a message that names it, and nothing is submitted.
        let refused = sam.cli(&[
            "compute",
            "submit",
            inputs[0].to_str().expect("utf-8"),
            "--input",
            inputs[1].to_str().expect("utf-8"),
        ]);
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("not a WebAssembly module"));
        let job = submit(sam, &example("primes.wasm"), &inputs, &[]);
        let done = wait_job(sam, &job, "completed", Duration::from_secs(180));
        let tasks = done["tasks"].as_array().expect("tasks");
        assert_eq!(tasks.len(), 20);
        // Every task was validated by two donors.
        let mut replicated = 0;
        for task in tasks {
            let valid = task["runs"]
                .as_array()
                .expect("runs")
                .iter()
                .filter(|r| r["state"] == "valid")
                .count();
            assert!(valid >= 1, "each task validated: {task}");
            replicated += usize::from(valid >= 2);
        }
        assert_eq!(replicated, 20, "every task agreed on by two donors");
        let out = cluster.dir.path().join("results");
        let sam = &cluster.agents[submitter];
        sam.ok(&[
            "compute",
            "results",
            &job,
            "--out",
            out.to_str().expect("utf-8"),
        ]);
        for n in 1..=20 {
            let text = std::fs::read_to_string(out.join(format!("range-{n:02}.txt.out")))
                .expect("a result per input");
            let expected = format!("count {}", primes_up_to(n * 5000));
            assert!(
                text.lines().any(|line| line == expected),
                "range {n}: {text}"
            );
        }
        // Both donors did the work, earned credit for it, and the submitter spent it.
        for index in [ann, ben] {
            let status = cluster.agents[index].status();
            assert!(
                status["agent"]["tasks_done"].as_u64().unwrap_or(0) >= 1,
                "{status}"
            );
            assert!(
                status["credits"]["earned"].as_f64().unwrap_or(0.0) > 0.0,
                "{status}"
            );
        }
        let status = cluster.agents[submitter].status();
        assert!(
            status["credits"]["spent"].as_f64().unwrap_or(0.0) > 0.0,
            "{status}"
        );
        let listed = cluster.agents[submitter].ok(&["compute", "list"]);
        assert!(
            listed.contains(&job) && listed.contains("completed"),
            "{listed}"
        );
        let runs = count_in_database(
            &cluster.database,
            "SELECT COUNT(*) FROM allocations WHERE kind = 'compute' AND state = 'released'",
        );
        assert!(
            runs >= 20 + replicated as i64,
            "every run is a compute allocation in the ledger: {runs}"
        );
    });
}

#[test]
fn a_dishonest_donor_is_outvoted_and_loses_trust() {
    on_each_database(|cluster| {
        let submitter = cluster.add_agent("sam-pc", "sam@example.org", false, "1MiB");
        let mut donors = Vec::new();
        for name in ["ann-pc", "ben-pc"] {
            donors.push(donor(cluster, name, &[]));
        }
        let cat = donor(cluster, "cat-pc", &[("SURPLUS_TEST_CORRUPT_OUTPUTS", "1")]);
        donors.push(cat);
        for &index in &donors {
            cluster.agent(index).wait_connected_after(0);
        }
        let inputs: Vec<PathBuf> = (1..=4)
            .map(|n| example(&format!("inputs/range-{n}.txt")))
            .collect();
        let job = submit(
            &cluster.agents[submitter],
            &example("primes.wasm"),
            &inputs,
            &[],
        );
        let done = wait_job(
            &cluster.agents[submitter],
            &job,
            "completed",
            Duration::from_secs(180),
        );
        let runs: Vec<&Value> = done["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .flat_map(|t| t["runs"].as_array().expect("runs"))
            .collect();
        let invalid = runs.iter().filter(|r| r["state"] == "invalid").count();
        assert!(invalid >= 1, "the corrupted outputs were outvoted: {done}");
        let cat_id = cluster.agents[cat].device_id();
        let (streak, bad) = (
            count_in_database(
                &cluster.database,
                &format!("SELECT trust_streak FROM devices WHERE id = '{cat_id}'"),
            ),
            count_in_database(
                &cluster.database,
                &format!("SELECT results_invalid FROM devices WHERE id = '{cat_id}'"),
            ),
        );
        assert_eq!(streak, 0, "an invalid result resets trust");
        assert_eq!(bad, invalid as i64, "every invalid result was cat's");
        let cat_status = cluster.agents[cat].status();
        assert_eq!(
            cat_status["credits"]["earned"], 0.0,
            "no credit for invalid work"
        );
        for task in done["tasks"].as_array().expect("tasks") {
            let honest = task["runs"]
                .as_array()
                .expect("runs")
                .iter()
                .filter(|r| r["state"] == "valid")
                .count();
            assert!(honest >= 2, "{task}");
        }
    });
}

#[test]
fn a_killed_donors_task_runs_elsewhere_and_a_returning_user_pauses_compute() {
    on_each_database(|cluster| {
        let submitter = cluster.add_agent("sam-pc", "sam@example.org", false, "1MiB");
        let ann = donor(cluster, "ann-pc", &[]);
        let ben = donor(cluster, "ben-pc", &[]);
        cluster.agent(ann).wait_connected_after(0);
        cluster.agent(ben).wait_connected_after(0);
        // One long task, accepted on one result, so that one donor runs it at a time.
        let long = cluster.dir.path().join("long.txt");
        std::fs::write(&long, "1 10000000000\n").expect("input");
        let job = submit(
            &cluster.agents[submitter],
            &example("primes.wasm"),
            std::slice::from_ref(&long),
            &["--replicas", "1"],
        );
        let running = |cluster: &Cluster| {
            [ann, ben].into_iter().find(|&i| {
                cluster.agents[i].status()["agent"]["tasks_running"]
                    .as_u64()
                    .unwrap_or(0)
                    > 0
            })
        };
        let mut first = None;
        wait_for("a donor to start the task", Duration::from_secs(60), || {
            first = running(cluster);
            first.is_some()
        });
        let first = first.expect("a donor runs it");
        let other = if first == ann { ben } else { ann };
        cluster.agent(first).kill();
        // The hub notices the donor is gone and sends the task to the other one.
        wait_for(
            "the task to move to the other donor",
            Duration::from_secs(60),
            || {
                cluster.agents[other].status()["agent"]["tasks_running"]
                    .as_u64()
                    .unwrap_or(0)
                    > 0
            },
        );
        let status = job_status(&cluster.agents[submitter], &job);
        let states: Vec<&str> = status["tasks"][0]["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .filter_map(|r| r["state"].as_str())
            .collect();
        assert_eq!(states, ["lost", "assigned"], "{status}");
        // The other donor's user comes back: the task pauses in the sandbox, and nothing ends.
        let probe = cluster
            .dir
            .path()
            .join(format!("{}-probe.json", cluster.agents[other].name));
        set_probe(&probe, BACK);
        wait_for("the task to pause", Duration::from_secs(10), || {
            let agent = &cluster.agents[other].status()["agent"];
            agent["tasks_paused"] == 1 && agent["compute_held"] == "the user is back"
        });
        assert_eq!(
            job_status(&cluster.agents[submitter], &job)["state"],
            "running"
        );
        // The user leaves again: it resumes where it stopped.
        set_probe(&probe, AWAY);
        wait_for("the task to resume", Duration::from_secs(10), || {
            cluster.agents[other].status()["agent"]["tasks_paused"] == 0
        });
        // Other programs get busy (90% of the CPU, above the user's 25%): it pauses again, and
        // resumes once they calm down, well below the threshold.
        set_probe(&probe, BUSY);
        wait_for(
            "the task to pause for busy programs",
            Duration::from_secs(10),
            || {
                let agent = &cluster.agents[other].status()["agent"];
                agent["tasks_paused"] == 1 && agent["compute_held"] == "other programs are busy"
            },
        );
        set_probe(&probe, AWAY);
        wait_for("the task to resume", Duration::from_secs(10), || {
            cluster.agents[other].status()["agent"]["tasks_paused"] == 0
        });
        // And completes.
        let done = wait_job(
            &cluster.agents[submitter],
            &job,
            "completed",
            Duration::from_secs(180),
        );
        let runs = done["tasks"][0]["runs"].as_array().expect("runs");
        assert_eq!(
            runs.last().map(|r| r["state"].clone()),
            Some(Value::from("valid")),
            "{done}"
        );
        let out = cluster.dir.path().join("out");
        cluster.agents[submitter].ok(&[
            "compute",
            "results",
            &job,
            "--out",
            out.to_str().expect("utf-8"),
        ]);
        let text = std::fs::read_to_string(out.join("long.txt.out")).expect("result");
        assert!(text.lines().any(|line| line == "count 455052511"), "{text}");
    });
}

/// A minimal WASI command module whose `_start` is `body` (no locals), with a memory exported.
fn module(body: &[u8]) -> Vec<u8> {
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    // One type (no parameters, no results), one function of it, one page of memory.
    wasm.extend([0x01, 0x04, 0x01, 0x60, 0x00, 0x00]);
    wasm.extend([0x03, 0x02, 0x01, 0x00]);
    wasm.extend([0x05, 0x03, 0x01, 0x00, 0x01]);
    // Exports: "_start" (function 0) and "memory" (memory 0).
    wasm.extend([0x07, 0x13, 0x02]);
    wasm.extend([0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x00]);
    wasm.extend([0x06, b'm', b'e', b'm', b'o', b'r', b'y', 0x02, 0x00]);
    // The code: one body, no locals.
    let size = u8::try_from(body.len() + 1).expect("a small body");
    wasm.extend([0x0a, size + 2, 0x01, size, 0x00]);
    wasm.extend(body);
    wasm
}

/// `loop br 0 end end`: runs for ever.
const ENDLESS: &[u8] = &[0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b];
/// `unreachable end`: traps at once.
const TRAP: &[u8] = &[0x00, 0x0b];

#[test]
fn jobs_always_end_and_say_why() {
    on_each_database(|cluster| {
        // Results are kept 20 s after a job ends (the default is 7 days).
        cluster.hub.configure("output_retention_seconds = 20");
        let submitter = cluster.add_agent("sam-pc", "sam@example.org", false, "1MiB");
        let ann = donor(cluster, "ann-pc", &[]);
        let ben = donor(cluster, "ben-pc", &[]);
        cluster.agent(ann).wait_connected_after(0);
        cluster.agent(ben).wait_connected_after(0);
        let dir = cluster.dir.path().join("jobs");
        std::fs::create_dir_all(&dir).expect("dir");
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).expect("write");
            path
        };
        let endless = write("endless.wasm", &module(ENDLESS));
        let trap = write("trap.wasm", &module(TRAP));
        let input = write("one.txt", b"1 1000\n");
        let sam = &cluster.agents[submitter];
        let reason = |job: &Value| {
            job["tasks"][0]["error"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };

        // A module that loops for ever, with two donors: both runs time out, and that is that.
        let job = submit(
            sam,
            &endless,
            std::slice::from_ref(&input),
            &["--timeout", "5s"],
        );
        let ended = wait_job(sam, &job, "failed", Duration::from_secs(120));
        assert!(reason(&ended).contains("timeout on 2 devices"), "{ended}");
        let text = sam.ok(&["compute", "status", &job]);
        assert!(text.contains("ran past its timeout"), "{text}");

        // A module that traps: two identical failures are enough; it would trap anywhere.
        let job = submit(sam, &trap, std::slice::from_ref(&input), &[]);
        let ended = wait_job(sam, &job, "failed", Duration::from_secs(60));
        assert!(
            reason(&ended).contains("fails the same way everywhere"),
            "{ended}"
        );
        assert_eq!(ended["tasks"][0]["runs"].as_array().map(Vec::len), Some(2));

        // Three matching outputs wanted, two donors: once both have run it, nobody else can.
        let job = submit(
            sam,
            &example("primes.wasm"),
            std::slice::from_ref(&input),
            &["--replicas", "3"],
        );
        let ended = wait_job(sam, &job, "failed", Duration::from_secs(60));
        assert!(
            reason(&ended).starts_with("no other donor can run it"),
            "{ended}"
        );
        // Nothing was validated, so nothing was spent on it.
        assert_eq!(ended["core_seconds"], 0.0);

        // A deadline shorter than the work: the job expires, and its runs stop.
        let job = submit(
            sam,
            &endless,
            std::slice::from_ref(&input),
            &["--timeout", "10m", "--deadline", "15s"],
        );
        let ended = wait_job(sam, &job, "expired", Duration::from_secs(60));
        assert_eq!(ended["tasks"][0]["state"], "expired");
        assert!(reason(&ended).contains("deadline"), "{ended}");
        // A job that works: its results can be fetched, until the retention time is up. Then
        // they leave the hub's staging, and `results` says they expired.
        let job = submit(
            sam,
            &example("primes.wasm"),
            std::slice::from_ref(&input),
            &[],
        );
        let done = wait_job(sam, &job, "completed", Duration::from_secs(60));
        let output = done["tasks"][0]["output"]["hash"]
            .as_str()
            .expect("a result")
            .to_owned();
        let out = cluster.dir.path().join("results");
        let fetched = sam.ok(&[
            "compute",
            "results",
            &job,
            "--out",
            out.to_str().expect("utf-8"),
        ]);
        assert!(fetched.contains("1 validated output(s)"), "{fetched}");
        let database = cluster.database.clone();
        wait_for("the results to expire", Duration::from_secs(90), || {
            !job_status(sam, &job)["results_dropped_at"].is_null()
        });
        assert_eq!(
            count_in_database(
                &database,
                &format!("SELECT COUNT(*) FROM blobs WHERE hash = '{output}' AND staged = 1")
            ),
            0,
            "the result left the hub's staging"
        );
        let expired = sam.cli(&[
            "compute",
            "results",
            &job,
            "--out",
            out.to_str().expect("utf-8"),
        ]);
        assert!(!expired.status.success());
        assert!(
            String::from_utf8_lossy(&expired.stderr).contains("have expired"),
            "{}",
            String::from_utf8_lossy(&expired.stderr)
        );
        wait_for(
            "the donors to stop the expired runs",
            Duration::from_secs(30),
            || {
                count_in_database(
                    &database,
                    "SELECT COUNT(*) FROM task_runs WHERE state = 'assigned'",
                ) == 0
            },
        );
    });
}
