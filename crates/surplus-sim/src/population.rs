//! The people and their PCs: when each PC is on, how long it stays in the network, whether its
//! disk fails and whether its owner cheats. Nothing here knows about packs or the hub; two
//! populations made from the same seed live exactly the same lives, so that two sets of rules
//! can be compared on one population.
//!
//! The habits are assumptions, chosen to be harder than a typical office PC, not measured:
//!
//! - **always on** (8%): a NAS or a home server, off for an hour or a few about once a month;
//! - **day worker** (45%): on for a stretch starting between 07:00 and 10:00 on most weekdays
//!   (92%) and half the weekend days;
//! - **night owl** (30%): on for a stretch starting between 17:00 and 21:00 on 85% of days;
//! - **irregular** (25%): sessions of three hours on average at any time of the week.
//!
//! Every PC but the always-on ones is also away about four times a year: mostly long weekends
//! (2-4 days), sometimes a holiday (5-10 days), now and then a long one (11-21 days), which is
//! what the lost-after cap has to tell from a PC that is gone. A PC's availability is drawn from
//! `0.1 + 0.8 U^p`, with `p` chosen so that the population's mean is the one asked for; its
//! daily stretch (or session pattern) is sized to give that availability, absences included.
//!
//! A PC leaves the network after a lifetime drawn from a Weibull distribution (shape 1 is the
//! exponential) and its owner comes back at once with a new, empty PC: the population stays the
//! same size and the owner's backups stay wanted.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Hours in a day and a week, on the simulator's clock (hour 0 is a Monday 00:00).
pub const DAY_HOURS: u64 = 24;
pub const WEEK_HOURS: u64 = 7 * DAY_HOURS;
const YEAR_HOURS: f64 = 365.0 * 24.0;

const ALWAYS_ON_SHARE: f64 = 0.08;
/// An always-on PC's share of hours on: one outage of 6.5 hours on average a month.
const ALWAYS_ON_AVAILABILITY: f64 = 1.0 - 6.5 / 720.0;
const ABSENCES_PER_YEAR: f64 = 4.0;

/// How a PC is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Habit {
    AlwaysOn,
    DayWorker,
    NightOwl,
    Irregular,
}

/// What the population is like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Traits {
    /// PCs at any time (each its own subscriber's).
    pub devices: usize,
    /// The population's mean share of hours on.
    pub availability: f64,
    pub lifetime_days: f64,
    /// The Weibull shape of lifetimes: 1 exponential, below 1 many leave early.
    pub lifetime_shape: f64,
    /// The share of PCs whose owners discard what they are given and pretend to hold it.
    pub dishonest: f64,
    /// The chance a PC's disk fails in a year (the PC carries on with an empty one).
    pub disk_failures_per_year: f64,
}

/// One PC.
#[derive(Debug, Clone)]
pub struct Device {
    pub subscriber: usize,
    pub habit: Habit,
    pub alive: bool,
    /// On during the current hour.
    pub online: bool,
    pub dishonest: bool,
    leaves_at: u64,
    /// The hour of the day a day worker's or night owl's stretch starts, and its length.
    stretch_start: u64,
    stretch_hours: u64,
    /// Whether today's stretch happens.
    stretch_today: bool,
    /// Irregular: the hourly chances of a session ending, and of one starting.
    session_ends: f64,
    session_starts: f64,
    /// Away (absence or outage) until this hour.
    away_until: u64,
}

/// What changed in an hour.
#[derive(Debug, Default)]
pub struct Changes {
    pub joined: Vec<usize>,
    pub left: Vec<usize>,
    pub disk_failed: Vec<usize>,
}

#[derive(Debug)]
pub struct Population {
    traits: Traits,
    rng: StdRng,
    pub devices: Vec<Device>,
    /// The exponent `p` of `0.1 + 0.8 U^p` that gives the mean availability asked for.
    availability_exponent: f64,
    lifetime_scale_hours: f64,
    /// Hours on and hours alive, for the availability actually reached.
    pub online_hours: u64,
    pub alive_hours: u64,
}

impl Population {
    pub fn new(traits: Traits, seed: u64) -> Population {
        let others = ((traits.availability - ALWAYS_ON_SHARE * ALWAYS_ON_AVAILABILITY)
            / (1.0 - ALWAYS_ON_SHARE))
            .clamp(0.11, 0.89);
        let shape = traits.lifetime_shape.max(0.1);
        let mut population = Population {
            traits,
            rng: StdRng::seed_from_u64(seed),
            devices: Vec::with_capacity(traits.devices * 2),
            availability_exponent: 0.8 / (others - 0.1) - 1.0,
            lifetime_scale_hours: traits.lifetime_days * 24.0 / gamma(1.0 + 1.0 / shape),
            online_hours: 0,
            alive_hours: 0,
        };
        for subscriber in 0..traits.devices {
            let device = population.new_device(subscriber, 0, true);
            population.devices.push(device);
        }
        population
    }

