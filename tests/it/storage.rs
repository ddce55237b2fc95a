//! Donated storage end to end: three agents register and heartbeat, the hub allocates spare
//! storage, instructs holders, and records every allocation.

use std::time::Duration;

use serde_json::Value;
use surplus_e2e::{make_file, run_instruction, wait_for};
use surplus_protocol::{InstructionKind, InstructionResult};

use crate::on_each_database;

#[test]
fn a_blob_lands_in_the_chosen_vaults_and_the_ledger_records_it() {
    on_each_database(|cluster| {
        let owner = cluster.add_agent("ada-pc", "ada@example.org", false, "64MiB");
        let bob = cluster.add_agent("bob-pc", "bob@example.org", true, "64MiB");
        let carol = cluster.add_agent("carol-pc", "carol@example.org", true, "64MiB");
        for index in [owner, bob, carol] {
            cluster.agent(index).start();
        }
        for index in [owner, bob, carol] {
            cluster.agent(index).wait_connected_after(0);
        }

        // The hub sees every device, with what it has spare.
        let devices = cluster.hub.admin_json(&["devices"]);
        let devices = devices.as_array().expect("a list");
        assert_eq!(devices.len(), 3);
        for device in devices {
            for field in [
                "id",
                "name",
                "subscriber",
                "last_heartbeat",
                "spare_storage_bytes",
                "compute_slots",
            ] {
                assert!(
                    device.get(field).is_some(),
                    "admin devices has {field}: {device}"
                );
            }
            let spare = device["spare_storage_bytes"].as_u64().expect("spare");
            if device["name"] == "ada-pc" {
                assert_eq!(spare, 0, "no consent, no spare storage");
            } else {
                assert!(
                    spare > 0 && spare <= 64 << 20,
                    "spare within the quota: {spare}"
                );
            }
        }

        let (file, hash) = make_file(cluster.dir.path(), "photo.raw", 300_000, 1);
        let owner_agent = &cluster.agents[owner];
        let placed = owner_agent.json(&[
            "blob",
            "put",
            file.to_str().expect("utf-8"),
            "--copies",
            "2",
        ]);
        assert_eq!(placed["hash"], hash.as_str());
        let content = std::fs::read(&file).expect("read");

        // Both consenting devices fetch it into their vaults; the owner's does not.
        for index in [bob, carol] {
            let agent = &cluster.agents[index];
            wait_for(
                &format!("the blob in {}'s vault", agent.name),
                Duration::from_secs(30),
                || {
                    agent
                        .vault_blobs()
                        .iter()
                        .any(|(name, bytes)| *name == hash && *bytes == content)
                },
            );
        }
        assert!(cluster.agents[owner].vault_blobs().is_empty());
        let status = cluster.agents[owner].wait_placement(&hash, |p: &Value| {
            p["holders"]
                .as_array()
                .is_some_and(|h| h.len() == 2 && h.iter().all(|x| x["state"] == "active"))
                && p["staged"] == false
        });
        assert_eq!(status["copies"], 2);

        // The ledger: who, which device, what, how much, why, which instruction.
        let ledger = cluster.hub.admin_json(&["ledger"]);
        let entries = ledger.as_array().expect("a list");
        assert_eq!(entries.len(), 2);
        let mut holders: Vec<&str> = entries
            .iter()
            .map(|e| e["device_name"].as_str().expect("name"))
            .collect();
        holders.sort();
        assert_eq!(holders, ["bob-pc", "carol-pc"]);
        for entry in entries {
            assert_eq!(entry["subscriber"], "ada@example.org");
            assert_eq!(entry["kind"], "storage");
            assert_eq!(entry["amount"], 300_000);
            assert_eq!(entry["purpose"], format!("blob:{hash}"));
            assert_eq!(entry["state"], "active");
            assert_eq!(entry["instructions"].as_array().map(Vec::len), Some(1));
            assert!(entry["released_at"].is_null());
        }
        // A subscriber sees their part of it.
        let mine = cluster.agents[bob].json(&["ledger"]);
        assert_eq!(mine.as_array().map(Vec::len), Some(1));
        assert_eq!(mine[0]["donor"], "bob@example.org");
    });
}

