//! Judging a task's results: quorum, and trust as in BOINC's adaptive replication.
//!
//! Donors are untrusted. Each task runs on several devices, of different subscribers, and its
//! result is an output that `quorum` of them returned byte for byte (compared by hash). A run
//! whose output disagrees with the agreed one is invalid, and its device's trust streak starts
//! over. A device with a long streak of valid results is *trusted*: a task first sent to it may
//! be accepted on its result alone, and the chance that it is still replicated falls as the streak
//! grows (never below [`MIN_REPLICATION`], so that trusted devices keep being checked).
//!
//! Failures are judged like outputs. The sandbox is deterministic (same module, input and seed),
//! so an exit status, a trap, the memory cap or the output cap that stops a run on one honest
//! device stops it on every one: `quorum` identical such failures fail the task at once, instead
//! of waiting for more devices to waste their time on it. Running past the timeout depends on the
//! device's speed: the task is tried on one more device, and fails on its second timeout. A task
//! that needs a run no device can give it (every eligible donor has tried it) fails too
//! ([`no_donor_left`]), so that no job waits for donors that do not exist.
//!
//! Homogeneous redundancy, as BOINC calls it: unless its job asks for agreement across
//! architectures, every run of a task goes to donors of one architecture class
//! ([`bound_class`], chosen by [`roomiest_class`]), so that honest runs agree bit for bit while
//! their floating point runs as the hardware does it, without NaN canonicalisation.
//!
//! Everything here is pure, so that the rules are tested without a database.

use std::collections::HashMap;

use surplus_protocol::{BlobRef, Floats, MAX_TASK_ERRORS, RunState, TaskOutcome};
use uuid::Uuid;

use crate::store::RunRow;

/// Valid results in a row after which a device is trusted.
pub const TRUST_STREAK: u32 = 10;

/// The least chance that a trusted device's task is still replicated.
pub const MIN_REPLICATION: f64 = 0.05;

/// How many results beyond the quorum a task may collect without agreement before it fails.
pub const EXTRA_RESULTS: u32 = 4;

/// Timeouts after which a task fails: the first may be a slow device, the second is not.
pub const MAX_TIMEOUTS: u32 = 2;

/// What makes two failed runs the same failure, for a failure the sandbox repeats on every
/// device; `None` for one it may not (the timeout) or a success.
fn deterministic_failure(outcome: &TaskOutcome) -> Option<String> {
    match outcome {
        TaskOutcome::Exit { code } => Some(format!("exit {code}")),
        TaskOutcome::Trap { message } => Some(format!("trap {}", trap_reason(message))),
        TaskOutcome::MemoryExceeded => Some("memory".into()),
        TaskOutcome::OutputTooLarge => Some("output".into()),
        TaskOutcome::Timeout | TaskOutcome::Success => None,
    }
}

/// What identifies a trap across devices: the engine's reason (e.g. "wasm `unreachable`
/// instruction executed"), without the backtrace around it, whose offsets and frames are not
/// the same on every device.
fn trap_reason(message: &str) -> &str {
    message
        .rsplit("wasm trap: ")
        .next()
        .and_then(|reason| reason.lines().next())
        .unwrap_or(message)
        .trim()
}

/// How a failed run ended, in words, as short as stays true.
fn failure_words(outcome: &TaskOutcome) -> String {
    match outcome {
        TaskOutcome::Trap { message } => format!("trapped: {}", trap_reason(message)),
        other => other.describe(),
    }
}

/// The architecture class a task's next runs must go to: that of its runs whose output is out or
/// counted, for a task whose floats are [`Floats::Native`]. `None` when any class may take it:
/// its job asks for agreement across architectures, or no run binds it yet (none was sent, or
/// every one was lost or failed, which sets the class free again).
pub fn bound_class(floats: Floats, runs: &[RunRow]) -> Option<&str> {
    if floats == Floats::Portable {
        return None;
    }
    runs.iter()
        .find(|r| {
            matches!(
                r.state,
                RunState::Assigned | RunState::Returned | RunState::Valid
            )
        })
        .map(|r| r.arch_class.as_str())
}

/// The class to bind a task's runs to, when none is bound: the one with the most subscribers
/// among `free` (the devices free to take the task now, with their class and subscriber), so
/// that its replicas can go out at once. A tie goes to the class seen first.
pub fn roomiest_class<'a>(free: impl IntoIterator<Item = (&'a str, Uuid)>) -> Option<&'a str> {
    let mut seen: Vec<(&str, Uuid)> = Vec::new();
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for (class, subscriber) in free {
        if seen.contains(&(class, subscriber)) {
            continue;
        }
        seen.push((class, subscriber));
        match counts.iter_mut().find(|(c, _)| *c == class) {
            Some((_, n)) => *n += 1,
            None => counts.push((class, 1)),
        }
    }
    let most = counts.iter().map(|(_, n)| *n).max()?;
    counts.into_iter().find(|(_, n)| *n == most).map(|(c, _)| c)
}

