//! The operator's commands against a running system.

use std::time::Duration;

use surplus_e2e::{make_file, wait_for};

use crate::on_each_database;

#[test]
fn start_asks_every_device_for_a_fresh_report_then_allocates() {
    on_each_database(|cluster| {
        let owner = cluster.add_agent("ada-pc", "ada@example.org", false, "64MiB");
        let online = cluster.add_agent("bob-desktop", "bob@example.org", true, "64MiB");
        // Bob's laptop is registered but its agent never runs.
        cluster.add_agent("bob-laptop", "bob@example.org", true, "64MiB");
        cluster.agent(online).start();
        cluster.agent(online).wait_connected_after(0);

        // Bob pauses his desktop, so Ada's blob finds no holder and waits.
        cluster.agents[online].ok(&["pause"]);
        wait_for("the hub to see the pause", Duration::from_secs(30), || {
            let devices = cluster.hub.admin_json(&["devices"]);
            devices.as_array().is_some_and(|d| {
                d.iter()
                    .any(|x| x["name"] == "bob-desktop" && x["spare"]["storage_reason"] == "paused")
            })
        });
        let (file, hash) = make_file(cluster.dir.path(), "waiting", 20_000, 5);
        let placed = cluster.agents[owner].json(&["blob", "put", file.to_str().expect("utf-8")]);
        assert_eq!(
            placed["holders"],
            serde_json::json!([]),
            "nothing spare while paused"
        );
        cluster.agents[online].ok(&["resume"]);

        // The operator starts the service for Bob: every device is asked for a fresh report.

        let started = cluster
            .hub
            .admin_json(&["start", "bob@example.org", "--wait", "10"]);
        assert_eq!(started["subscriber"], "bob@example.org");
        let devices = started["devices"].as_array().expect("devices");
        let reached =
            |name: &str| devices.iter().find(|d| d["name"] == name).expect(name)["reached"].clone();
        assert_eq!(reached("bob-desktop"), true);
        assert_eq!(
            reached("bob-laptop"),
            false,
            "an offline device is not reached, and start still succeeds"
        );
        // Either start or the hub's own scheduler (woken by the fresh report) allocated it.
        let placement = cluster.agents[owner].wait_placement(&hash, |p| {
            p["holders"].as_array().is_some_and(|h| !h.is_empty())
        });
        let holder = cluster.agents[online].device_id();
        assert_eq!(placement["holders"][0]["device_id"], holder.as_str());

        // The text form names the devices reached and not.
        let text = cluster
            .hub
            .admin(&["start", "bob@example.org", "--wait", "2"]);
        assert!(text.status.success());
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("bob-desktop: reached"), "{text}");
        assert!(text.contains("bob-laptop: not reached"), "{text}");
    });
}

#[test]
fn a_suspended_subscriber_is_refused_with_the_reason() {
    on_each_database(|cluster| {
        let owner = cluster.add_agent("ada-pc", "ada@example.org", false, "64MiB");
        let suspended = cluster.hub.admin_json(&["suspend", "ada@example.org"]);
        assert_eq!(suspended["status"], "suspended");
        let subscribers = cluster.hub.admin_json(&["subscribers"]);
        assert_eq!(subscribers[0]["status"], "suspended");

        let (file, _) = make_file(cluster.dir.path(), "refused", 1_000, 2);
        let refused = cluster.agents[owner].cli(&["blob", "put", file.to_str().expect("utf-8")]);
        assert!(!refused.status.success());
        let message = String::from_utf8_lossy(&refused.stderr);
        assert!(
            message.contains("suspended"),
            "the refusal says why: {message}"
        );

        let start = cluster.hub.admin(&["start", "ada@example.org"]);
        assert_eq!(start.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&start.stderr).contains("suspended"));
        let unknown = cluster.hub.admin(&["suspend", "nobody@example.org"]);
        assert_eq!(unknown.status.code(), Some(2));

        cluster.hub.admin_json(&["resume", "ada@example.org"]);
        assert!(
            cluster.agents[owner]
                .cli(&["blob", "put", file.to_str().expect("utf-8")])
                .status
                .success()
        );

        // Cancelling refuses new allocations the same way, with its own reason.
        let cancelled = cluster.hub.admin_json(&["cancel", "ada@example.org"]);
        assert_eq!(cancelled["status"], "cancelled");
        let refused = cluster.agents[owner].cli(&["blob", "put", file.to_str().expect("utf-8")]);
        assert!(String::from_utf8_lossy(&refused.stderr).contains("cancelled"));
        let family = cluster
            .hub
            .admin_json(&["plan", "ada@example.org", "family"]);
        assert_eq!(family["plan"], "family");
        assert_eq!(
            cluster
                .hub
                .admin(&["plan", "ada@example.org", "gold"])
                .status
                .code(),
            Some(2)
        );
    });
}

