//! The sandbox's suite of well-behaved and hostile modules, each task run in this process with
//! epoch checks.

mod suite;

use std::sync::Arc;

use surplus_sandbox::{Clock, Sandbox};

fn sandbox() -> Sandbox {
    Sandbox::new(None).expect("sandbox")
}

fn sandbox_on(clock: Arc<dyn Clock>) -> Sandbox {
    Sandbox::with_clock(None, clock).expect("sandbox")
}
