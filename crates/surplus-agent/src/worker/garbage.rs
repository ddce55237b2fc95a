//! Letting go of blobs the hub no longer knows this device holds.
//!
//! A hub restored from an older backup of its database has no record of the copies placed
//! after that backup, so their holders would keep them, counted as used, forever. Once after the
//! agent starts, after every reconnection (a restored hub was away) and once a day, the agent
//! asks the hub which blobs it holds for someone (`GET /v1/device/retain`) and moves every other
//! blob it stored before asking to the vault's trash. The trash keeps them for a week, counted as
//! used, and gives one back if the hub asks for it: a wrong answer from the hub loses nothing at
//! once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use surplus_protocol::is_blob_hash;

use super::{Shared, with_vault};

/// How often the agent checks without a reason to.
pub(super) const INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// How long a blob stays in the trash.
const TRASH_KEEPS: Duration = Duration::from_secs(7 * 24 * 3600);

/// A blob is stored after its allocation is recorded, so one written before the agent asked is
/// on the hub's list if the hub still knows it. File times are coarse on some file systems
/// (2 s on FAT), so blobs written this shortly before asking are left for the next time.
const MARGIN: Duration = Duration::from_secs(5);

/// One collection: ask the hub, then trash what it does not know and empty what expired.
pub(super) async fn collect(shared: Arc<Shared>) {
    let asked_at = SystemTime::now();
    let list = match shared.client.retain(&shared.token).await {
        Ok(list) => list,
        Err(error) => {
            tracing::warn!(%error, "asking the hub which blobs to keep");
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
