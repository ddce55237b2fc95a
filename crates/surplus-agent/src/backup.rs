//! Backup through the hub: the engine's [`Store`] over the hub's API, and the keys.
//!
//! Shards go to the hub's staging store and are placed as shards of their pack (so the hub puts
//! each on a different subscriber's device); getting them back asks their holders to upload them.
//! Indexes and snapshots, sealed, are kept by the hub as the subscriber's backup objects. The
//! master key lives in the OS keyring (or the credential file); a copy wrapped with the recovery
//! passphrase is escrowed at the hub by the first backup, so a new device can restore with log-in
//! and passphrase alone.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use surplus_backup::keys::{MasterKey, WrapCost, WrappedKey};
use surplus_backup::store::{ObjectKind, PackWant, Store};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::client::{ClientError, HubClient};
use crate::credentials::CredentialStore;
use crate::passphrase::Request;

/// The engine's store, over the hub. Its methods block: call them off the async runtime.
///
/// Shards are uploaded in the background, in order, while the engine seals the next pack (at
/// most [`UPLOADS_QUEUED`] packs wait); a restore's packs are fetched [`FETCHED_AHEAD`] at a
/// time ahead of the engine, each from whichever `data` of its holders send their shard first.
#[derive(Debug)]
pub struct HubStore {
    client: HubClient,
    token: String,
    runtime: tokio::runtime::Handle,
    /// How long a restore waits for holders to send shards back.
    pub fetch_wait: Duration,
    /// The most bytes per second shards are uploaded at (the user's bandwidth cap).
    pub upload_rate: Option<u64>,
    uploads: Option<mpsc::Sender<Upload>>,
    /// The packs a restore will ask for, in order; the first [`FETCHED_AHEAD`] being fetched.
    ahead: VecDeque<(PackWant, Option<Fetch>)>,
}

/// A pack's shards being fetched.
type Fetch = JoinHandle<io::Result<Vec<Vec<u8>>>>;

/// Packs handed to the uploader and not yet uploaded, at most.
pub const UPLOADS_QUEUED: usize = 1;
/// Packs a restore fetches ahead of the one it writes, at most: with the engine's own cache of
/// rebuilt packs, this bounds a restore's memory.
pub const FETCHED_AHEAD: usize = 3;

enum Upload {
    Pack {
        pack: String,
        shards: Vec<Vec<u8>>,
    },
    /// Answered once every pack before it is uploaded, with the first failure if any.
    Flush(oneshot::Sender<Result<(), String>>),
}

impl HubStore {
    pub fn new(client: HubClient, token: String, runtime: tokio::runtime::Handle) -> HubStore {
        HubStore {
            client,
            token,
            runtime,
            fetch_wait: Duration::from_secs(120),
            upload_rate: None,
            uploads: None,
            ahead: VecDeque::new(),
        }
    }

    /// The uploader, started with the first pack.
    fn uploader(&mut self) -> mpsc::Sender<Upload> {
        if let Some(uploads) = &self.uploads {
            return uploads.clone();
        }
        let (sender, mut queue) = mpsc::channel::<Upload>(UPLOADS_QUEUED);
        let (client, token, rate) = (self.client.clone(), self.token.clone(), self.upload_rate);
        self.runtime.spawn(async move {
            let mut failed: Option<String> = None;
            while let Some(upload) = queue.recv().await {
                match upload {
                    // After a failure the backup fails at its next flush: what follows is not
                    // uploaded.
                    Upload::Pack { pack, shards } if failed.is_none() => {
                        if let Err(error) = upload_pack(&client, &token, rate, &pack, shards).await
                        {
                            failed = Some(error.to_string());
                        }
                    }
                    Upload::Pack { .. } => {}
                    Upload::Flush(answer) => {
                        let _ = answer.send(failed.clone().map_or(Ok(()), Err));
                    }
                }
            }
        });
        self.uploads = Some(sender.clone());
        sender
    }

    /// Starts fetching the first [`FETCHED_AHEAD`] packs waiting that are not being fetched.
    fn top_up(&mut self) {
        for (want, fetch) in self.ahead.iter_mut().take(FETCHED_AHEAD) {
            if fetch.is_none() {
                let (client, token) = (self.client.clone(), self.token.clone());
                let (want, wait) = (want.clone(), self.fetch_wait);
                *fetch = Some(
                    self.runtime
                        .spawn(async move { fetch_pack(&client, &token, &want, wait).await }),
                );
            }
        }
    }
}

