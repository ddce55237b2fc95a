//! The hub's persistent state, over SQLite or PostgreSQL.
//!
//! This is the only module that speaks SQL. Both engines run the same statements through sqlx's
//! `Any` driver, so the schema sticks to types both understand (see `migrations/`): identifiers are
//! TEXT, times are BIGINT milliseconds, reports are JSON in TEXT.

use std::path::Path;
use std::str::FromStr;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, Row};
use surplus_protocol::{
    Allocation, AllocationState, BackupSettings, Coding, Instruction, InstructionKind, Plan,
    ResourceKind, ShardFailure, Spare, StatusReport, Subscriber, SubscriberStatus, UnixMillis,
    VerifyRun,
};
use uuid::Uuid;

mod audits;
mod compute;
mod exclusive;
mod forgotten;
mod handover;
mod heartbeats;
mod holders;
mod placing;
pub use audits::AuditRow;
pub use compute::*;
pub use exclusive::{Duty, Exclusive, ServingClaim};
pub use forgotten::{ForgottenRows, LetGo};
pub use handover::{EvacuatingRow, Traffic};
pub use holders::{HolderRow, PackShardRow, PlacedShardRow};
pub use placing::{NewBlobAllocation, PlacementContext};

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

/// What authenticating a device yields.
#[derive(Debug, Clone)]
pub struct DeviceAuth {
    pub device_id: Uuid,
    pub subscriber_id: Uuid,
    pub secret_hash: String,
    pub revoked: bool,
    pub status: SubscriberStatus,
    pub plan: Plan,
}

/// One heartbeat, ready to be written.
#[derive(Debug, Clone)]
pub struct HeartbeatRow {
    pub device_id: Uuid,
    pub at: UnixMillis,
    /// The device's report as JSON, encoded by the request that brought it rather than by the
    /// one writer.
    pub report: String,
    pub spare: Spare,
    /// The presence slot to record, when it is one the writer has not recorded yet.
    pub new_slot: Option<i64>,
    /// The network it came from (`surplus_rules::placement::network_of`), recorded with each
    /// new presence slot.
    pub network: Option<String>,
    /// Its architecture class (`surplus_protocol::architecture_class` of its report's).
    pub arch_class: String,
}

/// The architecture class a device's report puts it in, as the hub keeps it: at most 32
/// characters of whatever an agent claims.
pub fn arch_class(report: &StatusReport) -> String {
    surplus_protocol::architecture_class(&report.arch)
        .chars()
        .take(32)
        .collect()
}

/// A placement that still wants holders.
#[derive(Debug, Clone)]
pub struct OpenPlacement {
    pub hash: String,
    pub size: u64,
    pub subscriber_id: Uuid,
    pub source_device_id: Option<Uuid>,
    pub copies: u32,
    pub staged: bool,
    /// The pack this blob is a shard of, if it is one.
    pub pack: Option<String>,
    /// How many of the pack's shards rebuild it, when the shard's header was read.
    pub pack_data: Option<u32>,
    /// Whether the owner lets their own other devices hold it.
    pub household: bool,
    /// Its copies confirmed, and confirmed or on their way.
    pub active: u32,
    pub live: u32,
}

/// Who a challenge of one shard is for: the run it belongs to, the shard's owner, and the
/// holder's allocation and device.
#[derive(Debug, Clone, Copy)]
pub struct Challenge {
    pub run_id: Uuid,
    pub subscriber_id: Uuid,
    pub allocation_id: Uuid,
    pub device_id: Uuid,
}

use surplus_backup::erasure::ShardInfo;
pub use surplus_rules::placement::Candidate;

/// A device row as the API lists it, before availability is added.
#[derive(Debug, Clone)]
pub struct DeviceRow {
    pub id: Uuid,
    pub name: String,
    pub subscriber_id: Uuid,
    pub subscriber_email: String,
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
    pub last_heartbeat: Option<UnixMillis>,
    pub report: Option<StatusReport>,
    pub spare: Spare,
}

/// An instruction's stored state.
#[derive(Debug, Clone)]
pub struct InstructionRow {
    pub instruction: Instruction,
    pub device_id: Uuid,
    pub allocation_id: Option<Uuid>,
    pub state: String,
    pub result: Option<String>,
}

/// The length of one presence slot.
pub const PRESENCE_SLOT_MS: i64 = 5 * 60 * 1000;

