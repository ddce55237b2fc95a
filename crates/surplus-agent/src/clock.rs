//! The time now, as the agent reads and reports it.

use std::time::{SystemTime, UNIX_EPOCH};

use surplus_protocol::UnixMillis;

/// Milliseconds since the Unix epoch, now (0 on a clock set before 1970).
pub fn now_ms() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The local time's offset from UTC, now.
pub fn utc_offset_minutes() -> i32 {
    chrono::Local::now().offset().local_minus_utc() / 60
}

/// Minutes after local midnight, now.
pub fn local_minute() -> u16 {
    use chrono::Timelike;
    let now = chrono::Local::now();
    u16::try_from(now.hour() * 60 + now.minute()).unwrap_or(0)
}