fn store_error(error: ClientError) -> io::Error {
    io::Error::other(error.to_string())
}

/// How often one request to the hub is tried before the backup gives up on it.
const ATTEMPTS: u32 = 5;

/// Runs `request` until it succeeds, fails for good, or has been tried [`ATTEMPTS`] times,
/// waiting longer each time (0.25 s, 0.5 s, 1 s, 2 s). Every request the engine makes is
/// idempotent (blobs and objects are named by their content, placements are upserts), so trying
/// again is safe; and a hub replica that dies under a request, or a hub restarting, does not fail
/// a backup that the next replica would have taken.
async fn retried<T, F>(what: &str, mut request: impl FnMut() -> F) -> io::Result<T>
where
    F: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut pause = Duration::from_millis(250);
    for attempt in 1.. {
        match request().await {
            Ok(value) => return Ok(value),
            Err(error) if attempt < ATTEMPTS && error.retryable() => {
                tracing::info!(%error, attempt, retry_in = ?pause, "{what} failed; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(error) => return Err(store_error(error)),
        }
    }
    unreachable!("the loop returns by its last attempt")
}

/// Uploads a pack's shards to staging and places each as a shard of the pack.
async fn upload_pack(
    client: &HubClient,
    token: &str,
    rate: Option<u64>,
    pack: &str,
    shards: Vec<Vec<u8>>,
) -> io::Result<()> {
    for shard in shards {
        let hash = blake3::hash(&shard).to_hex().to_string();
        let shard = bytes::Bytes::from(shard);
        retried("uploading a shard", || {
            let bytes = futures_util::stream::iter([Ok(shard.clone())]);
            let body = reqwest::Body::wrap_stream(crate::client::throttle(bytes, rate));
            client.upload_blob(token, &hash, shard.len() as u64, body)
        })
        .await?;
        retried("placing a shard", || client.place_shard(token, &hash, pack)).await?;
    }
    Ok(())
}

/// Whatever shards of a pack its holders send back within `wait`: all are asked at once, and
/// the answer comes as soon as `needed` of them are here (or the wait is over).
async fn fetch_pack(
    client: &HubClient,
    token: &str,
    want: &PackWant,
    wait: Duration,
) -> io::Result<Vec<Vec<u8>>> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut fetches: FuturesUnordered<_> = want
        .shards
        .iter()
        .map(|hash| async move {
            // A shard no holder keeps any more is simply not among those that come back.
            if !client.until_staged(token, hash, deadline).await.ok()? {
                return None;
            }
            client
                .download_bytes(token, hash, crate::client::MAX_OBJECT_BYTES)
                .await
                .ok()
        })
        .collect();
    let mut got = Vec::new();
    while let Some(shard) = fetches.next().await {
        got.extend(shard);
        if got.len() >= want.needed {
            break;
        }
    }
    Ok(got)
}

impl Store for HubStore {
    fn put_shards(&mut self, pack: &str, shards: Vec<Vec<u8>>) -> io::Result<()> {
        let uploads = self.uploader();
        let pack = pack.to_owned();
        self.runtime
            .block_on(uploads.send(Upload::Pack { pack, shards }))
            .map_err(|_| io::Error::other("the uploader stopped"))
    }

    fn flush(&mut self) -> io::Result<()> {
        let Some(uploads) = &self.uploads else {
            return Ok(());
        };
        let (answer, answered) = oneshot::channel();
        self.runtime.block_on(async {
            uploads
                .send(Upload::Flush(answer))
                .await
                .map_err(|_| io::Error::other("the uploader stopped"))?;
            answered
                .await
                .map_err(|_| io::Error::other("the uploader stopped"))?
                .map_err(io::Error::other)
        })
    }

    fn fetches_ahead(&self) -> bool {
        true
    }

    fn fetch_ahead(&mut self, packs: Vec<PackWant>) {
        for (_, fetch) in self.ahead.drain(..) {
            fetch.inspect(JoinHandle::abort);
        }
        self.ahead = packs.into_iter().map(|want| (want, None)).collect();
        self.top_up();
    }

