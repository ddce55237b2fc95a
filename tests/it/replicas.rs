//! A hub that scales out: three `surplus-hub serve` replicas on one PostgreSQL and one S3 bucket,
//! behind HAProxy terminating TLS. Devices reach whichever replica the balancer picks, request by
//! request. One replica is killed (SIGKILL) while a backup uploads and a compute job is submitted,
//! and started again; the backup restores bit-exact, the job's results are right, and the ledger
//! shows every copy placed once, every task slot handed out once, and exactly what the vaults hold.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::compute::primes_up_to;
use surplus_e2e::{Agent, Cluster, count_in_database, fresh_postgres, rows_in_database, wait_for};

const AWAY: &str = r#"{"user": {"session": "none"}, "cores": 4, "busy_percent": 0}"#;

/// A donor of storage and compute (four cores, half of them lent: two task slots), started.
fn donor(cluster: &mut Cluster, name: &str) -> usize {
    let index = cluster.add_agent(name, &format!("{name}@example.org"), true, "64MiB");
    let probe = cluster.dir.path().join(format!("{name}-probe.json"));
    std::fs::write(&probe, AWAY).expect("write the probe override");
    let agent = cluster.agent(index);
    agent.set_env("SURPLUS_PROBE_OVERRIDE", probe.to_str().expect("utf-8"));
    agent.ok(&["consent", "--compute", "on"]);
    agent.ok(&["limits", "--cores", "50%"]);
    agent.start();
    index
}

/// A folder of a few incompressible files, a few MiB in all: several packs.
fn make_folder(root: &Path) -> PathBuf {
    let folder = root.join("documents");
    std::fs::create_dir_all(folder.join("letters")).expect("dirs");
    for (at, size) in [3_000_000, 1_500_000, 700_000, 12_000]
        .into_iter()
        .enumerate()
    {
        surplus_e2e::make_file(&folder, &format!("file-{at}.bin"), size, at as u64 + 1);
    }
    std::fs::write(folder.join("letters/dear.txt"), b"dear ada, ".repeat(500)).expect("write");
    folder
}

/// The same files with the same bytes under both folders.
fn assert_same_files(expected: &Path, actual: &Path) {
    let relative = |root: &Path| -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = surplus_e2e::files_under(root)
            .into_iter()
            .map(|path| path.strip_prefix(root).expect("under root").to_owned())
            .collect();
        files.sort();
        files
    };
    let files = relative(expected);
    assert_eq!(files, relative(actual), "the same files");
    for file in files {
        assert!(
            std::fs::read(expected.join(&file)).expect("read")
                == std::fs::read(actual.join(&file)).expect("read"),
            "{} differs",
            file.display()
        );
    }
}

/// The bytes of the blobs in a device's vault.
fn vault_bytes(agent: &Agent) -> i64 {
    agent
        .vault_blobs()
        .iter()
        .map(|(_, bytes)| bytes.len() as i64)
        .sum()
}

