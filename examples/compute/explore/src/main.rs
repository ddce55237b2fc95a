//! Reports everything a task can see and tries to reach what it should not: a hostile job that
//! the tests run to show that the sandbox gives a task its own input and nothing else.
//!
//! It lists every directory it can open from `/` and from the preopened `/input` downward, reads
//! every file it finds, and then tries paths that escape the input folder (`..`, absolute paths
//! to the host's files) and a write into `/input`. Each line of its output says what it tried and
//! what happened:
//!
//!   file /input/NAME 12 BLAKE-LIKE-CHECKSUM   a file it could read, its size and a checksum
//!   dir /input                                a directory it could list
//!   denied PATH                               something it tried and was refused
//!   escaped PATH ...                          something outside its input that it could read
//!
//! A sandbox that holds gives only `dir /input`, one `file` line for the task's input, and
//! `denied` for the rest. Extra paths to try can be given as arguments.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Paths a task must never reach, tried on top of the walk.
const ESCAPES: &[&str] = &[
    "/input/..",
    "/input/../..",
    "/input/../../..",
    "/input/../../../..",
    "/input/../../../../..",
    "/input/../../../../../..",
    "/etc/passwd",
    "/proc/self/environ",
    "/",
    "..",
    ".",
];

fn main() {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::from("/input")];
    let mut seen = Vec::new();
    while let Some(dir) = todo.pop() {
        if seen.contains(&dir) {
            continue;
        }
        seen.push(dir.clone());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            let _ = writeln!(out, "denied {}", dir.display());
            continue;
        };
        let _ = writeln!(out, "dir {}", dir.display());
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                todo.push(path);
            } else {
                read(&mut out, &path, "file");
            }
        }
    }
    let extra: Vec<String> = std::env::args().skip(1).collect();
    for path in ESCAPES.iter().copied().chain(extra.iter().map(String::as_str)) {
        let path = Path::new(path);
        match std::fs::read_dir(path) {
            Ok(entries) => {
                let names: Vec<String> = entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                let _ = writeln!(out, "escaped {} lists {}", path.display(), names.join(","));
            }
            Err(_) if path.is_file() => read(&mut out, path, "escaped"),
            Err(_) => {
                let _ = writeln!(out, "denied {}", path.display());
            }
        }
    }
    match std::fs::write("/input/written-by-a-task", b"x") {
        Ok(()) => {
            let _ = writeln!(out, "escaped /input/written-by-a-task written");
        }
        Err(_) => {
            let _ = writeln!(out, "denied write /input/written-by-a-task");
        }
    }
    let _ = std::io::stdout().write_all(&out);
}

/// Reads a file and says so, with its size and a checksum of its bytes.
fn read(out: &mut Vec<u8>, path: &Path, tag: &str) {
    match std::fs::read(path) {
        Ok(bytes) => {
            let checksum = bytes
                .iter()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
            let _ = writeln!(out, "{tag} {} {} {checksum:016x}", path.display(), bytes.len());
        }
        Err(_) => {
            let _ = writeln!(out, "denied {}", path.display());
        }
    }
}
