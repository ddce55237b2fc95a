//! A churn simulator over the hub's own rules: a population of home PCs that come and go
//! (`population`), storing each other's erasure-coded packs under the rules of
//! `surplus_rules`, hour by hour on a virtual clock with a seed (`network`). There is no hub, no
//! database and no network: the same decisions, on simulated facts.
//!
//! What it reports for a population: the packs lost, the share of packs restorable within 24
//! hours of a random moment, storage expansion, repair and audit traffic, and annual durability.
//! Durability as high as eleven nines cannot be watched happen, so it comes from a model of one
//! pack (`model`) whose rates are measured by the simulation; a test checks the model against
//! the losses counted directly where they are frequent enough to count.
//!
//! Every run also simulates a Storj-like network on the same population (the same PCs, on and
//! off at the same hours, leaving at the same moments): 29 of 80 shards, repaired when 35 are
//! left, a node counted gone after 4 hours offline.

pub mod model;
pub mod network;
pub mod population;

use serde::Serialize;
use surplus_protocol::Coding;
use surplus_rules::audit::AuditPolicy;
use surplus_rules::presence::PresencePolicy;
use surplus_rules::{HOUR_MS, Millis};

use crate::model::{Measured, Prediction, YEAR_HOURS, quantile};
use crate::network::{AUDIT_BYTES, LossEvent, Network, Rules, Setup};
use crate::population::Traits;

const GIB: f64 = (1u64 << 30) as f64;

/// The lost-after cap the durability runs led to, as the hub uses it:
/// [`PresencePolicy::DEFAULT`]'s, 4 days (its documentation says why).
pub const LOST_AFTER: Millis = PresencePolicy::DEFAULT.lost_after;
/// Spare shards at which a pack is repaired, as the hub uses it:
/// [`surplus_rules::health::REPAIR_THRESHOLD`], 14.
pub const REPAIR_THRESHOLD: u32 = surplus_rules::health::REPAIR_THRESHOLD;
const MONTH_HOURS: f64 = YEAR_HOURS / 12.0;

/// A simulation to run: the population, how much it stores, and the rules under test.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub devices: usize,
    pub availability: f64,
    pub lifetime_days: f64,
    pub lifetime_shape: f64,
    pub dishonest: f64,
    pub disk_failures_per_year: f64,
    pub seed: u64,
    /// Days measured, after the history and the warm-up.
    pub days: u64,
    pub history_days: u64,
    pub warmup_days: u64,
    pub packs_per_subscriber: u32,
    /// Each subscriber's backup, in GiB.
    pub data_gib: f64,
    /// The coding; `None` takes `Coding::for_holders` for the network's size.
    pub coding: Option<Coding>,
    pub lost_after: Millis,
    pub repair_threshold: u32,
    /// The hub's repair budget in MiB/s (its 256 MiB per 10-second round is 25.6); `None`
    /// gives the hub's budget for the backups kept (`surplus_rules::health::repair_rate`).
    pub repair_budget_mib_s: Option<f64>,
    /// Whether a holder counted lost that returns has its still-wanted copies taken back.
    pub readopt: bool,
    /// Whether to simulate the Storj-like network too.
    pub storj_like: bool,
    /// Packs per subscriber in the Storj-like network (80 shards each make it slow).
    pub storj_packs_per_subscriber: u32,
}

impl Scenario {
    /// The defaults the durability runs led to, for a population.
    pub fn new(availability: f64, lifetime_days: f64) -> Scenario {
        Scenario {
            devices: 2000,
            availability,
            lifetime_days,
            lifetime_shape: 1.0,
            dishonest: 0.01,
            disk_failures_per_year: 0.03,
            seed: 1,
            days: 365,
            history_days: 28,
            warmup_days: 90,
            packs_per_subscriber: 4,
            data_gib: 20.0,
            coding: None,
            lost_after: LOST_AFTER,
            repair_threshold: REPAIR_THRESHOLD,
            repair_budget_mib_s: None,
            readopt: true,
            storj_like: true,
            storj_packs_per_subscriber: 1,
        }
    }

    fn setup(&self, packs_per_subscriber: u32) -> Setup {
        Setup {
            traits: Traits {
                devices: self.devices,
                availability: self.availability,
                lifetime_days: self.lifetime_days,
                lifetime_shape: self.lifetime_shape,
                dishonest: self.dishonest,
                disk_failures_per_year: self.disk_failures_per_year,
            },
            seed: self.seed,
            packs_per_subscriber,
            data_bytes: (self.data_gib * GIB) as u64,
            offered_factor: 6,
            history_days: self.history_days,
            warmup_days: self.warmup_days,
            measured_days: self.days,
        }
    }

