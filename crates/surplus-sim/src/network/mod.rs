//! One set of rules over one population, hour by hour: what the hub would decide with
//! `surplus_rules`, and what truly happens to the shards.
//!
//! Each simulated hour, PCs are on or off for the whole hour (the hub's 5-minute slots are
//! filled for hours on). At the end of the hour the hub, as it would, fetches nothing itself
//! but: hands staged shards to holders that are on, counts silent holders lost past the cap
//! (`presence::PresencePolicy::standing`), audits online holders (`audit::due`, `audit::judge`,
//! `AuditPolicy::disqualifies`), repairs the packs whose health needs it (`health::PackHealth`,
//! `health::plan_repairs` within the hour's share of the repair budget) and places staged
//! shards on new holders (`placement::decide`, with the holders' usual weeks).
//!
//! Two views of every shard are kept apart. The hub's: a shard is lost when it has no holder
//! and is not staged. The truth: a shard is **available** while it is staged at the hub or held
//! intact by a PC that has not left; PCs that left, failed disks and cheats make shards
//! unavailable long before the hub knows. Durability is judged on the truth: a pack is lost when
//! fewer than `needed` of its shards are available.
//!
//! A repair needs `needed` of the pack's shards at the hub within the hour: staged ones, and
//! those of holders on in that hour (the hub drops gathered copies after an hour). A shard that
//! is not intact fails its check on upload, which counts against its holder as an audit would.
//!
//! The parts, each an `impl Network` of its own: `holders` (what the hub hears from each PC,
//! holders counted lost and holders that return), `audits`, `repairs`, `placing` and
//! `measure` (what is counted while measuring). This file keeps the network's state and the
//! hour's order, with the bookkeeping of both views that every part shares.

mod audits;
mod holders;
mod measure;
mod placing;
mod repairs;

use std::collections::{BTreeSet, VecDeque};

use rand::SeedableRng;
use rand::rngs::StdRng;
use surplus_protocol::Coding;
use surplus_rules::audit::AuditPolicy;
use surplus_rules::presence::{HOURS_PER_WEEK, PresencePolicy, SLOT_MS, Week};
use surplus_rules::{HOUR_MS, Millis};
use uuid::Uuid;

use crate::population::{DAY_HOURS, Population, Traits, WEEK_HOURS};

pub use audits::AUDIT_BYTES;
use measure::RestoreSample;
pub use measure::{Counts, LossEvent};

/// The simulator's hour 0: 2026-11-30, a Monday, 00:00 UTC.
const START: Millis = 1_795_996_800_000;
/// Slots per hour.
const SLOTS_PER_HOUR: i64 = HOUR_MS / SLOT_MS;
/// Weeks of history a usual week is made from (as `presence::Week::from_slots`).
const WEEKS_KEPT: usize = 13;

/// The rules a network runs.
#[derive(Debug, Clone)]
pub struct Rules {
    pub name: String,
    pub coding: Coding,
    pub presence: PresencePolicy,
    pub audit: AuditPolicy,
    pub repair_threshold: u32,
    /// Bytes repairs may move in an hour; `None` for no limit.
    pub repair_budget_per_hour: Option<u64>,
    /// Whether placement is told the holders' usual weeks (Surplus) or not (Storj-like: any
    /// nodes, online ones first).
    pub week_aware: bool,
    /// Whether a holder counted lost that comes back has its copies taken back where they are
    /// still wanted (not rebuilt and placed elsewhere meanwhile), as the hub's
    /// `release_returned` does; otherwise they are deleted.
    pub readopt: bool,
}

impl Rules {
    /// Live shards at or below which a pack waits for repair.
    pub fn trigger(&self) -> u32 {
        let parity = u32::from(self.coding.parity);
        u32::from(self.coding.data) + self.repair_threshold.min(parity.saturating_sub(1))
    }
}

/// The population and how much it stores.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub traits: Traits,
    pub seed: u64,
    pub packs_per_subscriber: u32,
    /// Each subscriber's backup, in bytes (their packs share it).
    pub data_bytes: u64,
    /// Each PC offers this many times its owner's backup to others.
    pub offered_factor: u64,
    /// Days of presence history before the first backup, so that usual weeks are known.
    pub history_days: u64,
    /// Days after the first backup before anything is measured.
    pub warmup_days: u64,
    pub measured_days: u64,
}

