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

use std::collections::{BTreeSet, VecDeque};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use serde::Serialize;
use surplus_protocol::Coding;
use surplus_rules::audit::{self, Answer, AuditPolicy, Held, Verdict};
use surplus_rules::health::{PackHealth, RepairCandidate, ShardState, plan_repairs};
use surplus_rules::placement::{self, Candidate, Decision, PackHolders, Want};
use surplus_rules::presence::{self, HOURS_PER_WEEK, PresencePolicy, SLOT_MS, Standing, Week};
use surplus_rules::{HOUR_MS, Millis};
use uuid::Uuid;

use crate::population::{DAY_HOURS, Population, Traits, WEEK_HOURS};

/// The simulator's hour 0: 2026-11-30, a Monday, 00:00 UTC.
const START: Millis = 1_795_996_800_000;
/// Slots per hour.
const SLOTS_PER_HOUR: i64 = HOUR_MS / SLOT_MS;
/// Weeks of history a usual week is made from (as `presence::Week::from_slots`).
const WEEKS_KEPT: usize = 13;
/// Hours of presence history the usual absence is read from (as the hub's loss sweep).
const ABSENCE_HISTORY_HOURS: u64 = 30 * DAY_HOURS;
/// How often packs are sampled for restorability, in hours: not a divisor of a day or a week,
/// so that the samples fall on every hour of the week.
const RESTORE_SAMPLE_EVERY: u64 = 13;
/// The bytes one audit moves: a 1 KiB slice and its Bao proof, hex in JSON, with the
/// instruction around it.
pub const AUDIT_BYTES: u64 = 4 << 10;

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

/// A pack at a sampled moment: its shards staged at the hub, and the PCs holding intact copies.
type RestoreSample = (u32, Vec<u32>);

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

fn allocation_uuid(pack: u32, shard: u8) -> Uuid {
    Uuid::from_u128((u128::from(pack) << 8) + u128::from(shard) + 1)
}

fn allocation_of(id: Uuid) -> (u32, u8) {
    let n = id.as_u128() - 1;
    ((n >> 8) as u32, (n & 0xff) as u8)
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

    /// A PC left or its disk failed: what it held is gone, whatever the hub thinks.
    fn copies_gone(&mut self, device: usize) {
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
    fn presence(&mut self, device: usize) {
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
    fn detect_losses(&mut self) {
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
    fn lose_holder(&mut self, device: usize, disqualified: bool) {
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

    /// A shard no longer has its holder (lost, failed, or its pack started again).
    fn take_from_holder(&mut self, pack: u32, shard: u8) {
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
    fn refresh(&mut self, pack: u32, shard: u8) {
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

    /// Audits an online holder's shards that are due.
    fn audit(&mut self, device: usize) {
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
    fn integrity_failure(&mut self, device: usize, pack: u32, shard: u8) {
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

    fn repair(&mut self) {
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

    /// Places staged shards that have no holder, through the hub's placement rules.
    fn place(&mut self) {
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

    fn measure(&mut self) {
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
