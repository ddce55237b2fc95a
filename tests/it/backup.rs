//! Backup end to end: a subscriber's folder, encrypted on their device, erasure-coded onto other
//! subscribers' vaults through the hub, restored bit-exact on a new device after a holder is gone.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::Duration;

use surplus_e2e::{count_in_database, wait_for};

use crate::on_each_database;

const MARKER: &[u8] = b"SURPLUS-PLAINTEXT-MARKER-4242";

/// Ada, who backs up; Bob and Carol, who donate `quota` of storage, their agents running.
fn ada_bob_and_carol(cluster: &mut surplus_e2e::Cluster, quota: &str) -> (usize, usize, usize) {
    let ada = cluster.add_agent("ada-pc", "ada@example.org", false, "64MiB");
    let bob = cluster.add_agent("bob-pc", "bob@example.org", true, quota);
    let carol = cluster.add_agent("carol-pc", "carol@example.org", true, quota);
    for index in [bob, carol] {
        cluster.agent(index).start();
        cluster.agent(index).wait_connected_after(0);
    }
    (ada, bob, carol)
}

/// The recovery passphrase for a device's backup commands, and a cheap key wrapping for tests.
fn ready_to_back_up(agent: &mut surplus_e2e::Agent) {
    agent.set_env("SURPLUS_PASSPHRASE", "a long recovery passphrase");
    agent.set_env("SURPLUS_TEST_CHEAP_KEY_WRAP", "1");
}

fn make_folder(root: &Path) -> std::path::PathBuf {
    let folder = root.join("photos");
    std::fs::create_dir_all(folder.join("2026/summer")).expect("dirs");
    std::fs::write(folder.join("empty"), b"").expect("write");
    std::fs::write(
        folder.join("notes.txt"),
        [MARKER, &b" holiday notes".repeat(2000)].concat(),
    )
    .expect("write");
    let mut large: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    large[777..777 + MARKER.len()].copy_from_slice(MARKER);
    std::fs::write(folder.join("2026/summer/beach.raw"), &large).expect("write");
    std::fs::write(
        folder.join(std::ffi::OsStr::from_bytes(b"na\xefve.txt")),
        MARKER,
    )
    .expect("write");
    std::fs::set_permissions(
        folder.join("notes.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .expect("mode");
    symlink("2026/summer/beach.raw", folder.join("latest")).expect("symlink");
    folder
}

/// Flips a bit in every KiB of the largest shard a holder keeps, as a failing disk might;
/// returns the shard's name.
fn alter_largest_shard(holder: &surplus_e2e::Agent) -> String {
    let (hash, _) = holder
        .vault_blobs()
        .into_iter()
        .max_by_key(|(_, bytes)| bytes.len())
        .expect("the holder keeps a shard");
    let path = holder
        .data_dir
        .join(".vault/blobs")
        .join(&hash[..2])
        .join(&hash);
    let mut bytes = std::fs::read(&path).expect("shard");
    for byte in bytes.iter_mut().step_by(1024) {
        *byte ^= 0x01;
    }
    std::fs::write(&path, bytes).expect("alter");
    hash
}

fn assert_same(expected: &Path, actual: &Path) {
    let e = std::fs::symlink_metadata(expected).expect("expected");
    let a = std::fs::symlink_metadata(actual)
        .unwrap_or_else(|err| panic!("{}: {err}", actual.display()));
    if e.file_type().is_symlink() {
        assert_eq!(
            std::fs::read_link(expected).expect("link"),
            std::fs::read_link(actual).expect("link")
        );
        return;
    }
    assert_eq!(
        e.permissions().mode() & 0o7777,
        a.permissions().mode() & 0o7777,
        "{}",
        actual.display()
    );
    assert_eq!(
        e.modified().expect("mtime"),
        a.modified().expect("mtime"),
        "{}",
        actual.display()
    );
    if e.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(expected)
            .expect("dir")
            .map(|x| x.expect("e").file_name())
            .collect();
        names.sort();
        let mut got: Vec<_> = std::fs::read_dir(actual)
            .expect("dir")
            .map(|x| x.expect("e").file_name())
            .collect();
        got.sort();
        assert_eq!(names, got, "{}", actual.display());
        for name in names {
            assert_same(&expected.join(&name), &actual.join(&name));
        }
    } else {
        assert!(
            std::fs::read(expected).expect("read") == std::fs::read(actual).expect("read"),
            "{} differs",
            actual.display()
        );
    }
}

/// Every byte under `dir` (vaults, staging, the database): the marker must be nowhere.
fn assert_no_plaintext(dir: &Path) {
    // (An S3 prefix with nothing staged any more has no folder.)
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("entry").path();
        let meta = std::fs::symlink_metadata(&path).expect("meta");
        if meta.is_dir() {
            assert_no_plaintext(&path);
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).expect("read");
            assert!(
                !bytes.windows(MARKER.len()).any(|w| w == MARKER),
                "plaintext found in {}",
                path.display()
            );
        }
    }
}

