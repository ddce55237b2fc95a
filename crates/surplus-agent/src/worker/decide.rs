//! What to do with an instruction from the hub: one pure rule, so that every kind of instruction
//! and every refusal is tested without a hub, a disk or a clock.
//!
//! The hub is untrusted. An instruction is carried out only once it has passed, in this order:
//! its expiry, the device's own checks of every name and limit in it
//! ([`untrusted::check_instruction`]), and the user's choices (consent for the resource it uses,
//! the pause) and the vault's quota. [`decide`] answers a refusal at once; everything else
//! becomes an [`Action`] the executor carries out.

use surplus_protocol::{
    FailureCode, Instruction, InstructionKind, InstructionResult, UnixMillis, VaultReport,
};
use uuid::Uuid;

use crate::compute::TaskOrder;
use crate::settings::Settings;
use crate::untrusted::{self, TaskCeilings};

/// What the device knows when an instruction arrives.
#[derive(Debug, Clone)]
pub(super) struct Situation<'a> {
    pub(super) now: UnixMillis,
    pub(super) settings: &'a Settings,
    pub(super) ceilings: &'a TaskCeilings,
    /// The vault, when the device has one.
    pub(super) vault: Option<VaultView>,
}

/// The vault as an instruction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct VaultView {
    pub(super) report: VaultReport,
    /// Whether it already holds the blob the instruction names.
    pub(super) holds: bool,
}

/// What the executor does for an instruction that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Action {
    /// Nothing to do but answer: a refusal, or work already done.
    Answer(InstructionResult),
    /// Measure the machine and report it.
    Report,
    /// Download a blob from the hub's staging store into the vault.
    Fetch {
        hash: String,
        size: u64,
        rate: Option<u64>,
    },
    /// Delete a blob from the vault.
    Delete { hash: String },
    /// Prove the vault holds a blob by reading a slice of it.
    Prove {
        hash: String,
        offset: u64,
        length: u64,
    },
    /// Send a blob from the vault back to the hub's staging store.
    Send { hash: String, rate: Option<u64> },
    /// Run a compute task in the sandbox.
    Run(Box<TaskOrder>),
    /// Stop a running task.
    Cancel { run: Uuid },
}

pub(super) fn failed(code: FailureCode, message: impl Into<String>) -> InstructionResult {
    InstructionResult::Failed {
        code,
        message: message.into(),
    }
}

fn refuse(code: FailureCode, message: impl Into<String>) -> Action {
    Action::Answer(failed(code, message))
}

/// Decides what to do with `instruction` in `situation`.
pub(super) fn decide(instruction: &Instruction, situation: &Situation<'_>) -> Action {
    if instruction.expires_at <= situation.now {
        return refuse(
            FailureCode::Expired,
            "the instruction expired before it ran",
        );
    }
    if let Err(refusal) = untrusted::check_instruction(&instruction.kind, situation.ceilings) {
        return refuse(FailureCode::Refused, refusal.to_string());
    }
    let settings = situation.settings;
    let paused = settings.pause.is_paused(situation.now);
    match &instruction.kind {
        InstructionKind::ReportStatus => Action::Report,
        InstructionKind::StoreBlob { blob, .. } => {
            if !settings.consent.storage {
                return refuse(
                    FailureCode::NoConsent,
                    "the user has not consented to donate storage",
                );
            }
            if paused {
                return refuse(FailureCode::Paused, "donation is paused on this device");
            }
            let Some(vault) = &situation.vault else {
                return refuse(FailureCode::NoConsent, "this device has no vault");
            };
            if vault.holds {
                return Action::Answer(InstructionResult::Stored {
                    hash: blob.hash.clone(),
                    size: blob.size,
                });
            }
            let quota = vault.report.quota_bytes;
            if vault.report.used_bytes.saturating_add(blob.size) > quota {
                return refuse(
                    FailureCode::QuotaExceeded,
                    format!(
                        "{} more bytes would exceed the vault's quota of {quota} bytes",
                        blob.size
                    ),
                );
            }
            Action::Fetch {
                hash: blob.hash.clone(),
                size: blob.size,
                rate: settings.bandwidth_bytes_per_second,
            }
        }
        // Deleting needs no consent: withdrawn consent is exactly when the hub moves data away.
        InstructionKind::DeleteBlob { hash, .. } => match &situation.vault {
            None => Action::Answer(InstructionResult::Deleted { hash: hash.clone() }),
            Some(_) => Action::Delete { hash: hash.clone() },
        },
        InstructionKind::VerifyBlob {
            hash,
            offset,
            length,
        } => match &situation.vault {
            None => refuse(FailureCode::NotFound, "this device has no vault"),
            Some(_) => Action::Prove {
                hash: hash.clone(),
                offset: *offset,
                length: *length,
            },
        },
        InstructionKind::UploadBlob { hash } => match &situation.vault {
            None => refuse(FailureCode::NotFound, "this device has no vault"),
            Some(_) => Action::Send {
                hash: hash.clone(),
                rate: settings.bandwidth_bytes_per_second,
            },
        },
        InstructionKind::RunTask {
            run,
            module,
            input,
            args,
            seed,
            limits,
            floats,
        } => {
            if !settings.consent.compute {
                return refuse(
                    FailureCode::NoConsent,
                    "the user has not consented to donate compute",
                );
            }
            if paused {
                return refuse(FailureCode::Paused, "donation is paused on this device");
            }
            Action::Run(Box::new(TaskOrder {
                run: *run,
                module: module.clone(),
                input: input.clone(),
                args: args.clone(),
                seed: *seed,
                limits: *limits,
                floats: *floats,
                deadline: instruction.expires_at,
            }))
        }
        InstructionKind::CancelTask { run } => Action::Cancel { run: *run },
        InstructionKind::Unsupported => refuse(
            FailureCode::Unsupported,
            "this agent does not know that instruction; update it",
        ),
    }
}

