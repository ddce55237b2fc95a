//! The device's credential (its id and secret, given once by the hub at registration) and the
//! subscriber's session token.
//!
//! Secrets belong in the OS keyring (Secret Service on Linux, the Keychain on macOS, the
//! Credential Manager on Windows), so that is where they go whenever it works. Many machines the
//! headless agent runs on have none that works: no D-Bus session (a service started at boot, an
//! SSH login), a keyring that stays locked until someone types a password, or only the kernel's
//! keyutils, which forgets everything at reboot (and which keyring 4 does not use on Linux). There
//! the secrets go to `<data-dir>/credentials.toml`, readable by its owner only.
//!
//! The backend is chosen once, when the store is opened: `SURPLUS_CREDENTIALS=file` or
//! `=keyring` forces one; otherwise the keyring is tried with a write-read-delete probe and the
//! file is used if that fails or takes longer than a few seconds (a locked keyring may wait for a
//! password prompt nobody will answer). A credentials file left by an earlier run keeps being
//! used, so that secrets are never stranded in a backend the agent no longer reads.
//!
//! Keyring entries live under the service `surplus`, with the user name `<kind>:<scope>`, where
//! the scope is a short hash of the data directory's canonical path: several agents on one machine
//! (each with its own data directory) never read each other's credentials.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::atomic_file::{self, Visibility};

/// The environment variable that forces a backend: `file`, `keyring`, or `auto` (the default).
pub const CREDENTIALS_ENV: &str = "SURPLUS_CREDENTIALS";

/// The name of the credentials file inside the data directory, when the file backend is used.
pub const CREDENTIALS_FILE: &str = "credentials.toml";

/// The keyring service every entry is stored under.
const KEYRING_SERVICE: &str = "surplus";

/// How long the keyring probe may take before the keyring counts as unusable.
const KEYRING_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why credentials could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "{CREDENTIALS_ENV}={value:?} names no credential backend; use \"keyring\", \"file\" or \"auto\""
    )]
    UnknownBackend { value: String },
    #[error(
        "the OS keyring is unavailable ({reason}); unset {CREDENTIALS_ENV} or set it to \"file\""
    )]
    KeyringUnavailable { reason: String },
    #[error("OS keyring entry {user:?} of service \"surplus\": {source}")]
    Keyring {
        user: String,
        source: keyring::Error,
    },
    #[error("OS keyring entry {user:?} of service \"surplus\" holds no valid credential: {source}")]
    KeyringContent {
        user: String,
        source: serde_json::Error,
    },
    #[error("cannot use the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: io::Error },
    #[error("cannot read credentials file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("credentials file {path} is malformed: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("cannot encode credentials: {0}")]
    Encode(#[from] toml::ser::Error),
    #[error("cannot write credentials file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The credential a device authenticates to the hub with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCredential {
    pub device_id: Uuid,
    pub secret: String,
}

impl DeviceCredential {
    /// The bearer token the device presents to the hub.
    pub fn bearer_token(&self) -> String {
        surplus_protocol::device_token(self.device_id, &self.secret)
    }
}

/// Secrets never appear in logs, not even through `{:?}`.
impl fmt::Debug for DeviceCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCredential")
            .field("device_id", &self.device_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A subscriber's logged-in session.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionCredential {
    pub token: String,
    pub email: String,
}

/// Secrets never appear in logs, not even through `{:?}`.
impl fmt::Debug for SessionCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCredential")
            .field("token", &"<redacted>")
            .field("email", &self.email)
            .finish()
    }
}

/// Where credentials are kept, as `surplus status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Keyring,
    File(PathBuf),
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Keyring => f.write_str("OS keyring"),
            #[cfg(unix)]
            Backend::File(path) => write!(f, "file {} (0600)", path.display()),
            #[cfg(not(unix))]
            Backend::File(path) => write!(f, "file {} (private to this user)", path.display()),
        }
    }
}

/// Which backend to use, as `SURPLUS_CREDENTIALS` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// The OS keyring if it works, the private file otherwise.
    #[default]
    Auto,
    /// The OS keyring, or an error if it does not work.
    Keyring,
    /// The private file, whatever keyring there is.
    File,
}

impl BackendChoice {
    /// Reads `SURPLUS_CREDENTIALS` (unset means [`BackendChoice::Auto`]).
    pub fn from_env() -> Result<BackendChoice, CredentialError> {
        match std::env::var(CREDENTIALS_ENV) {
            Ok(value) => BackendChoice::parse(&value),
            Err(std::env::VarError::NotPresent) => Ok(BackendChoice::Auto),
            Err(std::env::VarError::NotUnicode(value)) => Err(CredentialError::UnknownBackend {
                value: value.to_string_lossy().into_owned(),
            }),
        }
    }

