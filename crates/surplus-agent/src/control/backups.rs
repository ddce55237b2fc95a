//! The recovery passphrase, snapshots, restores and "back up now".

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use surplus_backup::repo::{Existing, Progress, Repository};
use surplus_protocol::UnixMillis;

use crate::backup::{HubStore, KeyError};
use crate::client::HubClient;
use crate::passphrase::Request;

use super::{Control, ControlError, Result};

/// A snapshot, with how well it is protected.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SnapshotView {
    pub id: String,
    pub time: UnixMillis,
    pub hostname: String,
    pub files: u64,
    pub bytes: u64,
    /// As well off as its worst pack: `protected`, `uploading`, `repairing` (restorable, shards
    /// being rebuilt), `at_risk` (restorable only if holders away longer than usual come back)
    /// or `lost`.
    #[cfg_attr(
        feature = "ts",
        ts(type = r#""protected" | "uploading" | "repairing" | "at_risk" | "lost""#)
    )]
    pub state: &'static str,
}

/// One entry of a snapshot's tree.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct EntryView {
    pub name: String,
    /// `file`, `dir` or `symlink`.
    #[cfg_attr(feature = "ts", ts(type = r#""file" | "dir" | "symlink""#))]
    pub kind: &'static str,
    pub size: u64,
    pub mode: String,
    pub mtime: UnixMillis,
}

/// What a search of a snapshot by name found.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SearchResults {
    pub found: Vec<Found>,
    /// There were more than [`SEARCH_LIMIT`]: the user should narrow the search.
    pub more: bool,
}

/// One entry a search found, and where it is (`<folder name>/sub/name`).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Found {
    pub path: String,
    pub entry: EntryView,
}

/// The most entries a search answers.
pub const SEARCH_LIMIT: usize = 200;

impl Control {
    /// Sets up the backup key with the recovery passphrase: unlocks the key kept at the hub (made
    /// on another device), or makes the key and keeps a copy at the hub locked with it. A new
    /// passphrase must pass [`crate::passphrase::problem`]; an old one that would not still
    /// unlocks the key, and what is wrong with it is returned: the shell then asks for a better
    /// one and hands it to [`Control::change_recovery_passphrase`].
    pub async fn set_recovery_passphrase(&self, passphrase: &str) -> Result<Option<String>> {
        let client = self.client()?;
        let token = self.any_token()?;
        let credentials = self.credentials()?;
        let typed = passphrase.to_owned();
        let mut too_weak = None;
        crate::backup::master_key(&credentials, &client, &token, |request| match request {
            Request::Unlock | Request::Choose => Some(typed.clone()),
            Request::Replace { problem } => {
                too_weak = Some(problem.to_owned());
                None
            }
        })
        .await?;
        Ok(too_weak)
    }

    /// What is wrong with `passphrase` as a new recovery passphrase for this subscriber
    /// ([`crate::passphrase::problem`], with their email as words an attacker tries first).
    pub fn passphrase_problem(&self, passphrase: &str) -> Option<String> {
        let email = self
            .credentials()
            .ok()
            .and_then(|c| c.session().ok().flatten())
            .map(|s| s.email)
            .unwrap_or_default();
        crate::passphrase::problem(passphrase, &[&email])
    }

    /// Wraps the backup key held on this device under a new recovery passphrase, which must pass
    /// [`crate::passphrase::problem`], and replaces the copy kept at the hub.
    pub async fn change_recovery_passphrase(&self, new: &str) -> Result<()> {
        if let Some(problem) = self.passphrase_problem(new) {
            return Err(ControlError::Key(KeyError::WeakPassphrase(problem)));
        }
        let credentials = self.credentials()?;
        let key = credentials.backup_key()?.ok_or_else(|| {
            ControlError::Input(
                "this device does not hold the backup key yet: set the recovery passphrase up first"
                    .into(),
            )
        })?;
        let client = self.client()?;
        // Replacing the key kept at the hub takes the subscriber's session, never a device's.
        let token = self.session()?.token;
        crate::backup::escrow(
            &client,
            &token,
            &surplus_backup::keys::MasterKey::from_bytes(key),
            new.to_owned(),
        )
        .await?;
        Ok(())
    }

