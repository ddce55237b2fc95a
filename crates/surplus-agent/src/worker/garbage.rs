//! Letting go of blobs the hub no longer knows this device holds.
//!
//! A hub restored from an older backup of its database has no record of the copies placed
//! after that backup, so their holders would keep them, counted as used, forever. Once after the
//! agent starts, after every reconnection (a restored hub was away) and once a day, the agent
//! asks the hub which blobs it holds for someone (`GET /v1/device/retain`) and moves every other
//! blob it stored before asking to the vault's trash. The trash keeps them for a week, counted as
//! used, and gives one back if the hub asks for it: a wrong answer from the hub loses nothing at
//! once.
//!
//! "After a reconnection" means after an answer to a heartbeat *sent* once a request had failed:
//! a heartbeat in flight while a hub shuts down may still be answered by it, and a collection
//! started on that answer would ask the old hub, or nobody ([`Due`]). A collection that could
//! not ask counts as a failed request, so the next answered heartbeat tries again.

use std::collections::HashSet;
use std::sync::Arc;

use std::time::{Duration, SystemTime};

use surplus_protocol::is_blob_hash;

#[cfg(test)]
use super::shared::Failures;
use super::shared::{Shared, with_vault};

/// How often the agent checks without a reason to.
const INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// How long a blob stays in the trash.
const TRASH_KEEPS: Duration = Duration::from_secs(7 * 24 * 3600);

/// A blob is stored after its allocation is recorded, so one written before the agent asked is
/// on the hub's list if the hub still knows it. File times are coarse on some file systems
/// (2 s on FAT), so blobs written this shortly before asking are left for the next time.
const MARGIN: Duration = Duration::from_secs(5);

/// When a collection is due: on the first answered heartbeat, on one sent after a failure that
/// no collection has followed yet, and a day after the last.
#[derive(Debug, Default)]
pub(super) struct Due {
    /// The failures counted before the heartbeat that started the last collection, and when.
    last: Option<(u64, tokio::time::Instant)>,
}

impl Due {
    /// A heartbeat was answered: `failed_before` is [`super::shared::Failures::so_far`] read before it was sent.
    /// True when a collection is due now (and is then counted as started).
    pub(super) fn answered(&mut self, failed_before: u64, now: tokio::time::Instant) -> bool {
        let due = self.last.is_none_or(|(failed, at)| {
            failed_before > failed || now.duration_since(at) >= INTERVAL
        });
        if due {
            self.last = Some((failed_before, now));
        }
        due
    }
}

/// One collection: ask the hub, then trash what it does not know and empty what expired.
pub(super) async fn collect(shared: Arc<Shared>) {
    let asked_at = SystemTime::now();
    let list = match shared.client.retain(&shared.token).await {
        Ok(list) => list,
        Err(error) => {
            tracing::warn!(%error, "asking the hub which blobs to keep; trying again after the next heartbeat");
            shared.failures.count();
            return;
        }
    };
    // Names from the hub are untrusted: only blob hashes mean anything here.
    let keep: HashSet<String> = list
        .hashes
        .into_iter()
        .filter(|hash| is_blob_hash(hash))
        .collect();
    let written_before = asked_at - MARGIN;
    let expired_before = SystemTime::now() - TRASH_KEEPS;
    let outcome = with_vault(&shared, move |vault| {
        vault.collect_garbage(&keep, written_before, expired_before)
    })
    .await;
    match outcome {
        // No vault: nothing is lent here.
        None => {}
        Some(Ok(collected)) => {
            if collected.trashed > 0 {
                tracing::warn!(
                    blobs = collected.trashed,
                    bytes = collected.trashed_bytes,
                    "the hub does not know of blobs this vault holds; moved to the trash for a week"
                );
            }
            if collected.deleted > 0 {
                tracing::info!(
                    blobs = collected.deleted,
                    bytes = collected.deleted_bytes,
                    "the vault's trash emptied of what expired"
                );
            }
        }
        Some(Err(error)) => tracing::warn!(%error, "letting go of blobs the hub does not know"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collection_is_due_first_then_after_a_failure_then_daily() {
        let failures = Failures::default();
        let mut due = Due::default();
        let start = tokio::time::Instant::now();
        assert!(
            due.answered(failures.so_far(), start),
            "once after starting"
        );
        assert!(!due.answered(failures.so_far(), start));

        failures.count();
        assert!(due.answered(failures.so_far(), start), "back in touch");
        assert!(!due.answered(failures.so_far(), start), "only once for it");

        let a_day_on = start + INTERVAL;
        assert!(due.answered(failures.so_far(), a_day_on));
        assert!(!due.answered(failures.so_far(), a_day_on));
    }

    /// The race a hub restored from its backup met: a heartbeat is sent to the old hub, the
    /// instruction poll fails as that hub shuts down, and the old hub still answers the
    /// heartbeat. That answer is no sign the hub is back; the next one is.
    #[test]
    fn an_answer_to_a_heartbeat_sent_before_a_failure_is_not_a_reconnection() {
        let failures = Failures::default();
        let mut due = Due::default();
        let now = tokio::time::Instant::now();
        assert!(due.answered(failures.so_far(), now));

        let sent_with = failures.so_far();
        failures.count();
        assert!(
            !due.answered(sent_with, now),
            "answered by the hub going away"
        );
        assert!(
            due.answered(failures.so_far(), now),
            "answered by the hub back"
        );
    }
}
