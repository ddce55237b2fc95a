//! Signing up, logging in and out, and the subscriber's own account.

use super::*;

impl HubClient {
    /// Signs up and logs in. The hub answers a sign-up the same way whether or not the email
    /// had an account (so that it reveals nobody's), so a log-in refused after it means the email
    /// has an account with another password.
    pub async fn signup(&self, credentials: &Credentials) -> Result<Session> {
        let _: surplus_protocol::SignupAccepted =
            self.post("/v1/signup", None, credentials).await?;
        match self.login(credentials).await {
            Err(ClientError::Hub { status, mut body })
                if body.error == surplus_protocol::ErrorCode::Unauthorized =>
            {
                body.message = "this email could not sign up with that password: if it has an \
                                account already, log in with its password"
                    .into();
                Err(ClientError::Hub { status, body })
            }
            other => other,
        }
    }

    pub async fn login(&self, credentials: &Credentials) -> Result<Session> {
        self.post("/v1/login", None, credentials).await
    }

    /// Ends this session at the hub (`everywhere`: every session of the subscriber's).
    pub async fn logout(&self, session: &str, everywhere: bool) -> Result<()> {
        let path = if everywhere {
            "/v1/sessions"
        } else {
            "/v1/sessions/current"
        };
        self.send(self.request(Method::DELETE, path, Some(session)))
            .await?;
        Ok(())
    }

    pub async fn me(&self, session: &str) -> Result<Subscriber> {
        self.json(self.request(Method::GET, "/v1/me", Some(session)))
            .await
    }
}
