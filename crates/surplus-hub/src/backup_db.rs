//! A copy of the hub's database, taken while it serves: the one place that knows where every
//! shard is, whose keys are escrowed and what the ledger says.
//!
//! - SQLite: `VACUUM INTO` writes a consistent, compacted copy in one read transaction; the hub
//!   keeps serving meanwhile. Restoring is copying it back while the hub is stopped.
//! - PostgreSQL: `pg_dump --format=custom`, run by this command with the password passed in the
//!   environment (never on a command line); restoring is `pg_restore` into an empty database.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::store::{Backend, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{} already exists: a backup never overwrites a file", .0.display())]
    Exists(PathBuf),
    #[error("creating {}: {source}", .path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "pg_dump is not installed (it comes with Debian's postgresql-client): install it, or run \
         pg_dump --format=custom yourself"
    )]
    NoPgDump,
    #[error("pg_dump failed: {0}")]
    PgDump(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Writes a consistent copy of the database at `url`, served by `store`, to `to` (a new file,
/// readable by its owner only).
pub async fn backup(store: &Store, url: &str, to: &Path) -> Result<(), BackupError> {
    // Made new and owner-only first: a backup never overwrites a file, and both VACUUM INTO (into
    // an empty file) and pg_dump write into it keeping its permissions.
    crate::private_file()
        .create_new(true)
        .open(to)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => BackupError::Exists(to.to_owned()),
            _ => BackupError::Create {
                path: to.to_owned(),
                source,
            },
        })?;
    let written = match store.backend() {
        Backend::Sqlite => store.vacuum_into(to).await.map_err(BackupError::from),
        Backend::Postgres => pg_dump(url, to),
    };
    if written.is_err() {
        let _ = std::fs::remove_file(to);
    }
    written
}

fn pg_dump(url: &str, to: &Path) -> Result<(), BackupError> {
    let program = find_pg_dump().ok_or(BackupError::NoPgDump)?;
    let (url, password) = split_password(url);
    let mut command = Command::new(program);
    command
        .arg("--format=custom")
        .arg("--no-owner")
        .arg("--file")
        .arg(to)
        .arg("--dbname")
        .arg(&url);
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let output = command
        .output()
        .map_err(|error| BackupError::PgDump(error.to_string()))?;
    if !output.status.success() {
        return Err(BackupError::PgDump(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    Ok(())
}

/// `pg_dump` on the PATH, else the newest under Debian's `/usr/lib/postgresql/*/bin`.
fn find_pg_dump() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("pg_dump"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse().ok()?;
                let program = entry.path().join("bin/pg_dump");
                program.is_file().then_some((version, program))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, program)| program)
    })
}

/// The URL without its password, and the password: `postgres://u:p@h/db` -> (`postgres://u@h/db`, `p`).
fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return (url.to_owned(), None);
    };
    match userinfo.split_once(':') {
        Some((user, password)) => (
            format!("{scheme}://{user}@{host}"),
            Some(password.to_owned()),
        ),
        None => (url.to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_goes_to_the_environment_not_the_command_line() {
        assert_eq!(
            split_password("postgres://hub:s3cret@db.example.org:5432/surplus"),
            (
                "postgres://hub@db.example.org:5432/surplus".to_owned(),
                Some("s3cret".to_owned())
            )
        );
        assert_eq!(
            split_password("postgres://hub@localhost/surplus"),
            ("postgres://hub@localhost/surplus".to_owned(), None)
        );
    }
}
