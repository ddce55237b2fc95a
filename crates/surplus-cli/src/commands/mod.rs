//! The commands, a module per group; each parses nothing (clap has) and decides nothing (the
//! agent core does): it calls `surplus_agent::control::Control` and prints.

pub mod account;
pub mod agent;
pub mod backup;
pub mod blob;
pub mod compute;
pub mod device;
pub mod donation;
pub mod status;