    /// Whether this device holds the backup key (so backups can run).
    pub fn has_backup_key(&self) -> bool {
        self.credentials()
            .and_then(|c| Ok(c.backup_key()?))
            .is_ok_and(|k| k.is_some())
    }

    /// Forgets the snapshots `retention` does not keep and deletes the packs only they needed,
    /// from their holders. It takes the subscriber's session: a device's credential may add to
    /// backups but not destroy them.
    pub async fn forget(
        &self,
        retention: surplus_backup::forget::Retention,
        utc_offset_minutes: i32,
    ) -> Result<(Vec<String>, usize)> {
        let token = self.session()?.token;
        let data_dir = self.data_dir.clone();
        self.with_repository_as(token, self.passphrase, ignore, move |repository, _, _| {
            let _lock = crate::backup::BackupLock::acquire(&data_dir, || {
                tracing::info!("waiting for the backup running on this device to finish");
            })
            .map_err(|source| ControlError::Io {
                path: data_dir.clone(),
                source,
            })?;
            Ok(repository.forget(retention, utc_offset_minutes)?)
        })
        .await
    }

    /// What the subscriber forgot that the hub still keeps, and when each part goes for good.
    pub async fn forgotten(&self) -> Result<surplus_protocol::Forgotten> {
        let token = self.any_token()?;
        Ok(self.client()?.forgotten(&token).await?)
    }

    /// Brings back every snapshot forgotten within the hub's grace period, with the shards they
    /// need. A device's credential may do it: it only undoes a deletion.
    pub async fn unforget(&self) -> Result<surplus_protocol::Recovered> {
        let token = self.any_token()?;
        Ok(self.client()?.recover_forgotten(&token).await?)
    }

    /// Opens the subscriber's backup repository over the hub and runs `work` on it, off the async
    /// runtime. `passphrase` is asked only when this device has no key yet; `warn` is told when
    /// the hub has too few holders for the coding.
    pub async fn with_repository<T: Send + 'static, E: From<ControlError> + Send + 'static>(
        &self,
        passphrase: impl FnMut(Request<'_>) -> Option<String>,
        warn: impl FnOnce(&str),
        work: impl FnOnce(&mut Repository<HubStore>, &HubClient, &str) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        let token = self.any_token()?;
        self.with_repository_as(token, passphrase, warn, work).await
    }

    /// [`Control::with_repository`] with the hub's requests made with `token`.
    async fn with_repository_as<T: Send + 'static, E: From<ControlError> + Send + 'static>(
        &self,
        token: String,
        passphrase: impl FnMut(Request<'_>) -> Option<String>,
        warn: impl FnOnce(&str),
        work: impl FnOnce(&mut Repository<HubStore>, &HubClient, &str) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        let client = self.client()?;
        let credentials = self.credentials()?;
        let key = crate::backup::master_key(&credentials, &client, &token, passphrase)
            .await
            .map_err(ControlError::from)?;
        let (coding, warning, _) = crate::backup::coding(&client, &token)
            .await
            .map_err(ControlError::from)?;
        if let Some(warning) = warning {
            warn(&warning);
        }
        let rate = self.settings()?.bandwidth_bytes_per_second;
        let handle = tokio::runtime::Handle::current();
        let data_dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = HubStore::new(client.clone(), token.clone(), handle);
            store.upload_rate = rate;
            let mut repository = crate::backup::open_repository(store, &key, coding, &data_dir)
                .map_err(ControlError::from)?;
            work(&mut repository, &client, &token)
        })
        .await
        .map_err(|error| {
            E::from(ControlError::Io {
                path: self.data_dir.clone(),
                source: std::io::Error::other(error),
            })
        })?
    }

    /// Every snapshot, oldest first, each as well off as its worst pack: `uploading`,
    /// `protected`, `repairing`, `at_risk` or `lost`, as the hub sees the packs' shards (a pack
    /// the hub has no shard of yet is still uploading).
    pub async fn snapshots(&self) -> Result<Vec<SnapshotView>> {
        let handle = tokio::runtime::Handle::current();
        self.with_repository(self.passphrase, ignore, move |repository, client, token| {
            let health = handle.block_on(client.backup_health(token))?;
            let states = crate::backup::pack_states(&health);
            let mut views = Vec::new();
            for (id, snapshot) in repository.snapshots()? {
                let state =
                    crate::backup::snapshot_state(&repository.packs_of(&snapshot)?, &states);
                views.push(SnapshotView {
                    id,
                    time: snapshot.time,
                    hostname: snapshot.hostname,
                    files: snapshot.summary.files,
                    bytes: snapshot.summary.bytes,
                    state,
                });
            }
            Ok(views)
        })
        .await
    }

