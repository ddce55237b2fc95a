//! Exponential backoff with jitter, for reconnecting while the hub is away.

use std::time::Duration;

/// Exponential backoff with jitter, for reconnecting while the hub is away.
pub(super) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(super) fn new(max: Duration) -> Backoff {
        Backoff {
            next: Duration::from_millis(250),
            max,
        }
    }

    pub(super) fn reset(&mut self) {
        self.next = Duration::from_millis(250);
    }

    pub(super) fn step(&mut self) -> Duration {
        let jitter = Duration::from_millis(u64::from(rand::random::<u8>()));
        let wait = self.next + jitter;
        self.next = (self.next * 2).min(self.max);
        wait.min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_ceiling() {
        let mut backoff = Backoff::new(Duration::from_secs(4));
        let waits: Vec<Duration> = (0..8).map(|_| backoff.step()).collect();
        assert!(waits[0] < Duration::from_secs(1));
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(4)));
        assert_eq!(waits[7], Duration::from_secs(4));
        backoff.reset();
        assert!(backoff.step() < Duration::from_secs(1));
    }
}
