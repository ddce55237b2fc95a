//! Judging a task's results: quorum, and trust as in BOINC's adaptive replication.
//!
//! Donors are untrusted. Each task runs on several devices, of different subscribers, and its
//! result is an output that `quorum` of them returned byte for byte (compared by hash). A run
//! whose output disagrees with the agreed one is invalid, and its device's trust streak starts
//! over. A device with a long streak of valid results is *trusted*: a task first sent to it may
//! be accepted on its result alone, and the chance that it is still replicated falls as the streak
//! grows (never below [`MIN_REPLICATION`], so that trusted devices keep being checked).
//!
//! Everything here is pure, so that the rules are tested without a database.

use std::collections::HashMap;

use surplus_protocol::{BlobRef, MAX_TASK_ERRORS, RunState};
use uuid::Uuid;

use crate::store::RunRow;

/// Valid results in a row after which a device is trusted.
pub const TRUST_STREAK: u32 = 10;

/// The least chance that a trusted device's task is still replicated.
pub const MIN_REPLICATION: f64 = 0.05;

/// How many results beyond the quorum a task may collect without agreement before it fails.
pub const EXTRA_RESULTS: u32 = 4;

/// The chance that a task whose first run goes to a device with this streak is replicated:
/// always until the device is trusted, then `TRUST_STREAK / streak`, at least [`MIN_REPLICATION`].
pub fn replication_probability(streak: u32) -> f64 {
    if streak < TRUST_STREAK {
        1.0
    } else {
        (f64::from(TRUST_STREAK) / f64::from(streak)).max(MIN_REPLICATION)
    }
}

/// Whether a task first sent to a device with this streak is accepted on its result alone,
/// given a uniform `roll` in [0, 1).
pub fn accept_alone(streak: u32, roll: f64) -> bool {
    roll >= replication_probability(streak)
}

/// What a task's runs say.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Enough runs are out; wait for them.
    Waiting,
    /// This many more runs are needed.
    NeedRuns(u32),
    /// A quorum agreed on `output`; `valid` runs returned it, `invalid` ones returned another.
    Agreed {
        output: BlobRef,
        valid: Vec<Uuid>,
        invalid: Vec<Uuid>,
    },
    /// The task cannot succeed: the reason.
    Failed(String),
}

