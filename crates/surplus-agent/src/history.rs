//! The device's donation over the last week, a point a quarter of an hour: the tray app's chart.

use std::path::Path;

use serde::{Deserialize, Serialize};
use surplus_protocol::UnixMillis;

pub const FILE: &str = "history.json";
/// A point every quarter of an hour.
pub const HISTORY_STEP_MS: i64 = 15 * 60 * 1000;
/// A week of points.
pub const HISTORY_SPAN_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// The device's donation at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Point {
    pub at: UnixMillis,
    /// Bytes held for others.
    pub stored_bytes: u64,
    /// Milliseconds of donated compute run to an end, all time.
    pub compute_ms: u64,
}

pub fn load(data_dir: &Path) -> Vec<Point> {
    std::fs::read(data_dir.join(FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Adds `point` unless the latest is younger than a step; drops points older than the span.
/// Returns whether the points changed.
pub fn add(points: &mut Vec<Point>, point: Point) -> bool {
    if points
        .last()
        .is_some_and(|last| point.at - last.at < HISTORY_STEP_MS)
    {
        return false;
    }
    points.push(point);
    points.retain(|p| point.at - p.at <= HISTORY_SPAN_MS);
    true
}

/// Records `point` in the data directory's history file.
pub fn record(data_dir: &Path, point: Point) {
    let mut points = load(data_dir);
    if !add(&mut points, point) {
        return;
    }
    let Ok(bytes) = serde_json::to_vec(&points) else {
        return;
    };
    if let Err(error) = crate::atomic_file::write(
        &data_dir.join(FILE),
        &bytes,
        crate::atomic_file::Visibility::Ordinary,
    ) {
        tracing::debug!(%error, "writing the donation history");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_a_point_per_step_for_a_week() {
        let mut points = Vec::new();
        let point = |at| Point {
            at,
            stored_bytes: 1,
            compute_ms: 2,
        };
        assert!(add(&mut points, point(0)));
        assert!(!add(&mut points, point(HISTORY_STEP_MS - 1)));
        assert!(add(&mut points, point(HISTORY_STEP_MS)));
        let late = HISTORY_SPAN_MS + HISTORY_STEP_MS;
        assert!(add(&mut points, point(late)));
        assert_eq!(
            points.iter().map(|p| p.at).collect::<Vec<_>>(),
            [HISTORY_STEP_MS, late]
        );
    }
}
