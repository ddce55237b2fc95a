//! The hub on HTTPS, as an operator with a private CA runs it: devices trust exactly what they
//! are told, remember it, and a renewed certificate takes effect on SIGHUP without a restart.
//! (Every other end-to-end test runs over HTTPS too; this one is about the trust itself.)

use std::time::Duration;

use surplus_e2e::{Cluster, TestCa, https_get_ok, wait_for};

#[test]
fn devices_trust_the_hubs_private_ca_only_when_told_and_a_renewed_certificate_loads_on_sighup() {
    let cluster = Cluster::on_sqlite();
    let mut eve = cluster.new_agent("eve-pc", "eve@example.org");

    // Not told about the private CA: refused, with what to do about it.
    let refused = eve.cli(&["signup", "--email", "eve@example.org"]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("--ca-file"), "{said}");

    // A CA file that is not one: named, and refused before anything is sent.
    let junk = cluster.dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").expect("write");
    let junk = junk.to_str().expect("utf-8").to_owned();
    let refused = eve.cli(&["--ca-file", &junk, "signup", "--email", "eve@example.org"]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("junk.pem"), "{said}");

    // Told once, at sign-up: remembered, so the agent started later without it connects.
    let ca = cluster.hub.tls.ca.to_str().expect("utf-8").to_owned();
    eve.ok(&["--ca-file", &ca, "signup", "--email", "eve@example.org"]);
    eve.ok(&["device", "register", "--name", "eve-pc"]);
    eve.start();
    eve.wait_connected_after(0);

    // The operator renews the certificate (here from another CA, to tell them apart) and sends
    // SIGHUP: the hub serves the new one without a restart.
    let renewed = TestCa::make(cluster.dir.path(), "renewed");
    std::fs::copy(&renewed.cert, &cluster.hub.tls.cert).expect("install the certificate");
    std::fs::copy(&renewed.key, &cluster.hub.tls.key).expect("install the key");
    let healthz = format!("{}/healthz", cluster.hub.url);
    assert!(https_get_ok(&healthz, &cluster.hub.tls.ca));
    cluster.hub.hang_up();
    wait_for(
        "the hub to reload its certificate",
        Duration::from_secs(20),
        || cluster.hub.log().contains("TLS certificate reloaded"),
    );
    assert!(
        https_get_ok(&healthz, &renewed.ca),
        "the renewed certificate is served"
    );
    assert!(
        !https_get_ok(&healthz, &cluster.hub.tls.ca),
        "the old CA no longer vouches for the hub"
    );

    // A certificate that does not load is logged, and the one in use stays.
    std::fs::write(&cluster.hub.tls.cert, "garbage").expect("write");
    cluster.hub.hang_up();
    wait_for(
        "the hub to refuse the broken certificate",
        Duration::from_secs(20),
        || {
            cluster
                .hub
                .log()
                .contains("the TLS certificate did not load")
        },
    );
    assert!(
        https_get_ok(&healthz, &renewed.ca),
        "still served after a bad reload"
    );
    eve.stop();
}

#[test]
fn a_hub_refuses_plain_http_off_loopback_unless_behind_a_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = format!("sqlite://{}", dir.path().join("hub.db").display());
    let output = std::process::Command::new(surplus_e2e::binary("surplus-hub"))
        .args(["serve", "--listen", "0.0.0.0:0", "--database", &database])
        .arg("--staging")
        .arg(dir.path().join("staging"))
        .env("SURPLUS_LOG", "warn")
        .output()
        .expect("run surplus-hub");
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("--tls-cert") && said.contains("--behind-proxy"),
        "{said}"
    );
}
