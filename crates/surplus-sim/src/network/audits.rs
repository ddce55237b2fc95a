//! Audits as the hub runs them: an online holder's shards that are due, judged by the answer
//! its copy would give, and a holder disqualified after too many integrity failures.

use surplus_rules::audit::{self, Answer, Held, Verdict};
use surplus_rules::{HOUR_MS, Millis};
use uuid::Uuid;

use super::{Network, device_uuid};

/// The bytes one audit moves: a 1 KiB slice and its Bao proof, hex in JSON, with the
/// instruction around it.
pub const AUDIT_BYTES: u64 = 4 << 10;

fn allocation_uuid(pack: u32, shard: u8) -> Uuid {
    Uuid::from_u128((u128::from(pack) << 8) + u128::from(shard) + 1)
}

fn allocation_of(id: Uuid) -> (u32, u8) {
    let n = id.as_u128() - 1;
    ((n >> 8) as u32, (n & 0xff) as u8)
}

impl Network {
    /// Audits an online holder's shards that are due.
    pub(super) fn audit(&mut self, device: usize) {
        let policy = self.rules.audit;
        let now = self.now;
        let holder = &mut self.holders[device];
        holder
            .failures
            .retain(|at| now - *at < policy.failure_window);
        let standing = audit::Holder {
            online: true,
            returned_at: holder.returned_at,
            recent_failures: holder.failures.len() as u32,
        };
        let held: Vec<Held> = holder
            .shards
            .iter()
            .filter_map(|&(pack, shard)| {
                let s = &self.packs[pack as usize].shards[shard as usize];
                s.confirmed.then(|| Held {
                    allocation: allocation_uuid(pack, shard),
                    holder: device_uuid(device),
                    stored_at: s.stored_at,
                    last_audit: s.last_audit,
                    pending: false,
                })
            })
            .collect();
        let due = audit::due(&held, |_| Some(standing), now, &policy);
        for allocation in due {
            let (pack, shard) = allocation_of(allocation);
            let s = &mut self.packs[pack as usize].shards[shard as usize];
            if s.holder != Some(device as u32) {
                continue;
            }
            if self.measuring {
                self.counts.audits += 1;
            }
            let answer = if s.intact {
                Answer::Proof
            } else {
                Answer::Missing
            };
            match audit::judge(answer) {
                Verdict::Passed => s.last_audit = Some(now),
                Verdict::IntegrityFailure => self.integrity_failure(device, pack, shard),
                Verdict::Absent => {}
            }
            if self.holders[device].counted_lost {
                break;
            }
        }
        // When this holder is next due.
        let holder = &self.holders[device];
        let suspect = !holder.failures.is_empty();
        let next = holder
            .shards
            .iter()
            .filter_map(|&(pack, shard)| {
                let s = &self.packs[pack as usize].shards[shard as usize];
                s.confirmed.then(|| {
                    let last = s.last_audit.unwrap_or(s.stored_at);
                    last + if suspect {
                        policy.suspect_interval
                    } else {
                        policy.interval
                    }
                })
            })
            .min()
            .unwrap_or(Millis::MAX);
        self.holders[device].next_audit = next.max(now + HOUR_MS);
    }

    /// A wrong or missing proof: the shard is lost, and the holder may be disqualified.
    pub(super) fn integrity_failure(&mut self, device: usize, pack: u32, shard: u8) {
        let holder = &mut self.holders[device];
        holder.shards.retain(|held| *held != (pack, shard));
        holder.used_bytes = holder.used_bytes.saturating_sub(self.shard_bytes);
        holder.failures.push(self.now);
        let failures = holder.failures.len() as u32;
        self.take_from_holder(pack, shard);
        if self.rules.audit.disqualifies(failures) && !self.holders[device].disqualified {
            self.holders[device].disqualified = true;
            if self.measuring {
                self.counts.disqualified += 1;
            }
            self.lose_holder(device, true);
        }
    }
}
