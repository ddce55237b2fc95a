//! The engine end to end over a local store: back a tree with every kind of entry up, lose and
//! alter shards, restore, and compare bit by bit and metadata.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use surplus_backup::erasure::Coding;
use surplus_backup::keys::{MasterKey, WrapCost};
use surplus_backup::repo::{BackupError, Repository};
use surplus_backup::store::LocalStore;

const MARKER: &[u8] = b"PLAINTEXT-MARKER-7f3a";

/// Deterministic pseudo-random bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A folder with every kind of entry the engine must keep.
fn make_tree(root: &Path) -> PathBuf {
    let folder = root.join("documents");
    std::fs::create_dir_all(folder.join("deep/deeper")).expect("dirs");
    std::fs::write(folder.join("empty"), b"").expect("empty");
    std::fs::write(
        folder.join("notes.txt"),
        [MARKER, b" some words ".repeat(500).as_slice()].concat(),
    )
    .expect("notes");
    let mut large = noise(20 << 20, 1);
    large[12345..12345 + MARKER.len()].copy_from_slice(MARKER);
    std::fs::write(folder.join("deep/large.bin"), &large).expect("large");
    std::fs::write(
        folder.join("deep/deeper/script.sh"),
        b"#!/bin/sh\necho hi\n",
    )
    .expect("script");
    std::fs::set_permissions(
        folder.join("deep/deeper/script.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("mode");
    std::fs::write(folder.join("private"), MARKER).expect("private");
    std::fs::set_permissions(
        folder.join("private"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("mode");
    let odd_name = std::ffi::OsStr::from_bytes(b"caf\xe9-latin1.txt");
    std::fs::write(folder.join(odd_name), b"a name that is not UTF-8").expect("odd");
    symlink("deep/large.bin", folder.join("link-to-large")).expect("symlink");
    symlink("/nonexistent/target", folder.join("dangling")).expect("symlink");
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    std::fs::File::options()
        .write(true)
        .open(folder.join("notes.txt"))
        .expect("open")
        .set_modified(old)
        .expect("mtime");
    folder
}

/// Compares two trees: kinds, bytes, permissions, modification times, link targets.
fn assert_same_tree(expected: &Path, actual: &Path) {
    let meta_e = std::fs::symlink_metadata(expected).expect("expected");
    let meta_a = std::fs::symlink_metadata(actual)
        .unwrap_or_else(|e| panic!("{} missing: {e}", actual.display()));
    assert_eq!(
        meta_e.file_type().is_symlink(),
        meta_a.file_type().is_symlink(),
        "{}",
        actual.display()
    );
    if meta_e.file_type().is_symlink() {
        assert_eq!(
            std::fs::read_link(expected).expect("link"),
            std::fs::read_link(actual).expect("link")
        );
        return;
    }
    assert_eq!(
        meta_e.permissions().mode() & 0o7777,
        meta_a.permissions().mode() & 0o7777,
        "mode of {}",
        actual.display()
    );
    assert_eq!(
        meta_e.modified().expect("mtime"),
        meta_a.modified().expect("mtime"),
        "mtime of {}",
        actual.display()
    );
    if meta_e.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(expected)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        let mut restored: Vec<_> = std::fs::read_dir(actual)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        restored.sort();
        assert_eq!(names, restored, "entries of {}", actual.display());
        for name in names {
            assert_same_tree(&expected.join(&name), &actual.join(&name));
        }
    } else {
        assert!(
            std::fs::read(expected).expect("read") == std::fs::read(actual).expect("read"),
            "{} differs",
            actual.display()
        );
    }
}

fn every_file(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(every_file(&path))
        } else {
            files.push(path)
        }
    }
    files
}

#[test]
fn a_tree_survives_losing_m_holders_and_a_tampered_shard() {
    let work = tempfile::tempdir().expect("tempdir");
    let folder = make_tree(work.path());
    let store_dir = work.path().join("store");
    let key = MasterKey::generate();
    let coding = Coding::new(2, 2).expect("coding");
    let mut repo =
        Repository::open(LocalStore::open(&store_dir).expect("store"), &key, coding).expect("open");
    let report = repo
        .backup(std::slice::from_ref(&folder), "host", 1_000, None)
        .expect("backup");
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let snapshot = report.snapshot.expect("snapshot");
    assert_eq!(snapshot.summary.files, 6);

    // Nothing the store holds contains the plaintext.
    for file in every_file(&store_dir) {
        let bytes = std::fs::read(&file).expect("read");
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER),
            "plaintext in {}",
            file.display()
        );
    }

    // Two of the four holders of every pack are gone: the two left rebuild every pack.
    let packs: Vec<PathBuf> = std::fs::read_dir(store_dir.join("packs"))
        .expect("packs")
        .map(|e| e.expect("e").path())
        .collect();
    assert!(!packs.is_empty());
    for pack in &packs {
        std::fs::remove_file(pack.join("0")).expect("lose shard 0");
        std::fs::remove_file(pack.join("3")).expect("lose shard 3");
    }
    let target = work.path().join("restored");
    repo.restore(&snapshot, &target, None).expect("restore");
    assert_same_tree(&folder, &target.join("documents"));

    // A holder that alters its shard is noticed: with one of the two left altered, too few remain.
    for pack in &packs {
        let shard = pack.join("1");
        let mut bytes = std::fs::read(&shard).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&shard, bytes).expect("write");
    }
    let mut fresh =
        Repository::open(LocalStore::open(&store_dir).expect("store"), &key, coding).expect("open");
    let failed = fresh.restore(&snapshot, &work.path().join("again"), None);
    assert!(
        matches!(
            failed,
            Err(BackupError::Data(surplus_backup::Error::TooFewShards {
                available: 1,
                needed: 2
            }))
        ),
        "{failed:?}"
    );
}

