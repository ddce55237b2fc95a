//! The hub is untrusted on a device. A real agent is driven by a stream of hostile instructions,
//! queued through the hub's own store as a compromised hub would queue them: names and hashes
//! that climb out of the data directory, absolute paths, separators, NUL, and the rest. Not one
//! byte is written outside the agent's data directory, nothing outside it is read back to the
//! hub, and a task (the `explore` example, which tries to read everything) sees its own input
//! and nothing else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use surplus_e2e::{Cluster, execute_in_database, files_under, run_instruction, wait_for};
use surplus_protocol::{
    BlobRef, FailureCode, InstructionKind, InstructionResult, JobInput, TaskLimits,
};

use crate::on_each_database;

const AWAY: &str = r#"{"user": {"session": "none"}, "cores": 4, "busy_percent": 0}"#;

/// A private key that no task and no hub may ever see, and the file a hub would like to
/// overwrite.
const PRIVATE_KEY: &[u8] = b"-----BEGIN OPENSSH PRIVATE KEY----- surplus-test-marker-7f3a";
const AUTHORIZED_KEYS: &[u8] = b"ssh-ed25519 AAAAC3Nza the-owner@home\n";

fn module(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/compute")
        .join(name)
}

fn blob_ref(bytes: &[u8]) -> BlobRef {
    BlobRef {
        hash: blake3::hash(bytes).to_hex().to_string(),
        size: bytes.len() as u64,
    }
}

/// Every file under `dir` but those in `skip`, with its content: what a hostile hub must leave
/// exactly as it was.
fn files_and_contents(dir: &Path, skip: &[&Path]) -> BTreeMap<PathBuf, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .filter(|path| !skip.iter().any(|s| path.starts_with(s)))
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap_or_default();
            (path, bytes)
        })
        .collect()
}

/// A home folder beside the agent's data directory, with an SSH key pair in it.
fn make_home(root: &Path) -> PathBuf {
    let ssh = root.join("home").join(".ssh");
    std::fs::create_dir_all(&ssh).expect("home");
    std::fs::write(ssh.join("id_ed25519"), PRIVATE_KEY).expect("key");
    std::fs::write(ssh.join("authorized_keys"), AUTHORIZED_KEYS).expect("authorized_keys");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let private = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(ssh.join("id_ed25519"), private).expect("chmod");
    }
    root.join("home")
}

/// A donor that lends both storage and compute, on a machine nobody sits at.
fn donor(cluster: &mut Cluster) -> usize {
    let index = cluster.add_agent("don-pc", "don@example.org", true, "64MiB");
    let probe = cluster.dir.path().join("don-probe.json");
    std::fs::write(&probe, AWAY).expect("probe");
    let agent = cluster.agent(index);
    agent.set_env("SURPLUS_PROBE_OVERRIDE", probe.to_str().expect("utf-8"));
    agent.ok(&["consent", "--compute", "on"]);
    agent.ok(&["limits", "--cores", "50%"]);
    agent.start();
    index
}