/// Judges a task from its runs.
pub fn judge(quorum: u32, runs: &[RunRow]) -> Verdict {
    let quorum = quorum.max(1);
    // Outputs returned (and not yet judged invalid), grouped by content.
    let mut groups: HashMap<&str, Vec<&RunRow>> = HashMap::new();
    for run in runs {
        if let (RunState::Returned | RunState::Valid, Some(output)) = (run.state, &run.output) {
            groups.entry(output.hash.as_str()).or_default().push(run);
        }
    }
    let best = groups
        .values()
        .max_by_key(|group| (group.len(), group.iter().map(|r| r.id).min()))
        .map_or(0, |group| group.len() as u32);
    if best >= quorum
        && let Some(group) = groups.values().find(|group| group.len() as u32 == best)
    {
        let output = group[0].output.clone().unwrap_or(BlobRef {
            hash: String::new(),
            size: 0,
        });
        let valid = group.iter().map(|r| r.id).collect();
        let invalid = runs
            .iter()
            .filter(|r| {
                r.state == RunState::Returned
                    && r.output.as_ref().is_some_and(|o| o.hash != output.hash)
            })
            .map(|r| r.id)
            .collect();
        return Verdict::Agreed {
            output,
            valid,
            invalid,
        };
    }
    let errors = runs.iter().filter(|r| r.state == RunState::Failed).count() as u32;
    if errors >= MAX_TASK_ERRORS {
        return Verdict::Failed(format!("its runs failed on {errors} devices"));
    }
    let results = runs
        .iter()
        .filter(|r| {
            matches!(
                r.state,
                RunState::Returned | RunState::Valid | RunState::Invalid
            )
        })
        .count() as u32;
    if results >= quorum + EXTRA_RESULTS {
        return Verdict::Failed(format!(
            "{results} results came back and no {quorum} of them agree"
        ));
    }
    let in_flight = runs
        .iter()
        .filter(|r| r.state == RunState::Assigned)
        .count() as u32;
    match quorum.saturating_sub(best).saturating_sub(in_flight) {
        0 => Verdict::Waiting,
        more => Verdict::NeedRuns(more),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(n: u128, state: RunState, output: Option<&str>) -> RunRow {
        RunRow {
            id: Uuid::from_u128(n),
            device_id: Uuid::from_u128(100 + n),
            donor_id: Uuid::from_u128(200 + n),
            state,
            output: output.map(|hash| BlobRef {
                hash: hash.to_owned(),
                size: 1,
            }),
            running_ms: 10,
        }
    }

    #[test]
    fn a_new_task_needs_its_quorum_of_runs() {
        assert_eq!(judge(2, &[]), Verdict::NeedRuns(2));
        assert_eq!(
            judge(2, &[run(1, RunState::Assigned, None)]),
            Verdict::NeedRuns(1)
        );
        assert_eq!(
            judge(
                2,
                &[
                    run(1, RunState::Assigned, None),
                    run(2, RunState::Returned, Some("a"))
                ]
            ),
            Verdict::Waiting
        );
    }

    #[test]
    fn two_identical_outputs_agree() {
        let verdict = judge(
            2,
            &[
                run(1, RunState::Returned, Some("a")),
                run(2, RunState::Returned, Some("a")),
            ],
        );
        let Verdict::Agreed {
            output,
            valid,
            invalid,
        } = verdict
        else {
            panic!("expected agreement, got {verdict:?}");
        };
        assert_eq!(output.hash, "a");
        assert_eq!(valid, vec![Uuid::from_u128(1), Uuid::from_u128(2)]);
        assert!(invalid.is_empty());
    }

    #[test]
    fn a_disagreement_asks_for_another_run_and_the_odd_one_out_is_invalid() {
        let split = [
            run(1, RunState::Returned, Some("a")),
            run(2, RunState::Returned, Some("b")),
        ];
        assert_eq!(judge(2, &split), Verdict::NeedRuns(1));
        let mut settled = split.to_vec();
        settled.push(run(3, RunState::Returned, Some("a")));
        let Verdict::Agreed { valid, invalid, .. } = judge(2, &settled) else {
            panic!("expected agreement");
        };
        assert_eq!(valid, vec![Uuid::from_u128(1), Uuid::from_u128(3)]);
        assert_eq!(invalid, vec![Uuid::from_u128(2)]);
    }

    #[test]
    fn failed_and_lost_runs_are_replaced_and_three_failures_fail_the_task() {
        let runs = [
            run(1, RunState::Failed, None),
            run(2, RunState::Lost, None),
            run(3, RunState::Returned, Some("a")),
        ];
        assert_eq!(judge(2, &runs), Verdict::NeedRuns(1));
        let runs = [
            run(1, RunState::Failed, None),
            run(2, RunState::Failed, None),
            run(3, RunState::Failed, None),
        ];
        assert!(matches!(judge(2, &runs), Verdict::Failed(_)));
    }

    #[test]
    fn endless_disagreement_fails() {
        let runs: Vec<RunRow> = (0..6)
            .map(|n| run(n, RunState::Returned, Some(&format!("out{n}"))))
            .collect();
        assert!(matches!(judge(2, &runs), Verdict::Failed(_)));
        assert_eq!(judge(2, &runs[..5]), Verdict::NeedRuns(1));
    }

    #[test]
    fn a_quorum_of_one_accepts_the_first_output() {
        assert!(matches!(
            judge(1, &[run(1, RunState::Returned, Some("a"))]),
            Verdict::Agreed { .. }
        ));
    }

    #[test]
    fn a_late_run_is_judged_against_the_agreed_output() {
        let runs = [
            run(1, RunState::Valid, Some("a")),
            run(2, RunState::Valid, Some("a")),
            run(3, RunState::Returned, Some("b")),
            run(4, RunState::Returned, Some("a")),
        ];
        let Verdict::Agreed { valid, invalid, .. } = judge(2, &runs) else {
            panic!("expected agreement");
        };
        assert_eq!(valid.len(), 3);
        assert_eq!(invalid, vec![Uuid::from_u128(3)]);
    }

    #[test]
    fn replication_becomes_rarer_as_the_streak_grows_but_never_stops() {
        assert_eq!(replication_probability(0), 1.0);
        assert_eq!(replication_probability(TRUST_STREAK - 1), 1.0);
        assert_eq!(replication_probability(TRUST_STREAK), 1.0);
        assert_eq!(replication_probability(2 * TRUST_STREAK), 0.5);
        assert_eq!(replication_probability(10_000), MIN_REPLICATION);
        assert!(!accept_alone(5, 0.99));
        assert!(accept_alone(40, 0.5));
        assert!(!accept_alone(40, 0.2));
        let mut last = 1.0;
        for streak in 0..500 {
            let p = replication_probability(streak);
            assert!(p <= last && p >= MIN_REPLICATION);
            last = p;
        }
    }
}
