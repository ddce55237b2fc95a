//! Placement as the hub decides it: staged shards without a holder given to devices with room,
//! through `placement::decide` over a random sample of them.

use rand::seq::index::sample;
use surplus_rules::placement::{self, Candidate, Decision, PackHolders, Want};
use surplus_rules::presence::Week;
use uuid::Uuid;

use super::{Network, device_uuid, subscriber_uuid};

impl Network {
    /// Places staged shards that have no holder, through the hub's placement rules.
    pub(super) fn place(&mut self) {
        if self.unplaced.is_empty() {
            return;
        }
        let shard_bytes = self.shard_bytes;
        let offered = self.offered_bytes;
        let eligible: Vec<usize> = (0..self.holders.len())
            .filter(|&d| {
                let h = &self.holders[d];
                !h.counted_lost && !h.disqualified && h.used_bytes + shard_bytes <= offered
            })
            .collect();
        let online_since = self.now - self.rules.presence.online_window;
        let needed = u32::from(self.rules.coding.data);
        let sample_size = (2 * self.rules.coding.shards() as usize + 8).max(48);
        for pack in std::mem::take(&mut self.unplaced) {
            let p = &self.packs[pack as usize];
            let waiting: Vec<usize> = (0..p.shards.len())
                .filter(|&s| p.shards[s].staged && p.shards[s].holder.is_none())
                .collect();
            if waiting.is_empty() {
                continue;
            }
            let holders: Vec<(Uuid, Uuid)> = p
                .shards
                .iter()
                .filter_map(|s| s.holder)
                .map(|d| {
                    let subscriber = self.population.devices[d as usize].subscriber;
                    (device_uuid(d as usize), subscriber_uuid(subscriber))
                })
                .collect();
            let weeks: Vec<Week> = if self.rules.week_aware {
                p.shards
                    .iter()
                    .filter_map(|s| s.holder)
                    .filter_map(|d| self.holders[d as usize].week.clone())
                    .collect()
            } else {
                Vec::new()
            };
            // The hub weighs every device with room; the simulator a random sample of them,
            // so that a run stays fast.
            let candidates: Vec<Candidate> = sample(
                &mut self.rng,
                eligible.len(),
                sample_size.min(eligible.len()),
            )
            .into_iter()
            .map(|at| {
                let d = eligible[at];
                let h = &self.holders[d];
                Candidate {
                    device_id: device_uuid(d),
                    subscriber_id: subscriber_uuid(self.population.devices[d].subscriber),
                    free_bytes: offered - h.used_bytes,
                    last_heartbeat: h.last_heard,
                    week: if self.rules.week_aware {
                        h.week.clone()
                    } else {
                        None
                    },
                    // Every simulated PC is on a home network of its own.
                    network: None,
                }
            })
            .collect();
            let want = Want {
                owner: subscriber_uuid(p.owner),
                source: None,
                copies: waiting.len() as u32,
                size: shard_bytes,
                staged: true,
                household: false,
                allocations: &[],
                holding: &[],
                failed_lately: &[],
                pack: Some(PackHolders {
                    holders: &holders,
                    weeks: &weeks,
                    networks: &[],
                    needed: self.rules.week_aware.then_some(needed),
                }),
            };
            let chosen = match placement::decide(&want, &candidates, online_since) {
                Decision::Allocate(chosen) => chosen,
                Decision::Wait | Decision::Done { .. } => Vec::new(),
            };
            if chosen.len() < waiting.len() {
                self.unplaced.insert(pack);
            }
            for (shard, device) in waiting.into_iter().zip(chosen) {
                let d = (device.as_u128() - 1) as usize;
                self.packs[pack as usize].shards[shard].holder = Some(d as u32);
                let holder = &mut self.holders[d];
                holder.shards.push((pack, shard as u8));
                holder.to_fetch.push((pack, shard as u8));
                holder.used_bytes += shard_bytes;
            }
        }
    }
}
