//! The hub's decisions about where subscribers' data lives and whether it survives: placement,
//! presence and loss detection, audits, pack health and repair, and graceful exit.
//!
//! Every rule is a pure function (or a small state machine) over plain structs. Time comes in as
//! `now` (Unix milliseconds) and randomness as `&mut impl Rng`; nothing here reads a clock, a
//! database or the network. The hub loads what a decision needs, decides with these rules and
//! writes the outcome in one transaction; `surplus-sim` runs the very same rules on a virtual
//! clock over a simulated population, so the durability it reports is the hub's.

pub mod audit;
pub mod handover;
pub mod health;
pub mod placement;
pub mod presence;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

pub const MINUTE_MS: Millis = 60_000;
pub const HOUR_MS: Millis = 60 * MINUTE_MS;
pub const DAY_MS: Millis = 24 * HOUR_MS;
