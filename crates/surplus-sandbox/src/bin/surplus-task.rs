//! Runs one compute task in a process of its own, for an agent whose sandbox isolates tasks
//! (`surplus_sandbox::Sandbox::isolated`): the task arrives on standard input, and its result
//! leaves on standard output. Not meant to be started by hand.

#[cfg(unix)]
fn main() -> std::process::ExitCode {
    surplus_sandbox::isolated::serve()
}

#[cfg(not(unix))]
fn main() -> std::process::ExitCode {
    eprintln!("surplus-task: tasks run in processes of their own on Unix only");
    std::process::ExitCode::from(2)
}
