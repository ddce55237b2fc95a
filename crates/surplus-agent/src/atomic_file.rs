//! Whole-file replacement that a crash can never leave half done.
//!
//! Settings and credentials are small files rewritten as a whole. Writing them in place would leave
//! a truncated file behind if the machine lost power mid-write, so each write goes to a temporary
//! file in the same directory, is flushed to disk, and then replaces the old file with one rename,
//! which the file system performs atomically.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes temporary files written by different calls in one process.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Who may read a file written by [`write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Visibility {
    /// The default permissions of new files (settings are not secret).
    Ordinary,
    /// Readable and writable by the owner only (mode 0600 on Unix), set before any byte is
    /// written so that a secret is never readable by others, not even for a moment.
    Private,
}

/// Replaces the file at `path` with `contents`, atomically and durably.
///
/// The parent directory must exist. On failure the old file, if any, is left untouched and the
/// temporary file is removed.
pub(crate) fn write(path: &Path, contents: &[u8], visibility: Visibility) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_then_rename(&temp, path, contents, visibility);
    if result.is_err() {
        // Best effort: the temporary file is useless now, and the real error is the one to report.
        let _ = fs::remove_file(&temp);
    }
    result
}

fn write_then_rename(
    temp: &Path,
    path: &Path,
    contents: &[u8],
    visibility: Visibility,
) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if visibility == Visibility::Private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = visibility;
    let mut file = options.open(temp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(temp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Flushes a directory's entries to disk, so that a rename or a new file in it survives a crash.
///
/// Only Unix can open a directory as a file; elsewhere the file system journals renames itself and
/// this does nothing.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_whole_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("settings.toml");
        write(&path, b"first version, rather long", Visibility::Ordinary).expect("write");
        write(&path, b"second", Visibility::Ordinary).expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"second");
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("settings.toml")]);
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        write(&path, b"s3cret", Visibility::Private).expect("write");
        let mode = fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing").join("file");
        assert!(write(&path, b"x", Visibility::Ordinary).is_err());
    }
}
