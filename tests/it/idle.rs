//! Where the user's idle time comes from, as `surplus status` says it, on a Wayland desktop
//! whose compositor does not answer: GNOME's idle monitor on a real D-Bus session, here a small
//! fake of it this test serves. It needs a session bus, so it is ignored by default and
//! `scripts/test` runs it under `dbus-run-session`
//! (`cargo test --test it -- --ignored real_session_bus`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use surplus_e2e::{Cluster, wait_for};

/// GNOME's idle monitor, saying what the test sets.
struct FakeMutter {
    idle_ms: Arc<AtomicU64>,
}

#[zbus::interface(name = "org.gnome.Mutter.IdleMonitor")]
impl FakeMutter {
    fn get_idletime(&self) -> u64 {
        self.idle_ms.load(Ordering::SeqCst)
    }
}

#[test]
#[ignore = "needs a D-Bus session bus: scripts/test runs it under dbus-run-session"]
fn real_session_bus_surplus_status_names_gnome_as_the_idle_source() {
    let idle_ms = Arc::new(AtomicU64::new(754_321));
    let _mutter = zbus::blocking::connection::Builder::session()
        .and_then(|builder| builder.name("org.gnome.Mutter.IdleMonitor"))
        .and_then(|builder| {
            builder.serve_at(
                "/org/gnome/Mutter/IdleMonitor/Core",
                FakeMutter {
                    idle_ms: Arc::clone(&idle_ms),
                },
            )
        })
        .and_then(zbus::blocking::connection::Builder::build)
        .expect("serve the fake idle monitor (run under dbus-run-session)");

    let mut cluster = Cluster::on_sqlite();
    let ada = cluster.add_agent("ada-pc", "ada@example.org", false, "64MiB");
    let compositor_gone = cluster.dir.path().join("wayland-gone");
    let agent = cluster.agent(ada);
    // A Wayland session whose compositor's socket is not there, and no X display.
    agent.set_env("XDG_SESSION_TYPE", "wayland");
    agent.set_env("WAYLAND_DISPLAY", compositor_gone.to_str().expect("utf-8"));
    agent.set_env("DISPLAY", "");
    agent.start();
    agent.wait_connected_after(0);
    let mut idle = serde_json::Value::Null;
    wait_for(
        "the agent to read the idle time from GNOME",
        Duration::from_secs(30),
        || {
            idle = agent.status()["agent"]["idle"].clone();
            idle["idle_seconds"] == 754
        },
    );
    assert_eq!(idle["source"], "GNOME Mutter IdleMonitor", "{idle}");
    assert_eq!(idle["unknown"], false, "{idle}");
    let said = agent.ok(&["status"]);
    let line = said
        .lines()
        .find(|line| line.starts_with("user:"))
        .unwrap_or_default();
    assert!(
        line.contains("idle for 12m 34s") && line.contains("(read from GNOME Mutter IdleMonitor)"),
        "{said}"
    );
}
