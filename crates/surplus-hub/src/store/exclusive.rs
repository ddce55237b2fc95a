//! Work that one hub process at a time may do, however many replicas serve.
//!
//! A [`Duty`] is a kind of decision that reads the database, decides, and writes in several
//! steps: placement, compute dispatch, and the upkeep sweeps (audits, repair, losses, expiry).
//! Two processes deciding at once could both see the same free slot and both fill it. So each
//! duty is held by one process at a time:
//!
//! - **PostgreSQL:** a transaction-level advisory lock (`pg_advisory_xact_lock`), held by a
//!   transaction open for as long as the duty runs. It is released when the duty ends, and by the
//!   server when the process dies: a killed replica never leaves a duty stuck.
//! - **SQLite:** one process serves a SQLite database ([`Store::claim_serving`]), so a mutex in
//!   that process is enough.
//!
//! The writes themselves stay conditional (a claim on the task, a unique index on live copies),
//! so a duty held twice by mistake still cannot settle anything twice.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::{Any, Row, Transaction};

use super::sql;
use super::{Backend, Result, Store, StoreError};

/// A kind of decision only one hub process makes at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duty {
    /// Choosing holders for blobs.
    Placement,
    /// Sending compute tasks to devices.
    Dispatch,
    /// The periodic sweeps: expiry, repair, audits, losses, returns, hand-overs, purges.
    Upkeep,
}

impl Duty {
    /// The advisory lock's key: "surplu" in ASCII in the high bytes, so that another
    /// application's locks on the same server do not collide with the hub's.
    fn key(self) -> i64 {
        const BASE: i64 = 0x7375_7270_6c75_0000;
        BASE + self as i64
    }
}

/// The in-process locks of a SQLite store, one per duty.
#[derive(Debug, Default)]
pub(super) struct ProcessDuties([Arc<tokio::sync::Mutex<()>>; 3]);

impl ProcessDuties {
    fn of(&self, duty: Duty) -> Arc<tokio::sync::Mutex<()>> {
        self.0[duty as usize].clone()
    }
}

/// A duty held: released when dropped (or by [`Exclusive::release`], which waits for it).
#[must_use = "the duty is released as soon as this is dropped"]
#[derive(Debug)]
pub struct Exclusive {
    held: Held,
}

#[derive(Debug)]
enum Held {
    Process(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>),
    Database(Transaction<'static, Any>),
}

impl Exclusive {
    /// Releases the duty now. Dropping it releases it too, a moment later.
    pub async fn release(self) -> Result<()> {
        match self.held {
            Held::Process(_) => Ok(()),
            Held::Database(transaction) => Ok(transaction.rollback().await?),
        }
    }
}

impl Store {
    /// Takes `duty`, waiting while another process (or task) holds it.
    pub async fn exclusive(&self, duty: Duty) -> Result<Exclusive> {
        let held = match self.backend {
            Backend::Sqlite => Held::Process(self.duties.of(duty).lock_owned().await),
            Backend::Postgres => {
                let mut transaction = self.pool.begin().await?;
                sql!("SELECT true FROM pg_advisory_xact_lock($1)", duty.key())
                    .execute(&mut *transaction)
                    .await?;
                Held::Database(transaction)
            }
        };
        Ok(Exclusive { held })
    }

    /// Takes `duty` if nobody holds it; `None` if somebody does.
    pub async fn try_exclusive(&self, duty: Duty) -> Result<Option<Exclusive>> {
        let held = match self.backend {
            Backend::Sqlite => match self.duties.of(duty).try_lock_owned() {
                Ok(guard) => Held::Process(guard),
                Err(_) => return Ok(None),
            },
            Backend::Postgres => {
                let mut transaction = self.pool.begin().await?;
                let taken: bool = sql!("SELECT pg_try_advisory_xact_lock($1)", duty.key())
                    .fetch_one(&mut *transaction)
                    .await?
                    .try_get(0)?;
                if !taken {
                    transaction.rollback().await?;
                    return Ok(None);
                }
                Held::Database(transaction)
            }
        };
        Ok(Some(Exclusive { held }))
    }

    /// Claims a SQLite database for this process to serve, until the claim is dropped (or the
    /// process ends). A second hub serving the same file would make every duty's lock useless, so
    /// it is refused, naming the process that serves. PostgreSQL needs no claim: replicas share it.
    pub fn claim_serving(&self) -> Result<Option<ServingClaim>> {
        let Some(database) = &self.sqlite_path else {
            return Ok(None);
        };
        let path = serving_lock_path(database);
        let io = |source| StoreError::CreateDir {
            path: path.display().to_string(),
            source,
        };
        let mut file = crate::private_file()
            .read(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let serving = std::fs::read_to_string(&path).unwrap_or_default();
                let by = match serving.trim() {
                    "" => String::new(),
                    pid => format!(" (process {pid})"),
                };
                return Err(StoreError::Conflict(format!(
                    "another hub already serves the SQLite database {}{by}: SQLite serves one hub \
                     process; run several replicas on PostgreSQL",
                    database.display()
                )));
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(io(error)),
        }
        file.set_len(0).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Some(ServingClaim { _file: file }))
    }
}

/// A SQLite database claimed by the serving hub (see [`Store::claim_serving`]).
#[derive(Debug)]
pub struct ServingClaim {
    _file: File,
}

/// Where the serving claim of a SQLite database is kept: a file beside it, not the database
/// itself, whose locks are SQLite's own.
fn serving_lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-serving");
    PathBuf::from(name)
}
