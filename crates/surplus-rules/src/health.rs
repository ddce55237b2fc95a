//! Pack health and repair: how many of a pack's shards are still there, what that means for its
//! owner, when the pack is repaired, and which repairs go first when there is too much to do.
//!
//! A pack is cut into `data + parity` shards, any `data` of which rebuild it. Its shards are
//! **live** (the holder is online or away as usual), **at risk** (the holder is away longer than
//! usual) or **lost** (holder lost or revoked, or the shard failed an audit). Repair rebuilds the
//! lost shards byte for byte from `data` others, so their names, and the owner's index, stay the
//! same; at-risk shards are left alone, since their holders mostly come back.

use crate::presence::Standing;

/// The state of one shard, from its holder's standing and its audits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShardState {
    Live,
    AtRisk,
    Lost,
}

impl ShardState {
    /// A shard whose holder stands so, and whose last audit did (`audit_ok`) or did not pass.
    pub fn of(holder: Standing, audit_ok: bool) -> ShardState {
        match (holder, audit_ok) {
            (_, false) | (Standing::Lost, _) => ShardState::Lost,
            (Standing::AtRisk, true) => ShardState::AtRisk,
            (Standing::Online | Standing::Away, true) => ShardState::Live,
        }
    }
}

/// What a pack's owner is told about it, from best to worst (a snapshot is as well off as its
/// worst pack).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PackState {
    /// Every shard it needs, and spares, are where they should be.
    Protected,
    /// A new pack whose shards are not all on their holders yet.
    Uploading,
    /// Restorable now, and shards are being rebuilt.
    Repairing,
    /// Restorable only if holders that are away longer than usual come back.
    AtRisk,
    /// Fewer than `data` shards remain anywhere.
    Lost,
}

impl PackState {
    pub fn as_str(self) -> &'static str {
        match self {
            PackState::Protected => "protected",
            PackState::Uploading => "uploading",
            PackState::Repairing => "repairing",
            PackState::AtRisk => "at_risk",
            PackState::Lost => "lost",
        }
    }
}

/// How many of a pack's shards are in each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PackHealth {
    /// Shards needed to rebuild the pack (`data`).
    pub needed: u32,
    /// Shards it was cut into (`data + parity`).
    pub shards: u32,
    pub live: u32,
    pub at_risk: u32,
    pub lost: u32,
}

impl PackHealth {
    /// The health of a pack cut into `shards`, `needed` of which rebuild it, from the states of
    /// the shards it has holders for (a shard with none counts as lost).
    pub fn of(needed: u32, shards: u32, states: impl IntoIterator<Item = ShardState>) -> Self {
        let mut health = PackHealth {
            needed,
            shards,
            ..PackHealth::default()
        };
        for state in states {
            match state {
                ShardState::Live => health.live += 1,
                ShardState::AtRisk => health.at_risk += 1,
                ShardState::Lost => health.lost += 1,
            }
        }
        let counted = health.live + health.at_risk + health.lost;
        health.lost += shards.saturating_sub(counted);
        health
    }

    /// Shards that may still be fetched: live or at risk.
    pub fn remaining(&self) -> u32 {
        self.live + self.at_risk
    }

    /// Shards beyond those needed that may still be fetched; negative when the pack is lost.
    pub fn spare(&self) -> i64 {
        i64::from(self.remaining()) - i64::from(self.needed)
    }

    /// Whether the pack is repaired now: it has lost shards to rebuild, still has the shards to
    /// rebuild them from, and its spares have fallen to the repair threshold. The threshold is
    /// capped at `parity - 1` so that a narrow coding (1+2, 2+2) is repaired after its first
    /// loss, before its last spare goes; a wide one (4+6) waits until `threshold` spares remain.
    pub fn needs_repair(&self, threshold: u32) -> bool {
        let parity = self.shards.saturating_sub(self.needed);
        let at = i64::from(threshold.min(parity.saturating_sub(1)));
        self.lost > 0 && self.live >= self.needed && self.spare() <= at
    }

    pub fn state(&self, threshold: u32) -> PackState {
        if self.remaining() < self.needed {
            PackState::Lost
        } else if self.live < self.needed {
            PackState::AtRisk
        } else if self.needs_repair(threshold) {
            PackState::Repairing
        } else {
            PackState::Protected
        }
    }
}

/// A placed shard, as its owner's view of the pack sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacedShard {
    /// Confirmed by a live holder.
    pub held: bool,
    /// Held only by holders away longer than they usually are.
    pub at_risk: bool,
    /// At the hub, or on its way to a holder.
    pub staged: bool,
    /// It had a holder that was lost or failed: being placed again is a repair, not an upload.
    pub replaced: bool,
}

