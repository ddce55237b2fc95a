//! Audits: the hub challenges every held shard on its own schedule (a random slice, answered with
//! a Bao proof), without its owner asking.
//!
//! Each shard is audited at least every `interval` while its holder is online. A holder that
//! comes back after being at risk or lost is audited first, and one that recently gave a wrong
//! proof is audited sooner, shard by shard. Answers are judged on two separate scores:
//! **integrity** (a wrong or missing proof from a holder that is online) and **presence** (no
//! answer: offline). Only integrity failures cost a holder anything: the shard is lost at once,
//! and after `disqualify_after` of them within `failure_window` the holder loses everything it
//! holds, which is then repaired.

use uuid::Uuid;

use crate::{DAY_MS, HOUR_MS, Millis};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditPolicy {
    /// Every held shard is audited at least this often while its holder is online.
    pub interval: Millis,
    /// A holder with a recent integrity failure has its shards audited this often.
    pub suspect_interval: Millis,
    /// The most audits sent in one round (audit traffic is bounded).
    pub max_per_round: usize,
    /// Integrity failures within `failure_window` that disqualify a holder.
    pub disqualify_after: u32,
    pub failure_window: Millis,
}

impl AuditPolicy {
    pub const DEFAULT: AuditPolicy = AuditPolicy {
        interval: 7 * DAY_MS,
        suspect_interval: HOUR_MS,
        max_per_round: 500,
        disqualify_after: 2,
        failure_window: 30 * DAY_MS,
    };

    /// Whether a holder with `failures` integrity failures in the window is disqualified.
    pub fn disqualifies(&self, failures: u32) -> bool {
        failures >= self.disqualify_after
    }
}

/// A shard held for someone, as audits see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub allocation: Uuid,
    pub holder: Uuid,
    /// When its holder confirmed storing it.
    pub stored_at: Millis,
    /// When it last passed an audit (or `surplus verify`).
    pub last_audit: Option<Millis>,
    /// Whether an audit of it is out and unanswered.
    pub pending: bool,
}

/// A holder, as audits see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pub online: bool,
    /// When it came back after being at risk or lost, if it did since its shards' last audits.
    pub returned_at: Option<Millis>,
    /// Integrity failures within the window.
    pub recent_failures: u32,
}

/// The allocations to audit now, most urgent first, at most `max_per_round`: shards of holders
/// that came back, then of suspect holders, then the longest unaudited. Only online holders are
/// asked (an offline one is asked when it is back), and never twice at once.
pub fn due(
    held: &[Held],
    holder: impl Fn(Uuid) -> Option<Holder>,
    now: Millis,
    policy: &AuditPolicy,
) -> Vec<Uuid> {
    let mut due: Vec<(u8, Millis, Uuid)> = held
        .iter()
        .filter(|shard| !shard.pending)
        .filter_map(|shard| {
            let h = holder(shard.holder).filter(|h| h.online)?;
            let last = shard.last_audit.unwrap_or(shard.stored_at);
            let rank = if h.returned_at.is_some_and(|back| back > last) {
                0
            } else if h.recent_failures > 0 && now - last >= policy.suspect_interval {
                1
            } else if now - last >= policy.interval {
                2
            } else {
                return None;
            };
            Some((rank, last, shard.allocation))
        })
        .collect();
    due.sort_unstable();
    due.into_iter()
        .take(policy.max_per_round)
        .map(|(_, _, allocation)| allocation)
        .collect()
}

/// What an audit's answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A proof that checks.
    Proof,
    /// A proof that does not check.
    WrongProof,
    /// The holder says it does not have the shard, or that it is corrupt.
    Missing,
    /// No answer before the audit expired: the holder was away.
    NoAnswer,
}

/// The verdict on an audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    /// The shard is lost and counts against the holder's integrity.
    IntegrityFailure,
    /// Counts against presence only; the shard keeps its state.
    Absent,
}

pub fn judge(answer: Answer) -> Verdict {
    match answer {
        Answer::Proof => Verdict::Passed,
        Answer::WrongProof | Answer::Missing => Verdict::IntegrityFailure,
        Answer::NoAnswer => Verdict::Absent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const NOW: Millis = 100 * DAY_MS;

    fn held(n: u128, holder: u128, last_audit_days_ago: Option<i64>) -> Held {
        Held {
            allocation: Uuid::from_u128(n),
            holder: Uuid::from_u128(holder),
            stored_at: NOW - 60 * DAY_MS,
            last_audit: last_audit_days_ago.map(|d| NOW - d * DAY_MS),
            pending: false,
        }
    }

    #[test]
    fn shards_are_audited_every_interval_while_their_holder_is_online() {
        let holders = HashMap::from([
            (
                Uuid::from_u128(1),
                Holder {
                    online: true,
                    returned_at: None,
                    recent_failures: 0,
                },
            ),
            (
                Uuid::from_u128(2),
                Holder {
                    online: false,
                    returned_at: None,
                    recent_failures: 0,
                },
            ),
        ]);
        let shards = [
            held(10, 1, Some(8)),
            held(11, 1, Some(3)),
            held(12, 1, None),
            held(13, 2, Some(30)),
            Held {
                pending: true,
                ..held(14, 1, Some(20))
            },
        ];
        let policy = AuditPolicy::DEFAULT;
        let due = due(&shards, |d| holders.get(&d).copied(), NOW, &policy);
        // Never audited (stored 60 days ago) first, then 8 days ago; not the recent one, not the
        // offline holder's, not one already out.
        assert_eq!(due, vec![Uuid::from_u128(12), Uuid::from_u128(10)]);
    }

    #[test]
    fn returning_and_suspect_holders_go_first_and_rounds_are_bounded() {
        let holders = HashMap::from([
            (
                Uuid::from_u128(1),
                Holder {
                    online: true,
                    returned_at: None,
                    recent_failures: 0,
                },
            ),
            (
                Uuid::from_u128(2),
                Holder {
                    online: true,
                    returned_at: Some(NOW - HOUR_MS),
                    recent_failures: 0,
                },
            ),
            (
                Uuid::from_u128(3),
                Holder {
                    online: true,
                    returned_at: None,
                    recent_failures: 1,
                },
            ),
        ]);
        let shards = [
            held(10, 1, Some(9)),
            held(20, 2, Some(1)),
            held(30, 3, Some(1)),
        ];
        let policy = AuditPolicy {
            max_per_round: 2,
            ..AuditPolicy::DEFAULT
        };
        let due = due(&shards, |d| holders.get(&d).copied(), NOW, &policy);
        assert_eq!(due, vec![Uuid::from_u128(20), Uuid::from_u128(30)]);
    }

    #[test]
    fn only_integrity_failures_count_against_a_holder() {
        assert_eq!(judge(Answer::Proof), Verdict::Passed);
        assert_eq!(judge(Answer::WrongProof), Verdict::IntegrityFailure);
        assert_eq!(judge(Answer::Missing), Verdict::IntegrityFailure);
        assert_eq!(judge(Answer::NoAnswer), Verdict::Absent);
        let policy = AuditPolicy::DEFAULT;
        assert!(!policy.disqualifies(1));
        assert!(policy.disqualifies(2));
    }
}
