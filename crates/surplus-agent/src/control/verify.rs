//! Proofs of storage on demand: every shard of the subscriber's backups challenged on its
//! holder now.

use std::time::Duration;

use surplus_protocol::VerifyRun;

use super::{Control, Result};

impl Control {
    /// Challenges every shard of the subscriber's backups on its holder, and waits up to `wait`
    /// for the answers. Holders that are offline answer when they are back: the run says how
    /// many are still waiting.
    pub async fn verify(&self, wait: Duration) -> Result<VerifyRun> {
        let client = self.client()?;
        let token = self.any_token()?;
        let mut run = client.start_verify(&token).await?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(100);
        while run.challenged > 0 && run.waiting > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(pause.min(deadline - tokio::time::Instant::now())).await;
            pause = (pause * 2).min(Duration::from_secs(2));
            run = client.verify_run(&token, run.id).await?;
        }
        Ok(run)
    }
}