    fn get_shards(
        &mut self,
        pack: &str,
        hashes: &[String],
        needed: usize,
    ) -> io::Result<Vec<Vec<u8>>> {
        let fetch = match self.ahead.iter().position(|(want, _)| want.pack == pack) {
            Some(position) => {
                // The engine asks in about the order it was told; packs well behind the one it
                // asks for now were skipped (in place already, or in its own cache).
                let (_, fetch) = self
                    .ahead
                    .remove(position)
                    .unwrap_or_else(|| unreachable!());
                for (_, skipped) in self.ahead.drain(..position.saturating_sub(FETCHED_AHEAD)) {
                    skipped.inspect(JoinHandle::abort);
                }
                fetch
            }
            None => None,
        };
        self.top_up();
        let want = PackWant {
            pack: pack.to_owned(),
            shards: hashes.to_vec(),
            needed,
        };
        self.runtime.block_on(async {
            match fetch {
                Some(fetch) => fetch.await.map_err(io::Error::other)?,
                None => fetch_pack(&self.client, &self.token, &want, self.fetch_wait).await,
            }
        })
    }

    fn put_object(&mut self, kind: ObjectKind, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.runtime
            .block_on(retried("keeping a backup object", || {
                self.client
                    .put_object(&self.token, kind.as_str(), name, bytes.to_vec())
            }))
    }

    fn get_object(&mut self, kind: ObjectKind, name: &str) -> io::Result<Vec<u8>> {
        self.runtime
            .block_on(retried("reading a backup object", || {
                self.client.get_object(&self.token, kind.as_str(), name)
            }))
    }

    fn delete_object(&mut self, kind: ObjectKind, name: &str) -> io::Result<()> {
        self.runtime
            .block_on(self.client.delete_object(&self.token, kind.as_str(), name))
            .map_err(store_error)
    }

    fn delete_shards(&mut self, _pack: &str, hashes: &[String]) -> io::Result<()> {
        for hash in hashes {
            match self
                .runtime
                .block_on(self.client.drop_placement(&self.token, hash))
            {
                Ok(()) => {}
                // Already let go (a forget interrupted and run again).
                Err(error) if error.code() == Some(surplus_protocol::ErrorCode::NotFound) => {}
                Err(error) => return Err(store_error(error)),
            }
        }
        Ok(())
    }

