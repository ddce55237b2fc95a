//! What a job leaves in staging: its module and inputs, its runs' outputs and its results, each
//! given up by its submitter once nothing of theirs needs it.

use sqlx::Row;
use sqlx::any::AnyRow;
use surplus_protocol::UnixMillis;
use uuid::Uuid;

use super::super::sql;
use super::super::{Result, Store, parse_uuid};

/// Gives up the ownership of each (`hash`, `subscriber_id`) row, inside `tx`: the blobs stop
/// counting against their owner's staging quota. Returns the hashes, for the caller to drop
/// the staged copies nothing else needs.
pub(super) async fn give_up_ownership_on(
    tx: &mut sqlx::AnyConnection,
    rows: &[AnyRow],
) -> Result<Vec<String>> {
    let mut released = Vec::with_capacity(rows.len());
    for row in rows {
        let hash: String = row.try_get("hash")?;
        let submitter: String = row.try_get("subscriber_id")?;
        sql!(
            "DELETE FROM blob_owners WHERE hash = $1 AND subscriber_id = $2",
            &hash,
            &submitter
        )
        .execute(&mut *tx)
        .await?;
        released.push(hash);
    }
    Ok(released)
}

impl Store {
    /// The job's module and inputs that nothing else of the submitter needs staged any more:
    /// their ownership is given up, so that the caller may drop the staged copies.
    pub async fn release_job_files(&self, job_id: Uuid) -> Result<Vec<String>> {
        let job = sql!(
            "SELECT subscriber_id, module_hash FROM jobs WHERE id = $1",
            job_id
        )
        .fetch_one(&self.pool)
        .await?;
        let submitter: String = job.try_get("subscriber_id")?;
        let mut hashes: Vec<String> = vec![job.try_get("module_hash")?];
        for row in sql!(
            "SELECT DISTINCT input_hash FROM tasks WHERE job_id = $1",
            job_id
        )
        .fetch_all(&self.pool)
        .await?
        {
            hashes.push(row.try_get("input_hash")?);
        }
        let mut released = Vec::new();
        for hash in hashes {
            let in_use = sql!(
                "SELECT 1 AS one FROM jobs j WHERE j.subscriber_id = $1 AND j.state IN ('queued', 'running') \
                 AND (j.module_hash = $2 OR EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = j.id AND t.input_hash = $2)) \
                 UNION ALL SELECT 1 AS one FROM placements p WHERE p.subscriber_id = $1 AND p.hash = $2 \
                 UNION ALL SELECT 1 AS one FROM tasks t JOIN jobs j ON j.id = t.job_id \
                   WHERE j.subscriber_id = $1 AND t.output_hash = $2",
                &submitter,
                &hash
            )
            .fetch_optional(&self.pool)
            .await?;
            if in_use.is_none() {
                sql!(
                    "DELETE FROM blob_owners WHERE hash = $1 AND subscriber_id = $2",
                    &hash,
                    &submitter
                )
                .execute(&self.pool)
                .await?;
                released.push(hash);
            }
        }
        Ok(released)
    }

    /// Gives up the submitter's ownership of an output no task of theirs has as its result
    /// (an invalid run's). Returns whether it did.
    pub async fn release_output(&self, submitter: Uuid, hash: &str) -> Result<bool> {
        let in_use = sql!(
            "SELECT 1 AS one FROM tasks t JOIN jobs j ON j.id = t.job_id WHERE j.subscriber_id = $1 \
             AND t.output_hash = $2 UNION ALL SELECT 1 AS one FROM task_runs r JOIN tasks t ON t.id = r.task_id \
             JOIN jobs j ON j.id = t.job_id WHERE j.subscriber_id = $1 AND r.output_hash = $2 \
             AND r.state = 'returned' UNION ALL SELECT 1 AS one FROM placements p \
             WHERE p.subscriber_id = $1 AND p.hash = $2",
            submitter,
            hash
        )
        .fetch_optional(&self.pool)
        .await?;
        if in_use.is_some() {
            return Ok(false);
        }
        sql!(
            "DELETE FROM blob_owners WHERE hash = $1 AND subscriber_id = $2",
            hash,
            submitter
        )
        .execute(&self.pool)
        .await?;
        Ok(true)
    }

