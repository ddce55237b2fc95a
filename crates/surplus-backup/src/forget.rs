//! Which snapshots to keep, as restic's `forget --keep-*` decides: the last N, and the newest of
//! each of the last N days, weeks and months. A snapshot kept by any rule is kept. Pure: the
//! caller gives the snapshots' times and the local offset from UTC.

use std::collections::HashSet;

/// How many of each to keep. All zero keeps nothing, so callers refuse that.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub last: usize,
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
}

impl Retention {
    pub fn keeps_nothing(&self) -> bool {
        self.last + self.daily + self.weekly + self.monthly == 0
    }
}

/// The indexes (into `times`, milliseconds since the epoch) of the snapshots to keep.
pub fn keep(times: &[i64], retention: Retention, utc_offset_minutes: i32) -> HashSet<usize> {
    let mut order: Vec<usize> = (0..times.len()).collect();
    // Newest first; ties by index, so the result does not depend on the input's order.
    order.sort_by_key(|&i| (std::cmp::Reverse(times[i]), i));
    let mut kept: HashSet<usize> = order.iter().take(retention.last).copied().collect();
    let local_day = |ms: i64| (ms + i64::from(utc_offset_minutes) * 60_000).div_euclid(86_400_000);
    let buckets: [(usize, &dyn Fn(i64) -> i64); 3] = [
        (retention.daily, &|ms| local_day(ms)),
        // Days since the epoch, shifted so that weeks start on Monday (1970-01-01 was a Thursday).
        (retention.weekly, &|ms| (local_day(ms) + 3).div_euclid(7)),
        (retention.monthly, &|ms| month_of(local_day(ms))),
    ];
    for (count, bucket) in buckets {
        let mut seen = HashSet::new();
        for &i in &order {
            if seen.len() == count {
                break;
            }
            if seen.insert(bucket(times[i])) {
                kept.insert(i);
            }
        }
    }
    kept
}

/// Year * 12 + month of a day counted from 1970-01-01 (proleptic Gregorian; Howard Hinnant's
/// civil-from-days).
fn month_of(days: i64) -> i64 {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    year * 12 + month - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;
    /// 2026-03-02T12:00:00Z, a Monday.
    const MONDAY: i64 = 1_772_452_800_000;

    fn kept(times: &[i64], retention: Retention) -> Vec<usize> {
        let mut kept: Vec<usize> = keep(times, retention, 0).into_iter().collect();
        kept.sort();
        kept
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let times = [MONDAY, MONDAY + HOUR, MONDAY + 2 * HOUR, MONDAY - HOUR];
        assert_eq!(
            kept(
                &times,
                Retention {
                    last: 2,
                    ..Retention::default()
                }
            ),
            [1, 2]
        );
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        // Two a day for four days.
        let times: Vec<i64> = (0..8)
            .map(|i| MONDAY + (i / 2) * DAY + (i % 2) * HOUR)
            .collect();
        assert_eq!(
            kept(
                &times,
                Retention {
                    daily: 3,
                    ..Retention::default()
                }
            ),
            [3, 5, 7]
        );
    }

    #[test]
    fn weekly_and_monthly_buckets() {
        // Sunday and the Monday after fall in different weeks; Mon and Sat in the same.
        let sunday = MONDAY - DAY;
        let saturday = MONDAY + 5 * DAY;
        assert_eq!(
            kept(
                &[sunday, MONDAY, saturday],
                Retention {
                    weekly: 5,
                    ..Retention::default()
                }
            ),
            [0, 2]
        );
        assert_eq!(month_of(0), 1970 * 12);
        assert_eq!(
            month_of((MONDAY / DAY) - 1),
            2026 * 12 + 2,
            "2026-03-01 is in March"
        );
        assert_eq!(
            month_of((MONDAY / DAY) - 2),
            2026 * 12 + 1,
            "2026-02-28 is in February"
        );
        let months: Vec<i64> = (0..6).map(|i| MONDAY - i * 20 * DAY).collect();
        assert_eq!(
            kept(
                &months,
                Retention {
                    monthly: 2,
                    ..Retention::default()
                }
            ),
            [0, 1]
        );
    }

    #[test]
    fn rules_add_up_and_the_local_offset_moves_days() {
        let times = [MONDAY - 2 * DAY, MONDAY - DAY, MONDAY];
        assert_eq!(
            kept(
                &times,
                Retention {
                    last: 1,
                    daily: 2,
                    ..Retention::default()
                }
            ),
            [1, 2]
        );
        assert!(Retention::default().keeps_nothing());
        // 23:30 and 00:30 UTC are one local day at UTC+2 (01:30 and 02:30 the next day).
        let late = MONDAY + 11 * HOUR + HOUR / 2;
        let pair = [late, late + HOUR];
        assert_eq!(
            keep(
                &pair,
                Retention {
                    daily: 5,
                    ..Retention::default()
                },
                0
            )
            .len(),
            2
        );
        assert_eq!(
            keep(
                &pair,
                Retention {
                    daily: 5,
                    ..Retention::default()
                },
                120
            )
            .len(),
            1
        );
    }
}
