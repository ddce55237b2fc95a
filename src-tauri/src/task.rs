//! A compute task's own process, started by the tray process's agent for each task (see
//! `surplus_sandbox::isolated`): the task arrives on standard input and its result leaves on
//! standard output. It links no GUI library, so it starts small. Not meant to be started by hand.

#[cfg(unix)]
fn main() -> std::process::ExitCode {
    surplus_agent::compute::serve_task()
}

#[cfg(not(unix))]
fn main() -> std::process::ExitCode {
    eprintln!("surplus-tray-task: tasks run in processes of their own on Unix only");
    std::process::ExitCode::from(2)
}
