//! Everything the hub sends is checked here before it touches this device.
//!
//! The agent treats the hub as untrusted: a hostile or compromised hub must not make it build a
//! path outside its data directory, run code outside the sandbox, exceed a limit of its own, or
//! delete a user's file. So every instruction passes [`check_instruction`] before it is carried
//! out: each name and hash in it that becomes part of a path is one plain path component (a hash
//! is 64 lower-case hex digits; a file name has no separator, no `..`, no control character and
//! a bounded length), and a task's limits are within the device's own ([`TaskCeilings`]).
//! Files made from the hub's bytes are created with [`create_new`] in a folder the agent made
//! itself ([`fresh_private_dir`]), so a link planted there is never followed.
//!
//! The vault and the sandbox check names again on their side; this is the one place that says
//! what the agent accepts.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use surplus_protocol::{InstructionKind, JobInput, TaskLimits, is_blob_hash};

/// Why an instruction was refused, in words for the hub's records and the agent's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// The most a task may ask of this device, whatever the hub's order says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskCeilings {
    pub memory_bytes: u64,
    pub timeout_ms: u64,
    pub output_bytes: u64,
    /// The largest module and input fetched for a task (each is held in memory).
    pub module_bytes: u64,
    pub input_bytes: u64,
    /// Tasks that may run at once: the user's share of the cores, at least one.
    pub concurrent_tasks: usize,
}

impl TaskCeilings {
    /// The device's own ceilings: at most 4 GiB of memory, a day of running time and 64 MiB of
    /// output per task (what a job may ask of the hub at most), a module of the sandbox's
    /// largest, an input of 256 MiB, and as many tasks at once as the user's share of the cores
    /// allows.
    pub fn for_device(cores: usize, cores_percent: u8) -> TaskCeilings {
        TaskCeilings {
            memory_bytes: 4 << 30,
            timeout_ms: 24 * 3600 * 1000,
            output_bytes: surplus_protocol::TASK_OUTPUT_BYTES,
            module_bytes: surplus_sandbox::MAX_MODULE_BYTES as u64,
            input_bytes: 256 << 20,
            concurrent_tasks: compute_slots(cores, cores_percent),
        }
    }

    /// Refuses limits past the ceilings. A task is refused rather than run under smaller limits:
    /// a run cut short here would disagree with honest runs elsewhere.
    pub fn check(&self, limits: &TaskLimits) -> Result<(), Refusal> {
        let over = |what: &str, asked: u64, most: u64| {
            Refusal(format!(
                "the task asks for {asked} {what}, more than this device's ceiling of {most}"
            ))
        };
        if limits.memory_bytes > self.memory_bytes {
            return Err(over(
                "bytes of memory",
                limits.memory_bytes,
                self.memory_bytes,
            ));
        }
        if limits.timeout_ms > self.timeout_ms {
            return Err(over(
                "ms of running time",
                limits.timeout_ms,
                self.timeout_ms,
            ));
        }
        if limits.output_bytes > self.output_bytes {
            return Err(over(
                "bytes of output",
                limits.output_bytes,
                self.output_bytes,
            ));
        }
        Ok(())
    }
}

/// How many tasks may run at once on `cores` cores when the user lends `cores_percent` of them:
/// the share rounded down, at least one when anything is lent at all.
pub fn compute_slots(cores: usize, cores_percent: u8) -> usize {
    if cores_percent == 0 {
        return 0;
    }
    (cores * usize::from(cores_percent.min(100)) / 100).max(1)
}

/// A blob's name from the hub: 64 lower-case hex digits, so it is one safe path component.
pub fn blob_hash(hash: &str) -> Result<&str, Refusal> {
    if is_blob_hash(hash) {
        Ok(hash)
    } else {
        Err(Refusal(format!(
            "{:?} is not a blob hash (64 lower-case hex digits)",
            shorten(hash)
        )))
    }
}

/// A file name from the hub: one plain path component that can be shown safely.
pub fn file_name(name: &str) -> Result<&str, Refusal> {
    if let Some(problem) = JobInput::name_problem(name) {
        return Err(Refusal(problem));
    }
    if let Some(c) = surplus_protocol::unsafe_char(name) {
        return Err(Refusal(format!(
            "the name {:?} contains the control character U+{:04X}",
            shorten(name),
            u32::from(c)
        )));
    }
    Ok(name)
}

