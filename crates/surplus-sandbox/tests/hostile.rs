//! The sandbox's suite of well-behaved and hostile modules, each task run in this process with
//! epoch checks.

mod suite;

fn sandbox() -> surplus_sandbox::Sandbox {
    surplus_sandbox::Sandbox::new(None).expect("sandbox")
}
