//! The executor: long-polls the hub for instructions and carries them out, acknowledging each
//! with its result. Transfers run one at a time beside the poll, tasks each on their own; what
//! to do with each instruction is [`decide`]d first.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use surplus_protocol::{
    Acknowledgement, FailureCode, Instruction, InstructionKind, InstructionResult,
};
use tokio::sync::watch;
use uuid::Uuid;

use super::backoff::Backoff;
use super::decide::{Action, Situation, VaultView, decide, failed};
use super::error::{WorkerError, fatal};
use super::options::WorkerOptions;
use super::shared::{Shared, with_vault};
use super::transfer;
use crate::clock::now_ms;
use crate::compute::TaskOrder;

/// Polls for instructions and carries them out until `stop`.
pub(super) async fn execute_loop(
    shared: Arc<Shared>,
    options: WorkerOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    // Transfers (fetching blobs) run one at a time beside the poll, so that a long download
    // never holds up a request for a fresh report or a proof of storage.
    let (transfer_queue, mut transfers) = tokio::sync::mpsc::unbounded_channel::<Instruction>();
    let in_flight: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let mut transfer_task = tokio::spawn({
        let shared = shared.clone();
        let in_flight = in_flight.clone();
        async move {
            while let Some(instruction) = transfers.recv().await {
                let id = instruction.id;
                let outcome = carry_out(&shared, instruction).await;
                in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
                outcome?;
            }
            Ok::<(), WorkerError>(())
        }
    });
    let mut backoff = Backoff::new(options.max_backoff);
    loop {
        let batch = tokio::select! {
            _ = stop.wait_for(|&s| s) => {
                transfer_task.abort();
                return Ok(());
            }
            finished = &mut transfer_task => return finished.unwrap_or(Ok(())),
            batch = shared.client.poll(&shared.token, options.poll_wait) => batch,
        };
        let instructions = match batch {
            Ok(instructions) => {
                backoff.reset();
                instructions
            }
            Err(error) => {
                if let Some(fatal) = fatal(&error) {
                    transfer_task.abort();
                    return Err(fatal);
                }
                shared.failures.count();
                let wait = backoff.step();
                tracing::warn!(%error, retry_in = ?wait, "polling for instructions failed");
                tokio::select! {
                    _ = stop.wait_for(|&s| s) => {
                        transfer_task.abort();
                        return Ok(());
                    }
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        for instruction in instructions {
            if *stop.borrow() {
                transfer_task.abort();
                return Ok(());
            }
            if matches!(instruction.kind, InstructionKind::RunTask { .. }) {
                // Tasks run beside everything else, each on a thread of its own; one already
                // running here is not started twice when the hub sends it again.
                if in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(instruction.id)
                {
                    let shared = shared.clone();
                    let in_flight = in_flight.clone();
                    tokio::spawn(async move {
                        let id = instruction.id;
                        if let Err(error) = carry_out(&shared, instruction).await {
                            tracing::warn!(%error, "a task's answer was refused");
                        }
                        in_flight
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .remove(&id);
                    });
                }
            } else if matches!(
                instruction.kind,
                InstructionKind::StoreBlob { .. } | InstructionKind::UploadBlob { .. }
            ) {
                // Redelivered while still queued or running here: nothing to add.
                if in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(instruction.id)
                {
                    let _ = transfer_queue.send(instruction);
                }
            } else {
                carry_out(&shared, instruction).await?;
            }
        }
    }
}

/// Executes one instruction (or recalls its result) and acknowledges it.
#[tracing::instrument(skip_all, fields(id = %instruction.id, kind = instruction.kind.name()))]
async fn carry_out(shared: &Arc<Shared>, instruction: Instruction) -> Result<(), WorkerError> {
    let recalled = shared
        .journal
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(instruction.id);
    let result = match recalled {
        Some(result) => result,
        None => {
            let Some(result) = execute(shared, &instruction).await else {
                // A passing fault (the hub away mid-download): leave it unacknowledged; the hub
                // delivers it again when its lease runs out.
                return Ok(());
            };
            shared
                .journal
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(instruction.id, &result);
            result
        }
    };
    if let InstructionResult::Failed { code, message } = &result {
        tracing::info!(code = code.as_str(), %message, "instruction failed");
    }
    let ack = Acknowledgement {
        result,
        vault: shared.vault_report(),
    };
    match shared
        .client
        .acknowledge(&shared.token, instruction.id, &ack)
        .await
    {
        Ok(()) => {
            shared.update_state(|state| {
                state.instructions_done += 1;
                if ack.vault.is_some() {
                    state.vault = ack.vault.clone();
                }
            });
            Ok(())
        }
        Err(error) => match fatal(&error) {
            Some(fatal) => Err(fatal),
            None => {
                // The result is in the journal; the redelivered instruction is answered from it.
                tracing::warn!(%error, "acknowledging failed; the hub will deliver the instruction again");
                Ok(())
            }
        },
    }
}

/// Carries an instruction out. `None` means a passing fault worth another try later.
async fn execute(shared: &Arc<Shared>, instruction: &Instruction) -> Option<InstructionResult> {
    let settings = shared.settings();
    let ceilings = shared.task_ceilings();
    let situation = Situation {
        now: now_ms(),
        settings: &settings,
        ceilings: &ceilings,
        vault: look_at_vault(shared, &instruction.kind).await,
    };
    let action = decide(instruction, &situation);
    if let Action::Answer(InstructionResult::Failed {
        code: FailureCode::Refused,
        message,
    }) = &action
    {
        tracing::warn!(kind = instruction.kind.name(), refusal = %message, "refused an instruction from the hub");
    }
    match action {
        Action::Answer(result) => Some(result),
        Action::Report => {
            let shared = shared.clone();
            let report = tokio::task::spawn_blocking(move || shared.report())
                .await
                .ok()?;
            Some(InstructionResult::Reported {
                report: Box::new(report),
            })
        }
        Action::Fetch { hash, size, rate } => transfer::fetch(shared, &hash, size, rate).await,
        Action::Delete { hash } => {
            let owned_hash = hash.clone();
            let outcome = with_vault(shared, move |vault| vault.delete(&owned_hash)).await;
            Some(match outcome {
                Some(Ok(_)) | None => InstructionResult::Deleted { hash },
                Some(Err(error)) => failed(error.failure_code(), error.to_string()),
            })
        }
        Action::Prove {
            hash,
            offset,
            length,
        } => {
            let hash_for_vault = hash.clone();
            let outcome = with_vault(shared, move |vault| {
                vault.prove(&hash_for_vault, offset, length)
            })
            .await;
            Some(match outcome {
                Some(Ok(slice)) => InstructionResult::Verified {
                    hash,
                    proof: hex::encode(slice),
                },
                Some(Err(error)) => failed(error.failure_code(), error.to_string()),
                None => failed(FailureCode::NotFound, "this device has no vault"),
            })
        }
        Action::Send { hash, rate } => transfer::send(shared, &hash, rate).await,
        Action::Run(order) => run_task(shared, *order, ceilings.concurrent_tasks).await,
        Action::Cancel { run } => {
            shared.compute.cancel(run);
            Some(InstructionResult::Cancelled { run })
        }
    }
}

/// The vault as an instruction about `kind` sees it. Before a blob is stored, the vault is
/// brought in line with the settings and the disk, so that what cannot fit is refused early.
async fn look_at_vault(shared: &Arc<Shared>, kind: &InstructionKind) -> Option<VaultView> {
    let incoming = match kind {
        InstructionKind::StoreBlob { blob, .. } => {
            let refresh = shared.clone();
            if let Err(error) = tokio::task::spawn_blocking(move || refresh.report()).await {
                tracing::warn!(%error, "refreshing the vault's report");
            }
            Some(blob.hash.clone())
        }
        _ => None,
    };
    with_vault(shared, move |vault| VaultView {
        report: vault.report(),
        // `contains` reads only a well-formed hash.
        holds: incoming.is_some_and(|hash| vault.contains(&hash)),
    })
    .await
}

/// Runs a task in the sandbox, counting it in the agent's state while it runs.
async fn run_task(
    shared: &Arc<Shared>,
    order: TaskOrder,
    concurrent_tasks: usize,
) -> Option<InstructionResult> {
    shared.update_state(|state| state.tasks_running += 1);
    let result = shared
        .compute
        .run(&shared.client, &shared.token, order, concurrent_tasks)
        .await;
    shared.update_state(|state| {
        state.tasks_running = state.tasks_running.saturating_sub(1);
        if let Some(InstructionResult::Ran { running_ms, .. }) = &result {
            state.tasks_done += 1;
            state.compute_ms_done += running_ms;
        }
    });
    result
}
