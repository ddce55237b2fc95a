//! The hub's persistent state, over SQLite or PostgreSQL.
//!
//! This is the only module that speaks SQL. Both engines run the same statements through sqlx's
//! `Any` driver, so the schema sticks to types both understand (see `migrations/`): identifiers are
//! TEXT, times are BIGINT milliseconds, reports are JSON in TEXT.

use std::path::Path;
use std::str::FromStr;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};
use surplus_protocol::{AllocationState, Plan, SubscriberStatus};
use uuid::Uuid;

mod accounts;
mod audits;
mod backup;
mod blobs;
mod challenges;
mod compute;
mod devices;
mod exclusive;
mod forgotten;
mod handover;
mod heartbeats;
mod holders;
mod instructions;
mod ledger;
mod placements;
mod placing;
pub(crate) mod sql;
pub use accounts::{LiveSession, Login, SessionRow};
pub use audits::{AuditRow, AuditScore};
pub use blobs::OwnedBlob;
pub use challenges::{Challenge, ChallengeState, HeldShard};
pub use compute::*;
pub use devices::{DeviceRow, arch_class};
pub use exclusive::{Duty, Exclusive, ServingClaim};
pub use forgotten::{DroppedPlacement, ForgottenObject, ForgottenRows, LetGo};
pub use handover::{ActiveAllocation, EvacuatingRow, Traffic};
pub use heartbeats::{DeviceAuth, HeartbeatRow, PRESENCE_SLOT_MS};
pub use holders::{
    DeviceWeek, HolderRow, PackShardHolder, PackShardRow, PlacedShardRow, SurplusCopy,
};
pub use instructions::{InstructionRow, InstructionState};
pub use ledger::{OTHER_DEVICE, OTHER_SUBSCRIBER};
pub use placements::{BlobAllocation, Candidate, OpenPlacement, PlacementRow};
pub use placing::{NewBlobAllocation, PlacementContext};

use instructions::enqueue_on;
use ledger::set_allocation_state_on;
use sql::sql;

/// A state the database keeps as TEXT: an enum whose variants are each written as exactly one
/// string (`as_str`) and read back from it (`FromStr`; any other string is corrupt data).
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident = $text:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)*
        }

        impl $name {
            /// The string the database keeps.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }
        }

        impl<'q> $crate::store::sql::Param<'q> for $name {
            type Value = &'q str;
            fn param(self) -> Self::Value {
                self.as_str()
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::store::StoreError;

            fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
                match text {
                    $($text => Ok(Self::$variant),)*
                    _ => Err($crate::store::StoreError::Corrupt(format!(
                        concat!("bad ", stringify!($name), " {:?}"),
                        text
                    ))),
                }
            }
        }
    };
}
pub(crate) use text_enum;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Failures of the store. `Database` is a fault of the hub (logged, answered as 500); the others
/// are answers about the data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("{0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A batch this request joined failed: every request in it gets the batch's error.
    #[error("{0}")]
    Batch(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("creating the database directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which engine the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The hub's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The database file, on SQLite.
    sqlite_path: Option<std::path::PathBuf>,
    /// The locks of each [`Duty`] on SQLite, which one process serves.
    duties: std::sync::Arc<exclusive::ProcessDuties>,
}

impl Store {
    /// Opens (creating and migrating on first use) the database at `url`.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let mut sqlite_path = None;
        let (backend, url) = if let Some(path) = url.strip_prefix("sqlite://") {
            let path_only = path.split('?').next().unwrap_or(path);
            if let Some(parent) = Path::new(path_only).parent()
                && !parent.as_os_str().is_empty()
            {
                crate::private_dir_all(parent).map_err(|source| StoreError::CreateDir {
                    path: parent.display().to_string(),
                    source,
                })?;
            }
            // Made here, owner-only, before SQLite opens it: SQLite gives its journal files the
            // database's own permissions.
            if path_only != ":memory:" {
                sqlite_path = Some(Path::new(path_only).to_path_buf());
            }
            if path_only != ":memory:" && !Path::new(path_only).exists() {
                crate::private_file()
                    .open(path_only)
                    .map_err(|source| StoreError::CreateDir {
                        path: path_only.to_owned(),
                        source,
                    })?;
            }
            let url = if path.contains('?') {
                url.to_owned()
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            // No ping before each use: on SQLite it is a second trip to the connection's thread
            // for every query, on PostgreSQL a second trip to the server. A connection that broke
            // fails the query it was used for, and the pool replaces it.
            .test_before_acquire(false)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the one writer; NORMAL sync is durable
                        // across process crashes, which is what an acknowledged write promises.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Store {
            pool,
            backend,
            sqlite_path,
            duties: Default::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// SQLite only: writes a consistent copy of the database into `to`, an empty file, while it
    /// keeps serving.
    pub async fn vacuum_into(&self, to: &Path) -> Result<()> {
        let to = to
            .to_str()
            .ok_or_else(|| StoreError::Corrupt(format!("{} is not UTF-8", to.display())))?;
        sql!("VACUUM INTO $1", to).execute(&self.pool).await?;
        Ok(())
    }
}

fn parse_uuid(text: &str) -> Result<Uuid> {
    Uuid::from_str(text).map_err(|_| StoreError::Corrupt(format!("bad id {text:?}")))
}

fn parse_plan(text: &str) -> Result<Plan> {
    Plan::parse(text).ok_or_else(|| StoreError::Corrupt(format!("bad plan {text:?}")))
}

fn parse_status(text: &str) -> Result<SubscriberStatus> {
    SubscriberStatus::parse(text).ok_or_else(|| StoreError::Corrupt(format!("bad status {text:?}")))
}

fn parse_allocation_state(text: &str) -> Result<AllocationState> {
    AllocationState::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("bad allocation state {text:?}")))
}

/// A value as JSON text, for a TEXT column or a statement's batch parameter.
fn to_json(value: &(impl serde::Serialize + ?Sized)) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Sizes are u64 in Rust and BIGINT in SQL; nothing real comes near 2^63.
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