/// A pack's state for its owner, from its placed shards (`data` of which rebuild it, `parity`
/// more protecting it).
pub fn placed_pack_state(
    data: u32,
    parity: u32,
    shards: &[PlacedShard],
    threshold: u32,
) -> PackState {
    let held = shards.iter().filter(|s| s.held).count() as u32;
    let reachable = shards.iter().filter(|s| s.held || s.staged).count() as u32;
    let reachable_now = shards
        .iter()
        .filter(|s| s.staged || (s.held && !s.at_risk))
        .count() as u32;
    let gone = shards.iter().filter(|s| !s.held && !s.staged).count() as u32;
    let rebuilding = shards.iter().any(|s| !s.held && s.staged && s.replaced);
    let health = PackHealth {
        needed: data,
        shards: data + parity,
        live: reachable_now,
        at_risk: reachable - reachable_now,
        lost: gone,
    };
    if reachable < data {
        PackState::Lost
    } else if reachable_now < data {
        PackState::AtRisk
    } else if rebuilding || health.needs_repair(threshold) {
        PackState::Repairing
    } else if held < reachable {
        PackState::Uploading
    } else {
        PackState::Protected
    }
}

/// The repair threshold the durability runs led to: 14 spare shards, so that 8+20 is repaired
/// once 6 of its shards are lost (capped at `parity - 1` by [`PackHealth::needs_repair`], so a
/// narrow coding is repaired after its first loss). Repairing later saves traffic per lost shard
/// but leaves fewer losses between a repair and a loss; repairing earlier moves more bytes and
/// binds the repair budget without gaining durability (see `scripts/bench-durability`).
pub const REPAIR_THRESHOLD: u32 = 14;

/// The repair budget for a hub keeping `stored` bytes of backups, in bytes per second: 25.6 MiB/s
/// for every 10 TiB, never less than that. Repairs move about 1.5 bytes per byte of backup a
/// month at 40% availability and 180-day lifetimes, 2.7 at 30% and 90 days; this keeps up with
/// that with room for bursts. A fixed budget for more data makes repairs queue, and durability
/// collapses (1.2 nines at 30%/90 days with 40 TiB on 25.6 MiB/s, in `surplus-sim`).
pub fn repair_rate(stored: u64) -> u64 {
    const FLOOR: u64 = 256 << 20; // per 10 s
    const PER: u64 = 10 << 40;
    let scaled = (u128::from(FLOOR) * u128::from(stored) / u128::from(PER)) as u64;
    scaled.max(FLOOR) / 10
}

/// A pack waiting for repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairCandidate<K> {
    pub pack: K,
    pub health: PackHealth,
    /// The bytes a repair moves: `needed` shards in, `lost` shards out.
    pub bytes: u64,
}

