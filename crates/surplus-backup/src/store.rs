//! Where the engine keeps what it makes: the storage trait it owns, and a local-folder store.
//!
//! Packs are kept as shards (in index order); indexes and snapshots are small sealed objects.
//! The agent implements the trait over the hub (shards to staging, objects to the subscriber's
//! space at the hub); [`LocalStore`] keeps everything in a folder, for tests and benchmarks.

use std::io;
use std::path::{Path, PathBuf};

/// The kinds of small objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// Which chunks are in which pack, and the pack's shard hashes.
    Index,
    /// A snapshot: the roots of a backed-up tree.
    Snapshot,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshot",
        }
    }
}

/// A pack a restore will need: its shards' names, in index order, and how many rebuild it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackWant {
    pub pack: String,
    pub shards: Vec<String>,
    pub needed: usize,
}

/// What the engine needs of a place to keep backups. Everything handed to it is ciphertext.
pub trait Store {
    /// Keeps a pack's shards, in index order. A store may keep them in the background; they
    /// must be kept by the time [`Store::flush`] returns.
    fn put_shards(&mut self, pack: &str, shards: Vec<Vec<u8>>) -> io::Result<()>;
    /// Returns once every shard handed to [`Store::put_shards`] is kept, or with the first
    /// failure. The engine calls it before it writes an index naming them.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Whether the store fetches packs ahead when told which a restore will need
    /// ([`Store::fetch_ahead`]); the engine then works the list out before it restores.
    fn fetches_ahead(&self) -> bool {
        false
    }
    /// The packs a restore will ask for, in the order it will ask ([`Store::get_shards`]); it may
    /// skip some (what is already in place) and ask for others again.
    fn fetch_ahead(&mut self, _packs: Vec<PackWant>) {}
    /// Whatever shards of a pack can be had, in any order: at least `needed` if it can be done.
    /// `hashes` are the shards' names, in index order. Some shards may be missing or altered: the
    /// engine checks them against their hashes.
    fn get_shards(
        &mut self,
        pack: &str,
        hashes: &[String],
        needed: usize,
    ) -> io::Result<Vec<Vec<u8>>>;
    fn put_object(&mut self, kind: ObjectKind, name: &str, bytes: &[u8]) -> io::Result<()>;
    fn get_object(&mut self, kind: ObjectKind, name: &str) -> io::Result<Vec<u8>>;
    fn list_objects(&mut self, kind: ObjectKind) -> io::Result<Vec<String>>;
    fn delete_object(&mut self, kind: ObjectKind, name: &str) -> io::Result<()>;
    /// Lets a pack's shards go (they are no longer needed by any snapshot).
    fn delete_shards(&mut self, pack: &str, hashes: &[String]) -> io::Result<()>;
}

/// A store in a local folder: `packs/<pack>/<shard index>` and `<kind>/<name>`.
///
/// Shards are written by a thread of the store's own while the engine seals the next packs (at
/// most [`WRITES_QUEUED`] packs wait): writing them, the kernel copying every byte into the page
/// cache, is a large part of a local backup's work. Reads, listings and deletions wait for the
/// writes before them; so does dropping the store. A clone shares the folder, not the writes in
/// flight.
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    writer: Option<Writer>,
}

/// Packs handed to a [`LocalStore`]'s writer and not yet written, at most.
pub const WRITES_QUEUED: usize = 1;

#[derive(Debug)]
struct Writer {
    queue: std::sync::mpsc::SyncSender<Write>,
    thread: Option<std::thread::JoinHandle<()>>,
}

enum Write {
    Pack {
        dir: PathBuf,
        shards: Vec<Vec<u8>>,
    },
    /// Answered once every pack before it is written, with the first failure if any.
    Flush(std::sync::mpsc::SyncSender<Result<(), String>>),
}

impl Clone for LocalStore {
    fn clone(&self) -> LocalStore {
        LocalStore {
            root: self.root.clone(),
            writer: None,
        }
    }
}