/// The restore of a hub's database as the README tells an operator to do it, into `hub`'s
/// database (SQLite: the file copied back) or a new one (PostgreSQL: `pg_restore`). Returns the
/// database the hub now serves from.
fn restore_database(hub: &mut surplus_e2e::Hub, copy: &std::path::Path) -> String {
    hub.stop();
    let database = hub.database().to_owned();
    let restored = if let Some(path) = database.strip_prefix("sqlite://") {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
        std::fs::copy(copy, path).expect("copy the backup back");
        database
    } else {
        let base = std::env::var("SURPLUS_TEST_POSTGRES").expect("the test PostgreSQL");
        let fresh = surplus_e2e::fresh_postgres(&base);
        let pg_restore = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's programs")
            .flatten()
            .map(|entry| entry.path().join("bin/pg_restore"))
            .filter(|path| path.is_file())
            .max()
            .expect("pg_restore");
        let status = std::process::Command::new(pg_restore)
            .args(["--no-owner", "--exit-on-error", "--dbname", &fresh])
            .arg(copy)
            .status()
            .expect("run pg_restore");
        assert!(status.success(), "pg_restore failed");
        fresh
    };
    hub.start_on(&restored);
    restored
}

/// The hub's database is backed up while it serves, lost, and restored: devices carry on with
/// their credentials, the shard map, ledger and escrowed key are as they were, and what was kept
/// after the copy (which the restored hub does not know) is backed up again by the next run.
#[test]
fn a_hub_restored_from_its_backup_carries_on() {
    on_each_database(|cluster| {
        let ada = cluster.add_agent("ada-pc", "ada@example.org", false, "64MiB");
        let mut holders = Vec::new();
        for name in ["bob-pc", "carol-pc"] {
            let index = cluster.add_agent(name, &format!("{name}@example.org"), true, "64MiB");
            cluster.agent(index).start();
            cluster.agent(index).wait_connected_after(0);
            holders.push(index);
        }
        let first = cluster.dir.path().join("documents");
        let second = cluster.dir.path().join("music");
        for folder in [&first, &second] {
            std::fs::create_dir_all(folder).expect("a folder");
        }
        let (_, letter) = make_file(&first, "letter.txt", 200_000, 1);
        let (_, song) = make_file(&second, "song.flac", 300_000, 2);
        let agent = cluster.agent(ada);
        agent.set_env("SURPLUS_PASSPHRASE", "a long recovery passphrase");
        agent.set_env("SURPLUS_TEST_CHEAP_KEY_WRAP", "1");
        agent.ok(&["backup", "add", first.to_str().expect("utf-8")]);
        agent.ok(&["backup", "now"]);
        let protected = |agent: &surplus_e2e::Agent, count: usize| {
            let snapshots = agent.json(&["snapshots"]);
            let all = snapshots.as_array().expect("snapshots");
            (all.len() == count && all.iter().all(|s| s["state"] == "protected"))
                .then(|| snapshots.clone())
        };
        let mut kept = serde_json::Value::Null;
        wait_for(
            "the first snapshot to be protected",
            Duration::from_secs(60),
            || {
                protected(&cluster.agents[ada], 1).is_some_and(|s| {
                    kept = s;
                    true
                })
            },
        );
        let first_id = kept[0]["id"].as_str().expect("id").to_owned();

        // The copy, taken while the hub serves; never over an existing file.
        let copy = cluster.dir.path().join("hub-database.backup");
        let copy_arg = copy.to_str().expect("utf-8");
        let taken = cluster.hub.admin(&["backup-db", copy_arg]);
        assert!(
            taken.status.success(),
            "{}",
            String::from_utf8_lossy(&taken.stderr)
        );
        let again = cluster.hub.admin(&["backup-db", copy_arg]);
        assert_eq!(again.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&copy)
                .expect("the copy")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the copy is its owner's alone");
        }
        let ledger = cluster.hub.admin_json(&["ledger"]);

        // After the copy: a second folder, a second snapshot, allocations the copy lacks.
        let agent = cluster.agent(ada);
        agent.ok(&["backup", "add", second.to_str().expect("utf-8")]);
        agent.ok(&["backup", "now"]);
        wait_for(
            "the second snapshot to be protected",
            Duration::from_secs(60),
            || protected(&cluster.agents[ada], 2).is_some(),
        );

        // The database is lost, and restored from the copy, an hour later: holders leave alone
        // a blob stored moments before they ask the hub what to keep (it may not be on the
        // list yet).
        for &index in &holders {
            let vault = cluster.agents[index].data_dir.join(".vault/blobs");
            for blob in surplus_e2e::files_under(&vault) {
                std::fs::File::options()
                    .write(true)
                    .open(&blob)
                    .and_then(|file| {
                        file.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
                    })
                    .expect("age a held blob");
            }
        }
        let restarted = surplus_hub::now_ms();
        cluster.database = restore_database(&mut cluster.hub, &copy);
        for &index in &holders {
            cluster.agents[index].wait_connected_after(restarted);
        }
        assert_eq!(
            cluster.hub.admin_json(&["ledger"]),
            ledger,
            "the ledger as it was"
        );
        let snapshots = cluster.agents[ada].json(&["snapshots"]);
        assert_eq!(snapshots.as_array().map(Vec::len), Some(1), "{snapshots}");
        assert_eq!(snapshots[0]["id"], first_id.as_str());

        // The shards placed after the copy, the restored hub does not know: back in touch, each
        // holder keeps exactly what the hub's ledger has it hold, and moves the rest to its
        // vault's trash (kept a week, and given back if the hub asks after all).
        let mut trashed = 0;
        for &index in &holders {
            let holder = &cluster.agents[index];
            let device = holder.device_id();
            let mut known: Vec<String> = surplus_e2e::rows_in_database(
                &cluster.database,
                &format!(
                    "SELECT DISTINCT blob_hash FROM allocations WHERE device_id = '{device}' \
                     AND kind = 'storage' AND state IN ('pending', 'active', 'evacuating', 'lost')"
                ),
            )
            .into_iter()
            .map(|row| row[0].clone())
            .collect();
            known.sort();
            wait_for(
                &format!("{} to hold just what the restored hub knows", holder.name),
                Duration::from_secs(30),
                || {
                    let held: Vec<String> = holder
                        .vault_blobs()
                        .into_iter()
                        .map(|(hash, _)| hash)
                        .collect();
                    held == known
                },
            );
            trashed += surplus_e2e::files_under(&holder.data_dir.join(".vault/trash")).len();
        }
        assert!(
            trashed > 0,
            "the shards placed after the copy went to the trash"
        );

        // A new laptop restores the first snapshot: the shard map and the escrowed key held.
        let laptop = cluster.add_agent("ada-laptop", "ada@example.org", false, "64MiB");
        let target = cluster.dir.path().join("restored");
        let device = cluster.agent(laptop);
        device.set_env("SURPLUS_PASSPHRASE", "a long recovery passphrase");
        device.ok(&[
            "restore",
            &first_id,
            "--target",
            target.to_str().expect("utf-8"),
        ]);
        let restored = std::fs::read(target.join("documents/letter.txt")).expect("restored");
        assert_eq!(blake3::hash(&restored).to_hex().to_string(), letter);

        // What the copy did not know is kept again by the next backup.
        cluster.agent(ada).ok(&["backup", "now"]);
        let mut latest = serde_json::Value::Null;
        wait_for(
            "a new snapshot to be protected",
            Duration::from_secs(60),
            || {
                protected(&cluster.agents[ada], 2).is_some_and(|s| {
                    latest = s;
                    true
                })
            },
        );
        let newest = latest
            .as_array()
            .expect("snapshots")
            .iter()
            .find(|s| s["id"] != first_id.as_str())
            .and_then(|s| s["id"].as_str())
            .expect("the new snapshot")
            .to_owned();
        let again = cluster.dir.path().join("restored-again");
        let device = cluster.agent(laptop);
        device.ok(&[
            "restore",
            &newest,
            "--target",
            again.to_str().expect("utf-8"),
        ]);
        let restored = std::fs::read(again.join("music/song.flac")).expect("restored");
        assert_eq!(blake3::hash(&restored).to_hex().to_string(), song);
    });
}
