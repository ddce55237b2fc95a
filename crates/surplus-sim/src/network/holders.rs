//! What the hub hears from each PC and does about it: holders heard while on (and fetching
//! what they were given), counted lost when silent past the cap, taken back when they return;
//! and what truly happens to the copies of a PC that left or whose disk failed.

use surplus_rules::HOUR_MS;
use surplus_rules::presence::{self, HOURS_PER_WEEK, Standing};

use super::Network;
use crate::population::DAY_HOURS;

/// Hours of presence history the usual absence is read from (as the hub's loss sweep).
const ABSENCE_HISTORY_HOURS: u64 = 30 * DAY_HOURS;

impl Network {
    /// A PC left or its disk failed: what it held is gone, whatever the hub thinks.
    pub(super) fn copies_gone(&mut self, device: usize) {
        let held = self.holders[device].shards.clone();
        for (pack, shard) in held {
            let s = &mut self.packs[pack as usize].shards[shard as usize];
            if s.confirmed {
                s.intact = false;
                self.refresh(pack, shard);
            }
        }
        let kept = self.holders[device].orphans.clone();
        for (pack, shard, generation) in kept {
            let p = &mut self.packs[pack as usize];
            let s = &mut p.shards[shard as usize];
            if p.generation == generation && s.orphan == Some(device as u32) {
                s.orphan_intact = false;
                self.refresh(pack, shard);
            }
        }
    }

    /// The hub hears from the PCs that are on, and they fetch what they were given.
    pub(super) fn presence(&mut self, device: usize) {
        let alive = self.population.devices[device].alive;
        let online = self.population.devices[device].online;
        let hour = self.hour;
        let how = hour as usize % HOURS_PER_WEEK;
        let holder = &mut self.holders[device];
        holder.recent = holder.recent << 1 | u32::from(online);
        if alive && let Some((_, possible)) = holder.weeks.back_mut() {
            possible[how / 64] |= 1 << (how % 64);
        }
        if !online {
            return;
        }
        if let Some((heard, _)) = holder.weeks.back_mut() {
            heard[how / 64] |= 1 << (how % 64);
        }
        // Back after longer than it usually is away: audited first.
        let away = self.now - HOUR_MS - holder.last_heard.unwrap_or(holder.registered_at);
        if away >= self.rules.presence.at_risk_floor {
            let standing = self.rules.presence.standing(
                holder.last_heard,
                holder.registered_at,
                presence::usual_absence(&holder.heard_slots()),
                self.now - HOUR_MS,
            );
            if matches!(standing, Standing::AtRisk | Standing::Lost) {
                holder.returned_at = Some(self.now);
                holder.next_audit = self.now;
            }
        }
        let was_lost = holder.counted_lost;
        holder.counted_lost = false;
        holder.last_heard = Some(self.now);
        match holder.runs.back_mut() {
            Some((_, last)) if *last + 1 == hour => *last = hour,
            _ => holder.runs.push_back((hour, hour)),
        }
        while holder
            .runs
            .front()
            .is_some_and(|(_, last)| last + ABSENCE_HISTORY_HOURS < hour)
        {
            holder.runs.pop_front();
        }
        if was_lost {
            self.returned(device);
        }
        let dishonest = self.population.devices[device].dishonest;
        let to_fetch = std::mem::take(&mut self.holders[device].to_fetch);
        for (pack, shard) in to_fetch {
            let s = &mut self.packs[pack as usize].shards[shard as usize];
            if s.holder != Some(device as u32) || !s.staged {
                continue;
            }
            s.staged = false;
            s.confirmed = true;
            s.intact = !dishonest;
            s.stored_at = self.now;
            s.last_audit = None;
            // A copy kept by a lost holder is surplus now.
            s.orphan = None;
            self.stored_total += 1;
            let interval = self.rules.audit.interval;
            let holder = &mut self.holders[device];
            holder.next_audit = holder.next_audit.min(self.now + interval);
            self.refresh(pack, shard);
        }
    }

    /// Holders silent past the cap are counted lost, as the hub's sweep does.
    pub(super) fn detect_losses(&mut self) {
        let policy = self.rules.presence;
        for device in 0..self.holders.len() {
            let holder = &self.holders[device];
            if holder.counted_lost || holder.shards.is_empty() {
                continue;
            }
            let away = self.now - holder.last_heard.unwrap_or(holder.registered_at);
            if away < policy.lost_after {
                continue;
            }
            let standing = policy.standing(
                holder.last_heard,
                holder.registered_at,
                presence::usual_absence(&holder.heard_slots()),
                self.now,
            );
            if standing == Standing::Lost {
                self.lose_holder(device, false);
            }
        }
    }

    /// Everything a holder holds is counted lost; staged shards it was to fetch go elsewhere.
    /// Unless it was disqualified, the copies it kept may be taken back if it returns.
    pub(super) fn lose_holder(&mut self, device: usize, disqualified: bool) {
        if self.measuring {
            self.counts.holders_counted_lost += 1;
            if self.population.devices[device].alive {
                self.counts.counted_lost_while_alive += 1;
            }
        }
        self.holders[device].counted_lost = true;
        let held = std::mem::take(&mut self.holders[device].shards);
        self.holders[device].to_fetch.clear();
        self.holders[device].used_bytes = 0;
        let keep = self.rules.readopt && !disqualified;
        for (pack, shard) in held {
            let p = &mut self.packs[pack as usize];
            let generation = p.generation;
            let s = &mut p.shards[shard as usize];
            if keep && s.confirmed {
                s.orphan = Some(device as u32);
                s.orphan_intact = s.intact;
                self.holders[device].orphans.push((pack, shard, generation));
            }
            self.take_from_holder(pack, shard);
        }
    }

    /// A holder counted lost is back: its copies still wanted are taken back (and audited
    /// first), the others deleted.
    fn returned(&mut self, device: usize) {
        let window = self.rules.audit.failure_window;
        let now = self.now;
        let clean = self.holders[device]
            .failures
            .iter()
            .all(|at| now - *at >= window);
        let kept = std::mem::take(&mut self.holders[device].orphans);
        for (pack, shard, generation) in kept {
            let p = &mut self.packs[pack as usize];
            let s = &mut p.shards[shard as usize];
            if p.generation != generation || s.orphan != Some(device as u32) {
                continue;
            }
            s.orphan = None;
            if clean && s.holder.is_none() {
                if s.staged {
                    // The rebuilt copy is not needed: its placement is done.
                    s.staged = false;
                    self.unplaced.remove(&pack);
                }
                s.holder = Some(device as u32);
                s.confirmed = true;
                s.intact = s.orphan_intact;
                self.stored_total += 1;
                let holder = &mut self.holders[device];
                holder.shards.push((pack, shard));
                holder.used_bytes += self.shard_bytes;
                if self.measuring {
                    self.counts.readopted += 1;
                }
            }
            self.changed.insert(pack);
            self.refresh(pack, shard);
        }
        self.holders[device].next_audit = now;
    }
}