#[test]
fn a_flood_of_store_instructions_never_exceeds_a_vault_quota() {
    on_each_database(|cluster| {
        let owner = cluster.add_agent("ada-pc", "ada@example.org", false, "64MiB");
        let small = cluster.add_agent("bob-pc", "bob@example.org", true, "1MiB");
        cluster.agent(small).start();
        cluster.agent(small).wait_connected_after(0);
        let small_id = cluster.agents[small].device_id();

        // Twenty blobs of 200 KB want a home; the only holder has room for five.
        let mut hashes = Vec::new();
        for n in 0..20 {
            let (file, hash) = make_file(cluster.dir.path(), &format!("f{n}"), 200_000, 100 + n);
            cluster.agents[owner].ok(&["blob", "put", file.to_str().expect("utf-8")]);
            hashes.push(hash);
        }
        // And, as if the hub's view were stale, every one of them is also pushed at the small
        // vault straight through the database, ignoring what the hub thinks is spare.
        let database = cluster.database.clone();
        force_allocations(&database, &small_id, &hashes);

        let agent = &cluster.agents[small];
        wait_for(
            "every store instruction to be answered",
            Duration::from_secs(60),
            || {
                let ledger = cluster.hub.admin_json(&["ledger"]);
                ledger
                    .as_array()
                    .is_some_and(|entries| entries.iter().all(|e| e["state"] != "pending"))
            },
        );
        let held: usize = agent
            .vault_blobs()
            .iter()
            .map(|(_, bytes)| bytes.len())
            .sum();
        assert!(
            held <= 1 << 20,
            "the vault holds {held} bytes, over its 1 MiB quota"
        );
        assert!(
            held >= 4 * 200_000,
            "the vault took what fits: {held} bytes"
        );
        let ledger = cluster.hub.admin_json(&["ledger"]);
        let active: u64 = ledger
            .as_array()
            .expect("list")
            .iter()
            .filter(|e| e["state"] == "active")
            .map(|e| e["amount"].as_u64().expect("amount"))
            .sum();
        assert_eq!(
            active as usize, held,
            "the ledger's active allocations are what the vault holds"
        );
        assert!(
            agent.log().contains("quota_exceeded"),
            "refusals are logged as quota_exceeded"
        );
    });
}

/// Allocates each blob on the device through the hub library, bypassing the scheduler.
fn force_allocations(database: &str, device: &str, hashes: &[String]) {
    surplus_e2e::block_on(async {
        let store = surplus_hub::store::Store::connect(database)
            .await
            .expect("store");
        let device = uuid::Uuid::parse_str(device).expect("uuid");
        let subscriber = store
            .login("ada@example.org")
            .await
            .expect("query")
            .expect("ada")
            .subscriber
            .id;
        let now = surplus_hub::now_ms();
        for hash in hashes {
            if store
                .device_allocated_blob(device, hash)
                .await
                .expect("query")
            {
                continue;
            }
            store
                .allocate_blob_storage(
                    &[surplus_hub::store::NewBlobAllocation {
                        id: uuid::Uuid::now_v7(),
                        owner: subscriber,
                        device,
                        blob: surplus_protocol::BlobRef {
                            hash: (*hash).to_owned(),
                            size: 200_000,
                        },
                        purpose: surplus_rules::handover::Purpose::Store,
                    }],
                    now,
                    now + 3_600_000,
                )
                .await
                .expect("allocate");
        }
        store.close().await;
    });
}

#[test]
fn holders_prove_and_delete_what_they_hold_when_instructed() {
    on_each_database(|cluster| {
        let owner = cluster.add_agent("ada-pc", "ada@example.org", false, "64MiB");
        let holder = cluster.add_agent("bob-pc", "bob@example.org", true, "64MiB");
        cluster.agent(holder).start();
        cluster.agent(holder).wait_connected_after(0);
        let (file, hash) = make_file(cluster.dir.path(), "proved", 40_000, 11);
        cluster.agents[owner].ok(&["blob", "put", file.to_str().expect("utf-8")]);
        let placement =
            cluster.agents[owner].wait_placement(&hash, |p| p["holders"][0]["state"] == "active");
        let allocation = uuid::Uuid::parse_str(
            placement["holders"][0]["allocation_id"]
                .as_str()
                .expect("id"),
        )
        .expect("uuid");
        let device = uuid::Uuid::parse_str(&cluster.agents[holder].device_id()).expect("uuid");

        // A proof of storage over a range, queued from another process: the Bao slice checks
        // out against the blob's hash.
        let verify = InstructionKind::VerifyBlob {
            hash: hash.clone(),
            offset: 1_024,
            length: 5_000,
        };
        let result = run_instruction(&cluster.database, device, None, verify);
        let InstructionResult::Verified {
            hash: proved,
            proof,
        } = result
        else {
            panic!("not verified: {result:?}");
        };
        assert_eq!(proved, hash);
        assert_eq!(
            surplus_hub::challenge::check(&hash, 1_024, 5_000, &proof),
            Ok(())
        );
        assert!(surplus_hub::challenge::check(&hash, 0, 5_000, &proof).is_err());

        // Deleting releases the allocation and frees the vault.
        let delete = InstructionKind::DeleteBlob {
            hash: hash.clone(),
            allocation_id: Some(allocation),
        };
        let result = run_instruction(&cluster.database, device, Some(allocation), delete);
        assert_eq!(result, InstructionResult::Deleted { hash: hash.clone() });
        assert!(cluster.agents[holder].vault_blobs().is_empty());
        let ledger = cluster.hub.admin_json(&["ledger"]);
        assert_eq!(ledger[0]["state"], "released");
        assert!(ledger[0]["released_at"].is_i64());
        assert_eq!(ledger[0]["instructions"].as_array().map(Vec::len), Some(2));
    });
}

