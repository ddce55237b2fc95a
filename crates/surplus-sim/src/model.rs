//! Durability from a model of one pack, since eleven nines cannot be watched happen.
//!
//! A pack's shards that can still be fetched (held intact by a PC that has not left, or staged
//! at the hub) form a birth-death chain over `shards .. needed - 1`, `needed - 1` being loss.
//! Each live shard is lost at the rate the simulation measured (PCs leaving, disks failing,
//! cheats found out, holders counted lost while away). Repair is not a rate: once the pack is
//! down to its repair trigger (`needed + threshold` live), it waits for the hub to count the
//! holders lost, for `needed` holders to be on at once and for the repair budget, and that
//! latency is taken as the distribution the simulation measured (Kaplan-Meier, since episodes
//! that end in a loss only say the repair would have taken longer). A repair brings the pack
//! back to the level the simulation saw repairs end at (all shards, less those whose holders
//! are gone but not yet counted lost).
//!
//! One cycle: from the level a repair left, shards are lost one by one down to the trigger (a
//! sum of exponentials, means `1 / (j λ)`); then a repair of latency `r` races the next
//! `threshold + 1` losses among the shards left. Those staged at the hub (rebuilt, waiting for
//! their new holders) cannot be lost; each of the others is lost by `r` with probability
//! `1 - e^{-λ' r}`, `λ'` the loss rate of shards held by PCs, and how many are at risk when an
//! episode begins is taken as measured too. The pack's loss rate is the chance a cycle ends in loss over a cycle's mean
//! length (a renewal argument), and the annual loss probability follows from it.

use serde::Serialize;

pub const YEAR_HOURS: f64 = 365.0 * 24.0;

/// What the model is given, all of it measured by the simulation.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub needed: u32,
    pub shards: u32,
    /// Live shards at or below which a pack is in a repair episode.
    pub trigger: u32,
    /// Losses per live shard per hour.
    pub shard_loss_rate: f64,
    /// Losses per live shard held by a PC per hour (staged shards are not lost).
    pub held_loss_rate: f64,
    /// How many episodes began with each number of shards at risk (live and held by PCs; the
    /// others are staged at the hub). Empty: all `trigger` at risk.
    pub episode_at_risk: Vec<u64>,
    /// Repair episodes that ended in a repair: hours from reaching the trigger to the repair.
    pub repaired_after: Vec<f64>,
    /// Episodes that ended in the pack's loss: the repair took longer than these hours.
    pub lost_after: Vec<f64>,
    /// How many repairs (or fresh uploads after a loss) left a pack at each live count.
    pub restart_levels: Vec<u64>,
}

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prediction {
    /// The chance a repair episode ends in the pack's loss.
    pub loss_per_episode: f64,
    /// A cycle's mean length in hours: down to the trigger, then the episode.
    pub cycle_hours: f64,
    pub losses_per_pack_year: f64,
    pub annual_loss_probability: f64,
    /// `-log10` of the annual loss probability, at most 99 (a probability below the precision
    /// of the arithmetic).
    pub annual_durability_nines: f64,
}

/// The repair latency's distribution: (hours, probability mass), by Kaplan-Meier over repaired
/// and censored episodes. Mass left beyond the last time seen is put on that time.
pub fn latency_distribution(repaired: &[f64], censored: &[f64]) -> Vec<(f64, f64)> {
    let mut times: Vec<(f64, bool)> = repaired
        .iter()
        .map(|&t| (t, true))
        .chain(censored.iter().map(|&t| (t, false)))
        .collect();
    // At equal times, repairs come before censoring (the usual convention).
    times.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut at_risk = times.len() as f64;
    let mut surviving = 1.0;
    let mut masses = Vec::new();
    for (time, repaired) in &times {
        if *repaired {
            let mass = surviving / at_risk;
            surviving -= mass;
            masses.push((*time, mass));
        }
        at_risk -= 1.0;
    }
    if surviving > 1e-15
        && let Some((last, _)) = times.last()
    {
        masses.push((*last, surviving));
    }
    masses
}

/// The chance that at least `k` of `n` independent trials, each succeeding with chance `p`,
/// succeed.
pub fn binomial_tail(n: u32, k: u32, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    let mut total = 0.0;
    let mut choose = 1.0f64;
    for j in 0..=n {
        if j > 0 {
            choose = choose * f64::from(n - j + 1) / f64::from(j);
        }
        if j >= k {
            total += choose * p.powi(j as i32) * (1.0 - p).powi((n - j) as i32);
        }
    }
    total.min(1.0)
}