    fn list_objects(&mut self, kind: ObjectKind) -> io::Result<Vec<String>> {
        self.runtime.block_on(retried("listing backup objects", || {
            self.client.list_objects(&self.token, kind.as_str())
        }))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no recovery passphrase: set SURPLUS_PASSPHRASE or run in a terminal to be asked")]
    NoPassphrase,
    #[error("the recovery passphrase does not open the key kept at the hub")]
    WrongPassphrase,
    /// The passphrase breaks [`crate::passphrase::problem`]'s rule; nothing was kept.
    #[error("{0}")]
    WeakPassphrase(String),
    #[error("the key kept at the hub is unreadable: {0}")]
    Malformed(String),
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialError),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The subscriber's master key: from the keyring; else recovered from the hub's escrowed copy
/// with the passphrase (a new device); else made now and escrowed (the first backup).
/// `passphrase` is asked only when needed.
///
/// A new passphrase must pass [`crate::passphrase::problem`]. One that opens the hub's copy but
/// would not pass (chosen before the rule) still opens it, and `passphrase` is then asked for a
/// better one, under which the copy is wrapped again; if none is given the key is used and the
/// weak copy stays, with a warning.
pub async fn master_key(
    credentials: &CredentialStore,
    client: &HubClient,
    token: &str,
    mut passphrase: impl FnMut(Request<'_>) -> Option<String>,
) -> Result<MasterKey, KeyError> {
    if let Some(bytes) = credentials.backup_key()? {
        return Ok(MasterKey::from_bytes(bytes));
    }
    // What an attacker would try first: the subscriber's own email address.
    let email = credentials.session()?.map(|s| s.email).unwrap_or_default();
    let context = [email.as_str()];
    match client.wrapped_key(token).await? {
        Some(text) => {
            let wrapped: WrappedKey =
                serde_json::from_str(&text).map_err(|e| KeyError::Malformed(e.to_string()))?;
            let typed = passphrase(Request::Unlock).ok_or(KeyError::NoPassphrase)?;
            let unlocking = typed.clone();
            let key = tokio::task::spawn_blocking(move || wrapped.unwrap(&unlocking))
                .await
                .map_err(|e| KeyError::Malformed(e.to_string()))?
                .map_err(|_| KeyError::WrongPassphrase)?;
            if let Some(problem) = crate::passphrase::problem(&typed, &context) {
                match passphrase(Request::Replace { problem: &problem }) {
                    Some(better) => {
                        if let Some(still) = crate::passphrase::problem(&better, &context) {
                            return Err(KeyError::WeakPassphrase(still));
                        }
                        // Replacing the key kept at the hub takes the subscriber's session.
                        let session = credentials.session()?.map(|s| s.token);
                        escrow(client, session.as_deref().unwrap_or(token), &key, better).await?;
                        tracing::info!(
                            "the key kept at the hub is wrapped under the new passphrase"
                        );
                    }
                    None => tracing::warn!(
                        %problem,
                        "the key kept at the hub stays wrapped under a weak passphrase"
                    ),
                }
            }
            credentials.set_backup_key(&key.to_bytes())?;
            Ok(key)
        }
        None => {
            let typed = passphrase(Request::Choose).ok_or(KeyError::NoPassphrase)?;
            if let Some(problem) = crate::passphrase::problem(&typed, &context) {
                return Err(KeyError::WeakPassphrase(problem));
            }
            let key = MasterKey::generate();
            // Escrow first: a key only this device knows would be lost with it.
            escrow(client, token, &key, typed).await?;
            credentials.set_backup_key(&key.to_bytes())?;
            Ok(key)
        }
    }
}

/// Wraps the key under `passphrase` and keeps the wrapped copy at the hub, replacing any.
pub(crate) async fn escrow(
    client: &HubClient,
    token: &str,
    key: &MasterKey,
    passphrase: String,
) -> Result<(), KeyError> {
    let wrapping = key.clone();
    let cost = wrap_cost();
    let wrapped = tokio::task::spawn_blocking(move || wrapping.wrap(&passphrase, cost))
        .await
        .map_err(|e| KeyError::Malformed(e.to_string()))?
        .map_err(|e| KeyError::Malformed(e.to_string()))?;
    let text = serde_json::to_string(&wrapped).map_err(|e| KeyError::Malformed(e.to_string()))?;
    client.put_wrapped_key(token, &text).await?;
    Ok(())
}

/// Argon2id's cost for the escrowed key: the recommended one, or, in a build with the
/// `test-hooks` feature only, a cheap one where `SURPLUS_TEST_CHEAP_KEY_WRAP` is set (tests on
/// small machines; never for real keys).
fn wrap_cost() -> WrapCost {
    // Compiled out of a build without the feature: a shipped binary never reads the variable.
    #[cfg(feature = "test-hooks")]
    if std::env::var_os("SURPLUS_TEST_CHEAP_KEY_WRAP").is_some() {
        return WrapCost::TESTING;
    }
    WrapCost::RECOMMENDED
}

/// The snapshot states, best first.
const SNAPSHOT_STATES: [&str; 5] = ["protected", "uploading", "repairing", "at_risk", "lost"];

/// Each pack's state as the hub's `health` names it; a name this agent does not know reads as
/// `lost`, never as better.
pub fn pack_states(health: &surplus_protocol::BackupHealth) -> HashMap<String, &'static str> {
    health
        .packs
        .iter()
        .map(|pack| {
            let state = SNAPSHOT_STATES
                .iter()
                .copied()
                .find(|s| *s == pack.state)
                .unwrap_or("lost");
            (pack.pack.clone(), state)
        })
        .collect()
}

/// How well off a snapshot made of `packs` is: as well off as its worst pack (`protected`,
/// `uploading`, `repairing`, `at_risk`, `lost`). A pack the hub does not list yet is uploading.
pub fn snapshot_state(
    packs: &std::collections::BTreeSet<String>,
    states: &HashMap<String, &'static str>,
) -> &'static str {
    let severity = |state: &str| {
        SNAPSHOT_STATES
            .iter()
            .position(|s| *s == state)
            .unwrap_or(SNAPSHOT_STATES.len())
    };
    packs
        .iter()
        .map(|pack| states.get(pack).copied().unwrap_or("uploading"))
        .max_by_key(|state| severity(state))
        .unwrap_or("protected")
}

