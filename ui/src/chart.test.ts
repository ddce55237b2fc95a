import { expect, it } from "vitest";
import { cpuSeries, dailyRows, storedSeries } from "./chart";

const DAY = 86_400_000;
const now = 10 * DAY;

it("draws stored bytes across the last days, scaled to the peak", () => {
  const points = [
    { at: now - 8 * DAY, stored_bytes: 999, compute_ms: 0 }, // older than the span: left out
    { at: now - 7 * DAY, stored_bytes: 0, compute_ms: 0 },
    { at: now, stored_bytes: 100, compute_ms: 0 },
  ];
  const series = storedSeries(points, now, 7, 700, 100);
  expect(series.peak).toBe(100);
  expect(series.path).toBe("M0.0,100.0 L700.0,0.0");
});

it("draws CPU minutes per step from the running total", () => {
  const points = [
    { at: now - 2 * DAY, stored_bytes: 0, compute_ms: 60_000 },
    { at: now - DAY, stored_bytes: 0, compute_ms: 180_000 },
    { at: now, stored_bytes: 0, compute_ms: 240_000 },
  ];
  const series = cpuSeries(points, now, 2, 200, 100);
  expect(series.peak).toBe(2);
  expect(series.path).toBe("M100.0,0.0 L200.0,50.0");
});

it("draws nothing without points", () => {
  expect(storedSeries([], now, 7, 100, 100)).toEqual({ path: "", peak: 0 });
});

it("tells the chart's numbers by day for its text table", () => {
  const midnight = new Date(now);
  midnight.setHours(0, 0, 0, 0);
  const today = midnight.getTime();
  const points = [
    { at: today - DAY + 3_600_000, stored_bytes: 50, compute_ms: 0 },
    { at: today - DAY + 7_200_000, stored_bytes: 80, compute_ms: 120_000 },
    { at: today + 3_600_000, stored_bytes: 60, compute_ms: 300_000 },
  ];
  expect(dailyRows(points, today + 4_000_000, 7)).toEqual([
    { day: today - DAY, peakStored: 80, computeMinutes: 2 },
    { day: today, peakStored: 60, computeMinutes: 3 },
  ]);
});
