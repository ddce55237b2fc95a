//! The Surplus agent core: everything a device needs to donate its spare disk and idle CPU to the
//! hub, shared by the headless agent (the `surplus` command) and the tray app.
//!
//! The pieces are kept apart so that each can be tested on its own: [`settings`] holds what the
//! user decided (consent, quotas, the compute schedule) and persists it; [`probe`] measures the
//! machine (CPU, memory, user activity, battery, disk space); [`vault`] keeps the blobs other
//! devices entrust to this one, inside a hidden directory whose space is reserved up front; and
//! [`credentials`] keeps the device's credential and the subscriber's session in the OS keyring or,
//! where there is none, in a private file. [`client`] speaks
//! the hub's API, and [`worker`] runs the heartbeats and carries out the hub's instructions,
//! among them the compute tasks that [`compute`] runs in the sandbox. [`control`] is what the
//! front ends (the `surplus` command and the tray app) ask of all this.

pub mod backup;
pub mod client;
pub mod clock;
pub mod compute;
pub mod control;
pub mod credentials;
pub mod disk;
pub mod doctor;
pub mod history;
pub mod passphrase;
pub mod private_fs;
pub mod probe;
pub mod settings;
pub mod units;
pub mod untrusted;
pub mod vault;
pub mod worker;

mod atomic_file;

pub use disk::DiskSpace;