#[test]
fn a_folder_is_backed_up_to_other_subscribers_and_restored_on_a_new_device() {
    on_each_database(|cluster| {
        let (ada, _bob, carol) = ada_bob_and_carol(cluster, "64MiB");
        let source = make_folder(&cluster.dir.path().join("ada-files"));
        let agent = cluster.agent(ada);
        ready_to_back_up(agent);
        agent.ok(&["backup", "add", source.to_str().expect("utf-8")]);
        let out = agent.ok(&["backup", "now"]);
        assert!(out.contains("snapshot"), "{out}");

        // Every shard reaches a holder: the snapshot becomes protected.
        let mut snapshots = serde_json::Value::Null;
        wait_for(
            "the snapshot to be protected",
            Duration::from_secs(60),
            || {
                snapshots = cluster.agents[ada].json(&["snapshots"]);
                snapshots[0]["state"] == "protected"
            },
        );
        assert_eq!(snapshots.as_array().map(Vec::len), Some(1));
        assert_eq!(snapshots[0]["files"], 4);

        // The snapshot's tree can be browsed.
        let listing = cluster.agents[ada].json(&["ls", "latest", "photos"]);
        let names: Vec<&str> = listing
            .as_array()
            .expect("entries")
            .iter()
            .filter_map(|e| e["name"].as_str())
            .collect();
        assert_eq!(
            names,
            ["2026", "empty", "latest", "na\u{fffd}ve.txt", "notes.txt"]
        );
        assert_eq!(listing[2]["kind"], "symlink");
        assert_eq!(listing[4]["mode"], "640");

        // No plaintext anywhere the system stored anything but Ada's own folder.
        for dir in ["bob-pc", "carol-pc"] {
            assert_no_plaintext(&cluster.dir.path().join(dir));
        }
        assert_no_plaintext(cluster.hub.staging_dir());
        if let Some(database) = cluster.database.strip_prefix("sqlite://") {
            for suffix in ["", "-wal"] {
                let path = format!("{database}{suffix}");
                if let Ok(bytes) = std::fs::read(&path) {
                    assert!(
                        !bytes.windows(MARKER.len()).any(|w| w == MARKER),
                        "plaintext in {path}"
                    );
                }
            }
        }

        // Ada's PC is gone, and so is one holder. A new laptop restores with login and passphrase.
        cluster.agent(carol).stop();
        let laptop = cluster.add_agent("ada-laptop", "ada@example.org", false, "64MiB");
        let target = cluster.dir.path().join("restored");
        let id = snapshots[0]["id"].as_str().expect("id").to_owned();
        let new_device = cluster.agent(laptop);
        new_device.set_env("SURPLUS_PASSPHRASE", "a long recovery passphrase");
        new_device.ok(&["restore", &id, "--target", target.to_str().expect("utf-8")]);
        assert_same(&source, &target.join("photos"));
        // The copies the holder sent back for the restore leave the hub's staging soon after.
        let staging = cluster.hub.staging_dir().to_owned();
        wait_for(
            "the copies staged for the restore to be dropped",
            Duration::from_secs(30),
            || surplus_e2e::files_under(&staging).is_empty(),
        );

        // A wrong passphrase opens nothing, and says so.
        let stranger = cluster.add_agent("ada-tablet", "ada@example.org", false, "64MiB");
        cluster
            .agent(stranger)
            .set_env("SURPLUS_PASSPHRASE", "not the passphrase");
        let refused = cluster.agents[stranger].cli(&[
            "restore",
            "latest",
            "--target",
            target.to_str().expect("utf-8"),
        ]);
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("passphrase"));

        // Back where it was, on the new laptop (the snapshot says where): a file changed since
        // is kept, the snapshot's copy put beside it; the unchanged ones are left alone.
        let notes = source.join("notes.txt");
        let original = std::fs::read(&notes).expect("notes");
        std::fs::write(&notes, b"changed since the backup").expect("edit");
        let out = cluster
            .agent(laptop)
            .ok(&["restore", &id, "--where-it-was"]);
        assert!(out.contains("where they were"), "{out}");
        assert!(
            out.contains("1 files had changed since the snapshot"),
            "{out}"
        );
        assert_eq!(
            std::fs::read(&notes).expect("read"),
            b"changed since the backup"
        );
        assert_eq!(
            std::fs::read(source.join("notes (restored).txt")).expect("read"),
            original
        );
        // Or replaced, when asked.
        cluster.agent(laptop).ok(&[
            "restore",
            &id,
            "--where-it-was",
            "--replace",
            "--path",
            "photos/notes.txt",
        ]);
        assert_eq!(std::fs::read(&notes).expect("read"), original);
    });
}

#[test]
fn backups_pause_and_resume_from_the_command_line() {
    on_each_database(|cluster| {
        let ada = cluster.add_agent("ada-pc", "ada@example.org", true, "64MiB");
        let missing = cluster.dir.path().join("not-there");
        let agent = cluster.agent(ada);
        let out = agent.ok(&["backup", "pause", "1h"]);
        assert!(out.starts_with("backups paused until "), "{out}");
        let status = agent.json(&["status"]);
        assert_eq!(status["backup_pause"]["paused"], "until");
        // Lending is not paused by it.
        assert_eq!(status["pause"]["paused"], "running");
        assert!(
            agent
                .ok(&["status"])
                .contains("backups:      paused until ")
        );
        assert_eq!(agent.ok(&["backup", "resume"]).trim(), "backups resumed");
        let status = agent.json(&["status"]);
        assert_eq!(status["backup_pause"]["paused"], "running");
        // A folder that is not there is refused when it is added, naming it.
        let refused = agent.cli(&["backup", "add", missing.to_str().expect("utf-8")]);
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("not-there"));
    });
}

