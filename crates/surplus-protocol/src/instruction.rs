//! Instructions: the work the hub queues for a device, and the acknowledgements that settle it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    BlobHash, BlobRef, Floats, JobInput, StatusReport, TaskLimits, TaskOutcome, UnixMillis,
    VaultReport,
};

/// One unit of work the hub asks a device to do.
///
/// Delivery is at least once: a device may see the same instruction again (after a crash, or when
/// its acknowledgement was lost), so it executes by `id`, idempotently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Instruction {
    pub id: Uuid,
    pub created_at: UnixMillis,
    /// After this the hub no longer wants it done; a device ignores it.
    pub expires_at: UnixMillis,
    /// A kind this side cannot read (a newer one, or one whose fields changed) reads as
    /// [`InstructionKind::Unsupported`], so one instruction never blocks a device's queue.
    #[serde(deserialize_with = "lenient_kind")]
    pub kind: InstructionKind,
}

fn lenient_kind<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<InstructionKind, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(InstructionKind::deserialize(value).unwrap_or(InstructionKind::Unsupported))
}

/// What an instruction asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InstructionKind {
    /// Fetch a blob from the hub's staging store into the vault, verify it, and keep it.
    StoreBlob { blob: BlobRef, allocation_id: Uuid },
    /// Remove a blob from the vault.
    DeleteBlob {
        hash: BlobHash,
        allocation_id: Option<Uuid>,
    },
    /// Prove the vault still holds a blob: answer with the BLAKE3 (Bao) slice of the range, which
    /// the hub checks against the blob's hash. The range is chosen at random when asked, so only a
    /// holder that keeps every byte can answer every challenge.
    VerifyBlob {
        hash: BlobHash,
        offset: u64,
        length: u64,
    },
    /// Upload a blob from the vault back to the hub's staging store, for its owner to restore
    /// from or for the hub to place elsewhere.
    UploadBlob { hash: BlobHash },
    /// Send a fresh status report now.
    ReportStatus,
    /// Run one task of a compute job in the sandbox: fetch the module and the input from the
    /// hub's staging store, run it within `limits` while the machine stays idle, upload the
    /// output (`PUT /v1/device/runs/{run}/outputs/{hash}`) and answer with how it ended. The
    /// hub no longer wants a result after the instruction's `expires_at` (the run's deadline).
    RunTask {
        run: Uuid,
        module: BlobRef,
        input: JobInput,
        args: Vec<String>,
        /// The seed of the random numbers the task may ask for: the same on every device.
        seed: u64,
        limits: TaskLimits,
        /// How its floating point must agree with the task's other runs.
        #[serde(default)]
        floats: Floats,
    },
    /// Stop a run (its job was cancelled, or its task finished without it).
    CancelTask { run: Uuid },
    /// A kind this agent does not know (from a newer hub). Acknowledged as unsupported.
    #[serde(other)]
    Unsupported,
}

impl InstructionKind {
    /// The kind's wire name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::StoreBlob { .. } => "store_blob",
            Self::DeleteBlob { .. } => "delete_blob",
            Self::VerifyBlob { .. } => "verify_blob",
            Self::UploadBlob { .. } => "upload_blob",
            Self::ReportStatus => "report_status",
            Self::RunTask { .. } => "run_task",
            Self::CancelTask { .. } => "cancel_task",
            Self::Unsupported => "unsupported",
        }
    }
}

/// The instructions waiting for a device (empty when a long poll timed out).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InstructionBatch {
    pub instructions: Vec<Instruction>,
}

/// A device's acknowledgement of one instruction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Acknowledgement {
    pub result: InstructionResult,
    /// The vault's state after the instruction, so the hub's view is fresh without a heartbeat.
    pub vault: Option<VaultReport>,
}

/// How an instruction ended on the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum InstructionResult {
    Stored {
        hash: BlobHash,
        size: u64,
    },
    Deleted {
        hash: BlobHash,
    },
    /// The Bao slice asked for, in lower-case hex.
    Verified {
        hash: BlobHash,
        proof: String,
    },
    Uploaded {
        hash: BlobHash,
    },
    Reported {
        report: Box<StatusReport>,
    },
    /// A task ran to an end. `output` is the uploaded output when it succeeded.
    Ran {
        run: Uuid,
        #[serde(flatten)]
        outcome: TaskOutcome,
        output: Option<BlobRef>,
        /// Time spent running, pauses not counted.
        running_ms: u64,
    },
    Cancelled {
        run: Uuid,
    },
    Failed {
        code: FailureCode,
        message: String,
    },
}

