//! Backup's own records: each subscriber's settings, wrapped master key and sealed objects
//! (indexes and snapshots).

use sqlx::Row;
use surplus_protocol::{BackupSettings, Coding, UnixMillis};
use uuid::Uuid;

use super::sql;
use super::{Result, Store, StoreError};

impl Store {
    pub async fn backup_settings(&self, subscriber_id: Uuid) -> Result<BackupSettings> {
        let row = sql!(
            "SELECT backup_household, backup_data, backup_parity FROM subscribers WHERE id = $1",
            subscriber_id
        )
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
        sql!(
            "UPDATE subscribers SET backup_household = $1, backup_data = $2, backup_parity = $3 \
             WHERE id = $4",
            i64::from(settings.household),
            settings.coding.map(|c| i64::from(c.data)),
            settings.coding.map(|c| i64::from(c.parity)),
            subscriber_id
        )
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
        let done = sql!(
            &format!(
                "INSERT INTO wrapped_keys (subscriber_id, body, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (subscriber_id) {conflict}"
            ),
            subscriber_id,
            body,
            now
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn wrapped_key(&self, subscriber_id: Uuid) -> Result<Option<String>> {
        let row = sql!(
            "SELECT body FROM wrapped_keys WHERE subscriber_id = $1",
            subscriber_id
        )
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
        sql!(
            "INSERT INTO backup_objects (subscriber_id, kind, name, body, size, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (subscriber_id, kind, name) DO UPDATE SET deleted_at = NULL",
            subscriber_id,
            kind,
            name,
            hex::encode(body),
            body.len() as u64,
            now
        )
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
        let row = sql!(
            "SELECT body FROM backup_objects WHERE subscriber_id = $1 AND kind = $2 AND name = $3 \
             AND deleted_at IS NULL",
            subscriber_id,
            kind,
            name
        )
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
        let rows = sql!(
            "SELECT name FROM backup_objects WHERE subscriber_id = $1 AND kind = $2 AND deleted_at IS NULL \
             ORDER BY name",
            subscriber_id,
            kind
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok(row.try_get("name")?)).collect()
    }
}