/// Runs a device may lose of one task (away, paused, its files unreachable) and still be sent
/// it again: a passing fault is no verdict on the task, but a device that keeps losing it is not
/// asked for ever.
pub const MAX_LOST_PER_DEVICE: usize = 2;

/// Whether `device` has had its chance at a task: a run of it counted, failed or out, or
/// [`MAX_LOST_PER_DEVICE`] runs lost.
pub fn tried(device: Uuid, runs: &[RunRow]) -> bool {
    let mine = runs.iter().filter(|r| r.device_id == device);
    let lost = mine
        .clone()
        .filter(|r| matches!(r.state, RunState::Lost | RunState::Cancelled))
        .count();
    lost >= MAX_LOST_PER_DEVICE
        || mine
            .into_iter()
            .any(|r| !matches!(r.state, RunState::Lost | RunState::Cancelled))
}

/// Whether no device left could give a task the run it needs: every device of `eligible`
/// (device, its subscriber: those that donate compute at all) already ran it, or belongs to a
/// subscriber who has a run of it counted or out, or to the submitter when the job keeps off
/// their devices. Runs still out may yet settle it, so then there is always hope.
pub fn no_donor_left(
    eligible: &[(Uuid, Uuid)],
    runs: &[RunRow],
    submitter: Uuid,
    own_devices: bool,
) -> bool {
    if runs.iter().any(|r| r.state == RunState::Assigned) {
        return false;
    }
    !eligible.iter().any(|(device, subscriber)| {
        !tried(*device, runs)
            && !runs.iter().any(|r| {
                r.donor_id == *subscriber
                    && !matches!(
                        r.state,
                        RunState::Lost | RunState::Failed | RunState::Cancelled
                    )
            })
            && (own_devices || *subscriber != submitter)
    })
}

