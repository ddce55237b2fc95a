import { expect, it } from "vitest";
import { bytesPerSecond, megabytesPerSecond, PRESETS, presetOf, splitWindow } from "./limits";

it("names the preset the limits are, and custom for any other mix", () => {
  expect(presetOf(PRESETS.light.limits)).toBe("light");
  expect(presetOf({ cores_percent: 50, idle_minutes: 5, busy_cpu_percent: 25, on_battery: false })).toBe("balanced");
  expect(presetOf(PRESETS.generous.limits)).toBe("generous");
  expect(presetOf({ ...PRESETS.balanced.limits, idle_minutes: 6 })).toBe("custom");
  expect(presetOf({ ...PRESETS.balanced.limits, on_battery: true })).toBe("custom");
});

it("reads and writes upload limits in megabytes per second, 0 for none", () => {
  expect(megabytesPerSecond(null)).toBe(0);
  expect(megabytesPerSecond(2_500_000)).toBe(2.5);
  expect(bytesPerSecond(2.5)).toBe(2_500_000);
  expect(bytesPerSecond(0)).toBe(0);
  expect(bytesPerSecond(-1)).toBe(0);
  expect(bytesPerSecond(Number.NaN)).toBe(0);
});

it("splits a window into its two times", () => {
  expect(splitWindow("22:00-06:30")).toEqual(["22:00", "06:30"]);
  expect(splitWindow(undefined)).toBeNull();
  expect(splitWindow("soon")).toBeNull();
});
