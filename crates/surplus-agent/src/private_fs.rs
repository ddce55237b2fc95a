//! Folders and files that only this user can open.
//!
//! The data directory holds credentials, the vault other subscribers' shards, and a running
//! task's input: none of it is for other users of the machine. New folders are made 0700 and
//! new files 0600 on Unix, whatever the umask says; elsewhere the platform's per-user defaults
//! apply.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::Path;

/// Makes the folder `path` and its missing parents, each new one open to this user only.
pub fn dir_all(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Options that create a new file open to this user only (and fail if anything is there).
pub fn new_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn new_folders_and_files_are_the_users_alone() {
        let root = tempfile::tempdir().expect("tempdir");
        let deep = root.path().join("a").join("b");
        dir_all(&deep).expect("dirs");
        for dir in [root.path().join("a"), deep.clone()] {
            let mode = fs::metadata(&dir).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
        }
        let file = new_file().open(deep.join("f")).expect("file");
        assert_eq!(
            file.metadata().expect("meta").permissions().mode() & 0o777,
            0o600
        );
        assert!(
            new_file().open(deep.join("f")).is_err(),
            "an existing file was reopened"
        );
    }
}
