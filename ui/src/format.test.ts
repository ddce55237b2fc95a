import { describe, expect, it } from "vitest";
import { formatAgo, formatComputerTime, formatSize, GIB } from "./format";

describe("formatSize", () => {
  it("matches the agent core's binary units", () => {
    expect(formatSize(0)).toBe("0 B");
    expect(formatSize(1023)).toBe("1023 B");
    expect(formatSize(1024)).toBe("1.0 KiB");
    expect(formatSize(12_400_000_000)).toBe("11.5 GiB");
    // Rounding up to the next unit shows the next unit, not "1024.0 MiB".
    expect(formatSize(GIB - 1)).toBe("1.0 GiB");
  });
});

describe("formatAgo", () => {
  const now = 1_800_000_000_000;
  it("reads like a person would say it", () => {
    expect(formatAgo(null, now)).toBe("never");
    expect(formatAgo(now - 5_000, now)).toBe("just now");
    expect(formatAgo(now - 5 * 60_000, now)).toBe("5 min ago");
    expect(formatAgo(now - 3 * 3_600_000, now)).toBe("3 h ago");
  });
});

it("says core-seconds as computer time", () => {
  expect(formatComputerTime(36_000)).toBe("10.0 hours of computer time");
  expect(formatComputerTime(60)).toBe("1 minute of computer time");
  expect(formatComputerTime(40 * 60)).toBe("40 minutes of computer time");
  expect(formatComputerTime(-3)).toBe("0 minutes of computer time");
});
