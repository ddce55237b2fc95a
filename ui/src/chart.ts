// The status window's chart of donated storage and CPU over the last days, as SVG paths.

import type { Point } from "./bindings";

export type { Point };

export interface Series {
  /// SVG path data, in a box of `width` x `height`.
  path: string;
  /// The largest value shown, for the axis label.
  peak: number;
}

const DAY = 24 * 60 * 60 * 1000;

/// Stored bytes at each point, over `days` days before `now`.
export function storedSeries(points: Point[], now: number, days: number, width: number, height: number): Series {
  const shown = points.filter((p) => p.at >= now - days * DAY && p.at <= now);
  return line(
    shown.map((p) => [p.at, p.stored_bytes]),
    now,
    days,
    width,
    height,
  );
}

/// CPU minutes donated between consecutive points (the history keeps a running total).
export function cpuSeries(points: Point[], now: number, days: number, width: number, height: number): Series {
  const shown = points.filter((p) => p.at >= now - days * DAY && p.at <= now);
  const steps: [number, number][] = [];
  for (let i = 1; i < shown.length; i++) {
    const used = Math.max(0, shown[i].compute_ms - shown[i - 1].compute_ms);
    steps.push([shown[i].at, used / 60000]);
  }
  return line(steps, now, days, width, height);
}

function line(values: [number, number][], now: number, days: number, width: number, height: number): Series {
  const peak = values.reduce((most, [, v]) => Math.max(most, v), 0);
  if (values.length === 0) return { path: "", peak: 0 };
  const start = now - days * DAY;
  const x = (at: number) => ((at - start) / (days * DAY)) * width;
  const y = (v: number) => (peak === 0 ? height : height - (v / peak) * height);
  const path = values
    .map(([at, v], i) => `${i === 0 ? "M" : "L"}${x(at).toFixed(1)},${y(v).toFixed(1)}`)
    .join(" ");
  return { path, peak };
}

/// One day of the chart, for its text table: the most stored for others that day, and the
/// minutes of compute lent.
export interface DayRow {
  /// The day's start, in ms (local midnight).
  day: number;
  peakStored: number;
  computeMinutes: number;
}

/// The chart's points by local day, the last `days` days before `now`, oldest first; days with
/// no point are left out.
export function dailyRows(points: Point[], now: number, days: number): DayRow[] {
  const midnight = (at: number) => {
    const date = new Date(at);
    date.setHours(0, 0, 0, 0);
    return date.getTime();
  };
  const shown = points.filter((p) => p.at >= now - days * DAY && p.at <= now).sort((a, b) => a.at - b.at);
  const rows = new Map<number, DayRow>();
  shown.forEach((point, i) => {
    const day = midnight(point.at);
    const row = rows.get(day) ?? { day, peakStored: 0, computeMinutes: 0 };
    row.peakStored = Math.max(row.peakStored, point.stored_bytes);
    if (i > 0) row.computeMinutes += Math.max(0, point.compute_ms - shown[i - 1].compute_ms) / 60000;
    rows.set(day, row);
  });
  return [...rows.values()];
}
