//! News of the device's state: the files the agent and the settings live in, watched in the data
//! directory, so that the tray and the windows show a change as it happens rather than at their
//! next look.

use std::path::Path;

use surplus_agent::settings::SETTINGS_FILE;
use surplus_agent::worker::AgentState;

/// The files whose change is news: the agent's state, the settings, the chart's history.
pub const WATCHED: [&str; 3] = [
    AgentState::FILE,
    SETTINGS_FILE,
    surplus_agent::history::FILE,
];

/// Calls `changed` whenever one of [`WATCHED`] in `data_dir` is written (they are replaced
/// whole, by a rename), for as long as the answer is kept. Fails when the directory cannot be
/// watched (it is not there yet, or inotify has no watch left): the caller then looks on its
/// own schedule alone.
pub fn state_files(
    data_dir: &Path,
    changed: impl Fn() + Send + 'static,
) -> notify::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let news = event.is_ok_and(|event| {
            !event.kind.is_access()
                && event.paths.iter().any(|path| {
                    path.file_name()
                        .and_then(|name| name.to_str())
                        .is_some_and(|name| WATCHED.contains(&name))
                })
        });
        if news {
            changed();
        }
    })?;
    notify::Watcher::watch(&mut watcher, data_dir, notify::RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_state_file_replaced_is_news_and_another_file_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tell, told) = mpsc::channel();
        let _watcher = super::state_files(dir.path(), move || {
            let _ = tell.send(());
        })
        .expect("watch");
        std::fs::write(dir.path().join("unrelated.txt"), b"x").expect("write");
        // Written beside, then renamed over the name, as the agent writes it.
        let temp = dir.path().join(".agent-state.json.tmp");
        std::fs::write(&temp, b"{}").expect("write");
        std::fs::rename(&temp, dir.path().join("agent-state.json")).expect("rename");
        told.recv_timeout(Duration::from_secs(10))
            .expect("the state file's change is news");
        // Nothing but the state file's own events came: each names a watched file.
        while let Ok(()) = told.recv_timeout(Duration::from_millis(200)) {}
    }
}
