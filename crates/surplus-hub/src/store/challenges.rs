//! Challenges: `verify_blob` instructions that ask a holder to prove it still has a shard, and
//! their answers.

use sqlx::Row;
use surplus_protocol::{InstructionKind, ShardFailure, UnixMillis, VerifyRun};
use uuid::Uuid;

use super::sql;
use super::{Result, Store, StoreError, enqueue_on, parse_uuid, text_enum, to_u64};

/// Who a challenge of one shard is for: the run it belongs to, the shard's owner, and the
/// holder's allocation and device.
#[derive(Debug, Clone, Copy)]
pub struct Challenge {
    pub run_id: Uuid,
    pub subscriber_id: Uuid,
    pub allocation_id: Uuid,
    pub device_id: Uuid,
}

text_enum! {
    /// Where a challenge stands: waiting for its holder's answer, or answered.
    pub enum ChallengeState {
        Waiting = "waiting",
        Passed = "passed",
        Failed = "failed",
    }
}

/// A shard at a holder that confirmed it, as a challenge run sees it.
#[derive(Debug, Clone)]
pub struct HeldShard {
    pub allocation_id: Uuid,
    pub device_id: Uuid,
    pub hash: String,
    pub size: u64,
}

impl Store {
    /// The subscriber's shards at holders that have confirmed them.
    pub async fn held_shards(&self, subscriber_id: Uuid) -> Result<Vec<HeldShard>> {
        let rows = sql!(
            "SELECT a.id, a.device_id, a.blob_hash, b.size FROM allocations a \
             JOIN blobs b ON b.hash = a.blob_hash \
             WHERE a.subscriber_id = $1 AND a.kind = 'storage' AND a.state IN ('active', 'evacuating') \
             ORDER BY a.device_id, a.blob_hash",
            subscriber_id
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(HeldShard {
                    allocation_id: parse_uuid(&row.try_get::<String, _>("id")?)?,
                    device_id: parse_uuid(&row.try_get::<String, _>("device_id")?)?,
                    hash: row.try_get("blob_hash")?,
                    size: to_u64(row.try_get("size")?),
                })
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
        self.transaction(async |tx| {
            let instruction = enqueue_on(
                tx,
                device_id,
                Some(allocation_id),
                kind,
                now,
                expires_at,
            )
            .await?;
            sql!(
                "INSERT INTO challenges (id, run_id, subscriber_id, allocation_id, device_id, instruction_id, \
                 blob_hash, slice_offset, slice_length, state, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'waiting', $10)",
                Uuid::now_v7().to_string(),
                run_id,
                subscriber_id,
                allocation_id,
                device_id,
                instruction.id,
                hash,
                *offset,
                *length,
                now
            )
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
        .await
    }

    /// Records a holder's answer to the challenge an instruction carried (if it carried one).
    pub async fn answer_challenge(
        &self,
        instruction_id: Uuid,
        passed: bool,
        detail: Option<&str>,
        now: UnixMillis,
    ) -> Result<()> {
        let state = if passed {
            ChallengeState::Passed
        } else {
            ChallengeState::Failed
        };
        sql!(
            "UPDATE challenges SET state = $1, detail = $2, answered_at = $3 \
             WHERE instruction_id = $4 AND state = 'waiting'",
            state,
            detail,
            now,
            instruction_id
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One challenge run of a subscriber, as it stands.
    pub async fn verify_run(&self, subscriber_id: Uuid, run_id: Uuid) -> Result<VerifyRun> {
        let rows = sql!(
            "SELECT device_id, blob_hash, state, detail, created_at FROM challenges \
             WHERE subscriber_id = $1 AND run_id = $2 ORDER BY blob_hash",
            subscriber_id,
            run_id
        )
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
            match row.try_get::<String, _>("state")?.parse()? {
                ChallengeState::Passed => run.passed += 1,
                ChallengeState::Failed => {
                    run.failed += 1;
                    run.failures.push(ShardFailure {
                        hash: row.try_get("blob_hash")?,
                        device_id: parse_uuid(&row.try_get::<String, _>("device_id")?)?,
                        reason: row
                            .try_get::<Option<String>, _>("detail")?
                            .unwrap_or_default(),
                    });
                }
                ChallengeState::Waiting => run.waiting += 1,
            }
        }
        Ok(run)
    }
}
