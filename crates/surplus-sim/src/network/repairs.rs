//! Repairs as the hub runs them: packs whose health needs it, those whose shards can be
//! gathered this hour, within the hour's share of the repair budget; their lost shards rebuilt
//! at the hub and staged for new holders.

use surplus_rules::audit::{self, Answer, Verdict};
use surplus_rules::health::{PackHealth, RepairCandidate, ShardState, plan_repairs};

use super::{Network, Shard};

impl Network {
    /// A pack's health as the hub's repair sees it: a shard is lost when it has no holder and is
    /// not staged, live otherwise.
    fn health(&self, pack: u32) -> PackHealth {
        let coding = self.rules.coding;
        PackHealth::of(
            u32::from(coding.data),
            coding.shards(),
            self.packs[pack as usize].shards.iter().map(|s| {
                if s.holder.is_some() || s.staged {
                    ShardState::Live
                } else {
                    ShardState::Lost
                }
            }),
        )
    }

    fn gatherable(&self, s: &Shard) -> bool {
        s.staged
            || (s.confirmed
                && s.holder.is_some_and(|device| {
                    self.population.devices[device as usize].online
                        && !self.holders[device as usize].counted_lost
                }))
    }

    pub(super) fn repair(&mut self) {
        let threshold = self.rules.repair_threshold;
        for pack in std::mem::take(&mut self.changed) {
            if self.health(pack).needs_repair(threshold) {
                self.wanting_repair.insert(pack);
            } else {
                self.wanting_repair.remove(&pack);
            }
        }
        let needed = u32::from(self.rules.coding.data);
        // Only packs whose shards can be gathered this hour move bytes, as over the hub's 360
        // rounds an hour.
        let candidates: Vec<RepairCandidate<u32>> = self
            .wanting_repair
            .iter()
            .filter_map(|&pack| {
                let health = self.health(pack);
                let gatherable = self.packs[pack as usize]
                    .shards
                    .iter()
                    .filter(|s| self.gatherable(s))
                    .count() as u32;
                (gatherable >= needed).then(|| RepairCandidate {
                    pack,
                    health,
                    bytes: self.shard_bytes * u64::from(health.needed + health.lost),
                })
            })
            .collect();
        let budget = self.rules.repair_budget_per_hour.unwrap_or(u64::MAX);
        let wanted: u64 = candidates.iter().map(|c| c.bytes).sum();
        if self.measuring && wanted > budget {
            self.counts.budget_bound_hours += 1;
        }
        for chosen in plan_repairs(candidates, budget) {
            self.repair_pack(chosen.pack);
        }
    }

    /// Gathers `needed` shards and rebuilds the lost ones at the hub, staged for new holders.
    fn repair_pack(&mut self, pack: u32) {
        let needed = usize::from(self.rules.coding.data);
        let mut gathered = self.packs[pack as usize]
            .shards
            .iter()
            .filter(|s| s.staged)
            .count();
        let mut downloads = 0u64;
        for shard in 0..self.packs[pack as usize].shards.len() {
            if gathered >= needed {
                break;
            }
            let s = &self.packs[pack as usize].shards[shard];
            if s.staged || !self.gatherable(s) {
                continue;
            }
            let (device, intact) = (s.holder.unwrap_or_default() as usize, s.intact);
            if intact {
                gathered += 1;
                downloads += 1;
            } else {
                // The upload does not match the shard's name.
                if audit::judge(Answer::WrongProof) == Verdict::IntegrityFailure {
                    self.integrity_failure(device, pack, shard as u8);
                }
            }
        }
        if gathered < needed {
            return;
        }
        let mut rebuilt = 0u64;
        for shard in 0..self.packs[pack as usize].shards.len() {
            let s = &mut self.packs[pack as usize].shards[shard];
            if s.holder.is_none() && !s.staged {
                s.staged = true;
                s.intact = true;
                rebuilt += 1;
                self.refresh(pack, shard as u8);
            }
        }
        if self.measuring {
            self.counts.repairs += 1;
            self.counts.repair_bytes += ((downloads + rebuilt) * self.shard_bytes) as f64;
        }
        let trigger = self.rules.trigger();
        let p = &mut self.packs[pack as usize];
        if let Some(since) = p.episode_since
            && p.available > trigger
        {
            p.episode_since = None;
            if self.measuring {
                self.counts.repaired_after.push((self.hour - since) as f64);
                self.counts.restart_levels[p.available as usize] += 1;
            }
        }
        self.unplaced.insert(pack);
        self.changed.insert(pack);
    }
}
