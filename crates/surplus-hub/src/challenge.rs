//! Challenges: checking that holders still keep the shards they were given, on the hub's own
//! schedule (audits, [`audit_round`]) and when an owner asks (`surplus verify`, [`start`]).
//!
//! Each shard a subscriber has at a holder is challenged with a `verify_blob` instruction for a
//! random slice of it. The holder answers with the BLAKE3 (Bao) slice of that range, the chunk's
//! bytes and the tree nodes up to the root, which the hub checks against the shard's hash, its
//! name. The range is drawn when asked, so a holder cannot answer from a few saved digests: it
//! needs the bytes. A holder that answers wrongly, or has lost the shard, loses the allocation,
//! and the shard's placement reopens.

use std::io::Read;

use rand::Rng;
use surplus_protocol::{InstructionKind, VerifyRun};
use uuid::Uuid;

use crate::hub::Hub;
use crate::now_ms;
use crate::store::StoreError;

/// The bytes of a shard each challenge asks for: one BLAKE3 chunk.
pub const SLICE_BYTES: u64 = 1024;

/// A random chunk-aligned range of a blob of `size` bytes.
pub fn pick_range(size: u64, rng: &mut impl Rng) -> (u64, u64) {
    let chunks = size.div_ceil(SLICE_BYTES).max(1);
    let offset = rng.gen_range(0..chunks) * SLICE_BYTES;
    (offset, SLICE_BYTES.min(size - offset.min(size)))
}

/// Checks a holder's answer: `proof` (hex) must be the Bao slice of `offset..offset + length` of
/// the blob named `hash`.
pub fn check(hash: &str, offset: u64, length: u64, proof: &str) -> Result<(), String> {
    let root = bao::Hash::from_hex(hash).map_err(|_| format!("{hash:?} is not a blob hash"))?;
    let slice = hex::decode(proof).map_err(|_| "the proof is not hex".to_owned())?;
    let mut decoder = bao::decode::SliceDecoder::new(&slice[..], &root, offset, length);
    let mut content = Vec::new();
    decoder
        .read_to_end(&mut content)
        .map_err(|error| format!("the proof does not match the shard: {error}"))?;
    if length > 0 && content.is_empty() {
        return Err("the proof holds none of the bytes asked for".to_owned());
    }
    Ok(())
}

/// Challenges every shard the subscriber has at holders. A run with nothing to challenge has
/// no shards and a nil id.
pub async fn start(hub: &Hub, subscriber_id: Uuid) -> Result<VerifyRun, StoreError> {
    let shards = hub.store.held_shards(subscriber_id).await?;
    let now = now_ms();
    if shards.is_empty() {
        return Ok(VerifyRun {
            id: Uuid::nil(),
            created_at: now,
            challenged: 0,
            passed: 0,
            failed: 0,
            waiting: 0,
            failures: Vec::new(),
        });
    }
    let run_id = Uuid::now_v7();
    let expires_at = hub.settings.instruction_expiry(now);
    for shard in shards {
        let (offset, length) = pick_range(shard.size, &mut rand::thread_rng());
        let kind = InstructionKind::VerifyBlob {
            hash: shard.hash,
            offset,
            length,
        };
        let challenge = crate::store::Challenge {
            run_id,
            subscriber_id,
            allocation_id: shard.allocation_id,
            device_id: shard.device_id,
        };
        hub.store
            .add_challenge(&challenge, &kind, now, expires_at)
            .await?;
        hub.metrics.instructions_queued(kind.name());
        hub.wake(challenge.device_id);
    }
    hub.store.verify_run(subscriber_id, run_id).await
}