#[cfg(test)]
mod tests {
    use surplus_protocol::{BlobRef, Consent, Floats, JobInput, PauseState, TaskLimits};

    use super::*;

    const NOW: UnixMillis = 1_000_000;
    const MIB: u64 = 1 << 20;

    fn hash(byte: char) -> String {
        byte.to_string().repeat(64)
    }

    fn order(kind: InstructionKind) -> Instruction {
        Instruction {
            id: Uuid::nil(),
            created_at: NOW - 10,
            expires_at: NOW + 60_000,
            kind,
        }
    }

    fn store(size: u64) -> Instruction {
        order(InstructionKind::StoreBlob {
            blob: BlobRef {
                hash: hash('a'),
                size,
            },
            allocation_id: Uuid::nil(),
        })
    }

    fn task(memory_bytes: u64) -> Instruction {
        order(InstructionKind::RunTask {
            run: Uuid::from_u128(7),
            module: BlobRef {
                hash: hash('b'),
                size: 100,
            },
            input: JobInput {
                name: "in.txt".to_owned(),
                hash: hash('c'),
                size: 10,
            },
            args: vec!["--fast".to_owned()],
            seed: 42,
            limits: TaskLimits {
                timeout_ms: 60_000,
                memory_bytes,
                output_bytes: MIB,
            },
            floats: Floats::default(),
        })
    }

    /// A device that consented to both, is not paused, and has a vault with 10 of 100 MiB used.
    fn willing() -> Settings {
        Settings {
            consent: Consent {
                storage: true,
                compute: true,
            },
            bandwidth_bytes_per_second: Some(5 * MIB),
            ..Settings::default()
        }
    }

    fn vault(holds: bool) -> Option<VaultView> {
        Some(VaultView {
            report: VaultReport {
                quota_bytes: 100 * MIB,
                used_bytes: 10 * MIB,
                reserved_bytes: 90 * MIB,
                floor_bytes: 0,
            },
            holds,
        })
    }

    fn decide_with(
        instruction: &Instruction,
        settings: &Settings,
        vault: Option<VaultView>,
    ) -> Action {
        let ceilings = TaskCeilings::for_device(4, 50);
        decide(
            instruction,
            &Situation {
                now: NOW,
                settings,
                ceilings: &ceilings,
                vault,
            },
        )
    }

    /// The failure code of a refusal, or `None` for anything else.
    fn refusal(action: &Action) -> Option<FailureCode> {
        match action {
            Action::Answer(InstructionResult::Failed { code, .. }) => Some(*code),
            _ => None,
        }
    }

    fn paused() -> Settings {
        Settings {
            pause: PauseState::Until { until: NOW + 1 },
            ..willing()
        }
    }

    fn unwilling() -> Settings {
        Settings {
            consent: Consent::default(),
            ..willing()
        }
    }

    #[test]
    fn an_expired_instruction_is_refused_whatever_it_asks() {
        for kind in [
            InstructionKind::ReportStatus,
            store(MIB).kind,
            InstructionKind::CancelTask { run: Uuid::nil() },
        ] {
            let late = Instruction {
                expires_at: NOW,
                ..order(kind)
            };
            let action = decide_with(&late, &willing(), vault(false));
            assert_eq!(refusal(&action), Some(FailureCode::Expired), "{action:?}");
        }
    }

    #[test]
    fn names_and_limits_past_the_devices_own_are_refused_before_anything_else() {
        let escape = order(InstructionKind::DeleteBlob {
            hash: "../../home/user/.ssh/id_ed25519".to_owned(),
            allocation_id: None,
        });
        assert_eq!(
            refusal(&decide_with(&escape, &willing(), vault(false))),
            Some(FailureCode::Refused)
        );
        let greedy = task(64 << 30);
        assert_eq!(
            refusal(&decide_with(&greedy, &unwilling(), None)),
            Some(FailureCode::Refused),
            "checked before consent, so the hub learns its order was out of bounds"
        );
    }

