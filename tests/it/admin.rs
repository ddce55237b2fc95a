//! The operator's commands against a running system (claims 2-5).

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