#[derive(Debug, Clone)]
struct Shard {
    holder: Option<u32>,
    /// The holder fetched it (the staged copy is then dropped).
    confirmed: bool,
    staged: bool,
    /// The holder's copy is what it should be.
    intact: bool,
    available: bool,
    /// Whether `staged` was counted as such in the network's total.
    counted_staged: bool,
    stored_at: Millis,
    last_audit: Option<Millis>,
    /// A copy kept by a holder that was counted lost, and whether it is intact: taken back if
    /// the holder returns before the shard is placed elsewhere.
    orphan: Option<u32>,
    orphan_intact: bool,
}

#[derive(Debug, Clone)]
struct Pack {
    owner: usize,
    /// Bumped when the pack is lost and uploaded afresh, so that old copies are known.
    generation: u32,
    shards: Vec<Shard>,
    available: u32,
    /// The hour its available shards fell to the repair trigger, while they stay there.
    episode_since: Option<u64>,
}

/// The hub's record of a PC.
#[derive(Debug, Clone)]
struct Holder {
    registered_at: Millis,
    last_heard: Option<Millis>,
    /// Runs of hours heard, (first, last), over the last 30 days.
    runs: VecDeque<(u64, u64)>,
    /// For each recent week: the hours heard and the hours registered, a bit per hour.
    weeks: VecDeque<([u64; 3], [u64; 3])>,
    week: Option<Week>,
    counted_lost: bool,
    disqualified: bool,
    failures: Vec<Millis>,
    returned_at: Option<Millis>,
    /// Shards given to it, fetched or not, and those it has yet to fetch.
    shards: Vec<(u32, u8)>,
    to_fetch: Vec<(u32, u8)>,
    /// Copies it kept when it was counted lost: (pack, shard, the pack's generation).
    orphans: Vec<(u32, u8, u32)>,
    used_bytes: u64,
    /// Hours on, the latest in bit 0.
    recent: u32,
    next_audit: Millis,
}

impl Holder {
    fn new(registered_at: Millis) -> Holder {
        Holder {
            registered_at,
            last_heard: None,
            runs: VecDeque::new(),
            weeks: VecDeque::from([([0; 3], [0; 3])]),
            week: None,
            counted_lost: false,
            disqualified: false,
            failures: Vec::new(),
            returned_at: None,
            shards: Vec::new(),
            to_fetch: Vec::new(),
            orphans: Vec::new(),
            used_bytes: 0,
            recent: 0,
            next_audit: Millis::MAX,
        }
    }

    fn heard_slots(&self) -> Vec<i64> {
        let base = START / SLOT_MS;
        self.runs
            .iter()
            .flat_map(|(first, last)| {
                [
                    base + *first as i64 * SLOTS_PER_HOUR,
                    base + (*last as i64 + 1) * SLOTS_PER_HOUR - 1,
                ]
            })
            .collect()
    }

    /// Its usual week from the weeks kept, hour by hour as `Week::from_slots` counts them.
    fn usual_week(&self) -> Week {
        let mut hours = [0f32; HOURS_PER_WEEK];
        for (hour, share) in hours.iter_mut().enumerate() {
            let bit = |bits: &[u64; 3]| bits[hour / 64] >> (hour % 64) & 1;
            let heard: u64 = self.weeks.iter().map(|(heard, _)| bit(heard)).sum();
            let possible: u64 = self.weeks.iter().map(|(_, possible)| bit(possible)).sum();
            if possible > 0 {
                *share = heard as f32 / possible as f32;
            }
        }
        Week::from_hours(hours)
    }
}

fn device_uuid(device: usize) -> Uuid {
    Uuid::from_u128(device as u128 + 1)
}

fn subscriber_uuid(subscriber: usize) -> Uuid {
    Uuid::from_u128((1 << 64) + subscriber as u128)
}

