//! End-to-end tests: one binary, real processes on loopback. Every test runs once per database
//! engine (SQLite, and PostgreSQL where the test script started one).

mod admin;
mod backup;
mod compute;
mod doctor;
mod hostile_hub;
mod idle;
mod replicas;
mod resilience;
mod storage;
mod tls;
mod versions;

use surplus_e2e::{Cluster, databases};

/// Runs `test` on a fresh cluster for each database engine.
pub fn on_each_database(test: impl Fn(&mut Cluster)) {
    let probe = tempfile::tempdir().expect("tempdir");
    for database in databases(probe.path()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let database = if database.starts_with("sqlite://") {
            format!("sqlite://{}", dir.path().join("hub.db").display())
        } else {
            database
        };
        let mut cluster = Cluster::new(dir, database);
        test(&mut cluster);
    }
}
