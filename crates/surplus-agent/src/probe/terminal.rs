//! A console or SSH session's idle time, from its terminals' access times.

use std::path::Path;

use surplus_protocol::UserActivity;

/// The time since the last input on any terminal (`/dev/pts/*`, `/dev/tty<N>`): reading input
/// updates a terminal's access time, which is what `w` shows as IDLE.
pub(super) fn terminal_activity() -> UserActivity {
    let mut latest: Option<std::time::SystemTime> = None;
    let mut consider = |path: &Path| {
        if let Ok(accessed) = std::fs::metadata(path).and_then(|meta| meta.accessed()) {
            latest = Some(latest.map_or(accessed, |seen| seen.max(accessed)));
        }
    };
    if let Ok(entries) = std::fs::read_dir("/dev/pts") {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
            {
                consider(&entry.path());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/dev") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name
                .strip_prefix("tty")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            {
                consider(&entry.path());
            }
        }
    }
    match latest {
        Some(latest) => {
            let idle = std::time::SystemTime::now()
                .duration_since(latest)
                .unwrap_or_default();
            UserActivity::Idle {
                idle_seconds: idle.as_secs(),
            }
        }
        None => UserActivity::Unknown,
    }
}
