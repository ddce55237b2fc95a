//! Graceful exit: a holder that gives storage up (consent withdrawn, quota lowered below what it
//! holds, `surplus leave`, the tray's "Stop donating") hands each of its shards over before
//! deleting it, and why each new allocation is made.
//!
//! An allocation being handed over is `evacuating`: it still counts as a live copy, and its
//! placement is open for one more. While the hub has the blob staged, the placement is filled
//! from staging at once. Otherwise the holder is asked to upload it (once, while it is online),
//! which stages it: one shard in and one out through the hub, where a repair would move `data`
//! shards in. The old copy is deleted only once the new one is confirmed (placement's `Done`).
//! A holder that does not finish within the deadline (it went away for good mid-way) has what
//! is left counted lost, and repair rebuilds it from the pack's other shards.

use surplus_protocol::AllocationState;

use crate::Millis;
use crate::placement::Allocation;

/// One allocation being handed over, as the hub sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evacuating {
    /// When its holder gave it up.
    pub since: Millis,
    /// Whether the hub has the blob staged (a new holder can fetch it from there).
    pub staged: bool,
    /// Whether an upload of it was asked of the holder and is still out.
    pub upload_asked: bool,
    pub holder_online: bool,
    /// Whether its new copy is confirmed: only deleting the old one is left.
    pub replaced: bool,
}

/// What to do with an allocation being handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Ask the holder to upload the blob so that it can be placed elsewhere.
    AskUpload,
    /// Nothing now: the new copy is on its way (or confirmed, and the old one being deleted),
    /// or the holder is away.
    Wait,
    /// Past the deadline: count it lost, for repair to rebuild (or, if its new copy is there,
    /// for the holder to be told to delete it should it come back).
    GiveUp,
}

pub fn step(allocation: &Evacuating, now: Millis, deadline: Millis) -> Step {
    if now.saturating_sub(allocation.since) >= deadline {
        Step::GiveUp
    } else if !allocation.replaced
        && !allocation.staged
        && !allocation.upload_asked
        && allocation.holder_online
    {
        Step::AskUpload
    } else {
        Step::Wait
    }
}

/// Which of a holder's active allocations it gives up, when it reports holding `used` bytes
/// against a `quota` (with `consent` to store at all), `already` bytes being handed over:
/// everything without consent; otherwise the newest first (`active` is newest first, as
/// (allocation, bytes)) until the excess is covered. A report repeated changes nothing.
pub fn to_give_up<K: Copy>(
    active: &[(K, u64)],
    consent: bool,
    used: u64,
    quota: u64,
    already: u64,
) -> Vec<K> {
    let mut excess = if consent {
        used.saturating_sub(quota).saturating_sub(already)
    } else {
        u64::MAX
    };
    let mut moving = Vec::new();
    for (allocation, bytes) in active {
        if excess == 0 {
            break;
        }
        excess = excess.saturating_sub(*bytes);
        moving.push(*allocation);
    }
    moving
}

/// Why a new allocation of a blob is made, as the ledger records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// The blob's first holders.
    Store,
    /// A holder gave it up: the new one takes its place.
    HandOver,
    /// A holder was lost or failed: the new one holds a rebuilt copy.
    Repair,
}

impl Purpose {
    /// The placement's purpose from the owner's allocations of the blob so far: a repair once a
    /// copy was lost, a hand-over while one is being given up, the first store otherwise.
    pub fn of(allocations: &[Allocation]) -> Purpose {
        let any = |state| allocations.iter().any(|a| a.state == state);
        if any(AllocationState::Lost) {
            Purpose::Repair
        } else if any(AllocationState::Evacuating) {
            Purpose::HandOver
        } else {
            Purpose::Store
        }
    }

    /// The ledger's `purpose` for an allocation of `hash`.
    pub fn describe(self, hash: &str) -> String {
        match self {
            Purpose::Store => format!("blob:{hash}"),
            Purpose::HandOver => format!("handover:{hash}"),
            Purpose::Repair => format!("repair:{hash}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DAY_MS;
    use uuid::Uuid;

    const DEADLINE: Millis = 3 * DAY_MS;

    fn evacuating(staged: bool, upload_asked: bool, holder_online: bool) -> Evacuating {
        Evacuating {
            since: 0,
            staged,
            upload_asked,
            holder_online,
            replaced: false,
        }
    }

    #[test]
    fn an_online_holder_is_asked_to_upload_what_the_hub_no_longer_has() {
        assert_eq!(
            step(&evacuating(false, false, true), 1, DEADLINE),
            Step::AskUpload
        );
        // Staged already: placement fills it from staging.
        assert_eq!(
            step(&evacuating(true, false, true), 1, DEADLINE),
            Step::Wait
        );
        // Asked once: not again while the ask is out.
        assert_eq!(
            step(&evacuating(false, true, true), 1, DEADLINE),
            Step::Wait
        );
        // Away: asked when it is back.
        assert_eq!(
            step(&evacuating(false, false, false), 1, DEADLINE),
            Step::Wait
        );
        // Its new copy is confirmed and the hub dropped its staged one: only the delete is
        // left, and nobody asks for the old copy again.
        let replaced = Evacuating {
            replaced: true,
            ..evacuating(false, false, true)
        };
        assert_eq!(step(&replaced, 1, DEADLINE), Step::Wait);
        assert_eq!(step(&replaced, DEADLINE, DEADLINE), Step::GiveUp);
    }

    #[test]
    fn a_hand_over_unfinished_by_the_deadline_is_counted_lost() {
        for (staged, asked, online) in [(false, false, false), (true, true, true)] {
            let allocation = evacuating(staged, asked, online);
            assert_ne!(step(&allocation, DEADLINE - 1, DEADLINE), Step::GiveUp);
            assert_eq!(step(&allocation, DEADLINE, DEADLINE), Step::GiveUp);
        }
    }

    #[test]
    fn a_lowered_quota_gives_up_the_newest_until_the_excess_is_covered() {
        let active = [(1, 5000), (2, 3000), (3, 4000)];
        // 4000 over: the newest (5000) covers it.
        assert_eq!(to_give_up(&active, true, 12_000, 8000, 0), vec![1]);
        // 6000 over: the two newest.
        assert_eq!(to_give_up(&active, true, 12_000, 6000, 0), vec![1, 2]);
        // Already handing 5000 over: nothing more.
        assert_eq!(
            to_give_up(&active[1..], true, 12_000, 8000, 5000),
            Vec::<i32>::new()
        );
        // Within quota: nothing. Consent withdrawn: everything.
        assert!(to_give_up(&active, true, 12_000, 20_000, 0).is_empty());
        assert_eq!(to_give_up(&active, false, 12_000, 20_000, 0), vec![1, 2, 3]);
    }

    #[test]
    fn the_ledger_says_why_each_copy_was_made() {
        let allocation = |state| Allocation {
            id: Uuid::new_v4(),
            device: Uuid::new_v4(),
            state,
        };
        use AllocationState::{Active, Evacuating, Failed, Lost};
        assert_eq!(Purpose::of(&[]), Purpose::Store);
        assert_eq!(Purpose::of(&[allocation(Failed)]), Purpose::Store);
        assert_eq!(
            Purpose::of(&[allocation(Active), allocation(Evacuating)]),
            Purpose::HandOver
        );
        assert_eq!(
            Purpose::of(&[allocation(Evacuating), allocation(Lost)]),
            Purpose::Repair
        );
        assert_eq!(Purpose::Repair.describe("ab"), "repair:ab");
    }
}