    /// Records that an assigned run of `device_id` uploads the output `hash`. A run has one
    /// output: false when it uploaded another one already (the same one again is fine).
    pub async fn claim_output(&self, run: Uuid, device_id: Uuid, hash: &str) -> Result<bool> {
        let claimed = sql!(
            "UPDATE task_runs SET uploaded_hash = $1 WHERE id = $2 AND device_id = $3 \
             AND state = 'assigned' AND (uploaded_hash IS NULL OR uploaded_hash = $1)",
            hash,
            run,
            device_id
        )
        .execute(&self.pool)
        .await?;
        Ok(claimed.rows_affected() == 1)
    }

    /// The outputs an ended job's runs uploaded that are no task's result: their submitter no
    /// longer owns them. Returns them, to be dropped from staging when nothing else needs them.
    pub async fn release_leftover_outputs(&self, job_id: Uuid) -> Result<Vec<String>> {
        self.transaction(async |tx| {
            let rows = sql!(
                "SELECT DISTINCT r.uploaded_hash AS hash, j.subscriber_id FROM task_runs r \
                 JOIN tasks t ON t.id = r.task_id JOIN jobs j ON j.id = t.job_id \
                 WHERE t.job_id = $1 AND r.uploaded_hash IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM tasks t2 JOIN jobs j2 ON j2.id = t2.job_id \
                   WHERE j2.subscriber_id = j.subscriber_id AND t2.output_hash = r.uploaded_hash) \
                 AND NOT EXISTS (SELECT 1 FROM placements p \
                   WHERE p.subscriber_id = j.subscriber_id AND p.hash = r.uploaded_hash)",
                job_id
            )
            .fetch_all(&mut *tx)
            .await?;
            let released = give_up_ownership_on(tx, &rows).await?;
            Ok(released)
        })
        .await
    }

    /// Ended jobs whose results are still kept and ended before `ended_before`.
    pub async fn jobs_with_old_results(&self, ended_before: UnixMillis) -> Result<Vec<Uuid>> {
        let rows = sql!(
            "SELECT id FROM jobs WHERE state IN ('completed', 'failed', 'cancelled', 'expired') \
             AND outputs_dropped_at IS NULL AND finished_at <= $1",
            ended_before
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| parse_uuid(&row.try_get::<String, _>("id")?))
            .collect()
    }

    /// Gives up the submitter's ownership of an ended job's results, in one transaction that
    /// only one process wins (None for the others): each result that no other job of theirs
    /// still keeps, and that they did not place as a backup. Returns the hashes let go.
    pub async fn drop_job_results(
        &self,
        job_id: Uuid,
        now: UnixMillis,
    ) -> Result<Option<Vec<String>>> {
        self.transaction(async |tx| {
            let claimed = sql!(
                "UPDATE jobs SET outputs_dropped_at = $1 WHERE id = $2 AND outputs_dropped_at IS NULL",
                now,
                job_id
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if claimed == 0 {
                return Ok(None);
            }
            let rows = sql!(
                "SELECT DISTINCT t.output_hash AS hash, j.subscriber_id FROM tasks t JOIN jobs j ON j.id = t.job_id \
                 WHERE t.job_id = $1 AND t.output_hash IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM tasks t2 JOIN jobs j2 ON j2.id = t2.job_id \
                   WHERE j2.subscriber_id = j.subscriber_id AND j2.id <> j.id AND j2.outputs_dropped_at IS NULL \
                   AND t2.output_hash = t.output_hash) \
                 AND NOT EXISTS (SELECT 1 FROM placements p \
                   WHERE p.subscriber_id = j.subscriber_id AND p.hash = t.output_hash)",
                job_id
            )
            .fetch_all(&mut *tx)
            .await?;
            let released = give_up_ownership_on(tx, &rows).await?;
            Ok(Some(released))
        })
        .await
    }
}