/// One round of audits: the held shards [`surplus_rules::audit::due`] picks (holders online,
/// returning and suspect ones first, every shard at least every `Settings::audit_interval`, at
/// most `max_per_round`) are challenged. Answers are judged like any challenge's: a wrong or
/// missing proof fails the holder's allocation and reopens the shard's placement. A holder with
/// `disqualify_after` such failures within the window loses everything it holds. Returns how
/// many audits were sent.
#[tracing::instrument(skip(hub), name = "audit")]
pub async fn audit_round(hub: &Hub, now: i64) -> Result<usize, StoreError> {
    use surplus_rules::audit::{AuditPolicy, Held, Holder};
    let policy = AuditPolicy {
        interval: crate::millis(hub.settings.audit_interval),
        ..AuditPolicy::DEFAULT
    };
    let ttl = hub.settings.instruction_ttl_ms();
    let rows = hub.store.audit_rows(now.saturating_sub(ttl)).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let online: std::collections::HashSet<Uuid> = hub
        .store
        .devices_heard_since(now - hub.settings.online_window_ms())
        .await?
        .into_iter()
        .collect();
    let failures = hub
        .store
        .integrity_failures(now - policy.failure_window)
        .await?;
    // A holder with repeated integrity failures is disqualified: everything it holds is counted
    // lost and rebuilt elsewhere (once: a second round finds nothing left to lose).
    for (device, count) in &failures {
        if policy.disqualifies(*count) {
            let lost = hub.store.lose_holder(*device, now).await?;
            if lost > 0 {
                tracing::warn!(%device, failures = count, allocations = lost, "holder disqualified after repeated integrity failures");
                hub.kick_scheduler();
            }
        }
    }
    let held: Vec<Held> = rows
        .iter()
        .map(|row| Held {
            allocation: row.allocation,
            holder: row.holder,
            stored_at: row.stored_at,
            last_audit: row.last_audit,
            pending: row.pending,
        })
        .collect();
    // A holder back after a long absence, or whose copies were taken back when it returned from
    // being counted lost, has them audited before anything else.
    let mut returned = hub.store.returned().await?;
    for row in &rows {
        if let Some(at) = row.readopted_at {
            let latest = returned.entry(row.holder).or_insert(at);
            *latest = (*latest).max(at);
        }
    }
    let due = surplus_rules::audit::due(
        &held,
        |device| {
            Some(Holder {
                online: online.contains(&device),
                returned_at: returned.get(&device).copied(),
                recent_failures: failures.get(&device).copied().unwrap_or(0),
            })
        },
        now,
        &policy,
    );
    if due.is_empty() {
        return Ok(0);
    }
    let by_allocation: std::collections::HashMap<Uuid, &crate::store::AuditRow> =
        rows.iter().map(|row| (row.allocation, row)).collect();
    // The slices are drawn before anything is awaited (the thread's generator stays here).
    let picked: Vec<(&crate::store::AuditRow, (u64, u64))> = {
        let mut rng = rand::thread_rng();
        due.iter()
            .filter_map(|allocation| by_allocation.get(allocation))
            .map(|row| (*row, pick_range(row.size, &mut rng)))
            .collect()
    };
    let run_id = Uuid::now_v7();
    for (row, (offset, length)) in picked {
        let kind = InstructionKind::VerifyBlob {
            hash: row.hash.clone(),
            offset,
            length,
        };
        let challenge = crate::store::Challenge {
            run_id,
            subscriber_id: row.owner,
            allocation_id: row.allocation,
            device_id: row.holder,
        };
        hub.store
            .add_challenge(&challenge, &kind, now, now.saturating_add(ttl))
            .await?;
        hub.metrics.instructions_queued(kind.name());
        hub.metrics.audit();
        hub.store
            .count_traffic(crate::store::Traffic::Audit, length, now)
            .await?;
        hub.wake(row.holder);
    }
    tracing::debug!(audits = due.len(), "audits sent");
    Ok(due.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn an_honest_slice_passes_and_anything_else_fails() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let hash = blake3::hash(&data).to_hex().to_string();
        let (outboard, root) = bao::encode::outboard(&data);
        assert_eq!(
            root.to_hex().as_str(),
            hash,
            "Bao's root is the BLAKE3 hash"
        );
        let slice = |offset, length| {
            let mut extractor = bao::encode::SliceExtractor::new_outboard(
                std::io::Cursor::new(&data),
                std::io::Cursor::new(&outboard),
                offset,
                length,
            );
            let mut out = Vec::new();
            extractor.read_to_end(&mut out).expect("slice");
            out
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..50 {
            let (offset, length) = pick_range(data.len() as u64, &mut rng);
            assert!(offset < data.len() as u64 && length > 0);
            let proof = hex::encode(slice(offset, length));
            assert_eq!(check(&hash, offset, length, &proof), Ok(()));
        }

        let honest = slice(2048, SLICE_BYTES);
        assert!(check(&hash, 4096, SLICE_BYTES, &hex::encode(&honest)).is_err());
        let mut altered = honest.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(check(&hash, 2048, SLICE_BYTES, &hex::encode(&altered)).is_err());
        assert!(check(&hash, 2048, SLICE_BYTES, "zz").is_err());
        assert!(check(&hash, 2048, SLICE_BYTES, "").is_err());
        let other = blake3::hash(b"other").to_hex().to_string();
        assert!(check(&other, 2048, SLICE_BYTES, &hex::encode(&honest)).is_err());
    }

    #[test]
    fn ranges_stay_inside_small_blobs() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for size in [1u64, 15, 1023, 1024, 1025, 4096] {
            for _ in 0..20 {
                let (offset, length) = pick_range(size, &mut rng);
                assert!(
                    offset < size && offset + length <= size,
                    "{size}: {offset}+{length}"
                );
                assert!(length > 0);
            }
        }
    }
}
