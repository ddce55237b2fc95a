//! `surplus compute ...`: submit WebAssembly jobs, follow them, fetch their validated results.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use surplus_agent::units::{self, Size};
use surplus_protocol::{Floats, Job, JobState, TaskState};

use surplus_agent::control::{Control, JobFiles};

use crate::print::{print_json, when};

#[derive(Debug, Subcommand)]
pub enum ComputeCommand {
    /// Submit a job: MODULE.wasm (a WASI preview 1 command) runs once per input, on other
    /// subscribers' idle machines, until a quorum of identical outputs agrees.
    Submit {
        module: PathBuf,
        /// An input file: each one is a task, which sees it on stdin and at /input/NAME.
        #[arg(long = "input", required = true)]
        inputs: Vec<PathBuf>,
        /// An argument every task gets after its input's name (repeatable).
        #[arg(long = "arg", allow_hyphen_values = true)]
        args: Vec<String>,
        /// How many identical outputs make a result (1-8).
        #[arg(long, default_value_t = surplus_protocol::DEFAULT_REPLICAS)]
        replicas: u32,
        /// The most one run of a task may take while running, e.g. 10m or 90s.
        #[arg(long, default_value = "10m", value_parser = units::parse_duration)]
        timeout: Duration,
        /// The memory cap of each run, e.g. 512MiB.
        #[arg(long, default_value = "512MiB", value_parser = units::parse_size)]
        memory: u64,
        /// Let your own devices run its tasks too.
        #[arg(long)]
        own_devices: bool,
        /// How long the job may take, e.g. 24h or 30m: then its unfinished tasks expire.
        #[arg(long, default_value = "24h", value_parser = units::parse_duration)]
        deadline: Duration,
        /// Its outputs must agree bit for bit across CPU architectures (x86 and Arm): any
        /// donor may run a task, with slower floating point (NaNs canonicalised). Without it,
        /// the runs of each task go to donors of one architecture.
        #[arg(long)]
        cross_architecture: bool,
        #[arg(long)]
        json: bool,
    },
    /// A job's state and its tasks'.
    Status {
        job: uuid::Uuid,
        /// Wait up to this long for the job to end, e.g. 5m.
        #[arg(long, value_parser = humantime::parse_duration)]
        wait: Option<Duration>,
        #[arg(long)]
        json: bool,
    },
    /// Write each validated output as DIR/<input file name>.out.
    Results {
        job: uuid::Uuid,
        #[arg(long)]
        out: PathBuf,
    },
    /// Cancel a job: tasks not done are dropped and donors stop them.
    Cancel { job: uuid::Uuid },
    /// Your jobs, newest first.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub async fn compute(context: &Control, command: ComputeCommand) -> anyhow::Result<()> {
    let client = context.client()?;
    let token = context.any_token()?;
    match command {
        ComputeCommand::Submit {
            module,
            inputs,
            args,
            replicas,
            timeout,
            memory,
            own_devices,
            deadline,
            cross_architecture,
            json,
        } => {
            let job = context
                .submit_job(JobFiles {
                    module,
                    inputs,
                    args,
                    replicas,
                    timeout,
                    memory_bytes: memory,
                    own_devices,
                    deadline,
                    cross_architecture,
                })
                .await?;
            if json {
                print_json(&serde_json::json!({
                    "job": job.id, "state": job.state, "tasks": job.tasks.len(),
                }))?;
            } else {
                println!(
                    "job {} submitted: {} task(s), each needs {} matching output(s)",
                    job.id,
                    job.tasks.len(),
                    job.replicas
                );
                println!("follow it with `surplus compute status {}`", job.id);
            }
            Ok(())
        }
        ComputeCommand::Status { job, wait, json } => {
            let view = context.follow_job(job, wait).await?;
            if json {
                print_json(&view)?;
            } else {
                print_job(&view);
            }
            if wait.is_some() && !view.state.is_final() {
                bail!(
                    "job {job} is still {} after {}",
                    view.state.as_str(),
                    humantime::format_duration(wait.unwrap_or_default())
                );
            }
            Ok(())
        }
        ComputeCommand::Results { job, out } => {
            let view = client.job(&token, job).await?;
            if let Some(dropped) = view.results_dropped_at {
                bail!(
                    "the results of job {job} have expired: the hub keeps them for a while after a \
                     job ends, and dropped them at {}",
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH
                            + Duration::from_millis(u64::try_from(dropped).unwrap_or(0))
                    )
                );
            }
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let mut written = 0;
            let mut missing = Vec::new();
            for task in &view.tasks {
                let Some(output) = &task.output else {
                    missing.push(format!("{} ({})", task.input, task.state.as_str()));
                    continue;
                };
                // The name comes from the hub, which is not trusted to say where files go: only
                // a plain file name is written, and only inside DIR.
                if let Err(refusal) = surplus_agent::untrusted::file_name(&task.input)
                    .and_then(|_| surplus_agent::untrusted::blob_hash(&output.hash))
                {
                    missing.push(format!("{:?} (refused: {refusal})", task.input));
                    continue;
                }
                let path = out.join(format!("{}.out", task.input));
                client
                    .fetch_blob_to(&token, &output.hash, &path, Duration::from_secs(60))
                    .await
                    .with_context(|| format!("fetching the output of {}", task.input))?;
                written += 1;
            }
            println!("{written} validated output(s) written to {}", out.display());
            if !missing.is_empty() {
                bail!(
                    "{} task(s) have no validated output: {}",
                    missing.len(),
                    missing.join(", ")
                );
            }
            Ok(())
        }
        ComputeCommand::Cancel { job } => {
            let view = client.cancel_job(&token, job).await?;
            println!(
                "job {} cancelled: {} task(s) completed before, {} cancelled",
                view.id, view.counts.completed, view.counts.cancelled
            );
            Ok(())
        }
        ComputeCommand::List { json } => {
            let jobs = client.jobs(&token).await?;
            if json {
                return print_json(&jobs);
            }
            if jobs.is_empty() {
                println!("no jobs yet: `surplus compute submit MODULE.wasm --input FILE`");
            }
            for job in &jobs {
                println!(
                    "{}  {:<9}  {} task(s): {} completed, {} failed  {:.1} core-s  {}",
                    job.id,
                    job.state.as_str(),
                    total(job),
                    job.counts.completed,
                    job.counts.failed,
                    job.core_seconds,
                    when(job.created_at)
                );
            }
            Ok(())
        }
    }
}

