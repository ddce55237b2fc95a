//! Subscribers and their log-in sessions.

use sqlx::Row;
use sqlx::any::AnyRow;
use surplus_protocol::{Plan, Subscriber, SubscriberStatus, UnixMillis};
use uuid::Uuid;

use super::sql;
use super::{Result, Store, StoreError, parse_plan, parse_status, parse_uuid};

/// A subscriber as logging in finds them: with their password hash.
#[derive(Debug, Clone)]
pub struct Login {
    pub subscriber: Subscriber,
    pub password_hash: String,
}

/// A live session: whose it is, when it began and when it expires unless used.
#[derive(Debug, Clone)]
pub struct LiveSession {
    pub subscriber: Subscriber,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
}

/// One of a subscriber's live sessions, as they list them.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub token_hash: String,
    pub created_at: UnixMillis,
    pub last_used_at: UnixMillis,
    pub expires_at: UnixMillis,
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

impl Store {
    pub async fn create_subscriber(
        &self,
        email: &str,
        password_hash: &str,
        plan: Plan,
        now: UnixMillis,
    ) -> Result<Subscriber> {
        let id = Uuid::now_v7();
        self.transaction(async |tx| {
            let inserted = sql!(
                "INSERT INTO subscribers (id, email, password_hash, plan, status, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (email) DO NOTHING",
                id,
                email,
                password_hash,
                plan.as_str(),
                SubscriberStatus::Active.as_str(),
                now
            )
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!(
                    "{email} has already signed up"
                )));
            }
            // The plan's starting credit, so that a new subscriber can run small jobs at once.
            sql!(
                "INSERT INTO credits (id, subscriber_id, amount_ms, reason, run_id, created_at) \
                 VALUES ($1, $2, $3, 'granted', NULL, $4)",
                format!("grant-{id}"),
                id,
                plan.limits().starting_credit.saturating_mul(1000),
                now
            )
            .execute(&mut *tx)
            .await?;
            Ok(Subscriber {
                id,
                email: email.to_owned(),
                plan,
                status: SubscriberStatus::Active,
                created_at: now,
            })
        })
        .await
    }

    /// The subscriber with this email and their password hash.
    pub async fn login(&self, email: &str) -> Result<Option<Login>> {
        let row = sql!(
            "SELECT id, email, plan, status, created_at, password_hash FROM subscribers WHERE email = $1",
            email
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Login {
                subscriber: subscriber_from_row(&row)?,
                password_hash: row.try_get("password_hash")?,
            })
        })
        .transpose()
    }

    pub async fn subscriber(&self, id: Uuid) -> Result<Subscriber> {
        let row = sql!(
            "SELECT id, email, plan, status, created_at FROM subscribers WHERE id = $1",
            id
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        subscriber_from_row(&row)
    }

    pub async fn subscribers(&self) -> Result<Vec<Subscriber>> {
        let rows =
            sql!("SELECT id, email, plan, status, created_at FROM subscribers ORDER BY email")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(subscriber_from_row).collect()
    }

    /// How many subscribers there are (also the health check's database round trip).
    pub async fn subscribers_count(&self) -> Result<i64> {
        Ok(sql!("SELECT COUNT(*) AS n FROM subscribers")
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
        let done = sql!(statement, value, email).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.login(email)
            .await?
            .map(|login| login.subscriber)
            .ok_or(StoreError::NotFound)
    }

    pub async fn create_session(
        &self,
        token_hash: &str,
        subscriber_id: Uuid,
        now: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<()> {
        sql!(
            "INSERT INTO sessions (token_hash, subscriber_id, created_at, expires_at, last_used_at) VALUES ($1, $2, $3, $4, $3)",
            token_hash,
            subscriber_id,
            now,
            expires_at
        )
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The subscriber a live session belongs to, with the session's creation and expiry.
    pub async fn session_subscriber(
        &self,
        token_hash: &str,
        now: UnixMillis,
    ) -> Result<Option<LiveSession>> {
        let row = sql!(
            "SELECT s.id, s.email, s.plan, s.status, s.created_at, t.created_at AS session_created, \
             t.expires_at FROM sessions t JOIN subscribers s ON s.id = t.subscriber_id \
             WHERE t.token_hash = $1 AND t.expires_at > $2",
            token_hash,
            now
        )
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|row| {
                Ok(LiveSession {
                    subscriber: subscriber_from_row(row)?,
                    created_at: row.try_get("session_created")?,
                    expires_at: row.try_get("expires_at")?,
                })
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
        sql!(
            "UPDATE sessions SET expires_at = $1, last_used_at = $2 WHERE token_hash = $3",
            expires_at,
            now,
            token_hash
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A subscriber's live sessions, newest first.
    pub async fn sessions(&self, subscriber_id: Uuid, now: UnixMillis) -> Result<Vec<SessionRow>> {
        let rows = sql!(
            "SELECT token_hash, created_at, last_used_at, expires_at FROM sessions \
             WHERE subscriber_id = $1 AND expires_at > $2 ORDER BY created_at DESC",
            subscriber_id,
            now
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SessionRow {
                    token_hash: row.try_get("token_hash")?,
                    created_at: row.try_get("created_at")?,
                    last_used_at: row.try_get("last_used_at")?,
                    expires_at: row.try_get("expires_at")?,
                })
            })
            .collect()
    }

    /// Ends one session of the subscriber's (`Some`) or all of them (`None`); returns how many.
    pub async fn end_sessions(&self, subscriber_id: Uuid, token_hash: Option<&str>) -> Result<u64> {
        let done = match token_hash {
            Some(hash) => {
                sql!(
                    "DELETE FROM sessions WHERE subscriber_id = $1 AND token_hash = $2",
                    subscriber_id,
                    hash
                )
                .execute(&self.pool)
                .await?
            }
            None => {
                sql!(
                    "DELETE FROM sessions WHERE subscriber_id = $1",
                    subscriber_id
                )
                .execute(&self.pool)
                .await?
            }
        };
        Ok(done.rows_affected())
    }
}
