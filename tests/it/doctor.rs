//! `surplus doctor`, as a subscriber or a helper runs it: every check says ok when all is well,
//! and names what is wrong when it is not.

use serde_json::Value;
use surplus_e2e::Cluster;

/// Runs `surplus doctor --json`: whether it succeeded, and each check's verdict and detail by
/// name.
fn doctor(agent: &surplus_e2e::Agent) -> (bool, Vec<(String, String, String)>) {
    let output = agent.cli(&["doctor", "--json"]);
    let checks: Value = serde_json::from_slice(&output.stdout).expect("doctor --json prints JSON");
    let checks = checks
        .as_array()
        .expect("checks")
        .iter()
        .map(|check| {
            let text = |key: &str| check[key].as_str().expect("a string").to_owned();
            (text("name"), text("verdict"), text("detail"))
        })
        .collect();
    (output.status.success(), checks)
}

fn find<'a>(checks: &'a [(String, String, String)], name: &str) -> (&'a str, &'a str) {
    let (_, verdict, detail) = checks
        .iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} check in {checks:?}"));
    (verdict, detail)
}

#[test]
fn doctor_says_what_works_and_names_what_does_not() {
    let mut cluster = Cluster::on_sqlite();
    let ada = cluster.add_agent("ada-pc", "ada@example.org", true, "64MiB");
    cluster.agent(ada).start();
    cluster.agent(ada).wait_connected_after(0);

    let (healthy, checks) = doctor(&cluster.agents[ada]);
    assert!(healthy, "{checks:?}");
    let names: Vec<&str> = checks.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "hub",
            "clock",
            "credentials",
            "keyring",
            "vault",
            "agent",
            "idle",
            "backup"
        ]
    );
    assert!(
        checks.iter().all(|(_, verdict, _)| verdict == "ok"),
        "{checks:?}"
    );
    let (_, hub) = find(&checks, "hub");
    assert!(hub.contains("over TLS, its certificate verified"), "{hub}");
    assert!(hub.contains("protocol 1"), "{hub}");
    assert!(find(&checks, "clock").1.contains("agrees"));
    assert!(find(&checks, "credentials").1.contains("registered"));
    assert!(
        find(&checks, "vault").1.contains("of up to 64.0 MiB"),
        "{checks:?}"
    );
    assert!(find(&checks, "agent").1.starts_with("running"));
    let text = cluster.agents[ada].ok(&["doctor"]);
    assert!(text.contains("ok       hub"), "{text}");

    // The agent stops: named, and the exit status says so.
    cluster.agent(ada).stop();
    let (healthy, checks) = doctor(&cluster.agents[ada]);
    assert!(!healthy);
    assert_eq!(
        find(&checks, "agent"),
        ("problem", find(&checks, "agent").1)
    );
    assert!(find(&checks, "agent").1.contains("not running"));

    // A computer told nothing: the hub's private CA and the missing registration, named.
    let eve = cluster.new_agent("eve-pc", "eve@example.org");
    let (healthy, checks) = doctor(&eve);
    assert!(!healthy);
    let (verdict, hub) = find(&checks, "hub");
    assert_eq!(verdict, "problem");
    assert!(hub.contains("--ca-file"), "{hub}");
    let (verdict, credentials) = find(&checks, "credentials");
    assert_eq!(verdict, "problem");
    assert!(credentials.contains("not registered"), "{credentials}");
}