#[test]
fn forgotten_snapshots_are_recoverable_for_the_grace_period_then_free_the_holders_space() {
    on_each_database(|cluster| {
        let (ada, bob, _carol) = ada_bob_and_carol(cluster, "128MiB");
        let folder = cluster.dir.path().join("ada-files/work");
        std::fs::create_dir_all(&folder).expect("dir");
        // Sorted first, so its chunks fill a pack of their own.
        let (_, big_hash) = surplus_e2e::make_file(&folder, "a-big.bin", 20_000_000, 77);
        std::fs::write(folder.join("z-small.txt"), b"kept by both snapshots").expect("write");
        let agent = cluster.agent(ada);
        ready_to_back_up(agent);
        agent.ok(&["backup", "add", folder.to_str().expect("utf-8")]);
        agent.ok(&["backup", "now"]);
        let protected = |count: usize| {
            move |snapshots: &serde_json::Value| {
                snapshots.as_array().is_some_and(|s| {
                    s.len() == count && s.iter().all(|x| x["state"] == "protected")
                })
            }
        };
        wait_for(
            "the first snapshot to be protected",
            Duration::from_secs(60),
            || protected(1)(&cluster.agents[ada].json(&["snapshots"])),
        );
        let bob_holds = |cluster: &surplus_e2e::Cluster| -> usize {
            cluster.agents[bob]
                .vault_blobs()
                .iter()
                .map(|(_, b)| b.len())
                .sum()
        };
        let held_before = bob_holds(cluster);
        let shards_before: Vec<String> = cluster.agents[bob]
            .vault_blobs()
            .into_iter()
            .map(|(hash, _)| hash)
            .collect();
        assert!(
            held_before > 16_000_000,
            "bob holds a copy of the big file's pack: {held_before}"
        );
        // The hub knows each shard's place in its pack, read from the shard's own header.
        let described = |sql: &str| surplus_e2e::count_in_database(&cluster.database, sql);
        assert!(
            described(
                "SELECT COUNT(*) FROM placements WHERE pack IS NOT NULL AND pack_data = 1 AND pack_parity = 1 AND shard_index IN (0, 1)"
            ) > 0
        );
        assert_eq!(
            described(
                "SELECT COUNT(*) FROM placements WHERE pack IS NOT NULL AND pack_data IS NULL"
            ),
            0
        );
        let first = cluster.agents[ada].json(&["snapshots"])[0]["id"]
            .as_str()
            .expect("id")
            .to_owned();

        std::fs::remove_file(folder.join("a-big.bin")).expect("remove");
        cluster.agents[ada].ok(&["backup", "now"]);
        let refused = cluster.agents[ada].cli(&["forget"]);
        assert!(
            !refused.status.success(),
            "forget without a rule keeps nothing and is refused"
        );
        let out = cluster.agents[ada].ok(&["forget", "--keep-last", "1"]);
        assert!(out.contains("1 snapshot(s) forgotten"), "{out}");
        assert!(out.contains("surplus unforget"), "{out}");

        // Within the grace period nothing is deleted: no holder is told to, and the snapshot
        // can be brought back and restored whole.
        let deletes = "SELECT COUNT(*) FROM instructions WHERE kind = 'delete_blob'";
        assert_eq!(
            surplus_e2e::count_in_database(&cluster.database, deletes),
            0
        );
        let shards_now: Vec<String> = cluster.agents[bob]
            .vault_blobs()
            .into_iter()
            .map(|(hash, _)| hash)
            .collect();
        assert!(
            shards_before.iter().all(|s| shards_now.contains(s)),
            "bob still holds every shard"
        );
        let kept = cluster.agents[ada].json(&["forgotten"]);
        assert_eq!(kept["objects"][0]["name"], first.as_str(), "{kept}");
        assert!(kept["shards"].as_u64().is_some_and(|n| n > 0), "{kept}");
        let listed = cluster.agents[ada].ok(&["forgotten"]);
        assert!(listed.contains(&first), "{listed}");
        let out = cluster.agents[ada].ok(&["unforget"]);
        assert!(out.starts_with("1 snapshot(s)"), "{out}");
        assert_eq!(
            cluster.agents[ada]
                .json(&["snapshots"])
                .as_array()
                .map(Vec::len),
            Some(2)
        );
        let target = cluster.dir.path().join("recovered");
        cluster.agents[ada].ok(&[
            "restore",
            &first,
            "--target",
            target.to_str().expect("utf-8"),
        ]);
        let big = std::fs::read(target.join("work/a-big.bin")).expect("restored");
        assert_eq!(blake3::hash(&big).to_hex().as_str(), big_hash);

        // Forgotten again, and the grace period passes (the rows are aged by 31 days): the hub
        // purges them on its own, and bob's space is freed.
        cluster.agents[ada].ok(&["forget", "--keep-last", "1"]);
        const MONTH_MS: i64 = 31 * 24 * 3600 * 1000;
        let aged = surplus_e2e::execute_in_database(
            &cluster.database,
            &format!(
                "UPDATE placements SET dropped_at = dropped_at - {MONTH_MS} WHERE dropped_at IS NOT NULL"
            ),
        );
        assert!(aged > 0);
        surplus_e2e::execute_in_database(
            &cluster.database,
            &format!(
                "UPDATE backup_objects SET deleted_at = deleted_at - {MONTH_MS} WHERE deleted_at IS NOT NULL"
            ),
        );
        wait_for("bob's vault to shrink", Duration::from_secs(60), || {
            bob_holds(cluster) < 4_000_000
        });
        // The holder deletes first and confirms after: wait for the confirmation to land too.
        wait_for(
            "the pruned shards' allocations to be released",
            Duration::from_secs(30),
            || {
                let ledger = cluster.hub.admin_json(&["ledger"]);
                ledger
                    .as_array()
                    .expect("list")
                    .iter()
                    .any(|e| e["state"] == "released" && e["device_name"] == "bob-pc")
            },
        );
        assert_eq!(
            cluster.agents[ada].json(&["forgotten"])["objects"],
            serde_json::json!([])
        );
        wait_for(
            "the second snapshot to be protected",
            Duration::from_secs(60),
            || protected(1)(&cluster.agents[ada].json(&["snapshots"])),
        );
        let target = cluster.dir.path().join("restored");
        cluster.agents[ada].ok(&[
            "restore",
            "latest",
            "--target",
            target.to_str().expect("utf-8"),
        ]);
        assert_eq!(
            std::fs::read(target.join("work/z-small.txt")).expect("restored"),
            b"kept by both snapshots"
        );
        assert!(!target.join("work/a-big.bin").exists());

        // Logged out, the device goes on with its own credential, and forgetting asks for a
        // log-in again.
        cluster.agents[ada].ok(&["logout"]);
        cluster.agents[ada].ok(&["snapshots"]);
        let refused = cluster.agents[ada].cli(&["forget", "--keep-last", "1"]);
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("log in"));
        let again = cluster.agents[ada].cli(&["logout"]);
        assert!(String::from_utf8_lossy(&again.stderr).contains("not logged in"));
    });
}

