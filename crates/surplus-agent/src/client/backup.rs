//! Backups at the hub: the wrapped key, sealed objects, their health, forgetting, verifying and the coding.

use super::*;

impl HubClient {
    pub async fn put_wrapped_key(&self, token: &str, wrapped: &str) -> Result<()> {
        let body = surplus_protocol::WrappedKeyBody {
            wrapped: wrapped.to_owned(),
        };
        self.send(
            self.request(Method::PUT, "/v1/backup/key", Some(token))
                .json(&body),
        )
        .await?;
        Ok(())
    }

    /// The escrowed wrapped key, or `None` if there is none yet.
    pub async fn wrapped_key(&self, token: &str) -> Result<Option<String>> {
        match self
            .json::<surplus_protocol::WrappedKeyBody>(self.request(
                Method::GET,
                "/v1/backup/key",
                Some(token),
            ))
            .await
        {
            Ok(body) => Ok(Some(body.wrapped)),
            Err(error) if error.code() == Some(surplus_protocol::ErrorCode::NotFound) => Ok(None),
            Err(error) => Err(error),
        }
    }

    pub async fn put_object(
        &self,
        token: &str,
        kind: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<()> {
        let path = format!("/v1/backup/objects/{kind}/{name}");
        self.send(self.request(Method::PUT, &path, Some(token)).body(bytes))
            .await?;
        Ok(())
    }

    pub async fn get_object(&self, token: &str, kind: &str, name: &str) -> Result<Vec<u8>> {
        self.get_bytes(
            &format!("/v1/backup/objects/{kind}/{name}"),
            token,
            MAX_OBJECT_BYTES,
        )
        .await
    }

    pub async fn list_objects(&self, token: &str, kind: &str) -> Result<Vec<String>> {
        self.json(self.request(
            Method::GET,
            &format!("/v1/backup/objects/{kind}"),
            Some(token),
        ))
        .await
    }

    /// Where each of the subscriber's packs stands.
    pub async fn backup_health(&self, token: &str) -> Result<surplus_protocol::BackupHealth> {
        self.json(self.request(Method::GET, "/v1/backup/health", Some(token)))
            .await
    }

    /// What the subscriber forgot that the hub still keeps, recoverable.
    pub async fn forgotten(&self, token: &str) -> Result<surplus_protocol::Forgotten> {
        self.json(self.request(Method::GET, "/v1/backup/forgotten", Some(token)))
            .await
    }

    /// Brings back everything forgotten that the hub still keeps.
    pub async fn recover_forgotten(&self, token: &str) -> Result<surplus_protocol::Recovered> {
        self.json(self.request(Method::POST, "/v1/backup/forgotten/recover", Some(token)))
            .await
    }

    /// Forgets a backup object: hidden at once, deleted when the hub's grace period ends.
    pub async fn delete_object(&self, token: &str, kind: &str, name: &str) -> Result<()> {
        self.send(self.request(
            Method::DELETE,
            &format!("/v1/backup/objects/{kind}/{name}"),
            Some(token),
        ))
        .await?;
        Ok(())
    }

    /// The subscriber's backup settings and the coding the next backup uses.
    pub async fn backup_plan(&self, token: &str) -> Result<surplus_protocol::BackupPlan> {
        self.json(self.request(Method::GET, "/v1/backup/settings", Some(token)))
            .await
    }

    pub async fn set_backup_settings(
        &self,
        token: &str,
        settings: &surplus_protocol::BackupSettings,
    ) -> Result<surplus_protocol::BackupPlan> {
        self.json(
            self.request(Method::PUT, "/v1/backup/settings", Some(token))
                .json(settings),
        )
        .await
    }

    /// Challenges every shard of the subscriber's at its holder.
    pub async fn start_verify(&self, token: &str) -> Result<surplus_protocol::VerifyRun> {
        self.json(self.request(Method::POST, "/v1/backup/verify", Some(token)))
            .await
    }

    pub async fn verify_run(&self, token: &str, id: Uuid) -> Result<surplus_protocol::VerifyRun> {
        self.json(self.request(Method::GET, &format!("/v1/backup/verify/{id}"), Some(token)))
            .await
    }
}
