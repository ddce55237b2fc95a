//! Agents and hubs of different versions meet in the field. An agent older than the hub serves
//! is told so, and says "update needed" where its user looks, instead of failing silently.

use std::time::Duration;

use surplus_e2e::{Cluster, wait_for};

#[test]
fn an_agent_too_old_for_the_hub_tells_its_user_to_update() {
    let mut cluster = Cluster::on_sqlite();
    let old = cluster.add_agent("old-pc", "ann@example.org", false, "1MiB");
    let agent = cluster.agent(old);
    // From now on this device speaks a protocol older than the hub's oldest.
    agent.set_env("SURPLUS_TEST_PROTOCOL", "0");
    agent.start();
    wait_for(
        "the agent to learn it is too old",
        Duration::from_secs(30),
        || agent.status()["agent"]["update_needed"] == true,
    );
    let text = agent.ok(&["status"]);
    assert!(text.contains("UPDATE NEEDED"), "{text}");
    let refused = agent.cli(&["device", "list"]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("update Surplus"), "{said}");
    assert!(said.contains("agent_too_old"), "{said}");
    agent.stop();
}