#[test]
fn unchanged_files_are_not_read_again_and_changes_cost_only_their_chunks() {
    let work = tempfile::tempdir().expect("tempdir");
    let folder = make_tree(work.path());
    let key = MasterKey::generate();
    let coding = Coding::new(1, 1).expect("coding");
    let mut repo = Repository::open(
        LocalStore::open(&work.path().join("store")).expect("store"),
        &key,
        coding,
    )
    .expect("open");
    let first = repo
        .backup(std::slice::from_ref(&folder), "host", 1_000, None)
        .expect("backup")
        .snapshot
        .expect("snapshot");
    assert!(first.summary.new_bytes >= 20 << 20);

    let second = repo
        .backup(std::slice::from_ref(&folder), "host", 2_000, Some(&first))
        .expect("backup")
        .snapshot
        .expect("snapshot");
    assert_eq!(second.summary.unchanged_files, second.summary.files);
    assert_eq!(second.summary.new_bytes, 0);

    std::fs::write(folder.join("notes.txt"), b"rewritten").expect("edit");
    let third = repo
        .backup(std::slice::from_ref(&folder), "host", 3_000, Some(&second))
        .expect("backup")
        .snapshot
        .expect("snapshot");
    assert_eq!(third.summary.unchanged_files, third.summary.files - 1);
    assert_eq!(third.summary.new_bytes, 9);
    assert_eq!(repo.snapshots().expect("list").len(), 3);
}