    /// Lives one hour, `hour` (from 0).
    pub fn step(&mut self, hour: u64) -> Changes {
        let mut changes = Changes::default();
        let existing = self.devices.len();
        for index in 0..existing {
            if !self.devices[index].alive {
                continue;
            }
            if hour >= self.devices[index].leaves_at {
                let device = &mut self.devices[index];
                device.alive = false;
                device.online = false;
                let subscriber = device.subscriber;
                changes.left.push(index);
                let replacement = self.new_device(subscriber, hour, false);
                self.devices.push(replacement);
                changes.joined.push(self.devices.len() - 1);
                continue;
            }
            if self
                .rng
                .gen_bool(self.traits.disk_failures_per_year / YEAR_HOURS)
            {
                changes.disk_failed.push(index);
            }
        }
        for index in 0..self.devices.len() {
            if self.devices[index].alive {
                self.live_hour(index, hour);
            }
        }
        changes
    }

    /// Whether a PC is on during `hour`.
    fn live_hour(&mut self, index: usize, hour: u64) {
        let rng = &mut self.rng;
        let device = &mut self.devices[index];
        let hour_of_day = hour % DAY_HOURS;
        if device.habit == Habit::AlwaysOn {
            if hour >= device.away_until && rng.gen_bool(1.0 / 720.0) {
                device.away_until = hour + rng.gen_range(1..=12);
            }
        } else if hour_of_day == 0
            && hour >= device.away_until
            && rng.gen_bool(ABSENCES_PER_YEAR / 365.0)
        {
            device.away_until = hour + DAY_HOURS * absence_days(rng);
        }
        let online = if hour < device.away_until {
            false
        } else {
            match device.habit {
                Habit::AlwaysOn => true,
                Habit::DayWorker | Habit::NightOwl => {
                    if hour_of_day == device.stretch_start {
                        let weekend = (hour / DAY_HOURS) % 7 >= 5;
                        let chance = match (device.habit, weekend) {
                            (Habit::DayWorker, false) => 0.92,
                            (Habit::DayWorker, true) => 0.5,
                            _ => 0.85,
                        };
                        device.stretch_today = rng.gen_bool(chance);
                    }
                    let into = (hour_of_day + DAY_HOURS - device.stretch_start) % DAY_HOURS;
                    device.stretch_today && into < device.stretch_hours
                }
                Habit::Irregular => {
                    if device.online {
                        !rng.gen_bool(device.session_ends)
                    } else {
                        rng.gen_bool(device.session_starts)
                    }
                }
            }
        };
        device.online = online;
        self.alive_hours += 1;
        self.online_hours += u64::from(online);
    }