#[test]
fn the_agent_backs_up_changes_on_its_own() {
    on_each_database(|cluster| {
        let (ada, _, _) = ada_bob_and_carol(cluster, "64MiB");
        let folder = cluster.dir.path().join("ada-files/journal");
        std::fs::create_dir_all(&folder).expect("dir");
        std::fs::write(folder.join("monday.txt"), b"first entry").expect("write");
        let agent = cluster.agent(ada);
        ready_to_back_up(agent);
        agent.set_env("SURPLUS_BACKUP_DEBOUNCE_SECONDS", "1");
        agent.ok(&["backup", "add", folder.to_str().expect("utf-8")]);
        // The first backup, by hand, sets the keys up; from then on the agent needs no one.
        agent.ok(&["backup", "now"]);
        agent.start();
        wait_for("the agent's first scan", Duration::from_secs(60), || {
            !cluster.agents[ada].status()["agent"]["last_backup"].is_null()
        });
        let before = cluster.agents[ada]
            .json(&["snapshots"])
            .as_array()
            .map_or(0, Vec::len);

        std::fs::write(
            folder.join("tuesday.txt"),
            b"second entry, written while the agent runs",
        )
        .expect("write");
        wait_for(
            "the agent to back the change up",
            Duration::from_secs(60),
            || {
                cluster.agents[ada]
                    .json(&["snapshots"])
                    .as_array()
                    .map_or(0, Vec::len)
                    > before
            },
        );
        let target = cluster.dir.path().join("restored");
        cluster.agents[ada].ok(&[
            "restore",
            "latest",
            "--target",
            target.to_str().expect("utf-8"),
        ]);
        assert_eq!(
            std::fs::read(target.join("journal/tuesday.txt"))
                .expect("the new file is in the latest snapshot"),
            b"second entry, written while the agent runs"
        );
    });
}

#[test]
fn verify_challenges_every_shard_and_finds_an_altered_one() {
    on_each_database(|cluster| {
        let (ada, bob, _carol) = ada_bob_and_carol(cluster, "64MiB");
        let source = make_folder(&cluster.dir.path().join("ada-files"));
        let agent = cluster.agent(ada);
        ready_to_back_up(agent);
        agent.ok(&["backup", "add", source.to_str().expect("utf-8")]);

        // Two holders: the automatic coding keeps a full copy on each. A wider coding chosen by
        // hand is kept, and `surplus status` says the holders are too few for it.
        let plan = agent.json(&["backup", "settings"]);
        assert_eq!(plan["eligible_holders"], 2);
        assert_eq!(plan["coding"], serde_json::json!({"data": 1, "parity": 1}));
        let out = agent.ok(&["backup", "settings", "--coding", "3+3"]);
        assert!(out.contains("needs 6 holders but only 2"), "{out}");
        let status = agent.ok(&["status"]);
        assert!(status.contains("warning:"), "{status}");
        let refused = agent.cli(&["backup", "settings", "--coding", "0+2"]);
        assert!(!refused.status.success());
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("data must be at least 1"),
            "{}",
            String::from_utf8_lossy(&refused.stderr)
        );
        let out = agent.ok(&["backup", "settings", "--coding", "auto"]);
        assert!(out.contains("1+1 (automatic"), "{out}");

        agent.ok(&["backup", "now"]);
        wait_for(
            "the snapshot to be protected",
            Duration::from_secs(60),
            || cluster.agents[ada].json(&["snapshots"])[0]["state"] == "protected",
        );
        let run = cluster.agents[ada].json(&["verify"]);
        let challenged = run["challenged"].as_u64().expect("count");
        assert!(challenged >= 2, "{run}");
        assert_eq!(run["passed"].as_u64(), Some(challenged), "{run}");

        // A byte of one of Bob's shards flips on his disk: the next challenge of it fails.
        let hash = alter_largest_shard(&cluster.agents[bob]);
        let failed = cluster.agents[ada].cli(&["verify"]);
        let out = String::from_utf8_lossy(&failed.stdout);
        assert!(!failed.status.success(), "{out}");
        assert!(out.contains(", 1 failed"), "{out}");
        assert!(out.contains(&hash[..16]), "{out}");

        // The restore routes around it.
        let target = cluster.dir.path().join("restored");
        cluster.agents[ada].ok(&[
            "restore",
            "latest",
            "--target",
            target.to_str().expect("utf-8"),
        ]);
        assert_same(&source, &target.join("photos"));
    });
}

#[test]
fn the_hub_audits_held_shards_on_its_own_and_catches_an_altered_one() {
    on_each_database(|cluster| {
        // Shards are audited every second (the default is a week); rounds run every 10 s.
        cluster.hub.configure("audit_interval_seconds = 1");
        let (ada, bob, carol) = ada_bob_and_carol(cluster, "64MiB");
        let source = make_folder(&cluster.dir.path().join("ada-files"));
        let agent = cluster.agent(ada);
        ready_to_back_up(agent);
        agent.ok(&["backup", "add", source.to_str().expect("utf-8")]);
        agent.ok(&["backup", "settings", "--coding", "1+1"]);
        agent.ok(&["backup", "now"]);
        wait_for(
            "the snapshot to be protected",
            Duration::from_secs(60),
            || cluster.agents[ada].json(&["snapshots"])[0]["state"] == "protected",
        );
        let database = cluster.database.clone();
        let count = |sql: &str| count_in_database(&database, sql);
        let held =
            count("SELECT COUNT(*) FROM allocations WHERE kind = 'storage' AND state = 'active'");
        assert!(held >= 2);
        // Nobody runs `surplus verify`: every held shard passes an audit all the same.
        wait_for(
            "every held shard to pass an audit",
            Duration::from_secs(60),
            || {
                count("SELECT COUNT(DISTINCT allocation_id) FROM challenges WHERE state = 'passed'")
                    >= held
            },
        );

        // A byte of one of Bob's shards flips on his disk: a later audit catches it, and the
        // allocation no longer counts.
        let dave = cluster.add_agent("dave-pc", "dave@example.org", true, "64MiB");
        cluster.agent(dave).start();
        cluster.agent(dave).wait_connected_after(0);
        let hash = alter_largest_shard(&cluster.agents[bob]);
        let bob_id = cluster.agents[bob].device_id();
        let carol_id = cluster.agents[carol].device_id();
        let dave_id = cluster.agents[dave].device_id();
        wait_for(
            "an audit to catch the altered shard",
            Duration::from_secs(60),
            || {
                count(&format!(
                    "SELECT COUNT(*) FROM challenges WHERE state = 'failed' AND device_id = '{bob_id}' \
                 AND blob_hash = '{hash}'"
                )) == 1
            },
        );
        wait_for(
            "the copy to be counted lost",
            Duration::from_secs(10),
            || {
                count(&format!(
                    "SELECT COUNT(*) FROM allocations WHERE device_id = '{bob_id}' AND blob_hash = '{hash}' \
                 AND state = 'lost'"
                )) == 1
            },
        );
        // Repaired: rebuilt from Carol's copy and placed on Dave, never back on Bob.
        wait_for("the shard to be repaired", Duration::from_secs(60), || {
            count(&format!(
                "SELECT COUNT(*) FROM allocations WHERE device_id = '{dave_id}' AND blob_hash = '{hash}' \
                 AND state = 'active' AND purpose = 'repair:{hash}'"
            )) == 1
        });
        // Bob's integrity score shows the failure; Carol's and Dave's do not.
        let health = cluster.hub.admin_json(&["health"]);
        let integrity = |id: &str| {
            health["devices"]
                .as_array()
                .expect("devices")
                .iter()
                .find(|d| d["id"] == id)
                .map(|d| d["integrity"].clone())
                .expect("the device is listed")
        };
        assert_eq!(integrity(&bob_id)["failed"], 1, "{health}");
        assert!(integrity(&bob_id)["score"].as_f64().expect("score") < 1.0);
        assert_eq!(integrity(&carol_id)["failed"], 0, "{health}");
        assert!(health["audit_bytes_24h"].as_u64().expect("audit bytes") > 0);
        assert!(health["repair_bytes_24h"].as_u64().expect("repair bytes") > 0);
        assert_eq!(
            count("SELECT COUNT(*) FROM challenges WHERE state = 'failed'"),
            1,
            "no honest shard failed"
        );
    });
}