pub fn predict(measured: &Measured) -> Option<Prediction> {
    let rate = measured.shard_loss_rate;
    let trigger = measured.trigger;
    if rate <= 0.0 || trigger < measured.needed {
        return None;
    }
    let latency = latency_distribution(&measured.repaired_after, &measured.lost_after);
    if latency.is_empty() {
        return None;
    }
    // Losses during an episode that lose the pack, among those at risk.
    let fatal = trigger - measured.needed + 1;
    let held_rate = if measured.held_loss_rate > 0.0 {
        measured.held_loss_rate
    } else {
        rate
    };
    let episodes: u64 = measured.episode_at_risk.iter().sum();
    let at_risk: Vec<(u32, f64)> = if episodes == 0 {
        vec![(trigger, 1.0)]
    } else {
        measured
            .episode_at_risk
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(level, count)| (level as u32, *count as f64 / episodes as f64))
            .collect()
    };
    let lost_by = |hours: f64| -> f64 {
        let p = -(-held_rate * hours).exp_m1();
        at_risk
            .iter()
            .map(|(shards, share)| share * binomial_tail(*shards, fatal, p))
            .sum()
    };
    let loss_per_episode: f64 = latency.iter().map(|(r, mass)| mass * lost_by(*r)).sum();
    // An episode lasts until the repair or the loss, whichever comes first.
    let episode_hours: f64 = latency
        .iter()
        .map(|(r, mass)| {
            let steps = 64;
            let width = r / f64::from(steps);
            let still_there: f64 = (0..steps)
                .map(|i| 1.0 - lost_by((f64::from(i) + 0.5) * width))
                .sum();
            mass * still_there * width
        })
        .sum();
    let restarts: u64 = measured.restart_levels.iter().sum();
    let down_to_trigger = |level: u32| -> f64 {
        (trigger + 1..=level)
            .map(|live| 1.0 / (f64::from(live) * rate))
            .sum()
    };
    let descent_hours = if restarts == 0 {
        down_to_trigger(measured.shards)
    } else {
        measured
            .restart_levels
            .iter()
            .enumerate()
            .map(|(level, count)| *count as f64 * down_to_trigger(level as u32))
            .sum::<f64>()
            / restarts as f64
    };
    let cycle_hours = descent_hours + episode_hours;
    let losses_per_pack_year = loss_per_episode / cycle_hours * YEAR_HOURS;
    let annual_loss_probability = -(-losses_per_pack_year).exp_m1();
    let annual_durability_nines = if annual_loss_probability > 0.0 {
        (-annual_loss_probability.log10()).min(99.0)
    } else {
        99.0
    };
    Some(Prediction {
        loss_per_episode,
        cycle_hours,
        losses_per_pack_year,
        annual_loss_probability,
        annual_durability_nines,
    })
}

/// A quantile of a sample (nearest rank), or 0 for none.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn binomial_tails_add_up() {
        assert!((binomial_tail(4, 0, 0.3) - 1.0).abs() < 1e-12);
        assert!((binomial_tail(1, 1, 0.3) - 0.3).abs() < 1e-12);
        // At least 2 of 3 at one half: 4 of 8 outcomes.
        assert!((binomial_tail(3, 2, 0.5) - 0.5).abs() < 1e-12);
        assert_eq!(binomial_tail(3, 4, 0.9), 0.0);
        // Tiny tails keep their precision.
        let tiny = binomial_tail(22, 15, 1e-3);
        assert!(tiny > 1.6e-40 && tiny < 1.8e-40, "{tiny}");
    }

    #[test]
    fn kaplan_meier_spreads_censored_mass_over_longer_times() {
        let d = latency_distribution(&[1.0, 3.0], &[]);
        assert_eq!(d, vec![(1.0, 0.5), (3.0, 0.5)]);
        // One episode censored at 2: the repair at 3 takes the mass it would have had.
        let d = latency_distribution(&[1.0, 3.0], &[2.0]);
        assert!((d[0].1 - 1.0 / 3.0).abs() < 1e-12);
        assert!((d[1].1 - 2.0 / 3.0).abs() < 1e-12);
        // Censored last: its mass stays at its time.
        let d = latency_distribution(&[1.0], &[5.0]);
        assert_eq!(d.len(), 2);
        assert!((d.iter().map(|m| m.1).sum::<f64>() - 1.0).abs() < 1e-12);
    }

    /// The model against a direct Monte Carlo of the process it describes: a pack of `shards`
    /// whose live shards die at a rate, repaired back to full a random latency after reaching
    /// its trigger.
    #[test]
    fn the_model_matches_the_process_it_describes() {
        let (needed, shards, trigger) = (2u32, 5u32, 3u32);
        let rate = 1.0 / 100.0;
        let latencies = [5.0, 20.0, 60.0];
        let mut rng = StdRng::seed_from_u64(11);
        let (mut hours, mut losses) = (0.0, 0u64);
        let mut repaired_after = Vec::new();
        let mut lost_after = Vec::new();
        let mut live = shards;
        while hours < 5e7 {
            let wait = -(1.0 - rng.r#gen::<f64>()).ln() / (f64::from(live) * rate);
            hours += wait;
            live -= 1;
            if live == trigger {
                let latency = latencies[rng.gen_range(0..3)];
                let mut spent = 0.0;
                loop {
                    let next = -(1.0 - rng.r#gen::<f64>()).ln() / (f64::from(live) * rate);
                    if spent + next >= latency {
                        hours += latency;
                        repaired_after.push(latency);
                        break;
                    }
                    spent += next;
                    live -= 1;
                    if live < needed {
                        hours += spent;
                        losses += 1;
                        lost_after.push(spent);
                        break;
                    }
                }
                live = shards;
            }
        }
        let measured = Measured {
            needed,
            shards,
            trigger,
            shard_loss_rate: rate,
            held_loss_rate: rate,
            episode_at_risk: Vec::new(),
            repaired_after,
            lost_after,
            restart_levels: Vec::new(),
        };
        let predicted = predict(&measured).expect("a prediction");
        let observed = losses as f64 / hours * YEAR_HOURS;
        let ratio = predicted.losses_per_pack_year / observed;
        assert!(
            (0.9..1.1).contains(&ratio),
            "model {} against {observed} observed",
            predicted.losses_per_pack_year
        );
    }
}