#[test]
fn a_hostile_hub_cannot_write_or_read_outside_the_agents_data_directory() {
    on_each_database(|cluster| {
        let root = cluster.dir.path().to_owned();
        let home = make_home(&root);
        let submitter = cluster.add_agent("sam-pc", "sam@example.org", false, "1MiB");
        let donor = donor(cluster);
        cluster.agent(donor).wait_connected_after(0);

        // An honest job first: the explore module lists and reads everything it can reach, and
        // reaches its own input only.
        let input_path = root.join("seen.txt");
        let input = b"the task's own input\n".to_vec();
        std::fs::write(&input_path, &input).expect("input");
        let explore = module("explore.wasm");
        let submitted = cluster.agents[submitter].json(&[
            "compute",
            "submit",
            explore.to_str().expect("utf-8"),
            "--input",
            input_path.to_str().expect("utf-8"),
            "--replicas",
            "1",
            "--timeout",
            "60s",
        ]);
        let job = submitted["job"].as_str().expect("job").to_owned();
        wait_for(
            "the explore job to complete",
            Duration::from_secs(120),
            || cluster.agents[submitter].json(&["compute", "status", &job])["state"] == "completed",
        );
        let results = root.join("results");
        cluster.agents[submitter].ok(&[
            "compute",
            "results",
            &job,
            "--out",
            results.to_str().expect("utf-8"),
        ]);
        let seen = std::fs::read_to_string(results.join("seen.txt.out")).expect("the output");
        let reached: Vec<&str> = seen
            .lines()
            .filter(|line| !line.starts_with("denied "))
            .collect();
        assert_eq!(
            reached.len(),
            2,
            "a task reached more than its input:\n{seen}"
        );
        assert_eq!(reached[0], "dir /input");
        assert!(
            reached[1].starts_with(&format!("file /input/seen.txt {} ", input.len())),
            "{seen}"
        );

        // Now the hub turns hostile. It serves the module and the input to the donor (staged
        // as the donor's own blobs, which no holder takes: the hub keeps them), and every
        // instruction names them, or a path, in a way that would leave the data directory.
        let module_ref = blob_ref(&std::fs::read(&explore).expect("module"));
        let input_ref = blob_ref(&input);
        for file in [&explore, &input_path] {
            cluster.agents[donor].ok(&["blob", "put", file.to_str().expect("utf-8")]);
        }
        let data_dir = cluster.agents[donor].data_dir.clone();
        let device = uuid::Uuid::parse_str(&cluster.agents[donor].device_id()).expect("uuid");
        let keys = home.join(".ssh").join("authorized_keys");
        // From <data-dir>/compute/runs/<run>/input up to the cluster's folder.
        let climb = "../../../../../home/.ssh";
        let hostile_names = [
            format!("{climb}/authorized_keys"),
            keys.to_str().expect("utf-8").to_owned(),
            "..".to_owned(),
            ".".to_owned(),
            String::new(),
            "a/b".to_owned(),
            "a\\b".to_owned(),
            "nul\0byte".to_owned(),
            "x".repeat(5000),
        ];
        let limits = TaskLimits {
            timeout_ms: 60_000,
            memory_bytes: 64 << 20,
            output_bytes: 1 << 20,
        };
        let run_task = |module: BlobRef, input: JobInput| InstructionKind::RunTask {
            run: uuid::Uuid::new_v4(),
            module,
            input,
            args: vec![format!("{climb}/id_ed25519")],
            seed: 7,
            limits,
            floats: surplus_protocol::Floats::Native,
        };
        let mut hostile: Vec<InstructionKind> = hostile_names
            .iter()
            .map(|name| {
                run_task(
                    module_ref.clone(),
                    JobInput {
                        name: name.clone(),
                        hash: input_ref.hash.clone(),
                        size: input_ref.size,
                    },
                )
            })
            .collect();
        // Limits past the device's own ceilings.
        for limits in [
            TaskLimits {
                memory_bytes: 8 << 30,
                ..limits
            },
            TaskLimits {
                timeout_ms: 7 * 24 * 3600 * 1000,
                ..limits
            },
            TaskLimits {
                output_bytes: 1 << 30,
                ..limits
            },
        ] {
            hostile.push(InstructionKind::RunTask {
                run: uuid::Uuid::new_v4(),
                module: module_ref.clone(),
                input: JobInput {
                    name: "input.txt".into(),
                    hash: input_ref.hash.clone(),
                    size: input_ref.size,
                },
                args: vec![],
                seed: 7,
                limits,
                floats: surplus_protocol::Floats::Portable,
            });
        }
        let bad_hashes = [
            format!("{climb}/id_ed25519"),
            format!("{climb}/authorized_keys"),
            keys.to_str().expect("utf-8").to_owned(),
            "..".to_owned(),
            "ab/../../../../home".to_owned(),
        ];
        for hash in &bad_hashes {
            hostile.push(run_task(
                BlobRef {
                    hash: hash.clone(),
                    size: module_ref.size,
                },
                JobInput {
                    name: "input.txt".into(),
                    hash: input_ref.hash.clone(),
                    size: input_ref.size,
                },
            ));
            hostile.push(run_task(
                module_ref.clone(),
                JobInput {
                    name: "input.txt".into(),
                    hash: hash.clone(),
                    size: input_ref.size,
                },
            ));
            hostile.push(InstructionKind::StoreBlob {
                blob: BlobRef {
                    hash: hash.clone(),
                    size: 10,
                },
                allocation_id: uuid::Uuid::new_v4(),
            });
            hostile.push(InstructionKind::DeleteBlob {
                hash: hash.clone(),
                allocation_id: None,
            });
            hostile.push(InstructionKind::VerifyBlob {
                hash: hash.clone(),
                offset: 0,
                length: 1024,
            });
            hostile.push(InstructionKind::UploadBlob { hash: hash.clone() });
        }

        let skip = [
            data_dir.as_path(),
            &root.join("staging"),
            &root.join("hub.db"),
            &root.join("hub.db-wal"),
            &root.join("hub.db-shm"),
            &root.join("hub.log"),
            &root.join("don-pc.log"),
            &root.join("sam-pc.log"),
            &root.join("results-again"),
        ];
        let before = files_and_contents(&root, &skip);
        let results: Vec<(InstructionKind, InstructionResult)> = hostile
            .into_iter()
            .map(|kind| {
                let result = run_instruction(&cluster.database, device, None, kind.clone());
                (kind, result)
            })
            .collect();
        // The hub also lies to the submitter about its outputs' names: `compute results` writes
        // inside its folder only, and says what it refused.
        let renamed = execute_in_database(
            &cluster.database,
            "UPDATE tasks SET input_name = '../home/.ssh/authorized_keys'",
        );
        assert_eq!(renamed, 1);
        let lied_to = root.join("results-again");
        let fetched = cluster.agents[submitter].cli(&[
            "compute",
            "results",
            &job,
            "--out",
            lied_to.to_str().expect("utf-8"),
        ]);
        assert!(
            !fetched.status.success(),
            "a name that climbs out was written"
        );
        let message = String::from_utf8_lossy(&fetched.stderr);
        assert!(
            message.contains("not a file name") || message.contains("refused"),
            "{message}"
        );
        assert!(files_under(&lied_to).is_empty());
        let after = files_and_contents(&root, &skip);
        assert_eq!(
            before.keys().collect::<Vec<_>>(),
            after.keys().collect::<Vec<_>>(),
            "files appeared or went outside the data directory"
        );
        for (path, bytes) in &before {
            assert_eq!(
                Some(bytes),
                after.get(path),
                "{} was changed by a hostile hub",
                path.display()
            );
        }
        for (kind, result) in &results {
            assert!(
                matches!(
                    result,
                    InstructionResult::Failed {
                        code: FailureCode::Refused,
                        ..
                    }
                ),
                "{} was not refused: {kind:?} gave {result:?}",
                kind.name()
            );
        }
        // Nothing private reached the hub either.
        for path in files_under(cluster.hub.staging_dir()) {
            let bytes = std::fs::read(&path).unwrap_or_default();
            assert!(
                !bytes
                    .windows(PRIVATE_KEY.len())
                    .any(|window| window == PRIVATE_KEY),
                "the private key was uploaded to the hub as {}",
                path.display()
            );
        }
        assert!(
            cluster.agents[donor].is_running(),
            "the agent stopped under hostile instructions"
        );
    });
}