#[test]
fn a_lost_holders_shards_are_rebuilt_elsewhere_while_the_owner_is_offline() {
    on_each_database(|cluster| {
        // Heartbeats every second, and a holder silent for 8 s counts as lost (the defaults are
        // 30 s and 7 days).
        cluster
            .hub
            .configure("heartbeat_interval_seconds = 1\nlost_after_seconds = 8");
        let ada = cluster.add_agent("ada-pc", "ada@example.org", false, "64MiB");
        let mut donors = Vec::new();
        for name in ["bob", "carol", "dave"] {
            let donor = cluster.add_agent(
                &format!("{name}-pc"),
                &format!("{name}@example.org"),
                true,
                "64MiB",
            );
            cluster.agent(donor).start();
            cluster.agent(donor).wait_connected_after(0);
            donors.push(donor);
        }
        let [bob, carol, dave] = [donors[0], donors[1], donors[2]];
        // Ada backs up from the command line, with three full copies (1+2): one on each donor.
        // Her agent never runs: she is offline from here on.
        let source = make_folder(&cluster.dir.path().join("ada-files"));
        let agent = cluster.agent(ada);
        ready_to_back_up(agent);
        agent.ok(&["backup", "add", source.to_str().expect("utf-8")]);
        agent.ok(&["backup", "settings", "--coding", "1+2"]);
        agent.ok(&["backup", "now"]);
        wait_for(
            "the snapshot to be protected",
            Duration::from_secs(60),
            || cluster.agents[ada].json(&["snapshots"])[0]["state"] == "protected",
        );
        let bobs = cluster.agents[bob].vault_blobs();
        assert!(!bobs.is_empty(), "bob holds a shard of every pack");

        // Erin joins, with room; Bob's PC dies and never comes back.
        let erin = cluster.add_agent("erin-pc", "erin@example.org", true, "64MiB");
        cluster.agent(erin).start();
        cluster.agent(erin).wait_connected_after(0);
        cluster.agent(bob).kill();
        // Counted lost, his shards are rebuilt from Carol's and Dave's copies and placed on
        // Erin: byte for byte the shards Bob held.
        wait_for(
            "erin to hold every shard bob held",
            Duration::from_secs(120),
            || {
                let held: Vec<String> = cluster.agents[erin]
                    .vault_blobs()
                    .into_iter()
                    .map(|(hash, _)| hash)
                    .collect();
                bobs.iter().all(|(hash, _)| held.contains(hash))
            },
        );
        let database = cluster.database.clone();
        let bob_id = cluster.agents[bob].device_id();
        let erin_id = cluster.agents[erin].device_id();
        let count = |sql: String| count_in_database(&database, &sql);
        assert_eq!(
            count(format!(
                "SELECT COUNT(*) FROM allocations WHERE device_id = '{bob_id}' AND state <> 'lost'"
            )),
            0,
            "every allocation of bob's is lost"
        );
        wait_for(
            "erin's copies to be confirmed",
            Duration::from_secs(30),
            || {
                count(format!(
                    "SELECT COUNT(*) FROM allocations WHERE device_id = '{erin_id}' AND state = 'active'"
                )) == bobs.len() as i64
            },
        );
        // The ledger says why Erin holds them: repairs.
        assert_eq!(
            count(format!(
                "SELECT COUNT(*) FROM allocations WHERE device_id = '{erin_id}' AND purpose LIKE 'repair:%'"
            )),
            bobs.len() as i64,
            "each rebuilt shard's allocation is a repair in the ledger"
        );
        // The rebuilt shards and those gathered for them leave the hub's staging.
        wait_for(
            "the hub's staging to empty",
            Duration::from_secs(60),
            || count("SELECT COUNT(*) FROM blobs WHERE staged = 1".into()) == 0,
        );

        // Bob's PC comes back after all: what it kept has been rebuilt elsewhere, so its copies
        // are surplus, deleted, and its allocations released.
        cluster.agent(bob).start();
        wait_for(
            "bob's surplus copies to go",
            Duration::from_secs(60),
            || {
                cluster.agents[bob].vault_blobs().is_empty()
                    && count(format!(
                        "SELECT COUNT(*) FROM allocations WHERE device_id = '{bob_id}' AND state <> 'released'"
                    )) == 0
            },
        );

        // Then the two other first holders go too: Erin's copies alone restore the folder on a
        // new laptop, bit for bit.
        cluster.agent(carol).kill();
        cluster.agent(dave).kill();
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
        assert_same(&source, &target.join("photos"));
    });
}