/// Which of the packs that need repair are repaired now: those closest to loss first (fewest
/// spares, then fewest live shards), within `budget` bytes. The first is always taken, so a
/// budget smaller than one repair still makes progress; the rest wait for the next round, so a
/// mass outage that ends in lost holders is repaired at a steady pace, not in one storm.
pub fn plan_repairs<K: Clone>(
    mut candidates: Vec<RepairCandidate<K>>,
    budget: u64,
) -> Vec<RepairCandidate<K>> {
    candidates.sort_by_key(|c| (c.health.spare(), c.health.live));
    let mut spent = 0u64;
    let mut chosen = Vec::new();
    for candidate in candidates {
        if !chosen.is_empty() && spent.saturating_add(candidate.bytes) > budget {
            continue;
        }
        spent = spent.saturating_add(candidate.bytes);
        chosen.push(candidate);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use ShardState::{AtRisk, Live, Lost};

    fn health(needed: u32, shards: u32, states: &[ShardState]) -> PackHealth {
        PackHealth::of(needed, shards, states.iter().copied())
    }

    #[test]
    fn a_shard_is_lost_with_its_holder_or_its_audit() {
        assert_eq!(ShardState::of(Standing::Online, true), Live);
        assert_eq!(ShardState::of(Standing::Away, true), Live);
        assert_eq!(ShardState::of(Standing::AtRisk, true), AtRisk);
        assert_eq!(ShardState::of(Standing::Lost, true), Lost);
        assert_eq!(ShardState::of(Standing::Online, false), Lost);
    }

    #[test]
    fn shards_without_a_holder_count_as_lost() {
        let h = health(2, 4, &[Live, Live, AtRisk]);
        assert_eq!((h.live, h.at_risk, h.lost), (2, 1, 1));
        assert_eq!(h.spare(), 1);
    }

    #[test]
    fn narrow_codings_are_repaired_after_their_first_loss() {
        // Three full copies (1+2): one lost, repaired at once.
        assert!(!health(1, 3, &[Live, Live, Live]).needs_repair(2));
        assert!(health(1, 3, &[Live, Live, Lost]).needs_repair(2));
        // 2+2, likewise.
        assert!(health(2, 4, &[Live, Live, Live, Lost]).needs_repair(2));
        // 4+6 waits until two spares remain.
        let wide = |lost: usize| {
            let states: Vec<_> = (0..10)
                .map(|i| if i < lost { Lost } else { Live })
                .collect();
            health(4, 10, &states)
        };
        assert!(!wide(3).needs_repair(2));
        assert!(wide(4).needs_repair(2));
        assert_eq!(wide(3).state(2), PackState::Protected);
        assert_eq!(wide(4).state(2), PackState::Repairing);
    }

    #[test]
    fn at_risk_shards_are_not_rebuilt_but_count_against_restoring_now() {
        // Holders away longer than usual: nothing to rebuild yet, and the pack is not
        // restorable from live shards alone.
        let h = health(2, 4, &[Live, AtRisk, AtRisk, AtRisk]);
        assert!(!h.needs_repair(2));
        assert_eq!(h.state(2), PackState::AtRisk);
        assert_eq!(
            health(2, 4, &[Live, Lost, Lost, Lost]).state(2),
            PackState::Lost
        );
        // Two live shards of a 2+2 with the others lost: repairable, and repaired.
        let h = health(2, 4, &[Live, Live, Lost, Lost]);
        assert!(h.needs_repair(0));
        assert_eq!(h.state(2), PackState::Repairing);
        // A single copy (1+0) has nothing to repair from once lost.
        assert!(!health(1, 1, &[Lost]).needs_repair(2));
    }

    #[test]
    fn an_owner_is_told_where_each_pack_stands() {
        let shard = |held, staged, replaced| PlacedShard {
            held,
            at_risk: false,
            staged,
            replaced,
        };
        let held = shard(true, false, false);
        // A new pack: placed shards still at the hub.
        assert_eq!(
            placed_pack_state(1, 1, &[held, shard(false, true, false)], 2),
            PackState::Uploading
        );
        assert_eq!(
            placed_pack_state(1, 1, &[held, held], 2),
            PackState::Protected
        );
        // A lost shard waiting for repair, then rebuilt and on its way to a new holder.
        assert_eq!(
            placed_pack_state(1, 2, &[held, held, shard(false, false, true)], 2),
            PackState::Repairing
        );
        assert_eq!(
            placed_pack_state(1, 2, &[held, held, shard(false, true, true)], 2),
            PackState::Repairing
        );
        // A wide coding above its threshold keeps its protection with one shard gone.
        let mut wide = vec![held; 9];
        wide.push(shard(false, false, true));
        assert_eq!(placed_pack_state(4, 6, &wide, 2), PackState::Protected);
        // Nothing left that rebuilds it.
        let gone = shard(false, false, true);
        assert_eq!(
            placed_pack_state(2, 2, &[held, gone, gone, gone], 2),
            PackState::Lost
        );
        assert!(
            PackState::Lost > PackState::Repairing && PackState::Repairing > PackState::Uploading
        );
        // Restorable only if holders away longer than usual come back: at risk, not lost.
        let away = PlacedShard {
            at_risk: true,
            ..held
        };
        assert_eq!(
            placed_pack_state(2, 1, &[held, away, away], 2),
            PackState::AtRisk
        );
        assert_eq!(
            placed_pack_state(2, 1, &[held, held, away], 2),
            PackState::Protected
        );
        assert_eq!(
            placed_pack_state(2, 1, &[held, away, gone], 2),
            PackState::AtRisk
        );
    }

    #[test]
    fn the_repair_budget_grows_with_what_the_hub_keeps() {
        let mib = 1u64 << 20;
        let tib = 1u64 << 40;
        assert_eq!(repair_rate(0), 256 * mib / 10);
        assert_eq!(repair_rate(10 * tib), 256 * mib / 10);
        assert_eq!(repair_rate(40 * tib), 4 * 256 * mib / 10);
        assert!(repair_rate(u64::MAX) > repair_rate(40 * tib));
    }

    #[test]
    fn repairs_closest_to_loss_go_first_within_the_budget() {
        let candidate = |pack: u32, states: &[ShardState], bytes| RepairCandidate {
            pack,
            health: health(2, 4, states),
            bytes,
        };
        let plan = plan_repairs(
            vec![
                candidate(1, &[Live, Live, Live, Lost], 30),
                candidate(2, &[Live, Live, Lost, Lost], 30),
                candidate(3, &[Live, Live, AtRisk, Lost], 30),
                candidate(4, &[Live, Live, Live, Lost], 30),
            ],
            70,
        );
        let order: Vec<u32> = plan.iter().map(|c| c.pack).collect();
        assert_eq!(order, vec![2, 3]);
        // A budget below one repair still repairs the most urgent pack.
        let plan = plan_repairs(vec![candidate(9, &[Live, Live, Lost, Lost], 500)], 10);
        assert_eq!(plan.len(), 1);
    }
}
