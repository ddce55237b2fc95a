//! When devices are there: each device's usual week and its usual absences, from the 5-minute
//! presence slots the hub records as heartbeats arrive, and from those where a holder stands now.
//!
//! A holder that has not been heard from for a while is not lost at once: home PCs are off at
//! night, over weekends and for holidays. It is **away** while its absence is within what it
//! usually does, **at risk** once it has been away longer than it ever has (and at least a day),
//! and **lost** only after a fixed cap, the hub's `lost_after`. Only lost holders' shards are
//! rebuilt elsewhere, so a region's power cut or a long weekend costs no repair traffic.

use crate::{DAY_MS, HOUR_MS, Millis};

/// The length of one presence slot (as the hub records them: slot = time / this).
pub const SLOT_MS: Millis = 5 * 60 * 1000;
/// Hours in a week: the resolution of a device's usual week.
pub const HOURS_PER_WEEK: usize = 168;
/// Presence slots in a week.
pub const SLOTS_PER_WEEK: i64 = 7 * DAY_MS / SLOT_MS;
/// The most history a week is made from: a quarter.
const MAX_WEEKS: i64 = 13;

/// The hour of the week of a moment, 0 being Monday 00:00-01:00 UTC.
pub fn hour_of_week(at: Millis) -> usize {
    // 1970-01-01 was a Thursday: the Monday before began 72 hours earlier.
    (at.div_euclid(HOUR_MS) + 72).rem_euclid(HOURS_PER_WEEK as i64) as usize
}

/// A device's usual week: for each hour of the week, the share of that hour's presence slots in
/// which it was heard over the history looked at.
#[derive(Debug, Clone, PartialEq)]
pub struct Week {
    hours: [f32; HOURS_PER_WEEK],
}

impl Week {
    /// From the slots a device was heard in (any order; duplicates and slots outside the range
    /// ignored), over the slots `first..=last` (at most the last 13 weeks of it). An hour the
    /// range does not cover counts as never there.
    pub fn from_slots(heard: &[i64], first: i64, last: i64) -> Week {
        let first = first.max(last - MAX_WEEKS * SLOTS_PER_WEEK + 1);
        let mut present = [0u32; HOURS_PER_WEEK];
        let mut slots: Vec<i64> = heard
            .iter()
            .copied()
            .filter(|s| (first..=last).contains(s))
            .collect();
        slots.sort_unstable();
        slots.dedup();
        for slot in slots {
            present[hour_of_week(slot * SLOT_MS)] += 1;
        }
        Week::from_hour_counts(&present, first, last)
    }

    /// From how many distinct slots of each hour of the week a device was heard in, within the
    /// slots `first..=last` (the hub counts them in its database, without reading every slot).
    pub fn from_hour_counts(present: &[u32; HOURS_PER_WEEK], first: i64, last: i64) -> Week {
        let first = first.max(last - MAX_WEEKS * SLOTS_PER_WEEK + 1);
        let mut possible = [0u32; HOURS_PER_WEEK];
        for slot in first..=last {
            possible[hour_of_week(slot * SLOT_MS)] += 1;
        }
        let mut hours = [0.0; HOURS_PER_WEEK];
        for hour in 0..HOURS_PER_WEEK {
            if possible[hour] > 0 {
                hours[hour] = (present[hour] as f32 / possible[hour] as f32).min(1.0);
            }
        }
        Week { hours }
    }

    /// A week given hour by hour (each clamped to 0..=1).
    pub fn from_hours(hours: [f32; HOURS_PER_WEEK]) -> Week {
        Week {
            hours: hours.map(|h| h.clamp(0.0, 1.0)),
        }
    }

    /// Always there (a NAS, a server).
    pub fn always() -> Week {
        Week {
            hours: [1.0; HOURS_PER_WEEK],
        }
    }

    /// Never seen.
    pub fn never() -> Week {
        Week {
            hours: [0.0; HOURS_PER_WEEK],
        }
    }

    /// The chance the device is there in an hour of the week.
    pub fn at(&self, hour: usize) -> f32 {
        self.hours[hour % HOURS_PER_WEEK]
    }

    /// The share of the week the device is there.
    pub fn availability(&self) -> f32 {
        self.hours.iter().sum::<f32>() / HOURS_PER_WEEK as f32
    }
}

/// How long a device usually stays away: its longest absence between two heard slots in the
/// history given (the absence going on now is not part of it). Slots may come in any order.
pub fn usual_absence(heard: &[i64]) -> Millis {
    let mut slots = heard.to_vec();
    slots.sort_unstable();
    slots.dedup();
    slots
        .windows(2)
        .map(|pair| (pair[1] - pair[0] - 1) * SLOT_MS)
        .max()
        .unwrap_or(0)
}

/// Where a holder stands now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Standing {
    /// Heard within the hub's online window.
    Online,
    /// Not heard lately, but no longer than it usually stays away.
    Away,
    /// Away longer than it usually is: its shards may not come back.
    AtRisk,
    /// Away past the cap, revoked or gone: its shards are rebuilt elsewhere.
    Lost,
}