    /// Parses `keyring`, `file` or `auto` (case-insensitive; empty means `auto`).
    pub fn parse(value: &str) -> Result<BackendChoice, CredentialError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(BackendChoice::Auto),
            "keyring" => Ok(BackendChoice::Keyring),
            "file" => Ok(BackendChoice::File),
            _ => Err(CredentialError::UnknownBackend {
                value: value.to_owned(),
            }),
        }
    }
}

/// The device's and the subscriber's credentials, in the backend chosen at open.
#[derive(Debug)]
pub struct CredentialStore {
    store: Store,
}

#[derive(Debug)]
enum Store {
    Keyring { scope: String },
    File { path: PathBuf },
}

/// What the file backend holds.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialFile {
    device: Option<DeviceCredential>,
    session: Option<SessionCredential>,
    /// The subscriber's backup master key, hex.
    #[serde(default)]
    backup_key: Option<String>,
}

/// The two things kept, named as in keyring entries.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Device,
    Session,
    BackupKey,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Device => "device",
            Kind::Session => "session",
            Kind::BackupKey => "backup-key",
        }
    }
}

impl CredentialStore {
    /// Opens the store for `data_dir` with the backend `SURPLUS_CREDENTIALS` asks for.
    pub fn open(data_dir: &Path) -> Result<CredentialStore, CredentialError> {
        CredentialStore::open_with(data_dir, BackendChoice::from_env()?)
    }

    /// Opens the store for `data_dir` (created if missing) with the given backend choice.
    pub fn open_with(
        data_dir: &Path,
        choice: BackendChoice,
    ) -> Result<CredentialStore, CredentialError> {
        let data_error = |source| CredentialError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        };
        crate::private_fs::dir_all(data_dir).map_err(data_error)?;
        let canonical = std::fs::canonicalize(data_dir).map_err(data_error)?;
        let scope = scope_of(&canonical);
        let path = canonical.join(CREDENTIALS_FILE);
        let store = match choice {
            BackendChoice::File => Store::File { path },
            BackendChoice::Keyring => {
                keyring_works(&scope)
                    .map_err(|reason| CredentialError::KeyringUnavailable { reason })?;
                Store::Keyring { scope }
            }
            BackendChoice::Auto if path.exists() => {
                tracing::debug!(path = %path.display(), "credentials kept in the file an earlier run wrote");
                Store::File { path }
            }
            BackendChoice::Auto => match keyring_works(&scope) {
                Ok(()) => Store::Keyring { scope },
                Err(reason) => {
                    tracing::info!(
                        %reason,
                        path = %path.display(),
                        "the OS keyring is unavailable; credentials go to a file only this user can read"
                    );
                    Store::File { path }
                }
            },
        };
        Ok(CredentialStore { store })
    }

    /// Where the credentials are kept.
    pub fn backend(&self) -> Backend {
        match &self.store {
            Store::Keyring { .. } => Backend::Keyring,
            Store::File { path } => Backend::File(path.clone()),
        }
    }

    /// The device's credential, once it is registered.
    pub fn device(&self) -> Result<Option<DeviceCredential>, CredentialError> {
        match &self.store {
            Store::Keyring { scope } => keyring_get(&keyring_user(Kind::Device, scope)),
            Store::File { path } => Ok(read_file(path)?.device),
        }
    }

    /// Keeps the credential the hub issued at registration; the hub shows its secret only once.
    pub fn set_device(&self, credential: &DeviceCredential) -> Result<(), CredentialError> {
        match &self.store {
            Store::Keyring { scope } => keyring_set(&keyring_user(Kind::Device, scope), credential),
            Store::File { path } => {
                update_file(path, |file| file.device = Some(credential.clone()))
            }
        }
    }

    /// Forgets the device's credential (after the device was revoked or removed).
    pub fn clear_device(&self) -> Result<(), CredentialError> {
        match &self.store {
            Store::Keyring { scope } => keyring_delete(&keyring_user(Kind::Device, scope)),
            Store::File { path } => update_file(path, |file| file.device = None),
        }
    }

    /// The subscriber's session, while logged in.
    pub fn session(&self) -> Result<Option<SessionCredential>, CredentialError> {
        match &self.store {
            Store::Keyring { scope } => keyring_get(&keyring_user(Kind::Session, scope)),
            Store::File { path } => Ok(read_file(path)?.session),
        }
    }

    /// Keeps the session a login returned, replacing any earlier one.
    pub fn set_session(&self, credential: &SessionCredential) -> Result<(), CredentialError> {
        match &self.store {
            Store::Keyring { scope } => {
                keyring_set(&keyring_user(Kind::Session, scope), credential)
            }
            Store::File { path } => {
                update_file(path, |file| file.session = Some(credential.clone()))
            }
        }
    }

    /// The subscriber's backup master key (32 bytes), once the first backup made it or a restore
    /// on a new device recovered it.
    pub fn backup_key(&self) -> Result<Option<[u8; 32]>, CredentialError> {
        let hex: Option<String> = match &self.store {
            Store::Keyring { scope } => keyring_get(&keyring_user(Kind::BackupKey, scope))?,
            Store::File { path } => read_file(path)?.backup_key,
        };
        Ok(hex.and_then(|hex| {
            (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                })
                .collect::<Option<Vec<u8>>>()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        }))
    }

    pub fn set_backup_key(&self, key: &[u8; 32]) -> Result<(), CredentialError> {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        match &self.store {
            Store::Keyring { scope } => keyring_set(&keyring_user(Kind::BackupKey, scope), &hex),
            Store::File { path } => update_file(path, |file| file.backup_key = Some(hex.clone())),
        }
    }

    /// Forgets the session (logout).
    pub fn clear_session(&self) -> Result<(), CredentialError> {
        match &self.store {
            Store::Keyring { scope } => keyring_delete(&keyring_user(Kind::Session, scope)),
            Store::File { path } => update_file(path, |file| file.session = None),
        }
    }
}