    /// The entries of one folder of a snapshot (its top when `path` is `None`).
    pub async fn list(&self, snapshot: &str, path: Option<PathBuf>) -> Result<Vec<EntryView>> {
        let wanted = snapshot.to_owned();
        let nodes = self
            .with_repository(self.passphrase, ignore, move |repository, _, _| {
                let snapshot = find_snapshot(repository, &wanted)?;
                Ok::<_, ControlError>(repository.list(&snapshot, path.as_deref())?)
            })
            .await?;
        Ok(nodes.iter().map(entry_view).collect())
    }

    /// The entries of a snapshot whose names hold `needle` (letter case aside), at most
    /// [`SEARCH_LIMIT`].
    pub async fn search(&self, snapshot: &str, needle: &str) -> Result<SearchResults> {
        if needle.trim().is_empty() {
            return Err(ControlError::Input(
                "type part of a name to search for".into(),
            ));
        }
        let (wanted, needle) = (snapshot.to_owned(), needle.trim().to_owned());
        let (found, more) = self
            .with_repository(self.passphrase, ignore, move |repository, _, _| {
                let snapshot = find_snapshot(repository, &wanted)?;
                Ok::<_, ControlError>(repository.find(&snapshot, &needle, SEARCH_LIMIT)?)
            })
            .await?;
        let found = found
            .iter()
            .map(|(path, node)| Found {
                path: path.clone(),
                entry: entry_view(node),
            })
            .collect();
        Ok(SearchResults { found, more })
    }

    /// Restores a snapshot, or one file or folder of it, where `to` says, doing with files that
    /// are there already what `existing` says, and telling `progress` as it goes.
    pub async fn restore(
        &self,
        snapshot: &str,
        path: Option<PathBuf>,
        to: RestoreTo,
        existing: Existing,
        progress: Arc<dyn FileProgress>,
    ) -> Result<surplus_backup::repo::RestoreReport> {
        if let RestoreTo::Folder(target) = &to
            && !target.is_absolute()
        {
            return Err(ControlError::Input(format!(
                "restore to a full path, not {}",
                target.display()
            )));
        }
        let wanted = snapshot.to_owned();
        self.with_repository(self.passphrase, ignore, move |repository, _, _| {
            let snapshot = find_snapshot(repository, &wanted)?;
            let (files, bytes) = match path.as_deref() {
                Some(only) => repository.totals(&snapshot, Some(only))?,
                None => (snapshot.summary.files, snapshot.summary.bytes),
            };
            progress.start(files, bytes);
            repository.set_progress(Arc::new(Forward(progress)));
            let mut done = surplus_backup::repo::RestoreReport::default();
            for (target, only) in restore_targets(&snapshot, path, to)? {
                done += repository.restore_with(&snapshot, &target, only.as_deref(), existing)?;
            }
            Ok(done)
        })
        .await
    }

    /// Takes a snapshot of the backed-up folders now, with `progress`, by the same rule as the
    /// worker's loop ([`crate::backup::take_snapshot`]). A backup already running on this data
    /// directory is waited for, and `waiting` told so; `warn` is told when the hub has too few
    /// holders for the coding.
    #[tracing::instrument(skip_all, name = "backup_now")]
    pub async fn back_up_now(
        &self,
        progress: Arc<dyn FileProgress>,
        warn: impl FnOnce(&str),
        waiting: fn(),
    ) -> Result<surplus_backup::repo::BackupReport> {
        let settings = self.settings()?;
        if settings.backup.folders.is_empty() {
            return Err(ControlError::NoFolders);
        }
        let host = crate::backup::snapshot_host(&settings);
        let folders = settings.backup.folders;
        let data_dir = self.data_dir.clone();
        self.with_repository(self.passphrase, warn, move |repository, _, _| {
            let _lock =
                crate::backup::BackupLock::acquire(&data_dir, waiting).map_err(|source| {
                    ControlError::Io {
                        path: data_dir.join("backup.lock"),
                        source,
                    }
                })?;
            let (files, bytes) = surplus_backup::repo::scan_totals(&folders);
            progress.start(files, bytes);
            repository.set_progress(Arc::new(Forward(progress)));
            Ok(crate::backup::take_snapshot(repository, &folders, &host)?)
        })
        .await
    }
}