/// Checks every name, hash and limit in an instruction before any of it is used. (How many tasks
/// run at once is checked where they are started, `Compute::run`, under one lock.)
pub fn check_instruction(kind: &InstructionKind, ceilings: &TaskCeilings) -> Result<(), Refusal> {
    match kind {
        InstructionKind::StoreBlob { blob, .. } => blob_hash(&blob.hash).map(drop),
        InstructionKind::DeleteBlob { hash, .. }
        | InstructionKind::VerifyBlob { hash, .. }
        | InstructionKind::UploadBlob { hash } => blob_hash(hash).map(drop),
        InstructionKind::RunTask {
            module,
            input,
            limits,
            args,
            ..
        } => {
            blob_hash(&module.hash)?;
            blob_hash(&input.hash)?;
            file_name(&input.name)?;
            if module.size > ceilings.module_bytes || input.size > ceilings.input_bytes {
                return Err(Refusal(format!(
                    "the task's module ({} bytes) or input ({} bytes) is larger than this device \
                     takes ({} and {})",
                    module.size, input.size, ceilings.module_bytes, ceilings.input_bytes
                )));
            }
            if args.len() > 1000 || args.iter().map(String::len).sum::<usize>() > 64 << 10 {
                return Err(Refusal(
                    "the task's arguments are too many or too long".into(),
                ));
            }
            ceilings.check(limits)
        }
        InstructionKind::ReportStatus
        | InstructionKind::CancelTask { .. }
        | InstructionKind::Unsupported => Ok(()),
    }
}

/// Makes the folder `path` and its missing parents, each new one opened only by this user.
pub fn private_dir_all(path: &Path) -> io::Result<()> {
    crate::private_fs::dir_all(path)
}

/// Makes `path` an empty folder that only this user can open (0700 on Unix), removing whatever
/// was there. A link left in its place is removed, not followed.
pub fn fresh_private_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path)?,
        Ok(_) => fs::remove_file(path)?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Creates the file `name` in `dir` for writing, only if nothing is there: an existing file or
/// a link (even one pointing nowhere) is an error, never followed or overwritten. The file is
/// readable by this user only (0600 on Unix). `name` must have passed [`file_name`] or
/// [`blob_hash`].
pub fn create_new(dir: &Path, name: &str) -> io::Result<File> {
    if file_name(name).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} is not a plain file name", shorten(name)),
        ));
    }
    crate::private_fs::new_file().open(dir.join(name))
}