impl Drop for LocalStore {
    fn drop(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            drop(writer.queue);
            if let Some(thread) = writer.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl LocalStore {
    pub fn open(root: &Path) -> io::Result<LocalStore> {
        std::fs::create_dir_all(root.join("packs"))?;
        for kind in [ObjectKind::Index, ObjectKind::Snapshot] {
            std::fs::create_dir_all(root.join(kind.as_str()))?;
        }
        Ok(LocalStore {
            root: root.to_owned(),
            writer: None,
        })
    }

    /// The folder holding a pack's shards (tests remove or alter shards here).
    pub fn pack_dir(&self, pack: &str) -> PathBuf {
        self.root.join("packs").join(pack)
    }

    /// The writer thread, started with the first pack.
    fn writer(&mut self) -> io::Result<&std::sync::mpsc::SyncSender<Write>> {
        if self.writer.is_none() {
            let (queue, writes) = std::sync::mpsc::sync_channel::<Write>(WRITES_QUEUED);
            let thread = std::thread::Builder::new()
                .name("surplus-store-writer".into())
                .spawn(move || {
                    let mut failed: Option<String> = None;
                    for write in writes {
                        match write {
                            // After a failure the backup fails at its next flush: what follows
                            // is not written.
                            Write::Pack { dir, shards } if failed.is_none() => {
                                if let Err(error) = write_shards(&dir, &shards) {
                                    failed = Some(format!("{}: {error}", dir.display()));
                                }
                            }
                            Write::Pack { .. } => {}
                            Write::Flush(answer) => {
                                let _ = answer.send(failed.clone().map_or(Ok(()), Err));
                            }
                        }
                    }
                })?;
            self.writer = Some(Writer {
                queue,
                thread: Some(thread),
            });
        }
        match &self.writer {
            Some(writer) => Ok(&writer.queue),
            None => Err(io::Error::other("the store's writer did not start")),
        }
    }

    /// Waits for the writes handed to the writer so far.
    fn wait_for_writes(&mut self) -> io::Result<()> {
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        let stopped = || io::Error::other("the store's writer stopped");
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        writer
            .queue
            .send(Write::Flush(answer))
            .map_err(|_| stopped())?;
        answered
            .recv()
            .map_err(|_| stopped())?
            .map_err(io::Error::other)
    }
}

fn write_shards(dir: &Path, shards: &[Vec<u8>]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (index, shard) in shards.iter().enumerate() {
        std::fs::write(dir.join(index.to_string()), shard)?;
    }
    Ok(())
}

impl Store for LocalStore {
    fn put_shards(&mut self, pack: &str, shards: Vec<Vec<u8>>) -> io::Result<()> {
        let dir = self.pack_dir(pack);
        self.writer()?
            .send(Write::Pack { dir, shards })
            .map_err(|_| io::Error::other("the store's writer stopped"))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.wait_for_writes()
    }

    fn get_shards(
        &mut self,
        pack: &str,
        _hashes: &[String],
        _needed: usize,
    ) -> io::Result<Vec<Vec<u8>>> {
        self.wait_for_writes()?;
        let mut shards = Vec::new();
        for entry in std::fs::read_dir(self.pack_dir(pack))? {
            shards.push(std::fs::read(entry?.path())?);
        }
        Ok(shards)
    }

    fn put_object(&mut self, kind: ObjectKind, name: &str, bytes: &[u8]) -> io::Result<()> {
        std::fs::write(self.root.join(kind.as_str()).join(name), bytes)
    }

    fn get_object(&mut self, kind: ObjectKind, name: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.root.join(kind.as_str()).join(name))
    }

    fn list_objects(&mut self, kind: ObjectKind) -> io::Result<Vec<String>> {
        self.wait_for_writes()?;
        let mut names = Vec::new();
        for entry in std::fs::read_dir(self.root.join(kind.as_str()))? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn delete_object(&mut self, kind: ObjectKind, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.root.join(kind.as_str()).join(name))
    }

    fn delete_shards(&mut self, pack: &str, _hashes: &[String]) -> io::Result<()> {
        self.wait_for_writes()?;
        std::fs::remove_dir_all(self.pack_dir(pack))
    }
}