/// Where a restore writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreTo {
    /// Under this folder, as `<folder>/<backed-up folder's name>/...`.
    Folder(PathBuf),
    /// Where each backed-up folder was when the snapshot was taken.
    Original,
}

/// Each restore `to` asks for: the folder to restore into, and the part of the snapshot (all of
/// it when `None`). Back where it was, each backed-up folder goes into the folder it was in, by
/// the path the snapshot recorded (which only this user's key could have sealed), if that path
/// is a plain full path ending in the folder's name.
fn restore_targets(
    snapshot: &surplus_backup::tree::Snapshot,
    path: Option<PathBuf>,
    to: RestoreTo,
) -> Result<Vec<(PathBuf, Option<PathBuf>)>> {
    let RestoreTo::Folder(target) = to else {
        let first = path
            .as_deref()
            .and_then(|p| p.iter().next())
            .map(|c| c.to_string_lossy().into_owned());
        let mut targets = Vec::new();
        for root in &snapshot.roots {
            let name = root.name.display();
            if first.as_ref().is_some_and(|f| *f != name) {
                continue;
            }
            let was = Path::new(&root.path);
            let plain = was.is_absolute()
                && was
                    .components()
                    .all(|c| !matches!(c, std::path::Component::ParentDir));
            let parent = was
                .parent()
                .filter(|_| plain && was.file_name().is_some_and(|n| *n == *name));
            let Some(parent) = parent else {
                return Err(ControlError::Input(format!(
                    "the snapshot does not say where {name} was ({:?}); restore it into a folder instead",
                    root.path
                )));
            };
            let only = path.clone().unwrap_or_else(|| PathBuf::from(&name));
            targets.push((parent.to_owned(), Some(only)));
        }
        return Ok(targets);
    };
    Ok(vec![(target, path)])
}

/// A folder the user adds to the backup, checked: it must be a full path to a folder that
/// exists and whose entries this user can read. Answers it as it will be kept.
pub fn readable_folder(path: &Path) -> Result<PathBuf> {
    if !path.is_absolute() {
        return Err(ControlError::Input(format!(
            "{} is not a full path to a folder (such as /home/you/Documents)",
            path.display()
        )));
    }
    let found = |source| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(found)?;
    if !meta.is_dir() {
        return Err(ControlError::Input(format!(
            "{} is a file, not a folder",
            path.display()
        )));
    }
    std::fs::read_dir(path).map_err(found)?;
    Ok(path.to_owned())
}

/// Saves the recovery passphrase to a file the user chose (readable by them alone), with a
/// few words on what it is, for them to print or keep offline.
pub fn save_passphrase(path: &Path, passphrase: &str) -> Result<()> {
    let text = format!(
        "Surplus recovery passphrase\n\n    {passphrase}\n\n\
         It opens your backups on a new PC if this one is lost. Nobody else has it, Surplus \
         included: keep this file somewhere safe and offline (printed, or on a USB stick), not \
         in a folder that is backed up.\n"
    );
    crate::atomic_file::write(
        path,
        text.as_bytes(),
        crate::atomic_file::Visibility::Private,
    )
    .map_err(|source| ControlError::Io {
        path: path.to_owned(),
        source,
    })
}

/// For operations that only read backups, which the coding's warning is not about.
fn ignore(_: &str) {}

/// The snapshot `wanted` names: `latest`, or an id or a prefix of one.
pub fn find_snapshot(
    repository: &mut Repository<HubStore>,
    wanted: &str,
) -> Result<surplus_backup::tree::Snapshot> {
    let mut snapshots = repository.snapshots()?;
    let found = if wanted == "latest" {
        snapshots.pop()
    } else {
        snapshots.into_iter().find(|(id, _)| id.starts_with(wanted))
    };
    found
        .map(|(_, s)| s)
        .ok_or_else(|| ControlError::NoSnapshot(wanted.to_owned()))
}

