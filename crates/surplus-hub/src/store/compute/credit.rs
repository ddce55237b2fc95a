//! A task's verdict and what it moves: credit from the submitter to the donors of valid runs,
//! and each device's trust.

use sqlx::Row;
use surplus_protocol::{Credits, UnixMillis, core_seconds};
use uuid::Uuid;

use super::super::sql;
use super::super::{Result, Store, text_enum, to_u64};
use super::{DeviceTrust, Settlement};

text_enum! {
    /// Why credit moved: a grant (a new subscriber's, or the operator's), a valid run's donor
    /// earning it, or its submitter spending it.
    pub enum CreditReason {
        Granted = "granted",
        Earned = "earned",
        Spent = "spent",
    }
}

impl Store {
    /// Records a task's verdict: its output (or why it failed), which runs were valid and which
    /// not, the credit that moves for valid runs (the donor earns what the submitter spends), and
    /// each device's trust.
    pub async fn settle_task(
        &self,
        task_id: Uuid,
        submitter: Uuid,
        settlement: &Settlement,
        now: UnixMillis,
    ) -> Result<()> {
        self.transaction(async |tx| {
            match settlement {
                Settlement::Completed {
                    output,
                    valid,
                    invalid,
                } => {
                    sql!(
                        "UPDATE tasks SET state = 'completed', output_hash = $1, output_size = $2, \
                         finished_at = $3 WHERE id = $4 AND state IN ('queued', 'running', 'completed')",
                        &output.hash,
                        output.size,
                        now,
                        task_id
                    )
                    .execute(&mut *tx)
                    .await?;
                    // Devices' rows are updated in one order (by id) in every transaction, so that
                    // two settlements at once never wait on each other's locks.
                    let mut trust: Vec<(String, bool)> = Vec::new();
                    for run in valid {
                        let row = sql!(
                            "UPDATE task_runs SET state = 'valid' WHERE id = $1 AND state = 'returned' \
                             RETURNING device_id, donor_id, running_ms",
                            run
                        )
                        .fetch_optional(&mut *tx)
                        .await?;
                        let Some(row) = row else { continue };
                        let device: String = row.try_get("device_id")?;
                        let donor: String = row.try_get("donor_id")?;
                        let used: i64 = row.try_get("running_ms")?;
                        for (subscriber, amount, reason) in [
                            (donor, used, CreditReason::Earned),
                            (submitter.to_string(), -used, CreditReason::Spent),
                        ] {
                            sql!(
                                "INSERT INTO credits (id, subscriber_id, amount_ms, reason, run_id, created_at) \
                                 VALUES ($1, $2, $3, $4, $5, $6)",
                                Uuid::now_v7().to_string(),
                                subscriber,
                                amount,
                                reason.as_str(),
                                run,
                                now
                            )
                            .execute(&mut *tx)
                            .await?;
                        }
                        trust.push((device, true));
                    }
                    for run in invalid {
                        let row = sql!(
                            "UPDATE task_runs SET state = 'invalid' WHERE id = $1 AND state = 'returned' \
                             RETURNING device_id",
                            run
                        )
                        .fetch_optional(&mut *tx)
                        .await?;
                        let Some(row) = row else { continue };
                        trust.push((row.try_get("device_id")?, false));
                    }
                    trust.sort();
                    for (device, valid) in trust {
                        let statement = if valid {
                            "UPDATE devices SET trust_streak = trust_streak + 1, results_valid = results_valid + 1 \
                             WHERE id = $1"
                        } else {
                            "UPDATE devices SET trust_streak = 0, results_invalid = results_invalid + 1 \
                             WHERE id = $1"
                        };
                        sql!(statement, device).execute(&mut *tx).await?;
                    }
                }
                Settlement::Failed(reason) => {
                    sql!(
                        "UPDATE tasks SET state = 'failed', error = $1, finished_at = $2 WHERE id = $3 \
                         AND state IN ('queued', 'running')",
                        reason,
                        now,
                        task_id
                    )
                    .execute(&mut *tx)
                    .await?;
                }
            }
            Ok(())
        })
        .await
    }

    /// The subscriber's credit, and the validated runs their devices did.
    pub async fn credits(&self, subscriber_id: Uuid) -> Result<Credits> {
        let rows = sql!(
            "SELECT reason, CAST(SUM(amount_ms) AS BIGINT) AS total, COUNT(*) AS n FROM credits \
             WHERE subscriber_id = $1 GROUP BY reason",
            subscriber_id
        )
        .fetch_all(&self.pool)
        .await?;
        let mut credits = Credits {
            balance: 0.0,
            earned: 0.0,
            spent: 0.0,
            granted: 0.0,
            runs_done: 0,
        };
        let mut balance = 0i64;
        for row in &rows {
            let total: i64 = row.try_get::<Option<i64>, _>("total")?.unwrap_or(0);
            balance += total;
            match row.try_get::<String, _>("reason")?.parse() {
                Ok(CreditReason::Earned) => {
                    credits.earned = core_seconds(total);
                    credits.runs_done = to_u64(row.try_get("n")?);
                }
                Ok(CreditReason::Spent) => credits.spent = core_seconds(-total),
                // Whatever else credit came from counts as granted.
                Ok(CreditReason::Granted) | Err(_) => credits.granted += core_seconds(total),
            }
        }
        credits.balance = core_seconds(balance);
        Ok(credits)
    }

    /// Grants credit (a new subscriber's starting credit, or the operator's grant).
    pub async fn grant_credit(
        &self,
        subscriber_id: Uuid,
        amount_ms: i64,
        now: UnixMillis,
    ) -> Result<()> {
        sql!(
            "INSERT INTO credits (id, subscriber_id, amount_ms, reason, run_id, created_at) \
             VALUES ($1, $2, $3, 'granted', NULL, $4)",
            Uuid::now_v7().to_string(),
            subscriber_id,
            amount_ms,
            now
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A device's trust: its streak of valid results, and its valid and invalid results.
    pub async fn device_trust(&self, device_id: Uuid) -> Result<DeviceTrust> {
        let row = sql!(
            "SELECT trust_streak, results_valid, results_invalid FROM devices WHERE id = $1",
            device_id
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(DeviceTrust {
            streak: u32::try_from(row.try_get::<i64, _>("trust_streak")?).unwrap_or(0),
            valid: to_u64(row.try_get("results_valid")?),
            invalid: to_u64(row.try_get("results_invalid")?),
        })
    }
}