/// Why a task that no donor can run any more fails, with how its runs ended, if any did.
pub fn no_donor_reason(runs: &[RunRow]) -> String {
    let mut seen: Vec<String> = runs
        .iter()
        .filter_map(|r| r.outcome.as_ref())
        .filter(|o| **o != TaskOutcome::Success)
        .map(failure_words)
        .collect();
    seen.sort();
    seen.dedup();
    if seen.is_empty() {
        "no other donor can run it".into()
    } else {
        format!("no other donor can run it (its runs: {})", seen.join("; "))
    }
}

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
    // Failures are judged like outputs: `quorum` identical ones that would repeat anywhere end
    // the task now.
    let mut failures: HashMap<String, (u32, &TaskOutcome)> = HashMap::new();
    let mut timeouts = 0;
    for run in runs.iter().filter(|r| r.state == RunState::Failed) {
        match run.outcome.as_ref() {
            Some(TaskOutcome::Timeout) => timeouts += 1,
            Some(outcome) => {
                if let Some(signature) = deterministic_failure(outcome) {
                    failures.entry(signature).or_insert((0, outcome)).0 += 1;
                }
            }
            None => {}
        }
    }
    if let Some((count, outcome)) = failures.values().find(|(count, _)| *count >= quorum) {
        return Verdict::Failed(format!(
            "it {} on {count} device(s): the module fails the same way everywhere",
            failure_words(outcome)
        ));
    }
    if timeouts >= MAX_TIMEOUTS {
        return Verdict::Failed(format!("it ran past its timeout on {timeouts} devices"));
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
            outcome: None,
            arch_class: "x86".into(),
        }
    }

    fn failed(n: u128, outcome: TaskOutcome) -> RunRow {
        RunRow {
            outcome: Some(outcome),
            ..run(n, RunState::Failed, None)
        }
    }

    #[test]
    fn a_task_is_bound_to_the_class_of_its_runs_out_or_counted_unless_portable() {
        let on = |n, state, class: &str| RunRow {
            arch_class: class.into(),
            ..run(n, state, None)
        };
        assert_eq!(bound_class(Floats::Native, &[]), None);
        let runs = [
            on(1, RunState::Lost, "arm"),
            on(2, RunState::Failed, "riscv"),
            on(3, RunState::Returned, "x86"),
            on(4, RunState::Assigned, "x86"),
        ];
        assert_eq!(bound_class(Floats::Native, &runs), Some("x86"));
        assert_eq!(bound_class(Floats::Portable, &runs), None);
        // Lost and failed runs bind nothing: the class is free again.
        assert_eq!(bound_class(Floats::Native, &runs[..2]), None);
        assert_eq!(
            bound_class(Floats::Native, &[on(5, RunState::Valid, "arm")]),
            Some("arm")
        );
    }

    #[test]
    fn the_roomiest_class_counts_subscribers_not_devices() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        assert_eq!(roomiest_class([]), None);
        // Three x86 devices of one subscriber weigh less than two Arm devices of two.
        let free = [("x86", a), ("x86", a), ("x86", a), ("arm", b), ("arm", c)];
        assert_eq!(roomiest_class(free), Some("arm"));
        // A tie goes to the class seen first.
        assert_eq!(roomiest_class([("arm", a), ("x86", b)]), Some("arm"));
        assert_eq!(roomiest_class([("x86", b), ("arm", a)]), Some("x86"));
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
    fn a_quorum_of_identical_deterministic_failures_fails_the_task_at_once() {
        let trap = || TaskOutcome::Trap {
            message: "unreachable".into(),
        };
        // One trap: another device tries, since the first may have been faulty.
        assert_eq!(judge(2, &[failed(1, trap())]), Verdict::NeedRuns(2));
        // The same trap twice: it will trap anywhere.
        let Verdict::Failed(reason) = judge(2, &[failed(1, trap()), failed(2, trap())]) else {
            panic!("two identical traps fail a quorum-2 task");
        };
        assert!(reason.contains("trapped: unreachable on 2"), "{reason}");
        // Different failures are not a quorum; the same exit status, memory cap or output cap is.
        assert_eq!(
            judge(
                2,
                &[failed(1, trap()), failed(2, TaskOutcome::Exit { code: 3 })]
            ),
            Verdict::NeedRuns(2)
        );
        for outcome in [
            TaskOutcome::Exit { code: 3 },
            TaskOutcome::MemoryExceeded,
            TaskOutcome::OutputTooLarge,
        ] {
            let runs = [failed(1, outcome.clone()), failed(2, outcome)];
            assert!(matches!(judge(2, &runs), Verdict::Failed(_)));
        }
        // A trusted device's task (quorum 1) fails on its one failure.
        assert!(matches!(judge(1, &[failed(1, trap())]), Verdict::Failed(_)));
    }

    #[test]
    fn traps_are_compared_by_their_reason_not_their_backtrace() {
        let trap = |offset: &str| TaskOutcome::Trap {
            message: format!(
                "error while executing at wasm backtrace:\n    0:     {offset} - <unknown>!<wasm function 0>: wasm trap: wasm `unreachable` instruction executed"
            ),
        };
        let Verdict::Failed(reason) = judge(2, &[failed(1, trap("0x30")), failed(2, trap("0x31"))])
        else {
            panic!("the same trap at different offsets is the same failure");
        };
        assert!(
            reason.contains("trapped: wasm `unreachable` instruction executed on 2"),
            "{reason}"
        );
        assert_eq!(
            no_donor_reason(&[failed(1, trap("0x30")), failed(2, trap("0x31"))]),
            "no other donor can run it (its runs: trapped: wasm `unreachable` instruction executed)"
        );
    }

    #[test]
    fn a_timeout_is_tried_once_more_elsewhere() {
        assert_eq!(
            judge(2, &[failed(1, TaskOutcome::Timeout)]),
            Verdict::NeedRuns(2)
        );
        let Verdict::Failed(reason) = judge(
            2,
            &[
                failed(1, TaskOutcome::Timeout),
                failed(2, TaskOutcome::Timeout),
            ],
        ) else {
            panic!("a second timeout fails the task");
        };
        assert!(reason.contains("timeout on 2 devices"), "{reason}");
    }

    #[test]
    fn a_task_fails_once_every_eligible_donor_has_tried_it() {
        let submitter = Uuid::from_u128(999);
        // Devices 101 and 102 (subscribers 201, 202) ran it and failed; 103 is the submitter's.
        let runs = [
            failed(1, TaskOutcome::Timeout),
            failed(2, TaskOutcome::Exit { code: 1 }),
        ];
        let eligible = [
            (Uuid::from_u128(101), Uuid::from_u128(201)),
            (Uuid::from_u128(102), Uuid::from_u128(202)),
            (Uuid::from_u128(103), submitter),
        ];
        assert!(no_donor_left(&eligible, &runs, submitter, false));
        // The submitter's own devices count when the job allows them.
        assert!(!no_donor_left(&eligible, &runs, submitter, true));
        // A new donor, or a run still out, leaves hope.
        let mut more = eligible.to_vec();
        more.push((Uuid::from_u128(104), Uuid::from_u128(204)));
        assert!(!no_donor_left(&more, &runs, submitter, false));
        let out = [run(3, RunState::Assigned, None)];
        assert!(!no_donor_left(&[], &out, submitter, false));
        // A device that lost its run (away, paused) may have it again, up to a point.
        let lost = RunRow {
            device_id: Uuid::from_u128(101),
            ..run(5, RunState::Lost, None)
        };
        let one_device = [(Uuid::from_u128(101), Uuid::from_u128(201))];
        assert!(!no_donor_left(
            &one_device,
            std::slice::from_ref(&lost),
            submitter,
            false
        ));
        let twice = [
            lost.clone(),
            RunRow {
                id: Uuid::from_u128(6),
                ..lost
            },
        ];
        assert!(no_donor_left(&one_device, &twice, submitter, false));
        // A subscriber whose run is counted gets no second vote through another device.
        let counted = [run(4, RunState::Returned, Some("a"))];
        let same_subscriber = [(Uuid::from_u128(150), Uuid::from_u128(204))];
        assert!(no_donor_left(&same_subscriber, &counted, submitter, false));
        let reason = no_donor_reason(&runs);
        assert!(reason.starts_with("no other donor can run it"), "{reason}");
        assert!(reason.contains("ran past its timeout"), "{reason}");
        assert_eq!(no_donor_reason(&[]), "no other donor can run it");
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
