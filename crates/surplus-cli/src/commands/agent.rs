//! `surplus agent`: the headless agent, in the foreground until a signal ends it.

use std::time::Duration;

use surplus_agent::control::Control;
use surplus_agent::probe::{OverrideProbe, SystemProbe};
use surplus_agent::worker::{Worker, WorkerOptions};

pub(crate) async fn agent(context: &Control) -> anyhow::Result<()> {
    let probe = Box::new(OverrideProbe::from_env(SystemProbe::new()));
    let mut options = WorkerOptions {
        // Each compute task runs in a process of its own: this program, run as `run-task`.
        task_runner: std::env::current_exe()
            .ok()
            .filter(|_| cfg!(unix))
            .map(|program| surplus_agent::compute::Runner {
                program,
                args: vec!["run-task".to_owned()],
            }),
        ..WorkerOptions::default()
    };
    // How long the agent waits after a change in a backed-up folder before backing it up.
    if let Some(seconds) = std::env::var("SURPLUS_BACKUP_DEBOUNCE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        options.backup_debounce = Duration::from_secs(seconds);
    }
    let worker = Worker::new(context.data_dir(), context.hub(), probe, options)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    worker.run(stopped).await?;
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut terminate) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
