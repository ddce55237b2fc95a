//! Backup's own records: each subscriber's settings, wrapped master key and sealed objects
//! (indexes and snapshots).

use sqlx::Row;
use surplus_protocol::{BackupSettings, Coding, UnixMillis};
use uuid::Uuid;

use super::{Result, Store, StoreError, to_i64};

impl Store {
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
}