/// At most 80 characters of what the hub sent, for messages.
fn shorten(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use surplus_protocol::BlobRef;

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn ceilings() -> TaskCeilings {
        TaskCeilings::for_device(4, 50)
    }

    fn run_task(module: &str, input_hash: &str, name: &str, limits: TaskLimits) -> InstructionKind {
        InstructionKind::RunTask {
            run: uuid::Uuid::nil(),
            module: BlobRef {
                hash: module.into(),
                size: 1,
            },
            input: JobInput {
                name: name.into(),
                hash: input_hash.into(),
                size: 1,
            },
            args: vec![],
            seed: 0,
            limits,
            floats: surplus_protocol::Floats::Native,
        }
    }

    const LIMITS: TaskLimits = TaskLimits {
        timeout_ms: 60_000,
        memory_bytes: 64 << 20,
        output_bytes: 1 << 20,
    };

    /// Names a hostile hub would send to climb out of a folder or to hide what it does.
    const HOSTILE: &[&str] = &[
        "",
        ".",
        "..",
        "../x",
        "../../../../home/user/.ssh/authorized_keys",
        "/etc/passwd",
        "a/b",
        "a\\b",
        "C:\\Windows",
        "nul\0byte",
        "line\nbreak",
        "esc\u{1b}[2J",
        "right\u{202E}txt.exe",
        "zero\u{200B}width",
    ];

    #[test]
    fn hostile_names_and_hashes_are_refused_in_every_instruction() {
        for bad in HOSTILE {
            assert!(file_name(bad).is_err(), "{bad:?} passed as a file name");
            assert!(blob_hash(bad).is_err(), "{bad:?} passed as a hash");
            let kinds = [
                run_task(bad, HASH, "in.txt", LIMITS),
                run_task(HASH, bad, "in.txt", LIMITS),
                run_task(HASH, HASH, bad, LIMITS),
                InstructionKind::StoreBlob {
                    blob: BlobRef {
                        hash: (*bad).into(),
                        size: 1,
                    },
                    allocation_id: uuid::Uuid::nil(),
                },
                InstructionKind::DeleteBlob {
                    hash: (*bad).into(),
                    allocation_id: None,
                },
                InstructionKind::VerifyBlob {
                    hash: (*bad).into(),
                    offset: 0,
                    length: 1,
                },
                InstructionKind::UploadBlob {
                    hash: (*bad).into(),
                },
            ];
            for kind in kinds {
                assert!(
                    check_instruction(&kind, &ceilings()).is_err(),
                    "{kind:?} was accepted"
                );
            }
        }
        assert!(file_name(&"x".repeat(201)).is_err());
        assert!(blob_hash(&HASH.to_uppercase()).is_err());
        assert!(blob_hash(&HASH[..63]).is_err());
    }

    #[test]
    fn plain_names_and_hashes_pass() {
        for good in [
            "range-1.txt",
            "café.txt",
            "a b",
            ".hidden",
            "x".repeat(200).as_str(),
        ] {
            assert_eq!(file_name(good), Ok(good));
        }
        assert_eq!(blob_hash(HASH), Ok(HASH));
        assert_eq!(
            check_instruction(&run_task(HASH, HASH, "in.txt", LIMITS), &ceilings()),
            Ok(())
        );
        for kind in [
            InstructionKind::ReportStatus,
            InstructionKind::CancelTask {
                run: uuid::Uuid::nil(),
            },
        ] {
            assert_eq!(check_instruction(&kind, &ceilings()), Ok(()));
        }
    }

    #[test]
    fn limits_past_the_devices_ceilings_are_refused() {
        let ceilings = ceilings();
        for limits in [
            TaskLimits {
                memory_bytes: ceilings.memory_bytes + 1,
                ..LIMITS
            },
            TaskLimits {
                timeout_ms: ceilings.timeout_ms + 1,
                ..LIMITS
            },
            TaskLimits {
                output_bytes: ceilings.output_bytes + 1,
                ..LIMITS
            },
        ] {
            let kind = run_task(HASH, HASH, "in.txt", limits);
            assert!(check_instruction(&kind, &ceilings).is_err(), "{limits:?}");
        }
        let mut too_big = run_task(HASH, HASH, "in.txt", LIMITS);
        if let InstructionKind::RunTask { module, .. } = &mut too_big {
            module.size = ceilings.module_bytes + 1;
        }
        assert!(check_instruction(&too_big, &ceilings).is_err());
        let mut too_big = run_task(HASH, HASH, "in.txt", LIMITS);
        if let InstructionKind::RunTask { input, .. } = &mut too_big {
            input.size = ceilings.input_bytes + 1;
        }
        assert!(check_instruction(&too_big, &ceilings).is_err());
        let at_the_ceilings = TaskLimits {
            memory_bytes: ceilings.memory_bytes,
            timeout_ms: ceilings.timeout_ms,
            output_bytes: ceilings.output_bytes,
        };
        assert_eq!(ceilings.check(&at_the_ceilings), Ok(()));
    }

    #[test]
    fn the_share_of_cores_sets_how_many_tasks_run_at_once() {
        assert_eq!(compute_slots(4, 50), 2);
        assert_eq!(compute_slots(4, 100), 4);
        assert_eq!(compute_slots(2, 10), 1);
        assert_eq!(compute_slots(8, 0), 0);
        assert_eq!(compute_slots(8, 255), 8);
    }

    #[cfg(unix)]
    #[test]
    fn files_are_created_private_and_links_are_never_followed() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("tempdir");
        let outside = root.path().join("outside");
        std::fs::write(&outside, b"the user's file").expect("write");
        let dir = root.path().join("task");
        // A link where the folder should be is removed, not followed.
        std::os::unix::fs::symlink(root.path(), &dir).expect("symlink");
        fresh_private_dir(&dir).expect("fresh dir");
        assert!(std::fs::symlink_metadata(&dir).expect("meta").is_dir());
        let mode = std::fs::metadata(&dir).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(outside.exists(), "the link's target was removed");

        // A link planted under the name is an error, and its target is untouched.
        std::os::unix::fs::symlink(&outside, dir.join("input.txt")).expect("symlink");
        assert!(create_new(&dir, "input.txt").is_err());
        assert_eq!(std::fs::read(&outside).expect("read"), b"the user's file");
        // A dangling link too.
        std::os::unix::fs::symlink(root.path().join("nowhere"), dir.join("other")).expect("link");
        assert!(create_new(&dir, "other").is_err());
        assert!(!root.path().join("nowhere").exists());

        let file = create_new(&dir, "fresh.txt").expect("create");
        let mode = file.metadata().expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(create_new(&dir, "../escape").is_err());
        assert!(!root.path().join("escape").exists());
    }
}