#[test]
fn a_mass_outage_shorter_than_the_cap_repairs_nothing_and_loses_nothing() {
    on_each_database(|cluster| {
        // Heartbeats every second; a holder silent for 40 s would count as lost.
        cluster
            .hub
            .configure("heartbeat_interval_seconds = 1\nlost_after_seconds = 40");
        let ada = cluster.add_agent("ada-pc", "ada@example.org", false, "64MiB");
        let mut donors = Vec::new();
        for name in ["bob", "carol", "dave", "erin"] {
            let donor = cluster.add_agent(
                &format!("{name}-pc"),
                &format!("{name}@example.org"),
                true,
                "64MiB",
            );
            cluster.agent(donor).start();
            cluster.agent(donor).wait_connected_after(0);
            donors.push(donor);
        }
        // 2+2: one shard of every pack on each donor.
        let source = make_folder(&cluster.dir.path().join("ada-files"));
        let agent = cluster.agent(ada);
        ready_to_back_up(agent);
        agent.ok(&["backup", "add", source.to_str().expect("utf-8")]);
        agent.ok(&["backup", "settings", "--coding", "2+2"]);
        agent.ok(&["backup", "now"]);
        wait_for(
            "the snapshot to be protected",
            Duration::from_secs(60),
            || cluster.agents[ada].json(&["snapshots"])[0]["state"] == "protected",
        );
        let database = cluster.database.clone();
        let count = |sql: &str| count_in_database(&database, sql);
        let held = count("SELECT COUNT(*) FROM allocations WHERE state = 'active'");

        // A power cut takes half the donors at once.
        let (dark, lit) = donors.split_at(2);
        for &donor in dark {
            cluster.agent(donor).kill();
        }
        let away: Vec<String> = dark
            .iter()
            .map(|&d| cluster.agents[d].device_id())
            .collect();
        wait_for("the hub to see them away", Duration::from_secs(30), || {
            let health = cluster.hub.admin_json(&["health"]);
            health["devices"].as_array().is_some_and(|devices| {
                devices
                    .iter()
                    .filter(|d| away.iter().any(|id| d["id"] == id.as_str()))
                    .all(|d| d["standing"] == "away")
            })
        });
        // The outage lasts 15 s, well past the online window and at least one of the hub's
        // 10-second loss sweeps, but short of the 40 s cap. (This is the scenario's length, not
        // a wait for something to happen.)
        std::thread::sleep(Duration::from_secs(15));
        let health = cluster.hub.admin_json(&["health"]);
        assert_eq!(health["packs"]["lost"], 0, "{health}");
        assert_eq!(health["repair_queue"], 0, "{health}");
        for &donor in dark {
            cluster.agent(donor).start();
        }
        for &donor in dark.iter().chain(lit) {
            cluster.agent(donor).wait_connected_after(0);
        }

        // Back: nothing was counted lost, rebuilt, gathered or moved, and the folder restores.
        assert_eq!(
            count(
                "SELECT COUNT(*) FROM allocations WHERE state IN ('lost', 'evacuating') OR purpose LIKE 'repair:%'"
            ),
            0
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM allocations WHERE state = 'active'"),
            held
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM instructions WHERE kind = 'upload_blob'"),
            0,
            "no shard was gathered for a rebuild"
        );
        let health = cluster.hub.admin_json(&["health"]);
        assert_eq!(health["repair_bytes_24h"], 0, "{health}");
        assert_eq!(
            cluster.agents[ada].json(&["snapshots"])[0]["state"],
            "protected"
        );
        let target = cluster.dir.path().join("restored");
        cluster.agents[ada].ok(&[
            "restore",
            "latest",
            "--target",
            target.to_str().expect("utf-8"),
        ]);
        assert_same(&source, &target.join("photos"));
    });
}

