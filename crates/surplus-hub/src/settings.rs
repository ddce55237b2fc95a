//! The hub's tunables ([`Settings`]), from its config file (`config.rs`) or a test's hand.

use std::time::Duration;

use surplus_protocol::UnixMillis;

/// Tunables of a running hub.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often devices are told to send heartbeats.
    pub heartbeat_interval: Duration,
    /// How long a delivered instruction waits for its acknowledgement before it is sent again.
    pub instruction_lease: Duration,
    /// How long an instruction stays wanted.
    pub instruction_ttl: Duration,
    /// The largest blob accepted into staging.
    pub max_blob_bytes: u64,
    /// The largest JSON body accepted.
    pub max_json_bytes: usize,
    /// The longest a long poll may wait.
    pub max_long_poll: Duration,
    /// How long a session lasts after its last use.
    pub session_ttl: Duration,
    /// How long a session lasts at most, used or not: then its subscriber logs in again.
    pub session_max_age: Duration,
    /// How often the scheduler looks for work without being woken.
    pub scheduler_tick: Duration,
    /// How often the hub checks the database for instructions queued by other processes.
    pub watch_tick: Duration,
    /// How often a waiting long poll looks at its queue without being woken (for leases that ran
    /// out: instructions delivered but never acknowledged).
    pub long_poll_recheck: Duration,
    /// How long a copy a holder sent back for a restore stays staged for its owner to fetch.
    pub restore_staging: Duration,
    /// Every held shard is audited at least this often while its holder is online.
    pub audit_interval: Duration,
    /// A holder silent this long is counted lost, and what it held is rebuilt elsewhere (never
    /// less than twice the online window).
    pub lost_after: Duration,
    /// How long the results of an ended compute job stay staged for its submitter (counted
    /// against their staging quota), before they are dropped.
    pub output_retention: Duration,
    /// Whether a compute task first sent to a trusted device may be accepted on its result
    /// alone.
    pub replication: Replication,
    /// A holder that gave storage up has this long to hand what it holds over; what is left then
    /// is counted lost and rebuilt from other copies.
    pub handover_deadline: Duration,
    /// A pack is repaired once its spare shards fall to this many (capped at `parity - 1`; see
    /// `surplus_rules::health::PackHealth::needs_repair`).
    pub repair_threshold: u32,
    /// How long forgotten snapshots and the shards they alone needed are kept, recoverable by
    /// their owner, before they are deleted for good.
    pub forget_grace: Duration,
    /// Rate limits on logging in, signing up, registering devices and heartbeats.
    pub rate_limits: crate::limits::RateLimits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            heartbeat_interval: Duration::from_secs(30),
            instruction_lease: Duration::from_secs(60),
            instruction_ttl: Duration::from_secs(24 * 3600),
            max_blob_bytes: 256 << 20,
            max_json_bytes: 1 << 20,
            max_long_poll: Duration::from_secs(60),
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            session_max_age: Duration::from_secs(30 * 24 * 3600),
            scheduler_tick: Duration::from_secs(2),
            watch_tick: Duration::from_millis(500),
            long_poll_recheck: Duration::from_secs(5),
            restore_staging: Duration::from_secs(3600),
            forget_grace: Duration::from_secs(30 * 24 * 3600),
            audit_interval: Duration::from_secs(7 * 24 * 3600),
            // The defaults `surplus-sim`'s durability runs led to (`scripts/bench-durability`).
            lost_after: Duration::from_millis(
                surplus_rules::presence::PresencePolicy::DEFAULT.lost_after as u64,
            ),
            repair_threshold: surplus_rules::health::REPAIR_THRESHOLD,
            handover_deadline: Duration::from_secs(3 * 24 * 3600),
            output_retention: Duration::from_secs(7 * 24 * 3600),
            replication: Replication::Adaptive,
            rate_limits: crate::limits::RateLimits::default(),
        }
    }
}

/// How many donors a compute task's result needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// As many as its job asks, except that a task first sent to a trusted device may, by a
    /// coin weighted by the device's streak (`validation::replication_probability`), be
    /// accepted on that device's result alone.
    Adaptive,
    /// Always as many as its job asks.
    Always,
}

impl Replication {
    /// Whether a task first sent to a device with this streak of valid results is accepted on
    /// its result alone.
    pub fn accept_alone(self, streak: u32) -> bool {
        match self {
            Replication::Adaptive => crate::validation::accept_alone(streak, rand::random::<f64>()),
            Replication::Always => false,
        }
    }
}

impl Settings {
    /// A device is online while its heartbeats keep coming: three missed ones and it is not.
    pub fn online_window_ms(&self) -> i64 {
        crate::millis(self.heartbeat_interval).saturating_mul(3)
    }

    /// How long an instruction stays wanted, in milliseconds.
    pub fn instruction_ttl_ms(&self) -> i64 {
        crate::millis(self.instruction_ttl)
    }

    /// When an instruction queued at `now` expires.
    pub fn instruction_expiry(&self, now: UnixMillis) -> UnixMillis {
        now.saturating_add(self.instruction_ttl_ms())
    }

    /// How presence becomes a holder's standing: online within the online window, lost after
    /// `lost_after` (never within a few missed heartbeats, whatever the setting says).
    pub fn presence_policy(&self) -> surplus_rules::presence::PresencePolicy {
        surplus_rules::presence::PresencePolicy {
            online_window: self.online_window_ms(),
            lost_after: crate::millis(self.lost_after).max(2 * self.online_window_ms()),
            ..surplus_rules::presence::PresencePolicy::DEFAULT
        }
    }
}