/// The erasure coding the next backup uses, as the hub advises from the subscriber's settings
/// and the holders there are (with a warning when they are too few), and how many devices may
/// hold its shards now.
pub async fn coding(
    client: &HubClient,
    token: &str,
) -> Result<(surplus_backup::erasure::Coding, Option<String>, u32), KeyError> {
    let plan = client.backup_plan(token).await?;
    let coding = surplus_backup::erasure::Coding::new(plan.coding.data, plan.coding.parity)
        .map_err(|e| KeyError::Malformed(format!("the hub advised an unusable coding: {e}")))?;
    Ok((coding, plan.warning, plan.eligible_holders))
}

/// Where a data directory keeps its sealed trees (see `Repository::set_tree_cache`).
pub fn tree_cache_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("cache").join("trees")
}

/// The name a device's snapshots carry: the device's name, or "this device".
pub fn snapshot_host(settings: &crate::settings::Settings) -> String {
    settings
        .device_name
        .clone()
        .unwrap_or_else(|| "this device".to_owned())
}

/// Takes one snapshot of `folders`: on top of the newest snapshot, whose unchanged files are
/// recognised without being read again. The one rule for "back up now", from the worker's loop
/// and from `surplus backup now` alike.
pub fn take_snapshot(
    repository: &mut surplus_backup::repo::Repository<HubStore>,
    folders: &[std::path::PathBuf],
    host: &str,
) -> Result<surplus_backup::repo::BackupReport, surplus_backup::repo::BackupError> {
    let parent = repository.snapshots()?.pop().map(|(_, snapshot)| snapshot);
    repository.backup(folders, host, crate::clock::now_ms(), parent.as_ref())
}

/// The subscriber's repository over the hub, for the device whose data directory is
/// `data_dir`: uploads within `upload_rate`, trees cached in the data directory. Blocks: call it
/// off the async runtime.
pub fn open_repository(
    store: HubStore,
    key: &MasterKey,
    coding: surplus_backup::erasure::Coding,
    data_dir: &Path,
) -> Result<surplus_backup::repo::Repository<HubStore>, surplus_backup::repo::BackupError> {
    let mut repository = surplus_backup::repo::Repository::open(store, key, coding)?;
    repository.set_tree_cache(tree_cache_dir(data_dir));
    Ok(repository)
}

/// The data directory's backup lock: one backup (or forget) at a time per data directory, so
/// that `surplus backup now` and a running agent's continuous backup never write at once.
#[derive(Debug)]
pub struct BackupLock {
    _file: std::fs::File,
}

impl BackupLock {
    /// Takes the lock; `waiting` is called first if someone else holds it, then this waits.
    pub fn acquire(data_dir: &Path, waiting: impl FnOnce()) -> io::Result<BackupLock> {
        crate::private_fs::dir_all(data_dir)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(data_dir.join("backup.lock"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                waiting();
                file.lock()?;
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(error),
        }
        Ok(BackupLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_as_well_off_as_its_worst_pack() {
        let health = surplus_protocol::BackupHealth {
            packs: [
                ("a", "protected"),
                ("b", "repairing"),
                ("c", "something newer"),
            ]
            .into_iter()
            .map(|(pack, state)| surplus_protocol::PackStateView {
                pack: pack.into(),
                state: state.into(),
            })
            .collect(),
        };
        let states = pack_states(&health);
        let of = |packs: &[&str]| {
            snapshot_state(&packs.iter().map(|p| (*p).to_owned()).collect(), &states)
        };
        assert_eq!(of(&["a"]), "protected");
        assert_eq!(of(&["a", "b"]), "repairing");
        // A pack the hub does not list yet is on its way; a state unknown here is never better
        // than lost.
        assert_eq!(of(&["a", "new"]), "uploading");
        assert_eq!(of(&["a", "c"]), "lost");
        assert_eq!(of(&[]), "protected");
    }

    #[test]
    fn one_backup_at_a_time_per_data_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first =
            BackupLock::acquire(dir.path(), || panic!("nobody holds it yet")).expect("lock");
        let (told, waited) = std::sync::mpsc::channel();
        let path = dir.path().to_owned();
        let second = std::thread::spawn(move || {
            let lock = BackupLock::acquire(&path, || told.send(()).expect("send")).expect("lock");
            drop(lock);
        });
        // The second is told it must wait, and gets the lock once the first lets go.
        waited.recv().expect("the second waits");
        drop(first);
        second.join().expect("the second gets the lock");
        BackupLock::acquire(dir.path(), || panic!("free again")).expect("lock");
    }
}