#[test]
fn a_new_device_restores_with_the_passphrase_alone() {
    let work = tempfile::tempdir().expect("tempdir");
    let folder = make_tree(work.path());
    let store_dir = work.path().join("store");
    let key = MasterKey::generate();
    let wrapped = key
        .wrap("a recovery passphrase", WrapCost::TESTING)
        .expect("wrap");
    let coding = Coding::new(3, 3).expect("coding");
    {
        let mut repo = Repository::open(LocalStore::open(&store_dir).expect("store"), &key, coding)
            .expect("open");
        repo.backup(std::slice::from_ref(&folder), "old-pc", 1_000, None)
            .expect("backup");
    }
    // The old PC is gone; the new one has the store, the wrapped key and the passphrase.
    let recovered = wrapped.unwrap("a recovery passphrase").expect("unwrap");
    let mut repo = Repository::open(
        LocalStore::open(&store_dir).expect("store"),
        &recovered,
        coding,
    )
    .expect("open");
    let (_, snapshot) = repo.snapshots().expect("list").pop().expect("a snapshot");
    assert_eq!(snapshot.hostname, "old-pc");
    let target = work.path().join("new-pc");
    repo.restore(&snapshot, &target, Some(Path::new("documents/deep")))
        .expect("restore a part");
    assert_same_tree(&folder.join("deep"), &target.join("documents/deep"));
    assert!(
        !target.join("documents/notes.txt").exists(),
        "only the asked-for part"
    );
    assert!(matches!(
        repo.restore(&snapshot, &target, Some(Path::new("documents/nothing"))),
        Err(BackupError::NoSuchPath(_))
    ));

    let names = |nodes: Vec<surplus_backup::tree::Node>| -> Vec<String> {
        nodes.iter().map(|n| n.name.display()).collect()
    };
    assert_eq!(
        names(repo.list(&snapshot, None).expect("list")),
        ["documents"]
    );
    assert_eq!(
        names(
            repo.list(&snapshot, Some(Path::new("documents/deep")))
                .expect("list")
        ),
        ["deeper", "large.bin"]
    );
    assert_eq!(
        names(
            repo.list(&snapshot, Some(Path::new("documents/notes.txt")))
                .expect("list")
        ),
        ["notes.txt"]
    );
    assert!(matches!(
        repo.list(&snapshot, Some(Path::new("documents/missing"))),
        Err(BackupError::NoSuchPath(_))
    ));

    // Another key opens nothing.
    let stranger = Repository::open(
        LocalStore::open(&store_dir).expect("store"),
        &MasterKey::generate(),
        coding,
    );
    assert!(matches!(
        stranger,
        Err(BackupError::Data(surplus_backup::Error::Unauthentic))
    ));
}

#[test]
fn forget_drops_snapshots_and_the_packs_only_they_needed() {
    let work = tempfile::tempdir().expect("tempdir");
    let folder = make_tree(work.path());
    let store_dir = work.path().join("store");
    let key = MasterKey::generate();
    let coding = Coding::new(1, 1).expect("coding");
    let mut repo =
        Repository::open(LocalStore::open(&store_dir).expect("store"), &key, coding).expect("open");
    // A large file that only the first snapshot has: its chunks fill whole packs of their own.
    std::fs::write(folder.join("huge.bin"), noise(40 << 20, 98)).expect("huge");
    repo.backup(std::slice::from_ref(&folder), "host", 1_000, None)
        .expect("backup");
    let packs_before = std::fs::read_dir(store_dir.join("packs"))
        .expect("packs")
        .count();
    std::fs::remove_file(folder.join("huge.bin")).expect("remove");
    let parent = repo.snapshots().expect("list").pop().map(|(_, s)| s);
    repo.backup(
        std::slice::from_ref(&folder),
        "host",
        2_000,
        parent.as_ref(),
    )
    .expect("backup");

    let retention = surplus_backup::forget::Retention {
        last: 1,
        ..Default::default()
    };
    let (forgotten, packs_dropped) = repo.forget(retention, 0).expect("forget");
    assert_eq!(forgotten.len(), 1);
    assert!(
        packs_dropped >= 1,
        "the packs only the forgotten snapshot needed go"
    );
    let packs_after = std::fs::read_dir(store_dir.join("packs"))
        .expect("packs")
        .count();
    assert!(
        packs_after <= packs_before,
        "{packs_after} packs left of {packs_before} and new ones"
    );

    // What is left restores whole, also from a fresh open (the rewritten index).
    let mut fresh =
        Repository::open(LocalStore::open(&store_dir).expect("store"), &key, coding).expect("open");
    let (_, latest) = fresh.snapshots().expect("list").pop().expect("one left");
    assert_eq!(fresh.snapshots().expect("list").len(), 1);
    let target = work.path().join("after-forget");
    fresh.restore(&latest, &target, None).expect("restore");
    assert_same_tree(&folder, &target.join("documents"));
}

/// A local store that fails once it has taken `budget` packs (a backup cut off mid-way), and
/// that gives no shards back unless `fetches` (every holder offline).
struct Failing {
    inner: LocalStore,
    budget: usize,
    fetches: bool,
}