    #[test]
    fn a_report_is_measured_whatever_the_consent() {
        let ask = order(InstructionKind::ReportStatus);
        assert_eq!(decide_with(&ask, &unwilling(), None), Action::Report);
        assert_eq!(decide_with(&ask, &paused(), None), Action::Report);
    }

    #[test]
    fn a_blob_is_fetched_within_consent_pause_and_quota() {
        assert_eq!(
            decide_with(&store(MIB), &willing(), vault(false)),
            Action::Fetch {
                hash: hash('a'),
                size: MIB,
                rate: Some(5 * MIB),
            }
        );
        assert_eq!(
            refusal(&decide_with(&store(MIB), &unwilling(), vault(false))),
            Some(FailureCode::NoConsent)
        );
        assert_eq!(
            refusal(&decide_with(&store(MIB), &paused(), vault(false))),
            Some(FailureCode::Paused)
        );
        assert_eq!(
            refusal(&decide_with(&store(MIB), &willing(), None)),
            Some(FailureCode::NoConsent)
        );
        // 10 MiB used of 100: 90 MiB fits, one byte more does not.
        assert!(matches!(
            decide_with(&store(90 * MIB), &willing(), vault(false)),
            Action::Fetch { .. }
        ));
        assert_eq!(
            refusal(&decide_with(&store(90 * MIB + 1), &willing(), vault(false))),
            Some(FailureCode::QuotaExceeded)
        );
    }

    #[test]
    fn a_blob_already_held_is_answered_without_fetching_it_again() {
        assert_eq!(
            decide_with(&store(MIB), &willing(), vault(true)),
            Action::Answer(InstructionResult::Stored {
                hash: hash('a'),
                size: MIB,
            })
        );
    }

    #[test]
    fn deleting_needs_no_consent_and_nothing_to_delete_is_done() {
        let delete = order(InstructionKind::DeleteBlob {
            hash: hash('d'),
            allocation_id: None,
        });
        for settings in [willing(), unwilling(), paused()] {
            assert_eq!(
                decide_with(&delete, &settings, vault(false)),
                Action::Delete { hash: hash('d') }
            );
        }
        assert_eq!(
            decide_with(&delete, &willing(), None),
            Action::Answer(InstructionResult::Deleted { hash: hash('d') })
        );
    }

    #[test]
    fn proofs_and_uploads_need_a_vault() {
        let verify = order(InstructionKind::VerifyBlob {
            hash: hash('e'),
            offset: 1024,
            length: 64,
        });
        assert_eq!(
            decide_with(&verify, &unwilling(), vault(false)),
            Action::Prove {
                hash: hash('e'),
                offset: 1024,
                length: 64,
            }
        );
        assert_eq!(
            refusal(&decide_with(&verify, &willing(), None)),
            Some(FailureCode::NotFound)
        );
        let upload = order(InstructionKind::UploadBlob { hash: hash('f') });
        assert_eq!(
            decide_with(&upload, &paused(), vault(false)),
            Action::Send {
                hash: hash('f'),
                rate: Some(5 * MIB),
            }
        );
        assert_eq!(
            refusal(&decide_with(&upload, &willing(), None)),
            Some(FailureCode::NotFound)
        );
    }

    #[test]
    fn a_task_runs_only_with_consent_and_unpaused_until_its_instruction_expires() {
        let run = task(64 * MIB);
        let Action::Run(order) = decide_with(&run, &willing(), None) else {
            panic!("the task should run");
        };
        assert_eq!(order.run, Uuid::from_u128(7));
        assert_eq!(order.seed, 42);
        assert_eq!(order.args, ["--fast"]);
        assert_eq!(order.deadline, run.expires_at);
        assert_eq!(
            refusal(&decide_with(&run, &unwilling(), None)),
            Some(FailureCode::NoConsent)
        );
        assert_eq!(
            refusal(&decide_with(&run, &paused(), None)),
            Some(FailureCode::Paused)
        );
        let resumed = Settings {
            pause: PauseState::Until { until: NOW },
            ..willing()
        };
        assert!(matches!(decide_with(&run, &resumed, None), Action::Run(_)));
    }

    #[test]
    fn a_cancel_is_always_carried_out_and_an_unknown_kind_is_refused() {
        let cancel = order(InstructionKind::CancelTask {
            run: Uuid::from_u128(9),
        });
        assert_eq!(
            decide_with(&cancel, &unwilling(), None),
            Action::Cancel {
                run: Uuid::from_u128(9)
            }
        );
        assert_eq!(
            refusal(&decide_with(
                &order(InstructionKind::Unsupported),
                &willing(),
                vault(false)
            )),
            Some(FailureCode::Unsupported)
        );
    }
}