    /// The repair budget in MiB/s: the hub's for the backups this population keeps
    /// ([`surplus_rules::health::repair_rate`]), unless the scenario fixes one.
    pub fn repair_budget_mib_s(&self) -> f64 {
        self.repair_budget_mib_s.unwrap_or_else(|| {
            let stored = (self.devices as f64 * self.data_gib * GIB) as u64;
            surplus_rules::health::repair_rate(stored) as f64 / (1u64 << 20) as f64
        })
    }

    pub fn surplus_rules(&self) -> Rules {
        let holders = self.devices.saturating_sub(1) as u32;
        Rules {
            name: "surplus".into(),
            coding: self.coding.unwrap_or_else(|| Coding::for_holders(holders)),
            presence: PresencePolicy {
                lost_after: self.lost_after,
                ..PresencePolicy::DEFAULT
            },
            audit: AuditPolicy::DEFAULT,
            repair_threshold: self.repair_threshold,
            repair_budget_per_hour: Some((self.repair_budget_mib_s() * 3600.0 * 1048576.0) as u64),
            week_aware: true,
            readopt: self.readopt,
        }
    }

    pub fn storj_rules() -> Rules {
        Rules {
            name: "storj_like".into(),
            coding: Coding {
                data: 29,
                parity: 51,
            },
            presence: PresencePolicy {
                lost_after: 4 * HOUR_MS,
                ..PresencePolicy::DEFAULT
            },
            audit: AuditPolicy::DEFAULT,
            // Repaired when 35 of 80 are left: 6 spares.
            repair_threshold: 6,
            repair_budget_per_hour: None,
            week_aware: false,
            // Storj keeps an offline node's pieces until a repair replaces them.
            readopt: true,
        }
    }
}

/// Repair latency: hours from a pack reaching its repair trigger to its repair.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub repaired: usize,
    /// Episodes that ended in the pack's loss before a repair.
    pub censored: usize,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// What one network gave.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub coding: String,
    pub lost_after_hours: f64,
    pub repair_threshold: u32,
    /// Live shards at which a pack is repaired.
    pub repair_at_live: u32,
    /// From the model; at most 99.
    pub annual_durability_nines: f64,
    /// The share of (pack, moment) samples from which `needed` shards could be fetched within
    /// the next 24 hours.
    pub restorable_24h: f64,
    /// Bytes stored on holders per byte of backup, all shards placed (`(data + parity) / data`).
    pub expansion: f64,
    /// The same, averaged over the run (lost shards wait for repair, so it is lower).
    pub expansion_measured: f64,
    /// Bytes repairs moved (shards gathered at the hub and rebuilt shards sent to new holders)
    /// per byte of backup stored, per month.
    pub repair_bytes_per_stored_byte_month: f64,
    pub audit_bytes_per_stored_byte_month: f64,
    pub audits_per_shard_month: f64,
    pub model: Option<Prediction>,
    pub observed_losses_per_pack_year: f64,
    pub pack_losses: usize,
    pub pack_years: f64,
    pub shard_losses_per_shard_year: f64,
    pub repair_latency_hours: Latency,
    pub repairs_per_pack_year: f64,
    /// Copies taken back from holders counted lost that returned, per device-year.
    pub readopted_per_device_year: f64,
    pub holders_counted_lost_per_device_year: f64,
    /// Of those, PCs that were only away (past the cap) and came back to find their shards gone.
    pub counted_lost_while_away_per_device_year: f64,
    pub disqualified: u64,
    /// The share of hours in which repairs that could proceed wanted more than the budget.
    pub repair_budget_bound_share: f64,
    pub restore_samples: u64,
    pub loss_events: Vec<LossEvent>,
}