fn total(job: &Job) -> u32 {
    let c = job.counts;
    c.queued + c.running + c.completed + c.failed + c.cancelled + c.expired
}

fn print_job(job: &Job) {
    let c = job.counts;
    println!("job {}: {}", job.id, job.state.as_str());
    println!(
        "  {} task(s): {} completed, {} running, {} queued, {} failed, {} cancelled, {} expired",
        total(job),
        c.completed,
        c.running,
        c.queued,
        c.failed,
        c.cancelled,
        c.expired
    );
    println!(
        "  {} matching output(s) per task, {}, timeout {}s, memory {}, {:.1} core-seconds used",
        job.replicas,
        match job.floats {
            Floats::Native => "each task on one CPU architecture",
            Floats::Portable => "agreeing across CPU architectures",
        },
        job.timeout_seconds,
        Size(job.memory_bytes),
        job.core_seconds
    );
    for task in &job.tasks {
        let runs = task
            .runs
            .iter()
            .map(|r| r.state.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let detail = match (&task.state, &task.error) {
            (TaskState::Failed | TaskState::Expired, Some(error)) => format!(": {error}"),
            _ => String::new(),
        };
        println!(
            "  {:<24} {:<9} runs: {}{detail}",
            task.input,
            task.state.as_str(),
            if runs.is_empty() { "none yet" } else { &runs }
        );
    }
    if job.state == JobState::Completed {
        println!(
            "fetch the results with `surplus compute results {} --out DIR`",
            job.id
        );
    }
}