#[test]
fn a_blob_comes_back_from_its_holders_and_an_altered_copy_is_routed_around() {
    on_each_database(|cluster| {
        let owner = cluster.add_agent("ada-pc", "ada@example.org", false, "64MiB");
        let bob = cluster.add_agent("bob-pc", "bob@example.org", true, "64MiB");
        let carol = cluster.add_agent("carol-pc", "carol@example.org", true, "64MiB");
        for index in [bob, carol] {
            cluster.agent(index).start();
            cluster.agent(index).wait_connected_after(0);
        }
        let (file, hash) = make_file(cluster.dir.path(), "precious", 500_000, 31);
        cluster.agents[owner].ok(&[
            "blob",
            "put",
            file.to_str().expect("utf-8"),
            "--copies",
            "2",
        ]);
        cluster.agents[owner].wait_placement(&hash, |p| {
            p["staged"] == false
                && p["holders"]
                    .as_array()
                    .is_some_and(|h| h.iter().all(|x| x["state"] == "active"))
        });

        // Bob's copy is altered on his disk.
        let bob_copy = cluster.agents[bob]
            .data_dir
            .join(".vault/blobs")
            .join(&hash[..2])
            .join(&hash);
        let mut bytes = std::fs::read(&bob_copy).expect("bob's copy");
        bytes[1000] ^= 0x01;
        std::fs::write(&bob_copy, bytes).expect("alter");

        // The hub has no copy any more; the holders are asked, Carol's good copy comes back.
        let out = cluster.dir.path().join("restored");
        cluster.agents[owner].ok(&[
            "blob",
            "get",
            &hash,
            "--out",
            out.to_str().expect("utf-8"),
            "--wait",
            "60",
        ]);
        assert_eq!(
            std::fs::read(&out).expect("restored"),
            std::fs::read(&file).expect("original")
        );

        // Bob's vault noticed: his copy no longer counts, and the hub looks for a new holder.
        wait_for(
            "bob's altered copy to be written off",
            Duration::from_secs(30),
            || {
                let ledger = cluster.hub.admin_json(&["ledger"]);
                ledger.as_array().is_some_and(|entries| {
                    entries
                        .iter()
                        .any(|e| e["device_name"] == "bob-pc" && e["state"] == "lost")
                })
            },
        );
        assert!(
            cluster.agents[bob].log().contains("corrupt"),
            "bob's agent reported the corruption"
        );
    });
}

/// Moving the vault is one rule, whichever front end asks: the tray's settings (a disk from the
/// list it offers) and `surplus quota --path` put it in the same place, on every disk of this
/// machine, the data directory's own among them.
#[test]
fn the_tray_and_the_cli_move_a_vault_to_the_same_place() {
    use surplus_agent::control::{Choices, Control};
    use surplus_agent::settings::Settings;

    let work = tempfile::tempdir().expect("a temporary folder");
    let (tray_dir, cli_dir) = (work.path().join("tray"), work.path().join("cli"));
    let tray = Control::new(&tray_dir);
    let disks = tray.disks().expect("this machine's disks");
    assert!(
        disks.iter().any(|d| d.current),
        "the data directory's disk is listed: {disks:?}"
    );
    for disk in &disks {
        let chosen = Choices {
            vault_disk: Some(disk.mount_point.clone()),
            ..Choices::default()
        };
        let by_tray = tray
            .apply(chosen)
            .expect("the tray's choice")
            .vault_dir(&tray_dir);
        let output = std::process::Command::new(surplus_e2e::binary("surplus"))
            .arg("--data-dir")
            .arg(&cli_dir)
            .args(["quota", "--path"])
            .arg(&disk.mount_point)
            .output()
            .expect("run surplus");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let by_cli = Settings::load(&cli_dir)
            .expect("settings")
            .vault_dir(&cli_dir);
        // The same place, or the same place inside each one's own data directory.
        let relative = |dir: &std::path::Path, data_dir: &std::path::Path| {
            dir.strip_prefix(data_dir).map(|p| p.to_owned()).ok()
        };
        match (relative(&by_tray, &tray_dir), relative(&by_cli, &cli_dir)) {
            (None, None) => assert_eq!(by_tray, by_cli, "on {}", disk.mount_point.display()),
            (tray_inside, cli_inside) => {
                assert_eq!(tray_inside, cli_inside, "on {}", disk.mount_point.display());
            }
        }
        if disk.current {
            assert!(
                by_tray.starts_with(&tray_dir),
                "the data directory's disk keeps it inside"
            );
        }
    }
}