impl Summary {
    fn of(network: &Network) -> Summary {
        let counts = &network.counts;
        let rules = &network.rules;
        let coding = rules.coding;
        let needed = u32::from(coding.data);
        let hours = counts.hours.max(1) as f64;
        let months = hours / MONTH_HOURS;
        let stored_bytes = counts.pack_hours / hours * network.pack_bytes as f64;
        let shard_loss_rate = counts.shard_losses as f64 / counts.available_shard_hours.max(1.0);
        let held_loss_rate = counts.shard_losses as f64
            / (counts.available_shard_hours - counts.staged_shard_hours).max(1.0);
        let measured = Measured {
            needed,
            shards: coding.shards(),
            trigger: rules.trigger(),
            shard_loss_rate,
            held_loss_rate,
            episode_at_risk: counts.episode_at_risk.clone(),
            repaired_after: counts.repaired_after.clone(),
            lost_after: counts.lost_after.clone(),
            restart_levels: counts.restart_levels.clone(),
        };
        let model = model::predict(&measured);
        let mut latencies = counts.repaired_after.clone();
        latencies.sort_by(f64::total_cmp);
        let pack_years = counts.pack_hours / YEAR_HOURS;
        let device_years = counts.device_hours as f64 / YEAR_HOURS;
        Summary {
            coding: format!("{}+{}", coding.data, coding.parity),
            lost_after_hours: rules.presence.lost_after as f64 / HOUR_MS as f64,
            repair_threshold: rules.repair_threshold,
            repair_at_live: rules.trigger(),
            annual_durability_nines: model.map_or(99.0, |m| m.annual_durability_nines),
            restorable_24h: 1.0
                - counts.restore_failures as f64 / counts.restore_samples.max(1) as f64,
            expansion: f64::from(coding.shards()) / f64::from(needed),
            expansion_measured: counts.stored_shard_hours * network.shard_bytes as f64
                / hours
                / stored_bytes,
            repair_bytes_per_stored_byte_month: counts.repair_bytes / months / stored_bytes,
            audit_bytes_per_stored_byte_month: (counts.audits * AUDIT_BYTES) as f64
                / months
                / stored_bytes,
            audits_per_shard_month: counts.audits as f64
                / months
                / (counts.stored_shard_hours / hours).max(1.0),
            model,
            observed_losses_per_pack_year: counts.pack_losses.len() as f64 / pack_years,
            pack_losses: counts.pack_losses.len(),
            pack_years,
            shard_losses_per_shard_year: shard_loss_rate * YEAR_HOURS,
            repair_latency_hours: Latency {
                repaired: latencies.len(),
                censored: counts.lost_after.len(),
                mean: latencies.iter().sum::<f64>() / latencies.len().max(1) as f64,
                p50: quantile(&latencies, 0.5),
                p90: quantile(&latencies, 0.9),
                p99: quantile(&latencies, 0.99),
                max: latencies.last().copied().unwrap_or(0.0),
            },
            repairs_per_pack_year: counts.repairs as f64 / pack_years,
            readopted_per_device_year: counts.readopted as f64 / device_years,
            holders_counted_lost_per_device_year: counts.holders_counted_lost as f64 / device_years,
            counted_lost_while_away_per_device_year: counts.counted_lost_while_alive as f64
                / device_years,
            disqualified: counts.disqualified,
            repair_budget_bound_share: counts.budget_bound_hours as f64 / hours,
            restore_samples: counts.restore_samples,
            loss_events: counts.pack_losses.clone(),
        }
    }
}

/// The population as asked for and as reached.
#[derive(Debug, Clone, Serialize)]
pub struct PopulationView {
    pub devices: usize,
    pub availability: f64,
    pub availability_reached: f64,
    pub lifetime_days: f64,
    pub lifetime_shape: f64,
    pub dishonest: f64,
    pub disk_failures_per_year: f64,
    pub days: u64,
    pub seed: u64,
    pub packs: usize,
    pub data_gib_per_subscriber: f64,
    pub repair_budget_mib_s: f64,
}

/// What a scenario gave: the Surplus network's numbers at the top, the Storj-like network's
/// under `storj_like`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub population: PopulationView,
    #[serde(flatten)]
    pub surplus: Summary,
    pub storj_like: Option<Summary>,
}

/// Runs one network to the end.
pub fn simulate(setup: Setup, rules: Rules) -> Network {
    let mut network = Network::new(setup, rules);
    network.run();
    network
}

/// Runs a scenario: Surplus, and the Storj-like network on the same population alongside.
pub fn run(scenario: &Scenario) -> Report {
    let surplus_setup = scenario.setup(scenario.packs_per_subscriber);
    let storj_setup = scenario.setup(scenario.storj_packs_per_subscriber);
    let (surplus, storj) = std::thread::scope(|scope| {
        let storj = scenario
            .storj_like
            .then(|| scope.spawn(move || simulate(storj_setup, Scenario::storj_rules())));
        let surplus = simulate(surplus_setup, scenario.surplus_rules());
        let storj = storj.map(|handle| match handle.join() {
            Ok(network) => network,
            Err(panic) => std::panic::resume_unwind(panic),
        });
        (surplus, storj)
    });
    Report {
        population: PopulationView {
            devices: scenario.devices,
            availability: scenario.availability,
            availability_reached: surplus.population.availability_reached(),
            lifetime_days: scenario.lifetime_days,
            lifetime_shape: scenario.lifetime_shape,
            dishonest: scenario.dishonest,
            disk_failures_per_year: scenario.disk_failures_per_year,
            days: scenario.days,
            seed: scenario.seed,
            packs: scenario.devices * scenario.packs_per_subscriber as usize,
            data_gib_per_subscriber: scenario.data_gib,
            repair_budget_mib_s: scenario.repair_budget_mib_s(),
        },
        surplus: Summary::of(&surplus),
        storj_like: storj.as_ref().map(Summary::of),
    }
}