/// How presence becomes a standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresencePolicy {
    /// Heard within this long: online (the hub's three missed heartbeats).
    pub online_window: Millis,
    /// Away at least this long before a device can be at risk, however regular it was.
    pub at_risk_floor: Millis,
    /// Away this long: lost (the hub's `lost_after`).
    pub lost_after: Millis,
}

impl PresencePolicy {
    /// The defaults: online within 90 s, at risk after a day at least, lost after 4 days.
    /// `surplus-sim`'s durability runs chose the cap (see `scripts/bench-durability`): at 7 days
    /// a repair of 8+20 waits a week while the pack's other holders may leave too (about 15
    /// nines at 40% availability and 180-day lifetimes, under 10 at 30% and 90 days); at 4 days
    /// it is about 19 and 14, for some 13% more repair traffic (holders away on a long weekend
    /// are counted lost, and their copies taken back if no repair needed them meanwhile).
    pub const DEFAULT: PresencePolicy = PresencePolicy {
        online_window: 90_000,
        at_risk_floor: DAY_MS,
        lost_after: 4 * DAY_MS,
    };

    /// A holder's standing at `now`: last heard at `last_heard` (or, never heard, registered at
    /// `since`), usually away at most `usual_absence`.
    pub fn standing(
        &self,
        last_heard: Option<Millis>,
        since: Millis,
        usual_absence: Millis,
        now: Millis,
    ) -> Standing {
        let away = now.saturating_sub(last_heard.unwrap_or(since)).max(0);
        if away >= self.lost_after {
            Standing::Lost
        } else if away <= self.online_window {
            Standing::Online
        } else if away > usual_absence.max(self.at_risk_floor) {
            Standing::AtRisk
        } else {
            Standing::Away
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-30 was a Monday.
    const MONDAY: Millis = 1_795_996_800_000;

    #[test]
    fn hours_of_the_week_start_on_monday() {
        assert_eq!(hour_of_week(MONDAY), 0);
        assert_eq!(hour_of_week(MONDAY + 25 * HOUR_MS + 59 * 60_000), 25);
        assert_eq!(hour_of_week(MONDAY - 1), HOURS_PER_WEEK - 1);
        assert_eq!(hour_of_week(0), 72, "the epoch was a Thursday");
    }

    #[test]
    fn a_week_counts_each_hour_by_its_own_slots() {
        let first = MONDAY / SLOT_MS;
        let last = first + 2 * 2016 - 1;
        // Heard every evening 18:00-23:00 for two weeks, and once more outside the range.
        let heard: Vec<i64> = (first..=last)
            .filter(|s| (18..23).contains(&(hour_of_week(s * SLOT_MS) % 24)))
            .chain([last + 5])
            .collect();
        let week = Week::from_slots(&heard, first, last);
        assert_eq!(week.at(18), 1.0);
        assert_eq!(week.at(24 + 22), 1.0);
        assert_eq!(week.at(12), 0.0);
        assert!((week.availability() - 5.0 / 24.0).abs() < 1e-6);
        // The hub's per-hour counts give the same week.
        let mut counts = [0u32; HOURS_PER_WEEK];
        for slot in heard.iter().filter(|s| (first..=last).contains(*s)) {
            counts[hour_of_week(slot * SLOT_MS)] += 1;
        }
        assert_eq!(Week::from_hour_counts(&counts, first, last), week);
        assert_eq!(Week::always().availability(), 1.0);
    }

    #[test]
    fn the_usual_absence_is_the_longest_gap_seen() {
        assert_eq!(usual_absence(&[]), 0);
        assert_eq!(usual_absence(&[7]), 0);
        assert_eq!(usual_absence(&[10, 11, 12]), 0);
        assert_eq!(usual_absence(&[30, 10, 11, 20, 20]), 9 * SLOT_MS);
    }

    #[test]
    fn standing_follows_the_absence() {
        let policy = PresencePolicy::DEFAULT;
        let now = MONDAY + 30 * DAY_MS;
        let heard = |ago| Some(now - ago);
        assert_eq!(policy.standing(heard(10_000), 0, 0, now), Standing::Online);
        assert_eq!(policy.standing(heard(HOUR_MS), 0, 0, now), Standing::Away);
        // Never longer than a day at least, however regular the device is.
        assert_eq!(
            policy.standing(heard(DAY_MS - 1), 0, 0, now),
            Standing::Away
        );
        assert_eq!(
            policy.standing(heard(DAY_MS + 1), 0, 0, now),
            Standing::AtRisk
        );
        // A PC that is often off over a weekend is not at risk after a day and a half.
        let weekend = 2 * DAY_MS + 12 * HOUR_MS;
        assert_eq!(
            policy.standing(heard(DAY_MS + 12 * HOUR_MS), 0, weekend, now),
            Standing::Away
        );
        assert_eq!(
            policy.standing(heard(3 * DAY_MS), 0, weekend, now),
            Standing::AtRisk
        );
        // Past the cap it is lost, whatever it usually does.
        assert_eq!(
            policy.standing(heard(policy.lost_after), 0, 30 * DAY_MS, now),
            Standing::Lost
        );
        // Never heard: counted from registration.
        assert_eq!(policy.standing(None, now - HOUR_MS, 0, now), Standing::Away);
        assert_eq!(
            policy.standing(None, now - 8 * DAY_MS, 0, now),
            Standing::Lost
        );
    }
}