/// A short hash of the canonical data directory: long enough never to collide between the few
/// agents on one machine, short enough to read in a keyring viewer.
fn scope_of(canonical_data_dir: &Path) -> String {
    let text = canonical_data_dir.to_string_lossy();
    let hash = blake3::hash(text.as_bytes()).to_hex();
    hash[..16].to_owned()
}

fn keyring_user(kind: Kind, scope: &str) -> String {
    format!("{}:{scope}", kind.name())
}

/// Data directories whose keyring this process has probed and found working.
static PROBED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
/// Probes made by this process (a test shows a store opened again does not probe again).
static PROBES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Checks that the keyring really keeps a secret: writes, reads back and deletes a probe entry.
/// Once per data directory and process: the tray opens its store on every window refresh, and a
/// probe each time churned entries through the Secret Service (a `secret-tool search` running
/// meanwhile failed on an entry deleted under it).
///
/// This runs on its own thread with a timeout, because a locked keyring may block on an unlock
/// prompt that nobody answers; a probe that never returns leaves only its thread behind.
/// Whether the OS keyring answers now: stores, reads and deletes an entry (`surplus doctor`).
pub fn keyring_answers() -> Result<(), String> {
    keyring_probe("doctor")
}

fn keyring_works(scope: &str) -> Result<(), String> {
    let probed = || PROBED.lock().unwrap_or_else(|p| p.into_inner());
    if probed().iter().any(|s| s == scope) {
        return Ok(());
    }
    PROBES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    keyring_probe(scope)?;
    probed().push(scope.to_owned());
    Ok(())
}

fn keyring_probe(scope: &str) -> Result<(), String> {
    let user = format!("probe:{scope}");
    let (sender, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name("keyring-probe".into())
        .spawn(move || {
            // The receiver may have given up waiting; then nobody needs the answer.
            let _ = sender.send(probe_keyring(&user));
        })
        .map_err(|error| format!("cannot start the keyring probe: {error}"))?;
    match receiver.recv_timeout(KEYRING_PROBE_TIMEOUT) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "no answer within {} s; is it locked and waiting for a password?",
            KEYRING_PROBE_TIMEOUT.as_secs()
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("the keyring probe stopped".into()),
    }
}

fn probe_keyring(user: &str) -> Result<(), String> {
    if let Err(error) = keyring::Entry::store_status() {
        return Err(error.to_string());
    }
    let entry = keyring::Entry::new(KEYRING_SERVICE, user).map_err(|error| error.to_string())?;
    let value = format!("probe-{}", Uuid::new_v4());
    entry
        .set_password(&value)
        .map_err(|error| error.to_string())?;
    let read = entry.get_password();
    let deleted = entry.delete_credential();
    match (read, deleted) {
        (Ok(read), Ok(())) if read == value => Ok(()),
        (Ok(_), Ok(())) => Err("it returned a different secret than was stored".into()),
        (Err(error), _) | (_, Err(error)) => Err(error.to_string()),
    }
}

