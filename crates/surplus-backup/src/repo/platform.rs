//! What differs between Unix and other systems: names as bytes, a file's mode, times and
//! inode, and symbolic links.

use std::io;
use std::path::{Path, PathBuf};

#[cfg(unix)]
pub(super) fn os_bytes(name: &std::ffi::OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    name.as_bytes().to_vec()
}

#[cfg(not(unix))]
pub(super) fn os_bytes(name: &std::ffi::OsStr) -> Vec<u8> {
    name.to_string_lossy().into_owned().into_bytes()
}

#[cfg(unix)]
pub(super) fn os_path(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

#[cfg(not(unix))]
pub(super) fn os_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(unix)]
pub(super) fn unix_metadata(meta: &std::fs::Metadata) -> (u32, i64, i64, u64) {
    use std::os::unix::fs::MetadataExt;
    (
        meta.mode() & 0o7777,
        meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        meta.ino(),
    )
}

#[cfg(not(unix))]
pub(super) fn unix_metadata(meta: &std::fs::Metadata) -> (u32, i64, i64, u64) {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    (
        if meta.permissions().readonly() {
            0o444
        } else {
            0o644
        },
        mtime,
        0,
        0,
    )
}

#[cfg(unix)]
pub(super) fn make_symlink(target: &Path, path: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, path)
}

#[cfg(not(unix))]
pub(super) fn make_symlink(_target: &Path, _path: &Path) -> io::Result<()> {
    Err(io::Error::other("symbolic links are restored on Unix only"))
}