fn entry_view(node: &surplus_backup::tree::Node) -> EntryView {
    use surplus_backup::tree::NodeKind;
    let (kind, size) = match &node.kind {
        NodeKind::File { size, .. } => ("file", *size),
        NodeKind::Dir { .. } => ("dir", 0),
        NodeKind::Symlink { .. } => ("symlink", 0),
    };
    EntryView {
        name: node.name.display(),
        kind,
        size,
        mode: format!("{:o}", node.mode),
        mtime: node.mtime_ns / 1_000_000,
    }
}

/// What a restore tells its front end.
pub trait FileProgress: Send + Sync {
    /// The work covers `files` files of `bytes` bytes in all.
    fn start(&self, files: u64, bytes: u64);
    fn bytes(&self, bytes: u64);
    fn file(&self);
}

struct Forward(Arc<dyn FileProgress>);

impl Progress for Forward {
    fn bytes(&self, bytes: u64) {
        self.0.bytes(bytes);
    }

    fn file(&self) {
        self.0.file();
    }
}

/// A recovery passphrase made for the user (see [`crate::passphrase::generate`]).
pub fn generate_passphrase() -> String {
    crate::passphrase::generate()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_to_back_up_must_be_a_readable_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(readable_folder(dir.path()).expect("a folder"), dir.path());
        let file = dir.path().join("notes.txt");
        std::fs::write(&file, b"x").expect("write");
        let message = |path: &Path| readable_folder(path).expect_err("refused").to_string();
        assert!(message(&file).contains("is a file, not a folder"));
        assert!(message(Path::new("Documents")).contains("not a full path"));
        assert!(message(&dir.path().join("gone")).contains("gone"));
    }

    #[cfg(unix)]
    #[test]
    fn the_passphrase_file_is_for_its_owner_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("surplus-passphrase.txt");
        save_passphrase(&file, "correct horse battery staple").expect("saved");
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(text.contains("    correct horse battery staple\n"));
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    fn snapshot_of(roots: &[(&str, &str)]) -> surplus_backup::tree::Snapshot {
        use surplus_backup::tree::{Node, NodeKind, RawName, Root};
        surplus_backup::tree::Snapshot {
            time: 0,
            hostname: "pc".into(),
            roots: roots
                .iter()
                .map(|(name, path)| Root {
                    name: RawName(name.as_bytes().to_vec()),
                    path: (*path).to_owned(),
                    node: Node {
                        name: RawName(name.as_bytes().to_vec()),
                        kind: NodeKind::Symlink {
                            target: RawName(Vec::new()),
                        },
                        mode: 0,
                        mtime_ns: 0,
                        ctime_ns: 0,
                        inode: 0,
                    },
                })
                .collect(),
            summary: Default::default(),
        }
    }

    #[test]
    fn back_where_it_was_means_into_the_folder_each_folder_was_in() {
        let snapshot = snapshot_of(&[
            ("Documents", "/home/ann/Documents"),
            ("Photos", "/mnt/data/Photos"),
        ]);
        assert_eq!(
            restore_targets(&snapshot, None, RestoreTo::Original).expect("targets"),
            vec![
                (PathBuf::from("/home/ann"), Some(PathBuf::from("Documents"))),
                (PathBuf::from("/mnt/data"), Some(PathBuf::from("Photos"))),
            ]
        );
        assert_eq!(
            restore_targets(
                &snapshot,
                Some(PathBuf::from("Photos/2024/a.jpg")),
                RestoreTo::Original
            )
            .expect("targets"),
            vec![(
                PathBuf::from("/mnt/data"),
                Some(PathBuf::from("Photos/2024/a.jpg"))
            )]
        );
        assert_eq!(
            restore_targets(&snapshot, None, RestoreTo::Folder("/tmp/r".into())).expect("targets"),
            vec![(PathBuf::from("/tmp/r"), None)]
        );
    }

    #[test]
    fn a_recorded_path_that_is_not_plain_is_not_followed() {
        for path in [
            "Documents",
            "/home/ann/../../etc/Documents",
            "/home/ann/Other",
        ] {
            let snapshot = snapshot_of(&[("Documents", path)]);
            let refused = restore_targets(&snapshot, None, RestoreTo::Original)
                .expect_err("refused")
                .to_string();
            assert!(
                refused.contains("restore it into a folder instead"),
                "{path}: {refused}"
            );
        }
    }
}