/// One network: a population under one set of rules.
#[derive(Debug)]
pub struct Network {
    pub rules: Rules,
    setup: Setup,
    pub shard_bytes: u64,
    pub pack_bytes: u64,
    offered_bytes: u64,
    pub population: Population,
    holders: Vec<Holder>,
    packs: Vec<Pack>,
    rng: StdRng,
    hour: u64,
    now: Millis,
    measure_from: u64,
    measuring: bool,
    available_total: u64,
    staged_total: u64,
    stored_total: u64,
    /// Packs whose hub view changed this hour, to be looked at for repair.
    changed: BTreeSet<u32>,
    wanting_repair: BTreeSet<u32>,
    /// Packs with staged shards that have no holder.
    unplaced: BTreeSet<u32>,
    /// Packs that fell below `needed` available shards.
    falling: Vec<u32>,
    /// Restorability samples waiting for their 24 hours to pass: (hour due, per pack: staged
    /// shards, PCs holding intact shards).
    restore_samples: VecDeque<(u64, Vec<RestoreSample>)>,
    pub counts: Counts,
}

impl Network {
    pub fn new(setup: Setup, rules: Rules) -> Network {
        let needed = u64::from(rules.coding.data);
        let pack_bytes = setup.data_bytes / u64::from(setup.packs_per_subscriber.max(1));
        Network {
            shard_bytes: pack_bytes.div_ceil(needed),
            pack_bytes,
            offered_bytes: setup.data_bytes * setup.offered_factor,
            population: Population::new(setup.traits, setup.seed),
            holders: Vec::new(),
            packs: Vec::new(),
            // The network's own choices draw from another stream than the population's lives.
            rng: StdRng::seed_from_u64(setup.seed ^ 0x5eed_0f5a_c0de),
            hour: 0,
            now: START,
            measure_from: (setup.history_days + setup.warmup_days) * DAY_HOURS,
            measuring: false,
            available_total: 0,
            staged_total: 0,
            stored_total: 0,
            changed: BTreeSet::new(),
            wanting_repair: BTreeSet::new(),
            unplaced: BTreeSet::new(),
            falling: Vec::new(),
            restore_samples: VecDeque::new(),
            counts: Counts {
                restart_levels: vec![0; rules.coding.shards() as usize + 1],
                episode_at_risk: vec![0; rules.coding.shards() as usize + 1],
                ..Counts::default()
            },
            rules,
            setup,
        }
    }

    /// Runs the whole setup: history, first backups, warm-up, measurement.
    pub fn run(&mut self) {
        let backups_at = self.setup.history_days * DAY_HOURS;
        let end = self.measure_from + self.setup.measured_days * DAY_HOURS;
        while self.hour < end {
            if self.hour == backups_at {
                self.first_backups();
            }
            self.measuring = self.hour >= self.measure_from;
            self.step();
            self.hour += 1;
        }
    }

    fn first_backups(&mut self) {
        let shards = self.rules.coding.shards();
        for owner in 0..self.setup.traits.devices {
            for _ in 0..self.setup.packs_per_subscriber {
                let pack = Pack {
                    owner,
                    shards: vec![
                        Shard {
                            holder: None,
                            confirmed: false,
                            staged: true,
                            intact: true,
                            available: true,
                            counted_staged: true,
                            stored_at: self.now,
                            last_audit: None,
                            orphan: None,
                            orphan_intact: false,
                        };
                        shards as usize
                    ],
                    generation: 0,
                    available: shards,
                    episode_since: None,
                };
                self.available_total += u64::from(shards);
                self.staged_total += u64::from(shards);
                self.packs.push(pack);
                self.unplaced.insert(self.packs.len() as u32 - 1);
            }
        }
    }

