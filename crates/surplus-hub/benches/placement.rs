//! How long a placement pass takes at scale: `cargo bench -p surplus-hub --bench placement`.
//!
//! A hub on SQLite (a throwaway file) is filled directly with `BENCH_DEVICES` devices lending
//! storage (10,000 by default, five to a subscriber, each on its own network) and
//! `BENCH_PLACEMENTS` open placements (100,000 by default): shards of packs of four, two of which
//! rebuild a pack, owned by a thousand subscribers. Then:
//!
//! 1. one pass decides every placement and allocates a holder for each: placements per second;
//! 2. a second pass finds every placement waiting for its holder to confirm: how long a pass over
//!    that many open placements takes when there is nothing to decide, the steady state.
//!
//! Prints one line per pass, and `PLACEMENT <placements> <devices> <first pass s> <per second>
//! <second pass ms>` for scripts/bench.

use std::time::Instant;

use sqlx::Connection;
use surplus_hub::staging::Staging;
use surplus_hub::store::Store;
use surplus_hub::{Hub, Settings, now_ms, scheduler};

const SHARDS_PER_PACK: usize = 4;
const OWNERS: usize = 1000;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let devices = setting("BENCH_DEVICES", 10_000);
    let placements = setting("BENCH_PLACEMENTS", 100_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(bench(devices, placements));
}

async fn bench(devices: usize, placements: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = format!("sqlite://{}", dir.path().join("hub.db").display());
    let store = Store::connect(&database).await.expect("store");
    let staging = Staging::open(&dir.path().join("staging"))
        .await
        .expect("staging");
    let hub = Hub::without_background(store, staging, Settings::default());

    let filling = Instant::now();
    fill(&database, devices, placements).await;
    println!(
        "filled {devices} devices and {placements} open placements in {:.1} s",
        filling.elapsed().as_secs_f64()
    );

    let first = Instant::now();
    let made = scheduler::place_pending(&hub, Default::default())
        .await
        .expect("first pass");
    let first = first.elapsed().as_secs_f64();
    assert_eq!(made.len(), placements, "every placement found a holder");
    let rate = made.len() as f64 / first;
    println!(
        "first pass:  {} placements decided and allocated in {first:.2} s = {rate:.0} placements/s",
        made.len()
    );

    let second = Instant::now();
    let again = scheduler::place_pending(&hub, Default::default())
        .await
        .expect("second pass");
    let second_ms = second.elapsed().as_secs_f64() * 1000.0;
    assert!(again.is_empty(), "nothing is placed twice");
    println!(
        "second pass: {placements} open placements, all waiting for holders, in {second_ms:.0} ms"
    );
    println!("PLACEMENT {placements} {devices} {first:.3} {rate:.0} {second_ms:.1}");
}

/// Writes the subscribers, devices, blobs and placements straight into the database, many rows
/// to a statement.
async fn fill(database: &str, devices: usize, placements: usize) {
    let mut conn = sqlx::AnyConnection::connect(database)
        .await
        .expect("connect");
    let now = now_ms();
    let lenders = devices.div_ceil(5);
    let mut rows = Vec::new();
    for s in 0..lenders + OWNERS {
        rows.push(format!(
            "('{}', 'bench-{s}@bench.example', 'x', 'standard', 'active', {now})",
            subscriber(s)
        ));
    }
    insert(
        &mut conn,
        "subscribers (id, email, password_hash, plan, status, created_at)",
        &rows,
    )
    .await;
    rows.clear();
    for d in 0..devices {
        rows.push(format!(
            "('{}', '{}', 'pc-{d}', 'x', {now}, {now}, {}, 'net-{d}')",
            device(d),
            subscriber(d / 5),
            1u64 << 40
        ));
    }
    insert(
        &mut conn,
        "devices (id, subscriber_id, name, secret_hash, created_at, last_heartbeat, spare_storage_bytes, network)",
        &rows,
    )
    .await;
    rows.clear();
    for p in 0..placements {
        rows.push(format!("('{}', 4096, {now}, 1)", hash(p)));
    }
    insert(&mut conn, "blobs (hash, size, created_at, staged)", &rows).await;
    rows.clear();
    for p in 0..placements {
        let owner = subscriber(lenders + (p / SHARDS_PER_PACK) % OWNERS);
        rows.push(format!(
            "('{}', '{owner}', 1, {now}, 'pack-{}', 2)",
            hash(p),
            p / SHARDS_PER_PACK
        ));
    }
    insert(
        &mut conn,
        "placements (hash, subscriber_id, copies, created_at, pack, pack_data)",
        &rows,
    )
    .await;
}

async fn insert(conn: &mut sqlx::AnyConnection, into: &str, rows: &[String]) {
    for chunk in rows.chunks(500) {
        let sql = format!("INSERT INTO {into} VALUES {}", chunk.join(", "));
        sqlx::query(&sql).execute(&mut *conn).await.expect("insert");
    }
}

fn subscriber(n: usize) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x5u128 << 120 | n as u128)
}

fn device(n: usize) -> uuid::Uuid {
    uuid::Uuid::from_u128(0xdu128 << 120 | n as u128)
}

fn hash(n: usize) -> String {
    blake3::hash(&n.to_le_bytes()).to_hex().to_string()
}
