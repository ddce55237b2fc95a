//! What is counted while measuring, hour by hour, and the restorability samples: whether each
//! pack could have been restored within the 24 hours after a sampled moment.

use serde::Serialize;

use super::Network;

/// How often packs are sampled for restorability, in hours: not a divisor of a day or a week,
/// so that the samples fall on every hour of the week.
const RESTORE_SAMPLE_EVERY: u64 = 13;

/// A pack that was lost.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LossEvent {
    /// Days since measuring began.
    pub day: f64,
    pub pack: u32,
    pub owner: usize,
}

/// What was counted while measuring.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub hours: u64,
    pub pack_hours: f64,
    pub available_shard_hours: f64,
    /// Of those, hours shards spent staged at the hub, where nothing is lost.
    pub staged_shard_hours: f64,
    pub stored_shard_hours: f64,
    pub shard_losses: u64,
    pub pack_losses: Vec<LossEvent>,
    pub repaired_after: Vec<f64>,
    pub lost_after: Vec<f64>,
    pub restart_levels: Vec<u64>,
    /// How many repair episodes began with each number of shards at risk (available and held
    /// by PCs, not staged).
    pub episode_at_risk: Vec<u64>,
    pub repairs: u64,
    pub repair_bytes: f64,
    /// Copies taken back from holders counted lost that returned.
    pub readopted: u64,
    pub audits: u64,
    pub holders_counted_lost: u64,
    /// Holders counted lost while their PC was still in the network (away past the cap).
    pub counted_lost_while_alive: u64,
    pub disqualified: u64,
    pub restore_samples: u64,
    pub restore_failures: u64,
    /// Hours in which repairs that could proceed wanted more than the budget.
    pub budget_bound_hours: u64,
    pub device_hours: u64,
}

/// A pack at a sampled moment: its shards staged at the hub, and the PCs holding intact copies.
pub(super) type RestoreSample = (u32, Vec<u32>);

impl Network {
    pub(super) fn measure(&mut self) {
        let counts = &mut self.counts;
        counts.hours += 1;
        counts.pack_hours += self.packs.len() as f64;
        counts.available_shard_hours += self.available_total as f64;
        counts.staged_shard_hours += self.staged_total as f64;
        counts.stored_shard_hours += self.stored_total as f64;
        counts.device_hours += self.setup.traits.devices as u64;
        // Samples whose 24 hours are over: restorable if `needed` shards could be fetched, each
        // from the hub's staging or from its holder in an hour it was on.
        let needed = u32::from(self.rules.coding.data);
        while self
            .restore_samples
            .front()
            .is_some_and(|(due, _)| *due == self.hour)
        {
            let Some((_, packs)) = self.restore_samples.pop_front() else {
                break;
            };
            for (staged, holders) in packs {
                let fetched = holders
                    .iter()
                    .filter(|&&d| self.holders[d as usize].recent & 0x00ff_ffff != 0)
                    .count() as u32;
                counts.restore_samples += 1;
                if staged + fetched < needed {
                    counts.restore_failures += 1;
                }
            }
        }
        if (self.hour - self.measure_from).is_multiple_of(RESTORE_SAMPLE_EVERY) {
            let packs = self
                .packs
                .iter()
                .map(|p| {
                    let staged = p.shards.iter().filter(|s| s.staged).count() as u32;
                    // Holders with an intact copy, counted lost or not (one counted lost
                    // that comes back has its copy taken back, or the shard is placed again).
                    let holders = p
                        .shards
                        .iter()
                        .filter(|s| !s.staged)
                        .filter_map(|s| {
                            if s.confirmed && s.intact {
                                s.holder
                            } else if s.orphan_intact {
                                s.orphan
                            } else {
                                None
                            }
                        })
                        .collect();
                    (staged, holders)
                })
                .collect();
            self.restore_samples.push_back((self.hour + 23, packs));
        }
    }
}