#[test]
fn donors_that_leave_hand_their_shards_over_before_deleting_them() {
    on_each_database(|cluster| {
        cluster.hub.configure("heartbeat_interval_seconds = 1");
        let ada = cluster.add_agent("ada-pc", "ada@example.org", false, "64MiB");
        let bob = cluster.add_agent("bob-pc", "bob@example.org", true, "64MiB");
        let carol = cluster.add_agent("carol-pc", "carol@example.org", true, "64MiB");
        for donor in [bob, carol] {
            cluster.agent(donor).start();
            cluster.agent(donor).wait_connected_after(0);
        }
        // Two full copies of every pack (1+1): one at Bob's, one at Carol's.
        let source = make_folder(&cluster.dir.path().join("ada-files"));
        let agent = cluster.agent(ada);
        ready_to_back_up(agent);
        agent.ok(&["backup", "add", source.to_str().expect("utf-8")]);
        agent.ok(&["backup", "settings", "--coding", "1+1"]);
        agent.ok(&["backup", "now"]);
        wait_for(
            "the snapshot to be protected",
            Duration::from_secs(60),
            || cluster.agents[ada].json(&["snapshots"])[0]["state"] == "protected",
        );
        let database = cluster.database.clone();
        let count = |sql: String| count_in_database(&database, &sql);
        // The hub keeps no copy: handing over has to come from the holders themselves.
        wait_for(
            "the hub's staging to empty",
            Duration::from_secs(60),
            || count("SELECT COUNT(*) FROM blobs WHERE staged = 1".into()) == 0,
        );
        let dave = cluster.add_agent("dave-pc", "dave@example.org", true, "64MiB");
        let erin = cluster.add_agent("erin-pc", "erin@example.org", true, "64MiB");
        for donor in [dave, erin] {
            cluster.agent(donor).start();
            cluster.agent(donor).wait_connected_after(0);
        }
        let (bob_id, carol_id) = (
            cluster.agents[bob].device_id(),
            cluster.agents[carol].device_id(),
        );
        let bobs = cluster.agents[bob].vault_blobs();
        let carols = cluster.agents[carol].vault_blobs();
        assert!(!bobs.is_empty() && !carols.is_empty());

        // Bob leaves while his agent runs; Carol leaves with hers stopped, so `surplus leave`
        // runs the hand-over itself. Each prints its progress and ends once nothing of
        // anyone's is left.
        // (How many progress lines there are depends on how fast it goes; the hub's own test
        // checks the figures mid-way.)
        let bob_left = cluster.agents[bob].ok(&["leave", "--wait", "2m"]);
        assert!(bob_left.contains("to hand over"), "{bob_left}");
        assert!(bob_left.contains("this device left"), "{bob_left}");
        cluster.agent(carol).stop();
        let carol_left = cluster.agents[carol].ok(&["leave", "--wait", "2m"]);
        assert!(carol_left.contains("this device left"), "{carol_left}");
        assert!(cluster.agents[bob].vault_blobs().is_empty());
        assert!(cluster.agents[carol].vault_blobs().is_empty());

        // Their shards are on Dave and Erin now, byte for byte, as hand-overs in the ledger.
        let mut now_held: Vec<String> = Vec::new();
        for donor in [dave, erin] {
            now_held.extend(
                cluster.agents[donor]
                    .vault_blobs()
                    .into_iter()
                    .map(|(h, _)| h),
            );
        }
        for (hash, _) in bobs.iter().chain(&carols) {
            assert!(now_held.contains(hash), "{hash} was handed over");
        }
        assert_eq!(
            count("SELECT COUNT(*) FROM allocations WHERE purpose LIKE 'handover:%' AND state = 'active'".into()),
            (bobs.len() + carols.len()) as i64
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM allocations WHERE state = 'evacuating'".into()),
            0,
            "no allocation stays evacuating"
        );
        // Each old copy was deleted only once its new copy was confirmed.
        for leaver in [&bob_id, &carol_id] {
            assert!(
                count(format!(
                    "SELECT COUNT(*) FROM instructions WHERE kind = 'delete_blob' AND device_id = '{leaver}'"
                )) > 0
            );
            assert_eq!(
                count(format!(
                    "SELECT COUNT(*) FROM instructions d JOIN allocations a ON a.id = d.allocation_id \
                     WHERE d.kind = 'delete_blob' AND d.device_id = '{leaver}' AND NOT EXISTS ( \
                       SELECT 1 FROM instructions s JOIN allocations n ON n.id = s.allocation_id \
                       WHERE s.kind = 'store_blob' AND s.state = 'done' AND n.blob_hash = a.blob_hash \
                       AND n.device_id <> '{leaver}' AND s.completed_at <= d.created_at)"
                )),
                0,
                "a delete was asked before the new copy was confirmed"
            );
            assert_eq!(
                count(format!(
                    "SELECT COUNT(*) FROM devices WHERE id = '{leaver}' AND revoked_at IS NOT NULL"
                )),
                1,
                "the device that left is deregistered"
            );
        }
        assert_eq!(
            cluster.agents[ada].json(&["snapshots"])[0]["state"],
            "protected"
        );
        assert_eq!(
            cluster.agents[ada].json(&["status"])["snapshots"],
            serde_json::json!({"protected": 1})
        );
        let target = cluster.dir.path().join("restored");
        cluster.agents[ada].ok(&[
            "restore",
            "latest",
            "--target",
            target.to_str().expect("utf-8"),
        ]);
        assert_same(&source, &target.join("photos"));
    });
}

#[test]
fn an_interrupted_backup_and_an_interrupted_restore_complete_on_the_next_run() {
    on_each_database(|cluster| {
        let (ada, _bob, _carol) = ada_bob_and_carol(cluster, "256MiB");
        let folder = cluster.dir.path().join("ada-files/videos");
        std::fs::create_dir_all(&folder).expect("dir");
        // Seven packs of incompressible data: the first four are recorded at a checkpoint.
        for n in 0..7u64 {
            surplus_e2e::make_file(&folder, &format!("clip-{n}.bin"), 16 << 20, 1000 + n);
        }
        let total: u64 = 7 * (16 << 20);
        let agent = cluster.agent(ada);
        ready_to_back_up(agent);
        agent.ok(&["backup", "add", folder.to_str().expect("utf-8")]);
        // One copy per pack, at a pace that leaves time to interrupt the backup after its
        // checkpoint.
        agent.ok(&["backup", "settings", "--coding", "1+0"]);
        agent.ok(&["limits", "--bandwidth", "40MB/s"]);

        let mut running = cluster.agents[ada].spawn_cli(&["backup", "now"]);
        let indexes = "SELECT COUNT(*) FROM backup_objects WHERE kind = 'index'";
        wait_for("the backup's checkpoint", Duration::from_secs(120), || {
            surplus_e2e::count_in_database(&cluster.database, indexes) > 0
        });
        running.kill().expect("interrupt the backup");
        running.wait().expect("wait");
        let snapshots = "SELECT COUNT(*) FROM backup_objects WHERE kind = 'snapshot'";
        assert_eq!(
            surplus_e2e::count_in_database(&cluster.database, snapshots),
            0,
            "the backup was interrupted before it finished"
        );

        let rerun = cluster.agents[ada].json(&["backup", "now"]);
        assert_eq!(rerun["bytes"].as_u64(), Some(total), "{rerun}");
        let new_bytes = rerun["new_bytes"].as_u64().expect("new bytes");
        assert!(
            new_bytes <= total - 4 * (15 << 20),
            "the rerun stored {new_bytes} of {total} bytes again"
        );

        // A restore is interrupted once its first file is in place, and run again.
        wait_for(
            "the snapshot to be protected",
            Duration::from_secs(120),
            || cluster.agents[ada].json(&["snapshots"])[0]["state"] == "protected",
        );
        let target = cluster.dir.path().join("restored");
        let target_text = target.to_str().expect("utf-8").to_owned();
        let mut running =
            cluster.agents[ada].spawn_cli(&["restore", "latest", "--target", &target_text]);
        wait_for("the first restored file", Duration::from_secs(120), || {
            target.join("videos/clip-0.bin").exists()
        });
        running.kill().expect("interrupt the restore");
        running.wait().expect("wait");
        let out = cluster.agents[ada].ok(&["restore", "latest", "--target", &target_text]);
        assert!(out.contains("were there already, unchanged"), "{out}");
        assert_same(&folder, &target.join("videos"));
    });
}

