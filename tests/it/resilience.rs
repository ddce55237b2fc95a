//! Churn is normal: agents die and come back, the hub restarts, and nothing acknowledged is lost.

use std::time::Duration;

use serde_json::Value;
use surplus_e2e::{make_file, wait_for};

use crate::on_each_database;

fn all_active(placement: &Value, copies: usize) -> bool {
    placement["holders"]
        .as_array()
        .is_some_and(|h| h.iter().filter(|x| x["state"] == "active").count() == copies)
}

#[test]
fn an_agent_killed_and_restarted_picks_up_where_it_left_off() {
    on_each_database(|cluster| {
        let owner = cluster.add_agent("ada-pc", "ada@example.org", false, "64MiB");
        let holder = cluster.add_agent("bob-pc", "bob@example.org", true, "64MiB");
        cluster.agent(holder).start();
        cluster.agent(holder).wait_connected_after(0);

        // The holder dies without warning; a blob is placed on it while it is away (the hub
        // still counts its spare storage: offline is normal, and it fetches when it is back).
        cluster.agent(holder).kill();
        let (file, hash) = make_file(cluster.dir.path(), "while-away", 150_000, 7);
        let placed = cluster.agents[owner].json(&["blob", "put", file.to_str().expect("utf-8")]);
        assert_eq!(placed["holders"][0]["state"], "pending", "{placed}");
        assert!(cluster.agents[holder].vault_blobs().is_empty());

        let before = surplus_hub::now_ms();
        cluster.agent(holder).start();
        cluster.agent(holder).wait_connected_after(before);
        let placement = cluster.agents[owner].wait_placement(&hash, |p| all_active(p, 1));
        assert_eq!(placement["holders"].as_array().map(Vec::len), Some(1));
        let content = std::fs::read(&file).expect("read");
        assert_eq!(
            cluster.agents[holder].vault_blobs(),
            vec![(hash.clone(), content)]
        );

        // Killed again right after, and restarted: the vault still holds exactly the blob.
        cluster.agent(holder).kill();
        cluster.agent(holder).start();
        cluster
            .agent(holder)
            .wait_connected_after(surplus_hub::now_ms());
        assert_eq!(cluster.agents[holder].vault_blobs().len(), 1);
        let status = cluster.agents[holder].status();
        assert_eq!(status["agent"]["vault"]["used_bytes"], 150_000);
    });
}

#[test]
fn agents_reconnect_after_the_hub_restarts() {
    on_each_database(|cluster| {
        let owner = cluster.add_agent("ada-pc", "ada@example.org", false, "64MiB");
        let holder = cluster.add_agent("bob-pc", "bob@example.org", true, "64MiB");
        for index in [owner, holder] {
            cluster.agent(index).start();
            cluster.agent(index).wait_connected_after(0);
        }
        cluster.hub.stop();
        // The agents notice the hub is gone and keep running.
        for index in [owner, holder] {
            let agent = &cluster.agents[index];
            wait_for(
                &format!("{} to notice the hub is away", agent.name),
                Duration::from_secs(30),
                || agent.status()["agent"]["connected"] == Value::Bool(false),
            );
            assert!(cluster.agent(index).is_running());
        }

        let restarted = surplus_hub::now_ms();
        cluster.hub.restart();
        for index in [owner, holder] {
            cluster.agents[index].wait_connected_after(restarted);
        }
        // Work flows again through the restarted hub.
        let (file, hash) = make_file(cluster.dir.path(), "after-restart", 50_000, 9);
        cluster.agents[owner].ok(&["blob", "put", file.to_str().expect("utf-8")]);
        cluster.agents[owner].wait_placement(&hash, |p| all_active(p, 1));
        assert!(
            cluster.agents[holder]
                .vault_blobs()
                .iter()
                .any(|(name, _)| *name == hash)
        );
    });
}

#[test]
fn withdrawing_consent_marks_the_data_to_move_away() {
    on_each_database(|cluster| {
        let owner = cluster.add_agent("ada-pc", "ada@example.org", false, "64MiB");
        let holder = cluster.add_agent("bob-pc", "bob@example.org", true, "64MiB");
        cluster.agent(holder).start();
        cluster.agent(holder).wait_connected_after(0);
        let (file, hash) = make_file(cluster.dir.path(), "moving", 10_000, 3);
        cluster.agents[owner].ok(&["blob", "put", file.to_str().expect("utf-8")]);
        cluster.agents[owner].wait_placement(&hash, |p| all_active(p, 1));

        // The running agent picks the change up from its settings within seconds.
        cluster.agents[holder].ok(&["consent", "--storage", "off"]);
        wait_for(
            "the allocation to be marked evacuating",
            Duration::from_secs(30),
            || {
                let ledger = cluster.hub.admin_json(&["ledger"]);
                ledger[0]["state"] == "evacuating"
            },
        );
        let devices = cluster.hub.admin_json(&["devices"]);
        let bob = devices
            .as_array()
            .expect("list")
            .iter()
            .find(|d| d["name"] == "bob-pc")
            .expect("bob-pc")
            .clone();
        assert_eq!(bob["spare_storage_bytes"], 0);
        assert_eq!(bob["spare"]["storage_reason"], "no_consent");
        // Nothing was deleted behind the hub's back: the data stays until it has moved.
        assert_eq!(cluster.agents[holder].vault_blobs().len(), 1);
    });
}

#[test]
fn an_agent_killed_in_the_middle_of_a_transfer_finishes_it_after_a_restart() {
    on_each_database(|cluster| {
        let owner = cluster.add_agent("ada-pc", "ada@example.org", false, "64MiB");
        let holder = cluster.add_agent("bob-pc", "bob@example.org", true, "64MiB");
        // A slow link, so that the transfer is surely under way when the agent dies.
        cluster.agents[holder].ok(&["limits", "--bandwidth", "1MiB/s"]);
        cluster.agent(holder).start();
        cluster.agent(holder).wait_connected_after(0);

        let (file, hash) = make_file(cluster.dir.path(), "large", 4_000_000, 21);
        cluster.agents[owner].ok(&["blob", "put", file.to_str().expect("utf-8")]);
        let partial = cluster.agents[holder]
            .data_dir
            .join("incoming")
            .join(format!("{hash}.part"));
        wait_for("the transfer to begin", Duration::from_secs(30), || {
            std::fs::metadata(&partial).is_ok_and(|m| m.len() > 0)
        });
        cluster.agent(holder).kill();
        assert!(
            cluster.agents[holder].vault_blobs().is_empty(),
            "nothing half-written reaches the vault"
        );

        // Unacknowledged, the instruction is delivered again once its lease runs out.
        cluster.agent(holder).start();
        cluster.agents[owner].wait_placement(&hash, |p| all_active(p, 1));
        let content = std::fs::read(&file).expect("read");
        assert_eq!(
            cluster.agents[holder].vault_blobs(),
            vec![(hash.clone(), content)]
        );
    });
}