impl surplus_backup::store::Store for Failing {
    fn put_shards(&mut self, pack: &str, shards: Vec<Vec<u8>>) -> std::io::Result<()> {
        if self.budget == 0 {
            return Err(std::io::Error::other("the connection dropped"));
        }
        self.budget -= 1;
        self.inner.put_shards(pack, shards)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
    fn get_shards(
        &mut self,
        pack: &str,
        hashes: &[String],
        needed: usize,
    ) -> std::io::Result<Vec<Vec<u8>>> {
        if !self.fetches {
            return Ok(Vec::new());
        }
        self.inner.get_shards(pack, hashes, needed)
    }
    fn delete_shards(&mut self, pack: &str, hashes: &[String]) -> std::io::Result<()> {
        self.inner.delete_shards(pack, hashes)
    }
    fn put_object(
        &mut self,
        kind: surplus_backup::store::ObjectKind,
        name: &str,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        self.inner.put_object(kind, name, bytes)
    }
    fn get_object(
        &mut self,
        kind: surplus_backup::store::ObjectKind,
        name: &str,
    ) -> std::io::Result<Vec<u8>> {
        self.inner.get_object(kind, name)
    }
    fn delete_object(
        &mut self,
        kind: surplus_backup::store::ObjectKind,
        name: &str,
    ) -> std::io::Result<()> {
        self.inner.delete_object(kind, name)
    }
    fn list_objects(
        &mut self,
        kind: surplus_backup::store::ObjectKind,
    ) -> std::io::Result<Vec<String>> {
        self.inner.list_objects(kind)
    }
}

/// Counts what a backup or restore reports.
#[derive(Default)]
struct Counter {
    bytes: std::sync::atomic::AtomicU64,
    files: std::sync::atomic::AtomicU64,
    packs: std::sync::atomic::AtomicU64,
}

impl surplus_backup::repo::Progress for Counter {
    fn bytes(&self, bytes: u64) {
        self.bytes
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }
    fn file(&self) {
        self.files
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn pack_stored(&self, _bytes: u64) {
        self.packs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn an_interrupted_backup_keeps_what_it_stored_and_the_next_run_completes() {
    use std::sync::atomic::Ordering::Relaxed;
    let work = tempfile::tempdir().expect("tempdir");
    let folder = work.path().join("media");
    std::fs::create_dir_all(&folder).expect("dir");
    // Nine incompressible files of 8 MiB: about 72 MiB, five packs.
    for n in 0..9 {
        std::fs::write(
            folder.join(format!("clip-{n}.bin")),
            noise(8 << 20, 2 * n + 101),
        )
        .expect("write");
    }
    let store_dir = work.path().join("store");
    let key = MasterKey::generate();
    let coding = Coding::new(1, 1).expect("coding");
    let (files, bytes) = surplus_backup::repo::scan_totals(std::slice::from_ref(&folder));
    assert_eq!((files, bytes), (9, 9 * (8 << 20)));

    // The first run is cut off at its fifth pack: the first four were recorded at the
    // checkpoint.
    let failing = Failing {
        inner: LocalStore::open(&store_dir).expect("store"),
        budget: surplus_backup::repo::CHECKPOINT_PACKS,
        fetches: true,
    };
    let mut repo = Repository::open(failing, &key, coding).expect("open");
    let interrupted = repo.backup(std::slice::from_ref(&folder), "host", 1_000, None);
    assert!(
        matches!(interrupted, Err(BackupError::Store(_))),
        "{interrupted:?}"
    );

    // The next run stores only what the checkpoint does not cover.
    let counter = std::sync::Arc::new(Counter::default());
    let mut repo =
        Repository::open(LocalStore::open(&store_dir).expect("store"), &key, coding).expect("open");
    repo.set_progress(counter.clone());
    let report = repo
        .backup(std::slice::from_ref(&folder), "host", 2_000, None)
        .expect("backup");
    let summary = report.snapshot.expect("snapshot").summary;
    assert_eq!(summary.bytes, bytes);
    assert!(
        summary.new_bytes <= bytes - (CHECKPOINT_BYTES_AT_LEAST as u64),
        "the second run stored {} of {bytes} bytes again",
        summary.new_bytes
    );
    assert_eq!(counter.files.load(Relaxed), files);
    assert_eq!(counter.bytes.load(Relaxed), bytes);
    assert!(counter.packs.load(Relaxed) >= 1);

    let target = work.path().join("restored");
    let mut fresh =
        Repository::open(LocalStore::open(&store_dir).expect("store"), &key, coding).expect("open");
    let (_, snapshot) = fresh.snapshots().expect("list").pop().expect("one");
    fresh.restore(&snapshot, &target, None).expect("restore");
    assert_same_tree(&folder, &target.join("media"));
}

/// What four packs hold at the least: a pack is cut once it passes its target size.
const CHECKPOINT_BYTES_AT_LEAST: usize =
    surplus_backup::repo::CHECKPOINT_PACKS * surplus_backup::repo::PACK_TARGET - (1 << 20);

#[test]
fn an_interrupted_restore_completes_without_writing_whole_files_again() {
    let work = tempfile::tempdir().expect("tempdir");
    let folder = make_tree(work.path());
    let store_dir = work.path().join("store");
    let key = MasterKey::generate();
    let coding = Coding::new(2, 1).expect("coding");
    let mut repo =
        Repository::open(LocalStore::open(&store_dir).expect("store"), &key, coding).expect("open");
    let snapshot = repo
        .backup(std::slice::from_ref(&folder), "host", 1_000, None)
        .expect("backup")
        .snapshot
        .expect("snapshot");

    // A first run that got as far as the large file and one other, and left a partial file
    // behind (as a killed restore does: whole files under their names, the rest under
    // temporary names).
    let target = work.path().join("restored");
    repo.restore(
        &snapshot,
        &target,
        Some(Path::new("documents/deep/large.bin")),
    )
    .expect("restore one");
    repo.restore(&snapshot, &target, Some(Path::new("documents/notes.txt")))
        .expect("restore one");
    std::fs::write(target.join("documents/.private.surplus-restore"), b"half").expect("partial");
    // And a file of the same name that is not what the snapshot holds is replaced.
    std::fs::write(target.join("documents/empty"), b"not empty").expect("stale");

    let report = repo.restore(&snapshot, &target, None).expect("restore");
    assert_eq!(report.in_place, 2, "{report:?}");
    assert_eq!(report.files, 4, "{report:?}");
    assert!(!target.join("documents/.private.surplus-restore").exists());
    assert_same_tree(&folder, &target.join("documents"));
}

#[test]
fn cached_trees_list_and_compare_snapshots_with_every_holder_offline() {
    let work = tempfile::tempdir().expect("tempdir");
    let folder = make_tree(work.path());
    let store_dir = work.path().join("store");
    let cache = work.path().join("cache");
    let key = MasterKey::generate();
    let coding = Coding::new(1, 1).expect("coding");
    let offline = || Failing {
        inner: LocalStore::open(&store_dir).expect("store"),
        budget: usize::MAX,
        fetches: false,
    };
    let mut repo = Repository::open(offline(), &key, coding).expect("open");
    repo.set_tree_cache(cache.clone());
    let first = repo
        .backup(std::slice::from_ref(&folder), "host", 1_000, None)
        .expect("backup")
        .snapshot
        .expect("snapshot");
    for entry in std::fs::read_dir(&cache).expect("cache") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        assert!(
            !bytes.windows(b"notes.txt".len()).any(|w| w == b"notes.txt"),
            "the cache holds sealed trees only"
        );
    }

    // No shard can be had, yet the snapshot's packs, its listing, and the next backup's
    // comparison with it all work from the cache.
    let mut repo = Repository::open(offline(), &key, coding).expect("open");
    repo.set_tree_cache(cache.clone());
    assert!(!repo.packs_of(&first).expect("packs").is_empty());
    assert!(
        !repo
            .list(&first, Some(Path::new("documents")))
            .expect("ls")
            .is_empty()
    );
    let second = repo
        .backup(std::slice::from_ref(&folder), "host", 2_000, Some(&first))
        .expect("backup with the holders offline")
        .snapshot
        .expect("snapshot");
    assert_eq!(second.summary.unchanged_files, second.summary.files);

    // Without the cache the trees must come from holders, who are offline.
    let mut uncached = Repository::open(offline(), &key, coding).expect("open");
    assert!(uncached.list(&first, Some(Path::new("documents"))).is_err());
}

#[test]
fn a_restore_where_the_files_were_keeps_both_copies_or_replaces_as_asked() {
    use surplus_backup::repo::Existing;
    let work = tempfile::tempdir().expect("tempdir");
    let folder = make_tree(work.path());
    let key = MasterKey::generate();
    let coding = Coding::new(2, 1).expect("coding");
    let store = LocalStore::open(&work.path().join("store")).expect("store");
    let mut repo = Repository::open(store, &key, coding).expect("open");
    let snapshot = repo
        .backup(std::slice::from_ref(&folder), "host", 1_000, None)
        .expect("backup")
        .snapshot
        .expect("snapshot");
    let snapshot_notes = std::fs::read(folder.join("notes.txt")).expect("notes");

    // Since the backup: a file edited, one deleted, one added.
    std::fs::write(folder.join("notes.txt"), b"edited since").expect("edit");
    std::fs::remove_file(folder.join("empty")).expect("delete");
    std::fs::write(folder.join("new.txt"), b"added since").expect("add");
    let original = folder.parent().expect("parent");

    let report = repo
        .restore_with(&snapshot, original, None, Existing::KeepBoth)
        .expect("restore keeping both");
    assert_eq!(report.kept_both, 1, "notes.txt alone: {report:?}");
    assert_eq!(report.replaced, 0, "{report:?}");
    assert_eq!(
        std::fs::read(folder.join("notes.txt")).expect("read"),
        b"edited since"
    );
    assert_eq!(
        std::fs::read(folder.join("notes (restored).txt")).expect("read"),
        snapshot_notes
    );
    assert!(folder.join("empty").exists(), "the deleted file is back");
    assert_eq!(
        std::fs::read(folder.join("new.txt")).expect("read"),
        b"added since"
    );
    // Unchanged files and links were recognised in place, not copied beside themselves.
    assert!(!folder.join("deep/large (restored).bin").exists());
    assert!(!folder.join("dangling (restored)").exists());
    assert!(report.in_place >= 3, "{report:?}");

    // Again: the first copy's name is taken, so the next goes beside it.
    repo.restore_with(
        &snapshot,
        original,
        Some(Path::new("documents/notes.txt")),
        Existing::KeepBoth,
    )
    .expect("restore again");
    assert!(folder.join("notes (restored 2).txt").exists());

    let report = repo
        .restore_with(
            &snapshot,
            original,
            Some(Path::new("documents/notes.txt")),
            Existing::Replace,
        )
        .expect("restore replacing");
    assert_eq!(report.replaced, 1, "{report:?}");
    assert_eq!(
        std::fs::read(folder.join("notes.txt")).expect("read"),
        snapshot_notes
    );
}

#[test]
fn find_searches_a_whole_snapshot_by_name_and_stops_at_the_limit() {
    let work = tempfile::tempdir().expect("tempdir");
    let folder = make_tree(work.path());
    let key = MasterKey::generate();
    let coding = Coding::new(1, 1).expect("coding");
    let store = LocalStore::open(&work.path().join("store")).expect("store");
    let mut repo = Repository::open(store, &key, coding).expect("open");
    let snapshot = repo
        .backup(std::slice::from_ref(&folder), "host", 1_000, None)
        .expect("backup")
        .snapshot
        .expect("snapshot");
    fn repo_find(
        repo: &mut Repository<LocalStore>,
        snapshot: &surplus_backup::tree::Snapshot,
        needle: &str,
        limit: usize,
    ) -> (Vec<String>, bool) {
        let (found, more) = repo.find(snapshot, needle, limit).expect("find");
        (found.into_iter().map(|(path, _)| path).collect(), more)
    }
    assert_eq!(
        repo_find(&mut repo, &snapshot, "SCRIPT", 10),
        (vec!["documents/deep/deeper/script.sh".to_owned()], false)
    );
    assert_eq!(
        repo_find(&mut repo, &snapshot, "deep", 10),
        (
            vec![
                "documents/deep".to_owned(),
                "documents/deep/deeper".to_owned()
            ],
            false
        )
    );
    assert_eq!(
        repo_find(&mut repo, &snapshot, "deep", 1),
        (vec!["documents/deep".to_owned()], true)
    );
    assert_eq!(
        repo_find(&mut repo, &snapshot, "nowhere", 10),
        (vec![], false)
    );
}