fn keyring_entry(user: &str) -> Result<keyring::Entry, CredentialError> {
    keyring::Entry::new(KEYRING_SERVICE, user).map_err(|source| CredentialError::Keyring {
        user: user.to_owned(),
        source,
    })
}

fn keyring_get<T: DeserializeOwned>(user: &str) -> Result<Option<T>, CredentialError> {
    match keyring_entry(user)?.get_password() {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|source| {
            CredentialError::KeyringContent {
                user: user.to_owned(),
                source,
            }
        }),
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(source) => Err(CredentialError::Keyring {
            user: user.to_owned(),
            source,
        }),
    }
}

fn keyring_set<T: Serialize>(user: &str, value: &T) -> Result<(), CredentialError> {
    let text = serde_json::to_string(value).map_err(|source| CredentialError::KeyringContent {
        user: user.to_owned(),
        source,
    })?;
    keyring_entry(user)?
        .set_password(&text)
        .map_err(|source| CredentialError::Keyring {
            user: user.to_owned(),
            source,
        })
}

fn keyring_delete(user: &str) -> Result<(), CredentialError> {
    match keyring_entry(user)?.delete_credential() {
        Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
        Err(source) => Err(CredentialError::Keyring {
            user: user.to_owned(),
            source,
        }),
    }
}