#[test]
fn three_replicas_behind_a_balancer_share_the_work_and_survive_losing_one() {
    let Some(base) = std::env::var("SURPLUS_TEST_POSTGRES")
        .ok()
        .filter(|base| !base.is_empty())
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs the replicated hub on PostgreSQL: set SURPLUS_TEST_POSTGRES (scripts/test does)"
        );
        eprintln!("replicas need PostgreSQL: set SURPLUS_TEST_POSTGRES; not run");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let database = fresh_postgres(&base);
    let mut cluster = Cluster::replicated(dir, database, 3);
    let donors: Vec<usize> = ["bob-pc", "carol-pc", "dan-pc"]
        .into_iter()
        .map(|name| donor(&mut cluster, name))
        .collect();
    for &index in &donors {
        cluster.agent(index).wait_connected_after(0);
    }
    // The balancer spreads every device's requests over the replicas.
    wait_for(
        "every replica to record heartbeats",
        Duration::from_secs(30),
        || {
            cluster
                .hubs()
                .all(|hub| hub.metric("surplus_hub_heartbeats_total") > 0.0)
        },
    );

    let ada = cluster.add_agent("ada-pc", "ada@example.org", false, "64MiB");
    let source = make_folder(&cluster.dir.path().join("ada-files"));
    let agent = cluster.agent(ada);
    agent.set_env("SURPLUS_PASSPHRASE", "a long recovery passphrase");
    agent.set_env("SURPLUS_TEST_CHEAP_KEY_WRAP", "1");
    agent.ok(&["backup", "add", source.to_str().expect("utf-8")]);
    let inputs_dir = cluster.dir.path().join("inputs");
    std::fs::create_dir_all(&inputs_dir).expect("inputs");
    let inputs: Vec<PathBuf> = (1..=6)
        .map(|n| {
            let path = inputs_dir.join(format!("range-{n}.txt"));
            std::fs::write(&path, format!("1 {}\n", n * 4000)).expect("input");
            path
        })
        .collect();
    let primes = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/compute/primes.wasm");

    // A backup uploads; one replica dies under it, a job is submitted while it is down, and it
    // comes back.
    let staging = cluster.hub.staging_dir().to_owned();
    let (agents, replicas) = (&cluster.agents, &mut cluster.replicas);
    let (backup, job) = std::thread::scope(|scope| {
        let backup = scope.spawn(|| agents[ada].cli(&["backup", "now"]));
        wait_for(
            "the backup to start uploading",
            Duration::from_secs(60),
            || !surplus_e2e::files_under(&staging).is_empty() || backup.is_finished(),
        );
        replicas[0].kill();
        let mut args = vec!["compute", "submit", primes.to_str().expect("utf-8")];
        for input in &inputs {
            args.extend(["--input", input.to_str().expect("utf-8")]);
        }
        let submitted = agents[ada].json(&args);
        replicas[0].restart();
        (backup.join().expect("the backup thread"), submitted)
    });
    assert!(
        backup.status.success(),
        "the backup survives a replica's death: {}{}",
        String::from_utf8_lossy(&backup.stdout),
        String::from_utf8_lossy(&backup.stderr)
    );
    let job = job["job"].as_str().expect("a job id").to_owned();
    wait_for(
        "the restarted replica to take requests again",
        Duration::from_secs(30),
        || cluster.replicas[0].metric("surplus_hub_heartbeats_total") > 0.0,
    );

    wait_for(
        "the snapshot to be protected",
        Duration::from_secs(90),
        || cluster.agents[ada].json(&["snapshots"])[0]["state"] == "protected",
    );
    let mut status = serde_json::Value::Null;
    wait_for("the job to complete", Duration::from_secs(180), || {
        status = cluster.agents[ada].json(&["compute", "status", &job]);
        status["state"] == "completed"
    });

    // Nothing acknowledged was lost: the job's results are right, and the folder comes back
    // bit-exact on a new device.
    let out = cluster.dir.path().join("results");
    cluster.agents[ada].ok(&[
        "compute",
        "results",
        &job,
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    for n in 1..=6 {
        let text = std::fs::read_to_string(out.join(format!("range-{n}.txt.out")))
            .expect("a result per input");
        let expected = format!("count {}", primes_up_to(n * 4000));
        assert!(
            text.lines().any(|line| line == expected),
            "range {n}: {text}"
        );
    }
    let laptop = cluster.add_agent("ada-laptop", "ada@example.org", false, "64MiB");
    let target = cluster.dir.path().join("restored");
    let new_device = cluster.agent(laptop);
    new_device.set_env("SURPLUS_PASSPHRASE", "a long recovery passphrase");
    new_device.ok(&[
        "restore",
        "latest",
        "--target",
        target.to_str().expect("utf-8"),
    ]);
    assert_same_files(&source, &target.join("documents"));

    // No copy placed twice: no blob has more live copies than its placement asks for.
    let database = cluster.database.clone();
    let overfull = count_in_database(
        &database,
        "SELECT COUNT(*) FROM placements p WHERE p.copies < (SELECT COUNT(*) FROM allocations a \
         WHERE a.blob_hash = p.hash AND a.subscriber_id = p.subscriber_id \
         AND a.kind = 'storage' AND a.state IN ('pending', 'active', 'evacuating'))",
    );
    assert_eq!(overfull, 0, "no blob is placed more often than asked");
    // No task slot handed out twice: each task ran exactly as often as its quorum, each run on
    // another device, all valid. A task's slot given twice would show as a third run, cancelled;
    // a device's slot given twice, as a run its agent refused (it admits no more tasks than its
    // user lends cores for), which would not be valid.
    let runs = rows_in_database(
        &database,
        "SELECT r.task_id, r.device_id, r.state, CAST(t.quorum AS TEXT) \
         FROM task_runs r JOIN tasks t ON t.id = r.task_id",
    );
    let mut by_task: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for run in &runs {
        assert_eq!(
            run[2], "valid",
            "every run of an honest job is valid: {run:?}"
        );
        by_task.entry(&run[0]).or_default().push(&run[1]);
    }
    assert_eq!(by_task.len(), 6, "six tasks ran");
    for (task, devices) in &by_task {
        let quorum: usize = runs
            .iter()
            .find(|run| run[0] == *task)
            .and_then(|run| run[3].parse().ok())
            .expect("the task's quorum");
        let mut distinct = devices.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            (devices.len(), distinct.len()),
            (quorum, quorum),
            "task {task} ran once per slot of its quorum, on as many devices"
        );
    }
    // The ledger matches the vaults: what each holder is recorded to keep is what it keeps.
    for &index in &donors {
        let holder = &cluster.agents[index];
        let device = holder.device_id();
        let recorded = format!(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM allocations WHERE device_id = '{device}' \
             AND kind = 'storage' AND state IN ('active', 'evacuating')"
        );
        wait_for(
            &format!("{}'s vault to match the ledger", holder.name),
            Duration::from_secs(30),
            || count_in_database(&database, &recorded) == vault_bytes(holder),
        );
    }
    assert!(
        count_in_database(
            &database,
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM allocations WHERE kind = 'storage' \
             AND state = 'active'"
        ) > 5_000_000,
        "the backup is held by the donors"
    );
}

#[test]
fn a_second_hub_on_one_sqlite_file_is_refused() {
    let cluster = Cluster::on_sqlite();
    let second = std::process::Command::new(surplus_e2e::binary("surplus-hub"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &cluster.database,
        ])
        .arg("--staging")
        .arg(cluster.dir.path().join("staging"))
        .env("SURPLUS_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run surplus-hub");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(
        stderr.contains("another hub already serves the SQLite database")
            && stderr.contains("PostgreSQL"),
        "{stderr}"
    );
    // The first hub serves on.
    assert!(cluster.hub.get("/healthz").is_some());
}
