//! The engine's half of `scripts/bench-backup`, which runs restic on the same data in the same
//! run. Backs a folder up into a local store, or restores the latest snapshot, and prints the
//! seconds it took with the snapshot's summary as one JSON object.
//!
//!     local_backup backup SOURCE STORE     (with the previous snapshot as parent, if any)
//!     local_backup restore STORE TARGET
//!
//! For benchmarking only: the master key is kept in clear in `STORE/bench.key`. Sealed trees are
//! cached beside the store, in `STORE.trees`, as the agent caches them on the device.

use std::path::{Path, PathBuf};
use std::time::Instant;

use surplus_backup::erasure::Coding;
use surplus_backup::keys::MasterKey;
use surplus_backup::repo::Repository;
use surplus_backup::store::LocalStore;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn key(store: &Path) -> Result<MasterKey> {
    let path = store.join("bench.key");
    if let Ok(bytes) = std::fs::read(&path) {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| "a bad bench.key")?;
        return Ok(MasterKey::from_bytes(bytes));
    }
    let key = MasterKey::generate();
    std::fs::create_dir_all(store)?;
    std::fs::write(&path, key.to_bytes())?;
    Ok(key)
}

/// The repository in `store`, with its tree cache.
fn open(store: &Path, coding: Coding) -> Result<Repository<LocalStore>> {
    let key = key(store)?;
    let mut repo = Repository::open(LocalStore::open(store)?, &key, coding)?;
    let mut cache = store.as_os_str().to_owned();
    cache.push(".trees");
    repo.set_tree_cache(PathBuf::from(cache));
    Ok(repo)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // One holder keeps the whole pack, as restic's local repository does.
    let coding = Coding::new(1, 0)?;
    match args.as_slice() {
        ["backup", source, store] => {
            let mut repo = open(Path::new(store), coding)?;
            let parent = repo.snapshots()?.pop().map(|(_, s)| s);
            let started = Instant::now();
            let report = repo.backup(
                &[PathBuf::from(source)],
                "bench",
                chrono_free_now(),
                parent.as_ref(),
            )?;
            let seconds = started.elapsed().as_secs_f64();
            let summary = report.snapshot.map(|s| s.summary).unwrap_or_default();
            println!(
                "{{\"seconds\": {seconds:.3}, \"bytes\": {}, \"files\": {}, \"unchanged_files\": {}, \"new_bytes\": {}}}",
                summary.bytes, summary.files, summary.unchanged_files, summary.new_bytes
            );
        }
        ["restore", store, target] => {
            let mut repo = open(Path::new(store), coding)?;
            let (_, snapshot) = repo.snapshots()?.pop().ok_or("no snapshot")?;
            let started = Instant::now();
            let bytes = repo.restore(&snapshot, Path::new(target), None)?.bytes;
            let seconds = started.elapsed().as_secs_f64();
            println!("{{\"seconds\": {seconds:.3}, \"bytes\": {bytes}}}");
        }
        _ => return Err("usage: local_backup backup SOURCE STORE | restore STORE TARGET".into()),
    }
    Ok(())
}

fn chrono_free_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
