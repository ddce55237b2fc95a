//! Compute for the subscriber who submits: a job's module and inputs checked and sent, and a
//! job followed to its end.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use surplus_protocol::{Job, JobInput, JobRequest};
use uuid::Uuid;

use super::{Control, ControlError, Result};

/// A job as a person describes it: files on this PC, and how its tasks may run.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFiles {
    /// A WASI preview 1 command.
    pub module: PathBuf,
    /// One task per input; each task sees its input on stdin and at `/input/NAME`.
    pub inputs: Vec<PathBuf>,
    pub args: Vec<String>,
    /// How many identical outputs make a result.
    pub replicas: u32,
    /// The most one run of a task may take while running.
    pub timeout: Duration,
    pub memory_bytes: u64,
    /// Whether the subscriber's own devices may run its tasks too.
    pub own_devices: bool,
    /// How long the job may take before its unfinished tasks expire.
    pub deadline: Duration,
    /// Whether outputs must agree across CPU architectures.
    pub cross_architecture: bool,
}

impl Control {
    /// Checks a job's files, sends its module and inputs to the hub's staging store, and submits
    /// it. Refused before anything is sent: inputs with the same file name (results are written
    /// as `NAME.out`), an input that is not a file or whose name a task cannot see, a module that
    /// is not WebAssembly.
    #[tracing::instrument(skip_all, fields(module = %job.module.display(), inputs = job.inputs.len()))]
    pub async fn submit_job(&self, job: JobFiles) -> Result<Job> {
        let mut names = HashSet::new();
        let mut inputs = Vec::with_capacity(job.inputs.len());
        for input in &job.inputs {
            let name = input_name(input)?;
            if !names.insert(name.clone()) {
                return Err(ControlError::Input(format!(
                    "two inputs are named {name:?}: results are written as NAME.out, so input \
                     names must differ"
                )));
            }
            inputs.push((name, input));
        }
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ControlError::Io { path, source }
        };
        let wasm = std::fs::read(&job.module).map_err(io(&job.module))?;
        if !wasm.starts_with(b"\0asm") {
            return Err(ControlError::Input(format!(
                "{} is not a WebAssembly module (build a WASI preview 1 command, e.g. --target \
                 wasm32-wasip1)",
                job.module.display()
            )));
        }
        let client = self.client()?;
        let token = self.any_token()?;
        let upload = async |path: &Path| {
            client
                .upload_file(&token, path, None)
                .await
                .map_err(|source| ControlError::Upload {
                    path: path.to_owned(),
                    source,
                })
        };
        let module = upload(&job.module).await?;
        let mut staged = Vec::with_capacity(inputs.len());
        for (name, path) in inputs {
            let blob = upload(path).await?;
            staged.push(JobInput {
                name,
                hash: blob.hash,
                size: blob.size,
            });
        }
        let request = JobRequest {
            module,
            inputs: staged,
            args: job.args,
            replicas: job.replicas,
            timeout_seconds: job.timeout.as_secs().max(1),
            memory_bytes: job.memory_bytes,
            own_devices: job.own_devices,
            deadline_seconds: job.deadline.as_secs().max(1),
            cross_architecture: job.cross_architecture,
        };
        Ok(client.submit_job(&token, &request).await?)
    }

    /// A job as it stands now, or, given `wait`, once it has ended or `wait` has passed
    /// (whichever comes first: the caller tells which from the job's state).
    pub async fn follow_job(&self, job: Uuid, wait: Option<Duration>) -> Result<Job> {
        let client = self.client()?;
        let token = self.any_token()?;
        let mut view = client.job(&token, job).await?;
        if let Some(wait) = wait {
            let deadline = tokio::time::Instant::now() + wait;
            let mut pause = Duration::from_millis(200);
            while !view.state.is_final() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(pause.min(deadline - tokio::time::Instant::now())).await;
                pause = (pause * 2).min(Duration::from_secs(2));
                view = client.job(&token, job).await?;
            }
        }
        Ok(view)
    }
}

/// An input's name as the task sees it: its file name, which must be one a task can see, of a
/// file that exists.
pub fn input_name(path: &Path) -> Result<String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            ControlError::Input(format!("{} has no file name in UTF-8", path.display()))
        })?
        .to_owned();
    if let Some(problem) = JobInput::name_problem(&name) {
        return Err(ControlError::Input(format!(
            "{}: {problem}",
            path.display()
        )));
    }
    let meta = std::fs::metadata(path).map_err(|source| ControlError::Io {
        path: path.to_owned(),
        source,
    })?;
    if !meta.is_file() {
        return Err(ControlError::Input(format!(
            "the input {} is not a file",
            path.display()
        )));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(dir: &Path, module: &[u8], inputs: &[&str]) -> JobFiles {
        std::fs::write(dir.join("task.wasm"), module).expect("module");
        let mut paths = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let folder = dir.join(format!("in{i}"));
            std::fs::create_dir_all(&folder).expect("folder");
            let path = folder.join(input);
            std::fs::write(&path, b"data").expect("input");
            paths.push(path);
        }
        JobFiles {
            module: dir.join("task.wasm"),
            inputs: paths,
            args: Vec::new(),
            replicas: 2,
            timeout: Duration::from_secs(60),
            memory_bytes: 1 << 26,
            own_devices: false,
            deadline: Duration::from_secs(3600),
            cross_architecture: false,
        }
    }

    /// Every refusal comes before the hub is asked: this data directory has none.
    async fn refusal(job: JobFiles, dir: &Path) -> String {
        let control = Control::new(&dir.join("data"));
        match control.submit_job(job).await {
            Err(ControlError::Input(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_job_that_cannot_run_is_refused_before_anything_is_sent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let twins = job(dir.path(), b"\0asm\x01\0\0\0", &["a.txt", "a.txt"]);
        assert!(
            refusal(twins, dir.path())
                .await
                .contains("two inputs are named \"a.txt\"")
        );
        let not_wasm = job(dir.path(), b"#!/bin/sh", &["a.txt"]);
        assert!(
            refusal(not_wasm, dir.path())
                .await
                .contains("is not a WebAssembly module")
        );
        let mut folder_input = job(dir.path(), b"\0asm\x01\0\0\0", &[]);
        folder_input.inputs = vec![dir.path().to_owned()];
        assert!(
            refusal(folder_input, dir.path())
                .await
                .ends_with("is not a file")
        );
    }

    #[tokio::test]
    async fn a_good_job_goes_on_to_the_hub() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = job(dir.path(), b"\0asm\x01\0\0\0", &["a.txt", "b.txt"]);
        let control = Control::new(&dir.path().join("data"));
        // Past every check, it stops only for want of a hub to send it to.
        assert!(matches!(
            control.submit_job(good).await,
            Err(ControlError::NoHub)
        ));
    }
}
