//! The agent core's worker, on a tokio runtime of its own in a background thread of the tray
//! process: the tray app donates exactly as the headless agent does.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use surplus_agent::compute::Runner;
use surplus_agent::probe::{OverrideProbe, SystemProbe};
use surplus_agent::worker::{Worker, WorkerHandle, WorkerOptions};
use tokio::sync::watch;

/// A running worker.
pub struct Agent {
    handle: WorkerHandle,
    shutdown: watch::Sender<bool>,
    thread: JoinHandle<()>,
}

impl Agent {
    /// Starts the worker of the device registered in `data_dir`; it runs each compute task with
    /// `task_runner` when there is one, and in this process when not.
    pub fn start(data_dir: &Path, task_runner: Option<Runner>) -> anyhow::Result<Agent> {
        let (shutdown, stop) = watch::channel(false);
        let (ready, started) = mpsc::channel();
        let data_dir: PathBuf = data_dir.to_owned();
        let thread = std::thread::Builder::new()
            .name("surplus-agent".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("surplus-worker")
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready.send(Err(anyhow::Error::from(error)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let probe = Box::new(OverrideProbe::from_env(SystemProbe::new()));
                    let options = WorkerOptions {
                        task_runner,
                        ..WorkerOptions::default()
                    };
                    let worker = match Worker::new(&data_dir, None, probe, options) {
                        Ok(worker) => worker,
                        Err(error) => {
                            let _ = ready.send(Err(error.into()));
                            return;
                        }
                    };
                    let _ = ready.send(Ok(worker.handle()));
                    if let Err(error) = worker.run(stop).await {
                        tracing::error!(%error, "the agent stopped");
                    }
                });
                // Transfers and tasks still running are cut short: the hub sends them again.
                runtime.shutdown_timeout(Duration::from_secs(2));
            })?;
        let handle = started.recv()??;
        Ok(Agent {
            handle,
            shutdown,
            thread,
        })
    }

    pub fn handle(&self) -> &WorkerHandle {
        &self.handle
    }

    /// Stops the worker and waits for its thread.
    pub fn stop(self) {
        let _ = self.shutdown.send(true);
        if self.thread.join().is_err() {
            tracing::error!("the agent's thread panicked");
        }
    }
}