/// Away longer than this, a device that comes back is audited first: the at-risk floor of
/// [`surplus_rules::presence::PresencePolicy`].
const LONG_ABSENCE_MS: i64 = surplus_rules::presence::PresencePolicy::DEFAULT.at_risk_floor;

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
        sqlx::query("VACUUM INTO $1")
            .bind(to)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- subscribers and sessions ----

    pub async fn create_subscriber(
        &self,
        email: &str,
        password_hash: &str,
        plan: Plan,
        now: UnixMillis,
    ) -> Result<Subscriber> {
        let id = Uuid::now_v7();
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO subscribers (id, email, password_hash, plan, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (email) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(email)
        .bind(password_hash)
        .bind(plan.as_str())
        .bind(SubscriberStatus::Active.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "{email} has already signed up"
            )));
        }
        // The plan's starting credit, so that a new subscriber can run small jobs at once.
        sqlx::query(
            "INSERT INTO credits (id, subscriber_id, amount_ms, reason, run_id, created_at) \
             VALUES ($1, $2, $3, 'granted', NULL, $4)",
        )
        .bind(format!("grant-{id}"))
        .bind(id.to_string())
        .bind(to_i64(plan.limits().starting_credit.saturating_mul(1000)))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Subscriber {
            id,
            email: email.to_owned(),
            plan,
            status: SubscriberStatus::Active,
            created_at: now,
        })
    }

    /// The subscriber with this email and their password hash.
    pub async fn subscriber_by_email(&self, email: &str) -> Result<Option<(Subscriber, String)>> {
        let row = sqlx::query(
            "SELECT id, email, plan, status, created_at, password_hash FROM subscribers WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((subscriber_from_row(&row)?, row.try_get("password_hash")?)))
            .transpose()
    }

    pub async fn subscriber(&self, id: Uuid) -> Result<Subscriber> {
        let row = sqlx::query(
            "SELECT id, email, plan, status, created_at FROM subscribers WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        subscriber_from_row(&row)
    }

    pub async fn subscribers(&self) -> Result<Vec<Subscriber>> {
        let rows = sqlx::query(
            "SELECT id, email, plan, status, created_at FROM subscribers ORDER BY email",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(subscriber_from_row).collect()
    }

    /// How many subscribers there are (also the health check's database round trip).
    pub async fn subscribers_count(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM subscribers")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    pub async fn set_subscriber_status(
        &self,
        email: &str,
        status: SubscriberStatus,
    ) -> Result<Subscriber> {
        self.update_subscriber(
            "UPDATE subscribers SET status = $1 WHERE email = $2",
            status.as_str(),
            email,
        )
        .await
    }

    pub async fn set_subscriber_plan(&self, email: &str, plan: Plan) -> Result<Subscriber> {
        self.update_subscriber(
            "UPDATE subscribers SET plan = $1 WHERE email = $2",
            plan.as_str(),
            email,
        )
        .await
    }

    /// Runs one of the subscriber updates above and returns the subscriber as it now is.
    async fn update_subscriber(
        &self,
        statement: &'static str,
        value: &str,
        email: &str,
    ) -> Result<Subscriber> {
        let done = sqlx::query(statement)
            .bind(value)
            .bind(email)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.subscriber_by_email(email)
            .await?
            .map(|(s, _)| s)
            .ok_or(StoreError::NotFound)
    }

    /// Bytes of blobs a subscriber owns that sit in staging now.
    pub async fn staged_bytes(&self, subscriber_id: Uuid) -> Result<u64> {
        let total: Option<i64> = sqlx::query(
            "SELECT CAST(SUM(b.size) AS BIGINT) AS total FROM blobs b JOIN blob_owners o ON o.hash = b.hash \
             WHERE o.subscriber_id = $1 AND b.staged = 1",
        )
        .bind(subscriber_id.to_string())
        .fetch_one(&self.pool)
        .await?
        .try_get("total")?;
        Ok(total.map(to_u64).unwrap_or(0))
    }

    pub async fn create_session(
        &self,
        token_hash: &str,
        subscriber_id: Uuid,
        now: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<()> {
        sqlx::query("INSERT INTO sessions (token_hash, subscriber_id, created_at, expires_at, last_used_at) VALUES ($1, $2, $3, $4, $3)")
            .bind(token_hash)
            .bind(subscriber_id.to_string())
            .bind(now)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The subscriber a live session belongs to, with the session's creation and expiry.
    pub async fn session_subscriber(
        &self,
        token_hash: &str,
        now: UnixMillis,
    ) -> Result<Option<(Subscriber, UnixMillis, UnixMillis)>> {
        let row = sqlx::query(
            "SELECT s.id, s.email, s.plan, s.status, s.created_at, t.created_at AS session_created, \
             t.expires_at FROM sessions t JOIN subscribers s ON s.id = t.subscriber_id \
             WHERE t.token_hash = $1 AND t.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|row| {
                Ok((
                    subscriber_from_row(row)?,
                    row.try_get("session_created")?,
                    row.try_get("expires_at")?,
                ))
            })
            .transpose()
    }

    /// Moves a session's expiry to `expires_at` and records its use.
    pub async fn renew_session(
        &self,
        token_hash: &str,
        expires_at: UnixMillis,
        now: UnixMillis,
    ) -> Result<()> {
        sqlx::query("UPDATE sessions SET expires_at = $1, last_used_at = $2 WHERE token_hash = $3")
            .bind(expires_at)
            .bind(now)
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A subscriber's live sessions, newest first: (token hash, created, last used, expires).
    pub async fn sessions(
        &self,
        subscriber_id: Uuid,
        now: UnixMillis,
    ) -> Result<Vec<(String, UnixMillis, UnixMillis, UnixMillis)>> {
        let rows = sqlx::query(
            "SELECT token_hash, created_at, last_used_at, expires_at FROM sessions \
             WHERE subscriber_id = $1 AND expires_at > $2 ORDER BY created_at DESC",
        )
        .bind(subscriber_id.to_string())
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("token_hash")?,
                    row.try_get("created_at")?,
                    row.try_get("last_used_at")?,
                    row.try_get("expires_at")?,
                ))
            })
            .collect()
    }

    /// Ends one session of the subscriber's (`Some`) or all of them (`None`); returns how many.
    pub async fn end_sessions(&self, subscriber_id: Uuid, token_hash: Option<&str>) -> Result<u64> {
        let done = match token_hash {
            Some(hash) => {
                sqlx::query("DELETE FROM sessions WHERE subscriber_id = $1 AND token_hash = $2")
                    .bind(subscriber_id.to_string())
                    .bind(hash)
                    .execute(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM sessions WHERE subscriber_id = $1")
                    .bind(subscriber_id.to_string())
                    .execute(&self.pool)
                    .await?
            }
        };
        Ok(done.rows_affected())
    }

    // ---- devices ----

    pub async fn create_device(
        &self,
        subscriber_id: Uuid,
        name: &str,
        secret_hash: &str,
        now: UnixMillis,
    ) -> Result<Uuid> {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO devices (id, subscriber_id, name, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.to_string())
        .bind(subscriber_id.to_string())
        .bind(name)
        .bind(secret_hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    pub async fn count_live_devices(&self, subscriber_id: Uuid) -> Result<u32> {
        let count: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM devices WHERE subscriber_id = $1 AND revoked_at IS NULL",
        )
        .bind(subscriber_id.to_string())
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// Devices, all of them or one subscriber's, oldest first.
    pub async fn devices(&self, subscriber_id: Option<Uuid>) -> Result<Vec<DeviceRow>> {
        const SELECT: &str = "SELECT d.id, d.name, d.subscriber_id, s.email, d.created_at, d.revoked_at, \
             d.last_heartbeat, d.report, d.spare FROM devices d JOIN subscribers s ON s.id = d.subscriber_id";
        let rows = match subscriber_id {
            Some(id) => {
                sqlx::query(&format!(
                    "{SELECT}{}",
                    " WHERE d.subscriber_id = $1 ORDER BY d.created_at, d.id"
                ))
                .bind(id.to_string())
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "{SELECT}{}",
                    " ORDER BY s.email, d.created_at, d.id"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(device_from_row).collect()
    }

    pub async fn device(&self, device_id: Uuid) -> Result<DeviceRow> {
        let row = sqlx::query(
            "SELECT d.id, d.name, d.subscriber_id, s.email, d.created_at, d.revoked_at, \
             d.last_heartbeat, d.report, d.spare FROM devices d JOIN subscribers s ON s.id = d.subscriber_id \
             WHERE d.id = $1",
        )
        .bind(device_id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        device_from_row(&row)
    }

    /// Revokes one of a subscriber's devices. Its pending instructions are cancelled.
    pub async fn revoke_device(
        &self,
        subscriber_id: Uuid,
        device_id: Uuid,
        now: UnixMillis,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE devices SET revoked_at = $1 WHERE id = $2 AND subscriber_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(device_id.to_string())
        .bind(subscriber_id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            let exists =
                sqlx::query("SELECT 1 AS one FROM devices WHERE id = $1 AND subscriber_id = $2")
                    .bind(device_id.to_string())
                    .bind(subscriber_id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
            return if exists.is_some() {
                Ok(())
            } else {
                Err(StoreError::NotFound)
            };
        }
        sqlx::query(
            "UPDATE instructions SET state = 'cancelled', completed_at = $1 \
             WHERE device_id = $2 AND state IN ('queued', 'delivered')",
        )
        .bind(now)
        .bind(device_id.to_string())
        .execute(&mut *tx)
        .await?;
        // What the device held is lost with it: its placements want a new holder.
        sqlx::query(
            "UPDATE placements SET satisfied_at = NULL WHERE EXISTS (SELECT 1 FROM allocations a \
             WHERE a.device_id = $1 AND a.blob_hash = placements.hash AND a.subscriber_id = placements.subscriber_id \
             AND a.state IN ('pending', 'active', 'evacuating'))",
        )
        .bind(device_id.to_string())
        .execute(&mut *tx)
        .await?;
        // A revoked holder has left for good: what it held counts as lost at once (runs it had
        // simply fail).
        sqlx::query(
            "UPDATE allocations SET state = CASE WHEN kind = 'storage' THEN 'lost' ELSE 'failed' END, \
             released_at = $1 WHERE device_id = $2 AND state IN ('pending', 'active', 'evacuating')",
        )
        .bind(now)
        .bind(device_id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a device's latest report and spare resources, unless a newer heartbeat has been
    /// recorded since `seen_heartbeat` (that one is fresher, and wins).
    pub async fn update_report_if_unchanged(
        &self,
        device_id: Uuid,
        seen_heartbeat: UnixMillis,
        report: &StatusReport,
        spare: Spare,
    ) -> Result<()> {
        let class = arch_class(report);
        let report = to_json(report)?;
        let spare_json = to_json(&spare)?;
        sqlx::query(
            "UPDATE devices SET report = $1, spare = $2, spare_storage_bytes = $3, compute_slots = $4, \
             arch_class = $7 WHERE id = $5 AND last_heartbeat = $6",
        )
        .bind(report)
        .bind(spare_json)
        .bind(to_i64(spare.storage_bytes))
        .bind(i64::from(spare.compute_slots))
        .bind(device_id.to_string())
        .bind(seen_heartbeat)
        .bind(class)
        .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How many presence slots a device has since `since`.
    pub async fn presence_slots(&self, device_id: Uuid, since_slot: i64) -> Result<i64> {
        Ok(sqlx::query(
            "SELECT COUNT(*) AS n FROM device_presence WHERE device_id = $1 AND slot >= $2",
        )
        .bind(device_id.to_string())
        .bind(since_slot)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?)
    }

    // ---- instructions ----

    /// Queues an instruction for a device.
    pub async fn enqueue(
        &self,
        device_id: Uuid,
        allocation_id: Option<Uuid>,
        kind: &InstructionKind,
        now: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<Instruction> {
        let mut conn = self.pool.acquire().await?;
        enqueue_on(&mut conn, device_id, allocation_id, kind, now, expires_at).await
    }

    /// Hands out what a device should do now: queued instructions, and delivered ones whose
    /// acknowledgement has not come within `lease_ms` (at-least-once delivery).
    pub async fn take_deliverable(
        &self,
        device_id: Uuid,
        now: UnixMillis,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Instruction>> {
        let rows = sqlx::query(
            "SELECT id, kind, body, created_at, expires_at FROM instructions WHERE device_id = $1 \
             AND expires_at > $2 AND (state = 'queued' OR (state = 'delivered' AND delivered_at < $3)) \
             ORDER BY created_at, id LIMIT $4",
        )
        .bind(device_id.to_string())
        .bind(now)
        .bind(now - lease_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut batch = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            sqlx::query(
                "UPDATE instructions SET state = 'delivered', delivered_at = $1, attempts = attempts + 1 \
                 WHERE id = $2 AND state IN ('queued', 'delivered')",
            )
            .bind(now)
            .bind(&id)
            .execute(&self.pool)
            .await?;
            let body: String = row.try_get("body")?;
            batch.push(Instruction {
                id: parse_uuid(&id)?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
                kind: serde_json::from_str(&body)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            });
        }
        Ok(batch)
    }

    pub async fn instruction(&self, id: Uuid) -> Result<InstructionRow> {
        let row = sqlx::query(
            "SELECT id, device_id, allocation_id, body, state, created_at, expires_at, result \
             FROM instructions WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let body: String = row.try_get("body")?;
        Ok(InstructionRow {
            instruction: Instruction {
                id,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
                kind: serde_json::from_str(&body)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            },
            device_id: parse_uuid(&row.try_get::<String, _>("device_id")?)?,
            allocation_id: row
                .try_get::<Option<String>, _>("allocation_id")?
                .as_deref()
                .map(parse_uuid)
                .transpose()?,
            state: row.try_get("state")?,
            result: row.try_get("result")?,
        })
    }

    /// Records how an instruction ended and, in the same transaction, what that means for the
    /// allocation it served. Returns false if it had already ended (a repeated acknowledgement),
    /// in which case nothing changes.
    pub async fn complete_instruction(
        &self,
        id: Uuid,
        state: &str,
        result: &str,
        now: UnixMillis,
        allocation: Option<(Uuid, AllocationState)>,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE instructions SET state = $1, result = $2, completed_at = $3 \
             WHERE id = $4 AND state IN ('queued', 'delivered')",
        )
        .bind(state)
        .bind(result)
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some((allocation_id, allocation_state)) = allocation {
            set_allocation_state_on(&mut tx, allocation_id, allocation_state, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Devices with instructions queued since `since`, for waking long polls in other processes.
    pub async fn devices_with_new_instructions(&self, since: UnixMillis) -> Result<Vec<Uuid>> {
        let rows = sqlx::query("SELECT DISTINCT device_id FROM instructions WHERE state = 'queued' AND created_at >= $1")
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| parse_uuid(&row.try_get::<String, _>("device_id")?))
            .collect()
    }

    /// Marks instructions past their expiry as expired and fails the allocations they served.
    /// Returns how many expired.
    pub async fn expire_instructions(&self, now: UnixMillis) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE allocations SET state = 'failed', released_at = $1 WHERE state = 'pending' AND id IN \
             (SELECT allocation_id FROM instructions WHERE state IN ('queued', 'delivered') AND expires_at <= $1 \
              AND allocation_id IS NOT NULL AND kind = 'store_blob')",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(
            "UPDATE instructions SET state = 'expired', completed_at = $1 \
             WHERE state IN ('queued', 'delivered') AND expires_at <= $1",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    // ---- blobs and placements ----

    /// Records a staged blob and that `subscriber_id` owns it.
    pub async fn record_blob(
        &self,
        hash: &str,
        size: u64,
        subscriber_id: Uuid,
        device_id: Option<Uuid>,
        now: UnixMillis,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO blobs (hash, size, created_at, staged, staged_at) VALUES ($1, $2, $3, 1, $3) \
             ON CONFLICT (hash) DO UPDATE SET staged = 1, staged_at = $3",
        )
        .bind(hash)
        .bind(to_i64(size))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO blob_owners (hash, subscriber_id, device_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (hash, subscriber_id) DO NOTHING",
        )
        .bind(hash)
        .bind(subscriber_id.to_string())
        .bind(device_id.map(|d| d.to_string()))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The blob's size and whether it is staged, if `subscriber_id` owns it.
    pub async fn owned_blob(&self, hash: &str, subscriber_id: Uuid) -> Result<Option<(u64, bool)>> {
        let row = sqlx::query(
            "SELECT b.size, b.staged FROM blobs b JOIN blob_owners o ON o.hash = b.hash \
             WHERE b.hash = $1 AND o.subscriber_id = $2",
        )
        .bind(hash)
        .bind(subscriber_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok((
                to_u64(row.try_get("size")?),
                row.try_get::<i64, _>("staged")? != 0,
            ))
        })
        .transpose()
    }

    /// Whether a device holds, or has been asked to hold, a blob.
    pub async fn device_allocated_blob(&self, device_id: Uuid, hash: &str) -> Result<bool> {
        Ok(sqlx::query(
            "SELECT 1 AS one FROM allocations WHERE device_id = $1 AND blob_hash = $2 \
             AND state IN ('pending', 'active', 'evacuating')",
        )
        .bind(device_id.to_string())
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    pub async fn set_blob_staged(&self, hash: &str, staged: bool, now: UnixMillis) -> Result<()> {
        sqlx::query("UPDATE blobs SET staged = $1, staged_at = $2 WHERE hash = $3")
            .bind(i64::from(staged))
            .bind(staged.then_some(now))
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Creates or updates a subscriber's wish to keep a blob on `copies` holders. A shard of a
    /// pack comes with the pack's name and, when its header could be read, its place in the pack.
    pub async fn upsert_placement(
        &self,
        hash: &str,
        subscriber_id: Uuid,
        source_device_id: Option<Uuid>,
        copies: u32,
        pack: Option<(&str, Option<ShardInfo>)>,
        now: UnixMillis,
    ) -> Result<()> {
        let shard = pack.and_then(|(_, shard)| shard);
        sqlx::query(
            "INSERT INTO placements (hash, subscriber_id, source_device_id, copies, created_at, pack, \
             pack_data, pack_parity, shard_index) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (hash, subscriber_id) DO UPDATE SET copies = excluded.copies, pack = excluded.pack, \
             satisfied_at = NULL, dropped_at = NULL, \
             pack_data = COALESCE(excluded.pack_data, placements.pack_data), \
             pack_parity = COALESCE(excluded.pack_parity, placements.pack_parity), \
             shard_index = COALESCE(excluded.shard_index, placements.shard_index)",
        )
        .bind(hash)
        .bind(subscriber_id.to_string())
        .bind(source_device_id.map(|d| d.to_string()))
        .bind(i64::from(copies))
        .bind(now)
        .bind(pack.map(|(name, _)| name))
        .bind(shard.map(|s| i64::from(s.coding.data)))
        .bind(shard.map(|s| i64::from(s.coding.parity)))
        .bind(shard.map(|s| s.index as i64))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The placement of a blob for a subscriber: (size, copies, created_at, staged).
    pub async fn placement(
        &self,
        hash: &str,
        subscriber_id: Uuid,
    ) -> Result<Option<(u64, u32, UnixMillis, bool)>> {
        let row = sqlx::query(
            "SELECT b.size, p.copies, p.created_at, b.staged FROM placements p JOIN blobs b ON b.hash = p.hash \
             WHERE p.hash = $1 AND p.subscriber_id = $2",
        )
        .bind(hash)
        .bind(subscriber_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok((
                to_u64(row.try_get("size")?),
                u32::try_from(row.try_get::<i64, _>("copies")?).unwrap_or(0),
                row.try_get("created_at")?,
                row.try_get::<i64, _>("staged")? != 0,
            ))
        })
        .transpose()
    }

    /// Placements that still want holders, from active subscribers only.
    /// The placements that want holders, oldest first; with `only`, just that blob's of that
    /// subscriber (if it wants any).
    pub async fn open_placements(&self, only: Option<(&str, Uuid)>) -> Result<Vec<OpenPlacement>> {
        let (hash, subscriber) = match only {
            Some((hash, subscriber)) => (Some(hash), Some(subscriber.to_string())),
            None => (None, None),
        };
        let rows = sqlx::query(
            "SELECT p.hash, b.size, p.subscriber_id, p.source_device_id, p.copies, b.staged, p.pack, \
             p.pack_data, s.backup_household, \
             (SELECT COUNT(*) FROM allocations a WHERE a.blob_hash = p.hash AND a.subscriber_id = p.subscriber_id \
               AND a.kind = 'storage' AND a.state = 'active') AS active, \
             (SELECT COUNT(*) FROM allocations a WHERE a.blob_hash = p.hash AND a.subscriber_id = p.subscriber_id \
               AND a.kind = 'storage' AND a.state IN ('pending', 'active')) AS live \
             FROM placements p JOIN blobs b ON b.hash = p.hash JOIN subscribers s ON s.id = p.subscriber_id \
             WHERE p.satisfied_at IS NULL AND p.dropped_at IS NULL AND s.status = 'active' \
             AND ($1 IS NULL OR p.hash = $1) AND ($2 IS NULL OR p.subscriber_id = $2) ORDER BY p.created_at",
        )
        .bind(hash)
        .bind(subscriber)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OpenPlacement {
                    hash: row.try_get("hash")?,
                    size: to_u64(row.try_get("size")?),
                    subscriber_id: parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?,
                    source_device_id: row
                        .try_get::<Option<String>, _>("source_device_id")?
                        .as_deref()
                        .map(parse_uuid)
                        .transpose()?,
                    copies: u32::try_from(row.try_get::<i64, _>("copies")?).unwrap_or(0),
                    staged: row.try_get::<i64, _>("staged")? != 0,
                    pack: row.try_get("pack")?,
                    pack_data: row
                        .try_get::<Option<i64>, _>("pack_data")?
                        .and_then(|n| u32::try_from(n).ok()),
                    household: row.try_get::<i64, _>("backup_household")? != 0,
                    active: u32::try_from(row.try_get::<i64, _>("active")?).unwrap_or(u32::MAX),
                    live: u32::try_from(row.try_get::<i64, _>("live")?).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    /// Closes a placement whose copies are all confirmed, in one statement that checks it
    /// still has them: false if a copy was lost or the placement reopened in the meantime (then
    /// nothing is released on the strength of it).
    pub async fn mark_placement_satisfied(
        &self,
        hash: &str,
        subscriber_id: Uuid,
        now: UnixMillis,
    ) -> Result<bool> {
        let closed = sqlx::query(
            "UPDATE placements SET satisfied_at = $1 WHERE hash = $2 AND subscriber_id = $3 \
             AND satisfied_at IS NULL AND (SELECT COUNT(*) FROM allocations a WHERE a.blob_hash = placements.hash \
               AND a.subscriber_id = placements.subscriber_id AND a.kind = 'storage' AND a.state = 'active') >= copies",
        )
        .bind(now)
        .bind(hash)
        .bind(subscriber_id.to_string())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(closed > 0)
    }

    /// Whether any owner still needs the staged copy of a blob: one whose placement is not yet
    /// satisfied, or one who uploaded it and has not placed it yet.
    pub async fn blob_still_needed_in_staging(&self, hash: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM blob_owners o WHERE o.hash = $1 AND NOT EXISTS \
             (SELECT 1 FROM placements p WHERE p.hash = o.hash AND p.subscriber_id = o.subscriber_id \
              AND p.satisfied_at IS NOT NULL)",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Storage allocations of one blob for one subscriber: (allocation, device, state).
    pub async fn blob_allocations(
        &self,
        hash: &str,
        subscriber_id: Uuid,
    ) -> Result<Vec<(Uuid, Uuid, AllocationState, UnixMillis)>> {
        let rows = sqlx::query(
            "SELECT id, device_id, state, created_at FROM allocations WHERE blob_hash = $1 AND subscriber_id = $2 \
             ORDER BY created_at, id",
        )
        .bind(hash)
        .bind(subscriber_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    parse_uuid(&row.try_get::<String, _>("id")?)?,
                    parse_uuid(&row.try_get::<String, _>("device_id")?)?,
                    parse_allocation_state(&row.try_get::<String, _>("state")?)?,
                    row.try_get("created_at")?,
                ))
            })
            .collect()
    }

    /// Devices whose storage may be allocated now: not revoked, owner active, with spare storage
    /// left after what is already promised to pending allocations.
    pub async fn storage_candidates(&self) -> Result<Vec<Candidate>> {
        let rows = sqlx::query(
            "SELECT d.id, d.subscriber_id, d.spare_storage_bytes, d.last_heartbeat, d.network, \
             CAST(COALESCE((SELECT SUM(a.amount) FROM allocations a WHERE a.device_id = d.id AND a.state = 'pending'), 0) AS BIGINT) AS promised \
             FROM devices d JOIN subscribers s ON s.id = d.subscriber_id \
             WHERE d.revoked_at IS NULL AND s.status = 'active' AND d.spare_storage_bytes > 0",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let spare = to_u64(row.try_get("spare_storage_bytes")?);
                let promised = to_u64(row.try_get::<i64, _>("promised")?);
                Ok(Candidate {
                    device_id: parse_uuid(&row.try_get::<String, _>("id")?)?,
                    subscriber_id: parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?,
                    free_bytes: spare.saturating_sub(promised),
                    last_heartbeat: row.try_get("last_heartbeat")?,
                    week: None,
                    network: row.try_get("network")?,
                })
            })
            .collect()
    }

    /// Forgets a subscriber's placement and ownership of a blob.
    pub async fn drop_placement(&self, hash: &str, subscriber_id: Uuid) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for statement in [
            "DELETE FROM placements WHERE hash = $1 AND subscriber_id = $2",
            "DELETE FROM blob_owners WHERE hash = $1 AND subscriber_id = $2",
        ] {
            sqlx::query(statement)
                .bind(hash)
                .bind(subscriber_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Reopens the placement an allocation served, so the scheduler finds the blob a new holder.
    pub async fn reopen_placement_of(&self, allocation_id: Uuid) -> Result<()> {
        sqlx::query(
            "UPDATE placements SET satisfied_at = NULL WHERE EXISTS (SELECT 1 FROM allocations a \
             WHERE a.id = $1 AND a.blob_hash = placements.hash AND a.subscriber_id = placements.subscriber_id)",
        )
        .bind(allocation_id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether a device already has an upload of this blob waiting or under way.
    pub async fn upload_requested(&self, device_id: Uuid, hash: &str) -> Result<bool> {
        let pattern = format!("%\"hash\":\"{hash}\"%");
        Ok(sqlx::query(
            "SELECT 1 AS one FROM instructions WHERE device_id = $1 AND kind = 'upload_blob' \
             AND state IN ('queued', 'delivered') AND body LIKE $2",
        )
        .bind(device_id.to_string())
        .bind(pattern)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    pub async fn backup_settings(&self, subscriber_id: Uuid) -> Result<BackupSettings> {
        let row = sqlx::query(
            "SELECT backup_household, backup_data, backup_parity FROM subscribers WHERE id = $1",
        )
        .bind(subscriber_id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let data: Option<i64> = row.try_get("backup_data")?;
        let parity: Option<i64> = row.try_get("backup_parity")?;
        let coding = match (data, parity) {
            (Some(data), Some(parity)) => Some(Coding {
                data: u16::try_from(data).map_err(|_| StoreError::Corrupt("backup_data".into()))?,
                parity: u16::try_from(parity)
                    .map_err(|_| StoreError::Corrupt("backup_parity".into()))?,
            }),
            _ => None,
        };
        Ok(BackupSettings {
            household: row.try_get::<i64, _>("backup_household")? != 0,
            coding,
        })
    }

    pub async fn set_backup_settings(
        &self,
        subscriber_id: Uuid,
        settings: BackupSettings,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE subscribers SET backup_household = $1, backup_data = $2, backup_parity = $3 \
             WHERE id = $4",
        )
        .bind(i64::from(settings.household))
        .bind(settings.coding.map(|c| i64::from(c.data)))
        .bind(settings.coding.map(|c| i64::from(c.parity)))
        .bind(subscriber_id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Blobs staged since before `cutoff` that no owner needs staged any more: copies holders
    /// uploaded for a restore, which has had its time to fetch them.
    pub async fn stale_staged_blobs(&self, cutoff: UnixMillis) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT b.hash FROM blobs b WHERE b.staged = 1 AND b.staged_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM blob_owners o WHERE o.hash = b.hash AND NOT EXISTS \
               (SELECT 1 FROM placements p WHERE p.hash = o.hash AND p.subscriber_id = o.subscriber_id \
                AND p.satisfied_at IS NOT NULL))",
        )
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok(row.try_get("hash")?)).collect()
    }

    /// The subscriber's shards at holders that have confirmed them: (allocation, device, hash,
    /// size).
    pub async fn held_shards(&self, subscriber_id: Uuid) -> Result<Vec<(Uuid, Uuid, String, u64)>> {
        let rows = sqlx::query(
            "SELECT a.id, a.device_id, a.blob_hash, b.size FROM allocations a \
             JOIN blobs b ON b.hash = a.blob_hash \
             WHERE a.subscriber_id = $1 AND a.kind = 'storage' AND a.state IN ('active', 'evacuating') \
             ORDER BY a.device_id, a.blob_hash",
        )
        .bind(subscriber_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    parse_uuid(&row.try_get::<String, _>("id")?)?,
                    parse_uuid(&row.try_get::<String, _>("device_id")?)?,
                    row.try_get("blob_hash")?,
                    to_u64(row.try_get("size")?),
                ))
            })
            .collect()
    }

    /// Queues one challenge: the `verify_blob` instruction and its record, together.
    pub async fn add_challenge(
        &self,
        challenge: &Challenge,
        kind: &InstructionKind,
        now: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<()> {
        let Challenge {
            run_id,
            subscriber_id,
            allocation_id,
            device_id,
        } = *challenge;
        let InstructionKind::VerifyBlob {
            hash,
            offset,
            length,
        } = kind
        else {
            return Err(StoreError::Corrupt(
                "a challenge must be a verify_blob".into(),
            ));
        };
        let mut tx = self.pool.begin().await?;
        let instruction = enqueue_on(
            &mut tx,
            device_id,
            Some(allocation_id),
            kind,
            now,
            expires_at,
        )
        .await?;
        sqlx::query(
            "INSERT INTO challenges (id, run_id, subscriber_id, allocation_id, device_id, instruction_id, \
             blob_hash, slice_offset, slice_length, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'waiting', $10)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(run_id.to_string())
        .bind(subscriber_id.to_string())
        .bind(allocation_id.to_string())
        .bind(device_id.to_string())
        .bind(instruction.id.to_string())
        .bind(hash)
        .bind(to_i64(*offset))
        .bind(to_i64(*length))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a holder's answer to the challenge an instruction carried (if it carried one).
    pub async fn answer_challenge(
        &self,
        instruction_id: Uuid,
        passed: bool,
        detail: Option<&str>,
        now: UnixMillis,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE challenges SET state = $1, detail = $2, answered_at = $3 \
             WHERE instruction_id = $4 AND state = 'waiting'",
        )
        .bind(if passed { "passed" } else { "failed" })
        .bind(detail)
        .bind(now)
        .bind(instruction_id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One challenge run of a subscriber, as it stands.
    pub async fn verify_run(&self, subscriber_id: Uuid, run_id: Uuid) -> Result<VerifyRun> {
        let rows = sqlx::query(
            "SELECT device_id, blob_hash, state, detail, created_at FROM challenges \
             WHERE subscriber_id = $1 AND run_id = $2 ORDER BY blob_hash",
        )
        .bind(subscriber_id.to_string())
        .bind(run_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound);
        }
        let mut run = VerifyRun {
            id: run_id,
            created_at: rows[0].try_get("created_at")?,
            challenged: 0,
            passed: 0,
            failed: 0,
            waiting: 0,
            failures: Vec::new(),
        };
        for row in &rows {
            run.challenged += 1;
            match row.try_get::<String, _>("state")?.as_str() {
                "passed" => run.passed += 1,
                "failed" => {
                    run.failed += 1;
                    run.failures.push(ShardFailure {
                        hash: row.try_get("blob_hash")?,
                        device_id: parse_uuid(&row.try_get::<String, _>("device_id")?)?,
                        reason: row
                            .try_get::<Option<String>, _>("detail")?
                            .unwrap_or_default(),
                    });
                }
                _ => run.waiting += 1,
            }
        }
        Ok(run)
    }

    /// Keeps the subscriber's wrapped key; an existing one is replaced only when `replace` is
    /// set. Returns whether it was written.
    pub async fn put_wrapped_key(
        &self,
        subscriber_id: Uuid,
        body: &str,
        now: UnixMillis,
        replace: bool,
    ) -> Result<bool> {
        let conflict = if replace {
            "DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at"
        } else {
            "DO NOTHING"
        };
        let done = sqlx::query(&format!(
            "INSERT INTO wrapped_keys (subscriber_id, body, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (subscriber_id) {conflict}"
        ))
        .bind(subscriber_id.to_string())
        .bind(body)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn wrapped_key(&self, subscriber_id: Uuid) -> Result<Option<String>> {
        let row = sqlx::query("SELECT body FROM wrapped_keys WHERE subscriber_id = $1")
            .bind(subscriber_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Ok(row.try_get("body")?)).transpose()
    }

    /// Keeps a sealed backup object (hex in TEXT, portable to both engines). Objects are named
    /// by their content and written once: one already kept under the name stays as it is, and
    /// one forgotten but still kept is brought back as it was.
    pub async fn put_backup_object(
        &self,
        subscriber_id: Uuid,
        kind: &str,
        name: &str,
        body: &[u8],
        now: UnixMillis,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO backup_objects (subscriber_id, kind, name, body, size, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (subscriber_id, kind, name) DO UPDATE SET deleted_at = NULL",
        )
        .bind(subscriber_id.to_string())
        .bind(kind)
        .bind(name)
        .bind(hex::encode(body))
        .bind(to_i64(body.len() as u64))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn backup_object(
        &self,
        subscriber_id: Uuid,
        kind: &str,
        name: &str,
    ) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query(
            "SELECT body FROM backup_objects WHERE subscriber_id = $1 AND kind = $2 AND name = $3 \
             AND deleted_at IS NULL",
        )
        .bind(subscriber_id.to_string())
        .bind(kind)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            hex::decode(row.try_get::<String, _>("body")?)
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .transpose()
    }

    pub async fn backup_object_names(
        &self,
        subscriber_id: Uuid,
        kind: &str,
    ) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT name FROM backup_objects WHERE subscriber_id = $1 AND kind = $2 AND deleted_at IS NULL \
             ORDER BY name",
        )
        .bind(subscriber_id.to_string())
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok(row.try_get("name")?)).collect()
    }

    /// Devices that hold, or are to hold, this content for any subscriber.
    pub async fn devices_holding(&self, hash: &str) -> Result<Vec<Uuid>> {
        let rows = sqlx::query(
            "SELECT device_id FROM allocations WHERE blob_hash = $1 AND state IN ('pending', 'active', 'evacuating')",
        )
        .bind(hash)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| parse_uuid(&row.try_get::<String, _>("device_id")?))
            .collect()
    }

    // ---- the allocation ledger ----

    pub async fn set_allocation_state(
        &self,
        allocation_id: Uuid,
        state: AllocationState,
        now: UnixMillis,
    ) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        set_allocation_state_on(&mut conn, allocation_id, state, now).await
    }

    pub async fn allocation_state(&self, allocation_id: Uuid) -> Result<Option<AllocationState>> {
        let row = sqlx::query("SELECT state FROM allocations WHERE id = $1")
            .bind(allocation_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| parse_allocation_state(&row.try_get::<String, _>("state")?))
            .transpose()
    }

    /// Active allocations on a device, newest first: (id, amount, blob hash, subscriber).
    pub async fn active_allocations_on(
        &self,
        device_id: Uuid,
    ) -> Result<Vec<(Uuid, u64, Option<String>, Uuid)>> {
        let rows = sqlx::query(
            "SELECT id, amount, blob_hash, subscriber_id FROM allocations WHERE device_id = $1 AND state = 'active' \
             ORDER BY created_at DESC, id",
        )
        .bind(device_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    parse_uuid(&row.try_get::<String, _>("id")?)?,
                    to_u64(row.try_get("amount")?),
                    row.try_get("blob_hash")?,
                    parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?,
                ))
            })
            .collect()
    }

    /// Bytes on a device already marked to move away.
    pub async fn evacuating_bytes(&self, device_id: Uuid) -> Result<u64> {
        let total: Option<i64> = sqlx::query(
            "SELECT CAST(SUM(amount) AS BIGINT) AS total FROM allocations WHERE device_id = $1 AND state = 'evacuating'",
        )
        .bind(device_id.to_string())
        .fetch_one(&self.pool)
        .await?
        .try_get("total")?;
        Ok(total.map(to_u64).unwrap_or(0))
    }

    /// Marks allocations as evacuating (handed over from `now`) and reopens their placements so
    /// the scheduler finds them new holders.
    pub async fn evacuate(
        &self,
        allocations: &[(Uuid, Option<String>, Uuid)],
        now: UnixMillis,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (id, hash, subscriber_id) in allocations {
            sqlx::query(
                "UPDATE allocations SET state = 'evacuating', evacuating_since = $2 WHERE id = $1 AND state = 'active'",
            )
            .bind(id.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if let Some(hash) = hash {
                sqlx::query("UPDATE placements SET satisfied_at = NULL WHERE hash = $1 AND subscriber_id = $2")
                    .bind(hash)
                    .bind(subscriber_id.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The ledger, all of it or one subscriber's (as beneficiary or as donor), newest first.
    pub async fn ledger(&self, viewer: Option<Uuid>, limit: i64) -> Result<Vec<Allocation>> {
        const SELECT: &str = "SELECT a.id, s.email AS subscriber, a.subscriber_id, a.device_id, d.name AS device_name, \
             o.email AS donor, d.subscriber_id AS donor_id, a.kind, a.amount, a.purpose, a.state, a.created_at, \
             a.released_at FROM allocations a JOIN subscribers s ON s.id = a.subscriber_id \
             JOIN devices d ON d.id = a.device_id JOIN subscribers o ON o.id = d.subscriber_id";
        const MINE: &str = " WHERE a.subscriber_id = $1 OR d.subscriber_id = $1";
        const ORDER: &str = " ORDER BY a.created_at DESC, a.id";
        // The instructions of the same page of allocations, in one query rather than one each.
        const INSTRUCTIONS: &str = "SELECT i.allocation_id, i.id FROM instructions i WHERE i.allocation_id IN \
             (SELECT a.id FROM allocations a JOIN devices d ON d.id = a.device_id";
        let (rows, instruction_rows) = match viewer {
            Some(id) => {
                let page = format!("{SELECT}{MINE}{ORDER} LIMIT $2");
                let instructions =
                    format!("{INSTRUCTIONS}{MINE}{ORDER} LIMIT $2) ORDER BY i.created_at, i.id");
                (
                    sqlx::query(&page)
                        .bind(id.to_string())
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await?,
                    sqlx::query(&instructions)
                        .bind(id.to_string())
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await?,
                )
            }
            None => {
                let page = format!("{SELECT}{ORDER} LIMIT $1");
                let instructions =
                    format!("{INSTRUCTIONS}{ORDER} LIMIT $1) ORDER BY i.created_at, i.id");
                (
                    sqlx::query(&page).bind(limit).fetch_all(&self.pool).await?,
                    sqlx::query(&instructions)
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await?,
                )
            }
        };
        let mut instructions: std::collections::HashMap<String, Vec<Uuid>> =
            std::collections::HashMap::new();
        for row in &instruction_rows {
            instructions
                .entry(row.try_get("allocation_id")?)
                .or_default()
                .push(parse_uuid(&row.try_get::<String, _>("id")?)?);
        }
        let mut ledger = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            let mut allocation = Allocation {
                id: parse_uuid(&id)?,
                subscriber: row.try_get("subscriber")?,
                device_id: parse_uuid(&row.try_get::<String, _>("device_id")?)?,
                device_name: row.try_get("device_name")?,
                donor: row.try_get("donor")?,
                kind: ResourceKind::parse(&row.try_get::<String, _>("kind")?)
                    .ok_or_else(|| StoreError::Corrupt("allocation kind".into()))?,
                amount: to_u64(row.try_get("amount")?),
                purpose: row.try_get("purpose")?,
                state: parse_allocation_state(&row.try_get::<String, _>("state")?)?,
                instructions: instructions.remove(&id).unwrap_or_default(),
                created_at: row.try_get("created_at")?,
                released_at: row.try_get("released_at")?,
            };
            // A subscriber sees that their storage serves someone, or that someone's device
            // serves them, but not who: other subscribers' identities stay private.
            if let Some(viewer) = viewer {
                if parse_uuid(&row.try_get::<String, _>("subscriber_id")?)? != viewer {
                    allocation.subscriber = OTHER_SUBSCRIBER.to_owned();
                }
                if parse_uuid(&row.try_get::<String, _>("donor_id")?)? != viewer {
                    allocation.donor = OTHER_SUBSCRIBER.to_owned();
                    allocation.device_name = OTHER_DEVICE.to_owned();
                }
            }
            ledger.push(allocation);
        }
        Ok(ledger)
    }
}

/// How a subscriber's ledger names another subscriber.
pub const OTHER_SUBSCRIBER: &str = "another subscriber";
/// How a subscriber's ledger names another subscriber's device.
pub const OTHER_DEVICE: &str = "another subscriber's device";

async fn set_allocation_state_on(
    conn: &mut sqlx::AnyConnection,
    allocation_id: Uuid,
    state: AllocationState,
    now: UnixMillis,
) -> Result<()> {
    let released = matches!(
        state,
        AllocationState::Released | AllocationState::Failed | AllocationState::Lost
    )
    .then_some(now);
    sqlx::query(
        "UPDATE allocations SET state = $1, released_at = COALESCE($2, released_at) WHERE id = $3",
    )
    .bind(state.as_str())
    .bind(released)
    .bind(allocation_id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn enqueue_on(
    conn: &mut sqlx::AnyConnection,
    device_id: Uuid,
    allocation_id: Option<Uuid>,
    kind: &InstructionKind,
    now: UnixMillis,
    expires_at: UnixMillis,
) -> Result<Instruction> {
    // Version 7 UUIDs sort by creation time, which keeps a device's queue in order.
    let id = Uuid::now_v7();
    let body = to_json(kind)?;
    sqlx::query(
        "INSERT INTO instructions (id, device_id, allocation_id, kind, body, state, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7)",
    )
    .bind(id.to_string())
    .bind(device_id.to_string())
    .bind(allocation_id.map(|a| a.to_string()))
    .bind(kind.name())
    .bind(body)
    .bind(now)
    .bind(expires_at)
    .execute(&mut *conn)
    .await?;
    Ok(Instruction {
        id,
        created_at: now,
        expires_at,
        kind: kind.clone(),
    })
}

fn subscriber_from_row(row: &AnyRow) -> Result<Subscriber> {
    Ok(Subscriber {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        email: row.try_get("email")?,
        plan: parse_plan(&row.try_get::<String, _>("plan")?)?,
        status: parse_status(&row.try_get::<String, _>("status")?)?,
        created_at: row.try_get("created_at")?,
    })
}

fn device_from_row(row: &AnyRow) -> Result<DeviceRow> {
    let report: Option<String> = row.try_get("report")?;
    let spare: Option<String> = row.try_get("spare")?;
    Ok(DeviceRow {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        name: row.try_get("name")?,
        subscriber_id: parse_uuid(&row.try_get::<String, _>("subscriber_id")?)?,
        subscriber_email: row.try_get("email")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_heartbeat: row.try_get("last_heartbeat")?,
        report: report
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        spare: spare
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?
            .unwrap_or_default(),
    })
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