    fn step(&mut self) {
        let hour = self.hour;
        let changes = self.population.step(hour);
        self.now = START + (hour as i64 + 1) * HOUR_MS;
        while self.holders.len() < self.population.devices.len() {
            self.holders.push(Holder::new(self.now - HOUR_MS));
        }
        for device in changes.left.into_iter().chain(changes.disk_failed) {
            self.copies_gone(device);
        }
        if hour.is_multiple_of(WEEK_HOURS) {
            for (device, holder) in self.holders.iter_mut().enumerate() {
                if self.population.devices[device].alive {
                    holder.weeks.push_back(([0; 3], [0; 3]));
                    if holder.weeks.len() > WEEKS_KEPT {
                        holder.weeks.pop_front();
                    }
                    holder.week = Some(holder.usual_week());
                }
            }
        }
        for device in 0..self.holders.len() {
            self.presence(device);
        }
        self.detect_losses();
        self.settle_losses();
        for device in 0..self.holders.len() {
            if self.population.devices[device].online && self.holders[device].next_audit <= self.now
            {
                self.audit(device);
            }
        }
        self.settle_losses();
        self.repair();
        self.settle_losses();
        self.place();
        if self.measuring {
            self.measure();
        }
    }

    /// A shard no longer has its holder (lost, failed, or its pack started again).
    pub(super) fn take_from_holder(&mut self, pack: u32, shard: u8) {
        let s = &mut self.packs[pack as usize].shards[shard as usize];
        if s.confirmed {
            self.stored_total -= 1;
        }
        s.holder = None;
        s.confirmed = false;
        if s.staged {
            self.unplaced.insert(pack);
        }
        self.changed.insert(pack);
        self.refresh(pack, shard);
    }

    /// Brings a shard's availability up to date, and its pack's count with it.
    pub(super) fn refresh(&mut self, pack: u32, shard: u8) {
        let trigger = self.rules.trigger();
        let needed = u32::from(self.rules.coding.data);
        let p = &mut self.packs[pack as usize];
        let s = &mut p.shards[shard as usize];
        if s.staged != s.counted_staged {
            s.counted_staged = s.staged;
            if s.staged {
                self.staged_total += 1;
            } else {
                self.staged_total -= 1;
            }
        }
        let available =
            s.staged || (s.confirmed && s.intact) || (s.orphan.is_some() && s.orphan_intact);
        if available == s.available {
            return;
        }
        s.available = available;
        if available {
            p.available += 1;
            self.available_total += 1;
            return;
        }
        p.available -= 1;
        self.available_total -= 1;
        if self.measuring {
            self.counts.shard_losses += 1;
        }
        if p.available <= trigger && p.episode_since.is_none() {
            p.episode_since = Some(self.hour);
            if self.measuring {
                let staged = p.shards.iter().filter(|s| s.staged).count() as u32;
                self.counts.episode_at_risk[(p.available - staged) as usize] += 1;
            }
        }
        if p.available < needed {
            self.falling.push(pack);
        }
    }

    /// Packs with fewer than `needed` shards left are lost; their owner uploads them afresh.
    fn settle_losses(&mut self) {
        let needed = u32::from(self.rules.coding.data);
        while let Some(pack) = self.falling.pop() {
            if self.packs[pack as usize].available >= needed {
                continue;
            }
            let owner = self.packs[pack as usize].owner;
            if self.measuring {
                self.counts.pack_losses.push(LossEvent {
                    day: (self.hour - self.measure_from) as f64 / 24.0,
                    pack,
                    owner,
                });
                if let Some(since) = self.packs[pack as usize].episode_since {
                    self.counts.lost_after.push((self.hour - since) as f64);
                }
                self.counts.restart_levels[self.rules.coding.shards() as usize] += 1;
            }
            self.packs[pack as usize].episode_since = None;
            self.packs[pack as usize].generation += 1;
            for shard in 0..self.packs[pack as usize].shards.len() as u8 {
                let s = &self.packs[pack as usize].shards[shard as usize];
                if let Some(device) = s.holder {
                    let holder = &mut self.holders[device as usize];
                    holder.shards.retain(|held| *held != (pack, shard));
                    holder.to_fetch.retain(|held| *held != (pack, shard));
                    holder.used_bytes = holder.used_bytes.saturating_sub(self.shard_bytes);
                    self.take_from_holder(pack, shard);
                }
                let s = &mut self.packs[pack as usize].shards[shard as usize];
                s.staged = true;
                s.intact = true;
                s.orphan = None;
                self.refresh(pack, shard);
            }
            self.unplaced.insert(pack);
            self.changed.insert(pack);
        }
    }
}
