//! Pausing running tasks the moment the machine is not free for them.

use std::sync::{Arc, PoisonError};

use tokio::sync::watch;

use super::error::WorkerError;
use super::shared::Shared;
use crate::clock::now_ms;

/// Pauses running tasks as soon as the machine is not free for them (the user is back, donation
/// paused or consent withdrawn, a full-screen app or a hot CPU, on battery, outside the window)
/// and resumes them when it is again. The user's activity is read every
/// [`crate::compute::GUARD_INTERVAL`] while tasks run, so that a task is paused well within a
/// second of the user's return; while none runs, the guard sleeps until one is admitted, so an
/// idle agent is not woken five times a second.
pub(super) async fn compute_guard(
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let mut tick = tokio::time::interval(crate::compute::GUARD_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Other programs' CPU use, smoothed, and whether it holds the work now.
    let mut busy: Option<f32> = None;
    let mut busy_held = false;
    loop {
        tokio::select! {
            _ = stop.wait_for(|&s| s) => return Ok(()),
            _ = tick.tick() => {}
        }
        if shared.compute.running() == 0 && !shared.compute.is_paused() {
            busy = None;
            busy_held = false;
            tokio::select! {
                _ = stop.wait_for(|&s| s) => return Ok(()),
                () = shared.compute.admitted() => {}
            }
            // A task that starts is judged at once, then every interval.
            tick.reset_immediately();
            continue;
        }
        let settings = shared.settings();
        let (user, reading, comfort) = {
            let mut probe = shared.probe.lock().unwrap_or_else(PoisonError::into_inner);
            (probe.user(), probe.busy(), probe.comfort())
        };
        let comfort = shared.comfort_hold(&settings, comfort);
        let smoothed = busy.map_or(reading, |before| {
            before + (reading - before) * crate::compute::BUSY_SMOOTHING
        });
        busy = Some(smoothed);
        busy_held =
            crate::compute::busy_holds(settings.compute.busy_cpu_percent, smoothed, busy_held);
        let on_battery = *shared
            .on_battery
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let held = crate::compute::hold_reason(
            &settings,
            user,
            comfort,
            on_battery,
            now_ms(),
            crate::clock::local_minute(),
        )
        .or(busy_held.then_some("other programs are busy"));
        if shared.compute.set_paused(held.is_some()) {
            match held {
                Some(reason) => {
                    tracing::info!(reason, tasks = shared.compute.running(), "compute paused")
                }
                None => tracing::info!(tasks = shared.compute.running(), "compute resumed"),
            }
            shared.update_state(|state| state.compute_held = held.map(str::to_owned));
        }
        let paused = u32::try_from(shared.compute.paused_tasks()).unwrap_or(u32::MAX);
        if shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tasks_paused
            != paused
        {
            shared.update_state(|state| state.tasks_paused = paused);
        }
    }
}