#[test]
fn weak_recovery_passphrases_are_refused_and_an_old_weak_one_is_replaced_on_unlock() {
    on_each_database(|cluster| {
        let (ada, _bob, _carol) = ada_bob_and_carol(cluster, "64MiB");
        let folder = make_folder(cluster.dir.path());
        let agent = cluster.agent(ada);
        ready_to_back_up(agent);
        agent.ok(&["backup", "add", folder.to_str().expect("utf-8")]);

        // An empty, a one-letter and a common passphrase: each refused, saying what to do, and
        // no key is made or kept at the hub.
        for weak in ["", "a", "password1234", "ada@example.org"] {
            agent.set_env("SURPLUS_PASSPHRASE", weak);
            let refused = agent.cli(&["backup", "now"]);
            assert!(!refused.status.success(), "{weak:?} was accepted");
            let message = String::from_utf8_lossy(&refused.stderr);
            assert!(
                message.contains("recovery passphrase"),
                "{weak:?}: {message}"
            );
            assert!(
                message.contains("let Surplus make one"),
                "{weak:?}: {message}"
            );
        }
        let database = cluster.database.clone();
        let keys = || count_in_database(&database, "SELECT COUNT(*) FROM wrapped_keys");
        assert_eq!(keys(), 0);

        // A key wrapped under a weak passphrase before the rule existed still opens with it, and
        // is wrapped again under a better one, which the device is asked for.
        let master = surplus_backup::keys::MasterKey::generate();
        let wrapped_under = |passphrase: &str| {
            serde_json::to_string(
                &master
                    .wrap(passphrase, surplus_backup::keys::WrapCost::TESTING)
                    .expect("wrap"),
            )
            .expect("json")
        };
        let weak_wrap = wrapped_under("a");
        let inserted = surplus_e2e::execute_in_database(
            &cluster.database,
            &format!(
                "INSERT INTO wrapped_keys (subscriber_id, body, updated_at) \
                 SELECT id, '{weak_wrap}', 0 FROM subscribers WHERE email = 'ada@example.org'"
            ),
        );
        assert_eq!(inserted, 1);
        let better = "violet harbour tractor minnow quietly";
        let agent = cluster.agent(ada);
        agent.set_env("SURPLUS_PASSPHRASE", "a");
        agent.set_env("SURPLUS_NEW_PASSPHRASE", better);
        agent.ok(&["snapshots"]);
        let old_copies = count_in_database(
            &cluster.database,
            &format!("SELECT COUNT(*) FROM wrapped_keys WHERE body = '{weak_wrap}'"),
        );
        assert_eq!(old_copies, 0, "the weak copy is still at the hub");
        assert_eq!(keys(), 1);

        // Another device of Ada's opens the key with the new passphrase only.
        let laptop = cluster.add_agent("ada-laptop", "ada@example.org", false, "64MiB");
        let laptop = cluster.agent(laptop);
        laptop.set_env("SURPLUS_PASSPHRASE", "a");
        let refused = laptop.cli(&["snapshots"]);
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("does not open"));
        laptop.set_env("SURPLUS_PASSPHRASE", better);
        laptop.ok(&["snapshots"]);

        // And the passphrase can be changed on purpose, to a strong one only.
        laptop.set_env("SURPLUS_NEW_PASSPHRASE", "short");
        let refused = laptop.cli(&["backup", "passphrase"]);
        assert!(!refused.status.success());
        laptop.set_env("SURPLUS_NEW_PASSPHRASE", "plum cascade ledger otter ninety");
        laptop.ok(&["backup", "passphrase"]);
        let tablet = cluster.add_agent("ada-tablet", "ada@example.org", false, "64MiB");
        let tablet = cluster.agent(tablet);
        tablet.set_env("SURPLUS_PASSPHRASE", "plum cascade ledger otter ninety");
        tablet.ok(&["snapshots"]);

        // The tray app's way, through the agent core it calls: the passphrase typed in its window
        // opens a key kept under a weak one (as the hub held it before), the core says what is
        // wrong with it, and the better one the window then asks for replaces the hub's copy.
        let weak_wrap = wrapped_under("ada1");
        surplus_e2e::execute_in_database(
            &cluster.database,
            &format!("UPDATE wrapped_keys SET body = '{weak_wrap}'"),
        );
        let desktop = cluster.add_agent("ada-desktop", "ada@example.org", false, "64MiB");
        let control = surplus_agent::control::Control::new(&cluster.agents[desktop].data_dir);
        let problem = surplus_e2e::block_on(control.set_recovery_passphrase("ada1"))
            .expect("the weak passphrase still opens the key");
        assert!(
            problem
                .as_deref()
                .is_some_and(|p| p.contains("let Surplus make one")),
            "{problem:?}"
        );
        assert!(control.has_backup_key());
        assert_eq!(control.passphrase_problem("ada1"), problem);
        assert!(
            control
                .passphrase_problem("ada@example.org rocks")
                .is_some()
        );
        let refused = surplus_e2e::block_on(control.change_recovery_passphrase("password1234"));
        assert!(refused.is_err_and(|e| e.to_string().contains("too easy to guess")));
        let chosen = "saffron glacier wombat tinsel orbit";
        assert_eq!(control.passphrase_problem(chosen), None);
        surplus_e2e::block_on(control.change_recovery_passphrase(chosen)).expect("replaced");
        let weak_copies = count_in_database(
            &cluster.database,
            &format!("SELECT COUNT(*) FROM wrapped_keys WHERE body = '{weak_wrap}'"),
        );
        assert_eq!(weak_copies, 0, "the weak copy is still at the hub");
        let phone = cluster.add_agent("ada-phone", "ada@example.org", false, "64MiB");
        let phone = cluster.agent(phone);
        phone.set_env("SURPLUS_PASSPHRASE", chosen);
        phone.ok(&["snapshots"]);
        // A strong passphrase opens the key with nothing more to ask.
        let again = surplus_e2e::block_on(
            surplus_agent::control::Control::new(&cluster.agents[desktop].data_dir)
                .set_recovery_passphrase(chosen),
        );
        assert_eq!(again.expect("unlocks"), None);
    });
}
