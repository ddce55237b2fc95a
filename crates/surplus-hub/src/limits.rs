//! Rate limits on the endpoints an attacker would hammer, and a bound on password hashing.
//!
//! Logging in and signing up cost the hub an Argon2id hash each (19 MiB and tens of milliseconds),
//! and guessing passwords is what a login endpoint invites. So each of them, device registration
//! and heartbeats, is limited per client address and per account or device: a burst, then one
//! more each period (GCRA, from `governor`), and every refusal is a 429 `rate_limited` whose
//! `Retry-After` says when the next try can succeed. A client that keeps trying gets nothing
//! more for it. Password hashes run at most one per core at a time, so that a burst of logins
//! queues rather than exhausting the hub's memory.

use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use governor::{DefaultKeyedRateLimiter, Quota};
use uuid::Uuid;

use crate::error::ApiError;

/// `burst` requests at once, then one more every `period / burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    pub period: Duration,
}

impl Rate {
    pub const fn new(burst: u32, period: Duration) -> Rate {
        Rate { burst, period }
    }

    fn quota(self) -> Quota {
        let burst = NonZeroU32::new(self.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let every = (self.period / burst.get()).max(Duration::from_micros(1));
        Quota::with_period(every)
            .unwrap_or_else(|| Quota::per_second(burst))
            .allow_burst(burst)
    }
}

/// The limits of a hub; each is also a setting of `surplus-hub serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub login_per_address: Rate,
    pub login_per_account: Rate,
    pub signup_per_address: Rate,
    pub registration_per_subscriber: Rate,
    pub heartbeat_per_device: Rate,
}

impl Default for RateLimits {
    fn default() -> Self {
        const MINUTE: Duration = Duration::from_secs(60);
        const HOUR: Duration = Duration::from_secs(3600);
        RateLimits {
            login_per_address: Rate::new(30, MINUTE),
            login_per_account: Rate::new(10, MINUTE),
            signup_per_address: Rate::new(20, HOUR),
            registration_per_subscriber: Rate::new(30, HOUR),
            heartbeat_per_device: Rate::new(120, MINUTE),
        }
    }
}

/// The running limiters.
#[derive(Debug)]
pub struct Limiters {
    login_address: DefaultKeyedRateLimiter<IpAddr>,
    login_account: DefaultKeyedRateLimiter<String>,
    signup_address: DefaultKeyedRateLimiter<IpAddr>,
    registration: DefaultKeyedRateLimiter<Uuid>,
    heartbeat: DefaultKeyedRateLimiter<Uuid>,
    /// Password hashes running now, at most one per core.
    hashing: tokio::sync::Semaphore,
}

impl Limiters {
    pub fn new(limits: &RateLimits) -> Limiters {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Limiters {
            login_address: DefaultKeyedRateLimiter::keyed(limits.login_per_address.quota()),
            login_account: DefaultKeyedRateLimiter::keyed(limits.login_per_account.quota()),
            signup_address: DefaultKeyedRateLimiter::keyed(limits.signup_per_address.quota()),
            registration: DefaultKeyedRateLimiter::keyed(
                limits.registration_per_subscriber.quota(),
            ),
            heartbeat: DefaultKeyedRateLimiter::keyed(limits.heartbeat_per_device.quota()),
            hashing: tokio::sync::Semaphore::new(cores),
        }
    }

    /// A login attempt from `address` for `email` (lower-cased).
    pub fn login(&self, address: IpAddr, email: &str) -> Result<(), ApiError> {
        check(
            &self.login_address,
            &address,
            "log-in attempts from your address",
        )?;
        check(
            &self.login_account,
            &email.to_owned(),
            "log-in attempts for this account",
        )
    }

    pub fn signup(&self, address: IpAddr) -> Result<(), ApiError> {
        check(&self.signup_address, &address, "sign-ups from your address")
    }

    pub fn registration(&self, subscriber: Uuid) -> Result<(), ApiError> {
        check(&self.registration, &subscriber, "device registrations")
    }

    pub fn heartbeat(&self, device: Uuid) -> Result<(), ApiError> {
        check(&self.heartbeat, &device, "heartbeats from this device")
    }

    /// Runs a password hash (or check) on a blocking thread once a core is free for it.
    pub async fn hash<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self.hashing.acquire().await.map_err(ApiError::internal)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(ApiError::internal)
    }

    /// Forgets keys that would be allowed a full burst again, so the maps stay small.
    pub fn shrink(&self) {
        self.login_address.retain_recent();
        self.login_account.retain_recent();
        self.signup_address.retain_recent();
        self.registration.retain_recent();
        self.heartbeat.retain_recent();
    }
}

fn check<K: Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
    what: &str,
) -> Result<(), ApiError> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        ApiError::rate_limited(
            format!(
                "too many {what}: try again in {} s",
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
            ),
            wait,
        )
    })
}

/// The address a request came from: the peer of its connection. Requests handed to the router
/// without one (in-process tests) count as one unknown address.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_period_and_each_key_on_its_own() {
        let limits = RateLimits {
            login_per_address: Rate::new(3, Duration::from_secs(3600)),
            login_per_account: Rate::new(2, Duration::from_secs(3600)),
            ..RateLimits::default()
        };
        let limiters = Limiters::new(&limits);
        let here = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let there = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        assert!(limiters.login(here, "a@example.org").is_ok());
        assert!(limiters.login(here, "a@example.org").is_ok());
        // The account's burst is spent, from any address.
        let refused = limiters.login(there, "a@example.org").expect_err("limited");
        assert_eq!(refused.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        let wait = refused.retry_after.expect("a wait");
        assert!(wait > Duration::from_secs(60) && wait <= Duration::from_secs(1800));
        // Another account from the same address has one try left there.
        assert!(limiters.login(here, "b@example.org").is_ok());
        assert!(limiters.login(here, "c@example.org").is_err());
        assert!(limiters.login(there, "c@example.org").is_ok());
    }
}