/// Why a device could not carry out an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// The vault has no room within its quota and floor.
    QuotaExceeded,
    /// The user has not consented (or withdrew consent) to this resource.
    NoConsent,
    /// Donation is paused.
    Paused,
    /// A blob asked for is not in the vault.
    NotFound,
    /// The data fetched did not match its hash.
    Corrupt,
    /// The instruction expired before it could run.
    Expired,
    /// The agent does not know this instruction.
    Unsupported,
    /// The instruction breaks one of the device's own rules and was not carried out: a name that
    /// is not a plain file name, a hash that is not one, or a limit past the device's own. The
    /// agent treats the hub as untrusted, so it checks everything the hub sends.
    Refused,
    /// Anything else (I/O errors, the hub unreachable); the message says what.
    Io,
}

impl FailureCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QuotaExceeded => "quota_exceeded",
            Self::NoConsent => "no_consent",
            Self::Paused => "paused",
            Self::NotFound => "not_found",
            Self::Corrupt => "corrupt",
            Self::Expired => "expired",
            Self::Unsupported => "unsupported",
            Self::Refused => "refused",
            Self::Io => "io",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha, ..ProptestConfig::default() })]

        /// Whatever a hub sends as a batch of instructions, and whatever a device sends as an
        /// acknowledgement, is decoded or refused: never a panic.
        #[test]
        fn any_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = serde_json::from_slice::<InstructionBatch>(&bytes);
            let _ = serde_json::from_slice::<Acknowledgement>(&bytes);
            let _ = serde_json::from_slice::<InstructionKind>(&bytes);
        }

        /// The same from a real batch with one byte changed, which gets past the first brace.
        #[test]
        fn a_batch_with_a_byte_changed_decodes_or_is_refused(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let batch = serde_json::json!({"instructions": [{
                "id": "01a22b72-8517-71c4-80bd-34669f9b316d", "created_at": 1, "expires_at": 2,
                "kind": {"type": "run_task", "run": "01a22b72-8516-74ee-9bb3-93228d7a8392",
                    "module": {"hash": "ab", "size": 1}, "input": {"name": "in.txt", "hash": "cd", "size": 1},
                    "args": ["--x"], "seed": 7, "limits": {"timeout_ms": 1, "memory_bytes": 2, "output_bytes": 3}}}]});
            let mut bytes = serde_json::to_vec(&batch).expect("json");
            let at = at.index(bytes.len());
            bytes[at] = byte;
            let _ = serde_json::from_slice::<InstructionBatch>(&bytes);
        }
    }

    #[test]
    fn unknown_kinds_decode_as_unsupported() {
        let json = serde_json::json!({"type": "run_anything", "task": 7});
        let kind: InstructionKind = serde_json::from_value(json).expect("decodes");
        assert_eq!(kind, InstructionKind::Unsupported);
    }

    #[test]
    fn an_instruction_whose_fields_changed_reads_as_unsupported_and_the_batch_still_reads() {
        let batch = serde_json::json!({"instructions": [
            {"id": Uuid::nil(), "created_at": 1, "expires_at": 2,
             "kind": {"type": "verify_blob", "hash": "ab", "nonce": "old form"}},
            {"id": Uuid::nil(), "created_at": 1, "expires_at": 2, "kind": {"type": "report_status"}},
        ]});
        let batch: InstructionBatch = serde_json::from_value(batch).expect("decodes");
        assert_eq!(batch.instructions[0].kind, InstructionKind::Unsupported);
        assert_eq!(batch.instructions[1].kind, InstructionKind::ReportStatus);
    }

    #[test]
    fn a_task_result_carries_its_outcome_flat() {
        let result = InstructionResult::Ran {
            run: Uuid::nil(),
            outcome: TaskOutcome::Exit { code: 3 },
            output: None,
            running_ms: 12,
        };
        let json = serde_json::to_value(&result).expect("json");
        assert_eq!(json["status"], "ran");
        assert_eq!(json["outcome"], "exit");
        assert_eq!(json["code"], 3);
        let back: InstructionResult = serde_json::from_value(json).expect("decodes");
        assert_eq!(back, result);
    }

    #[test]
    fn store_blob_wire_form() {
        let id = Uuid::nil();
        let kind = InstructionKind::StoreBlob {
            blob: BlobRef {
                hash: "ab".repeat(32),
                size: 3,
            },
            allocation_id: id,
        };
        let json = serde_json::to_value(&kind).expect("json");
        assert_eq!(json["type"], "store_blob");
        assert_eq!(json["blob"]["size"], 3);
    }
}