fn read_file(path: &Path) -> Result<CredentialFile, CredentialError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Ok(CredentialFile::default());
        }
        Err(source) => {
            return Err(CredentialError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    warn_if_readable_by_others(path);
    toml::from_str(&text).map_err(|source| CredentialError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Someone loosened the file's permissions by hand: say so, since the secrets are now exposed.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "credentials file is readable by other users; run chmod 600 on it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Reads the file, changes it, and writes it back atomically with owner-only permissions; a file
/// left with no credentials at all is removed, so that the keyring is tried again next time.
fn update_file(
    path: &Path,
    change: impl FnOnce(&mut CredentialFile),
) -> Result<(), CredentialError> {
    let mut file = read_file(path)?;
    change(&mut file);
    if file.device.is_none() && file.session.is_none() && file.backup_key.is_none() {
        return match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CredentialError::Write {
                path: path.to_path_buf(),
                source,
            }),
        };
    }
    let text = toml::to_string(&file)?;
    atomic_file::write(path, text.as_bytes(), Visibility::Private).map_err(|source| {
        CredentialError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> DeviceCredential {
        DeviceCredential {
            device_id: Uuid::new_v4(),
            secret: "d3vice-s3cret".into(),
        }
    }

    fn session() -> SessionCredential {
        SessionCredential {
            token: "ses_t0ken".into(),
            email: "ann@example.com".into(),
        }
    }

    /// Against the real OS keyring: needs a Secret Service on a D-Bus session, which
    /// `scripts/test` provides (gnome-keyring under `dbus-run-session`) when it runs the ignored
    /// tests named `real_keyring`.
    #[test]
    #[ignore = "needs a Secret Service session; scripts/test runs it under dbus-run-session"]
    fn real_keyring_keeps_credentials_out_of_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CredentialStore::open_with(dir.path(), BackendChoice::Auto).expect("open");
        assert_eq!(
            store.backend(),
            Backend::Keyring,
            "a working keyring is chosen over the file"
        );
        assert_eq!(store.device().expect("device"), None);
        let device = device();
        store.set_device(&device).expect("set device");
        store.set_session(&session()).expect("set session");
        assert!(
            !dir.path().join(CREDENTIALS_FILE).exists(),
            "nothing secret is written to disk"
        );

        // Another agent's data directory on the same machine has entries of its own.
        let other_dir = tempfile::tempdir().expect("tempdir");
        let other =
            CredentialStore::open_with(other_dir.path(), BackendChoice::Keyring).expect("open");
        assert_eq!(other.device().expect("device"), None);

        let probes = PROBES.load(std::sync::atomic::Ordering::SeqCst);
        let reopened =
            CredentialStore::open_with(dir.path(), BackendChoice::Keyring).expect("open");
        assert_eq!(
            PROBES.load(std::sync::atomic::Ordering::SeqCst),
            probes,
            "a data directory's keyring is probed once per process"
        );
        assert_eq!(reopened.device().expect("device"), Some(device));
        assert_eq!(reopened.session().expect("session"), Some(session()));
        reopened.clear_device().expect("clear");
        reopened.clear_session().expect("clear");
        assert_eq!(store.device().expect("device"), None);
    }

    #[test]
    fn file_backend_round_trips_and_clears() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CredentialStore::open_with(dir.path(), BackendChoice::File).expect("open");
        assert_eq!(store.device().expect("device"), None);
        assert_eq!(store.session().expect("session"), None);

        let device = device();
        store.set_device(&device).expect("set device");
        store.set_session(&session()).expect("set session");
        assert_eq!(store.device().expect("device"), Some(device.clone()));
        assert_eq!(store.session().expect("session"), Some(session()));

        // A second store on the same directory sees the same credentials.
        let again = CredentialStore::open_with(dir.path(), BackendChoice::File).expect("open");
        assert_eq!(again.device().expect("device"), Some(device.clone()));

        store.clear_session().expect("clear session");
        assert_eq!(store.session().expect("session"), None);
        assert_eq!(store.device().expect("device"), Some(device));
        store.clear_device().expect("clear device");
        assert_eq!(store.device().expect("device"), None);
        assert!(!dir.path().join(CREDENTIALS_FILE).exists());
        store.clear_device().expect("clearing twice is fine");
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CredentialStore::open_with(dir.path(), BackendChoice::File).expect("open");
        store.set_device(&device()).expect("set device");
        let path = dir.path().join(CREDENTIALS_FILE);
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        store.set_session(&session()).expect("set session");
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn backend_describes_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CredentialStore::open_with(dir.path(), BackendChoice::File).expect("open");
        let canonical = std::fs::canonicalize(dir.path()).expect("canonical");
        assert_eq!(
            store.backend(),
            Backend::File(canonical.join(CREDENTIALS_FILE))
        );
        let shown = store.backend().to_string();
        assert!(shown.starts_with("file "), "{shown}");
        assert!(shown.contains(CREDENTIALS_FILE), "{shown}");
        assert_eq!(Backend::Keyring.to_string(), "OS keyring");
    }

    #[test]
    fn an_existing_file_keeps_being_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = CredentialStore::open_with(dir.path(), BackendChoice::File).expect("open");
        file.set_device(&device()).expect("set device");
        let auto = CredentialStore::open_with(dir.path(), BackendChoice::Auto).expect("open");
        assert!(matches!(auto.backend(), Backend::File(_)));
    }

    #[test]
    fn a_malformed_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CredentialStore::open_with(dir.path(), BackendChoice::File).expect("open");
        std::fs::write(
            dir.path().join(CREDENTIALS_FILE),
            "[device]\ndevice_id = 7\n",
        )
        .expect("write");
        let message = store.device().expect_err("malformed").to_string();
        assert!(message.contains(CREDENTIALS_FILE), "{message}");
    }

    #[test]
    fn backend_choices_parse() {
        assert_eq!(
            BackendChoice::parse("file").expect("file"),
            BackendChoice::File
        );
        assert_eq!(
            BackendChoice::parse("Keyring").expect("keyring"),
            BackendChoice::Keyring
        );
        assert_eq!(
            BackendChoice::parse("").expect("empty"),
            BackendChoice::Auto
        );
        assert_eq!(
            BackendChoice::parse("auto").expect("auto"),
            BackendChoice::Auto
        );
        let message = BackendChoice::parse("vault")
            .expect_err("unknown")
            .to_string();
        assert!(message.contains("\"vault\""), "{message}");
    }

    #[test]
    fn keyring_users_differ_per_data_dir_and_kind() {
        let one = scope_of(Path::new("/home/ann/.local/share/surplus"));
        let two = scope_of(Path::new("/home/ann/agent2"));
        assert_eq!(one.len(), 16);
        assert_ne!(one, two);
        assert_eq!(keyring_user(Kind::Device, &one), format!("device:{one}"));
        assert_ne!(
            keyring_user(Kind::Device, &one),
            keyring_user(Kind::Session, &one)
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let shown = format!("{:?} {:?}", device(), session());
        assert!(!shown.contains("d3vice-s3cret"), "{shown}");
        assert!(!shown.contains("ses_t0ken"), "{shown}");
        assert!(shown.contains("ann@example.com"), "{shown}");
        let credential = device();
        assert_eq!(
            credential.bearer_token(),
            format!("dev_{}_d3vice-s3cret", credential.device_id.simple())
        );
    }
}