    fn new_device(&mut self, subscriber: usize, hour: u64, founding: bool) -> Device {
        let rng = &mut self.rng;
        let habit = if rng.gen_bool(ALWAYS_ON_SHARE) {
            Habit::AlwaysOn
        } else {
            match rng.gen_range(0..100) {
                0..45 => Habit::DayWorker,
                45..75 => Habit::NightOwl,
                _ => Habit::Irregular,
            }
        };
        let availability = 0.1 + 0.8 * rng.r#gen::<f64>().powf(self.availability_exponent);
        // The share of days not taken by absences.
        let mean_absence_days = 0.7 * 3.0 + 0.25 * 7.5 + 0.05 * 16.0;
        let present = 1.0 - ABSENCES_PER_YEAR * mean_absence_days / 365.0;
        let (stretch_start, stretch_share) = match habit {
            Habit::DayWorker => (rng.gen_range(7..=10), (5.0 * 0.92 + 2.0 * 0.5) / 7.0),
            Habit::NightOwl => (rng.gen_range(17..=21), 0.85),
            _ => (0, 1.0),
        };
        // Rounded at random, so that stretches give the availability drawn on average.
        let hours = 24.0 * availability / (stretch_share * present);
        let stretch_hours =
            (hours.floor() as u64 + u64::from(rng.gen_bool(hours.fract()))).clamp(1, DAY_HOURS - 1);
        let on_share = (availability / present).min(0.95);
        let session_ends = 1.0 / 3.0;
        let session_starts = (session_ends * on_share / (1.0 - on_share)).min(1.0);
        let shape = self.traits.lifetime_shape.max(0.1);
        let scale = self.lifetime_scale_hours;
        let lifetime =
            |rng: &mut StdRng| scale * (-(1.0 - rng.r#gen::<f64>()).ln()).powf(1.0 / shape);
        let remaining = if founding {
            // A founding PC is met at a random moment of its life: its lifetime is drawn
            // length-biased (rejection against ten means) and it has lived a uniform part of it.
            let cap = 10.0 * self.traits.lifetime_days * 24.0;
            let whole = loop {
                let candidate = lifetime(rng);
                if candidate >= cap || rng.gen_bool(candidate / cap) {
                    break candidate;
                }
            };
            whole * rng.r#gen::<f64>()
        } else {
            lifetime(rng)
        };
        Device {
            subscriber,
            habit,
            alive: true,
            online: false,
            dishonest: rng.gen_bool(self.traits.dishonest),
            leaves_at: hour + remaining.ceil().max(1.0) as u64,
            stretch_start,
            stretch_hours,
            stretch_today: rng.gen_bool(0.8),
            session_ends,
            session_starts,
            away_until: 0,
        }
    }

    /// The share of hours PCs were on, over the whole run.
    pub fn availability_reached(&self) -> f64 {
        self.online_hours as f64 / self.alive_hours.max(1) as f64
    }
}

/// An absence's length in days: mostly long weekends, sometimes a holiday, now and then a long
/// one.
fn absence_days(rng: &mut StdRng) -> u64 {
    match rng.gen_range(0..100) {
        0..70 => rng.gen_range(2..=4),
        70..95 => rng.gen_range(5..=10),
        _ => rng.gen_range(11..=21),
    }
}

/// The gamma function (Lanczos, g = 7), for the scale of a Weibull distribution of a given mean.
fn gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return std::f64::consts::PI / ((std::f64::consts::PI * x).sin() * gamma(1.0 - x));
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let sum = G[1..]
        .iter()
        .enumerate()
        .fold(G[0], |sum, (i, g)| sum + g / (x + i as f64 + 1.0));
    (2.0 * std::f64::consts::PI).sqrt() * t.powf(x + 0.5) * (-t).exp() * sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traits(availability: f64, lifetime_days: f64, shape: f64) -> Traits {
        Traits {
            devices: 400,
            availability,
            lifetime_days,
            lifetime_shape: shape,
            dishonest: 0.0,
            disk_failures_per_year: 0.0,
        }
    }

    #[test]
    fn the_gamma_function_is_right_where_weibull_scales_need_it() {
        assert!((gamma(1.0) - 1.0).abs() < 1e-12);
        assert!((gamma(2.0) - 1.0).abs() < 1e-12);
        assert!((gamma(3.0) - 2.0).abs() < 1e-12);
        assert!((gamma(1.5) - std::f64::consts::PI.sqrt() / 2.0).abs() < 1e-12);
    }

    #[test]
    fn the_population_reaches_the_availability_and_lifetimes_asked_for() {
        for (availability, shape) in [(0.4, 1.0), (0.3, 0.7)] {
            let mut population = Population::new(traits(availability, 30.0, shape), 7);
            let days = 120;
            let mut left = 0;
            for hour in 0..days * DAY_HOURS {
                let changes = population.step(hour);
                left += changes.left.len();
                assert_eq!(changes.left.len(), changes.joined.len());
            }
            let reached = population.availability_reached();
            assert!(
                (reached - availability).abs() < 0.03,
                "availability {reached} for {availability}"
            );
            // 400 PCs living 30 days on average over 120 days: about 1600 leave.
            let expected = 400.0 * days as f64 / 30.0;
            assert!(
                (left as f64 - expected).abs() < 0.15 * expected,
                "{left} left, {expected} expected"
            );
            assert_eq!(population.devices.iter().filter(|d| d.alive).count(), 400);
        }
    }

    #[test]
    fn the_same_seed_lives_the_same_lives() {
        let mut one = Population::new(traits(0.4, 10.0, 1.0), 3);
        let mut two = Population::new(traits(0.4, 10.0, 1.0), 3);
        for hour in 0..500 {
            one.step(hour);
            two.step(hour);
        }
        let states = |p: &Population| p.devices.iter().map(|d| d.online).collect::<Vec<_>>();
        assert_eq!(states(&one), states(&two));
    }
}
