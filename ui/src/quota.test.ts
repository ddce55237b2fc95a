import { describe, expect, it } from "vitest";
import { GIB } from "./format";
import { preferredDisk, quotaNumbers, sliderRange, type Disk } from "./quota";

const disk = (over: Partial<Disk> = {}): Disk => ({
  mount_point: "/",
  name: "root",
  total_bytes: 500 * GIB,
  free_bytes: 200 * GIB,
  floor_bytes: 50 * GIB,
  max_quota_bytes: 150 * GIB,
  default_quota_bytes: 20 * GIB,
  current: false,
  ...over,
});

describe("the quota slider", () => {
  it("is bounded by free space minus the floor", () => {
    const range = sliderRange(disk(), null);
    expect(range).toEqual({ min: GIB, max: 150 * GIB, step: GIB, value: 20 * GIB });
  });

  it("clamps a quota the disk no longer allows", () => {
    expect(sliderRange(disk(), 400 * GIB).value).toBe(150 * GIB);
    expect(sliderRange(disk(), 0).value).toBe(GIB);
  });

  it("offers nothing on a disk at its floor", () => {
    const full = sliderRange(disk({ max_quota_bytes: 100 }), null);
    expect(full.max).toBe(0);
    expect(full.value).toBe(0);
  });

  it("says what is left free, live", () => {
    const lines = quotaNumbers(disk(), 30 * GIB);
    expect(lines[0]).toBe("Vault: up to 30.0 GiB");
    expect(lines[1]).toBe("Left free on /: at least 170.0 GiB of 500.0 GiB");
    expect(lines[2]).toContain("50.0 GiB");
  });
});

it("starts on the vault's disk, else the roomiest", () => {
  const small = disk({ mount_point: "/a", max_quota_bytes: GIB });
  const big = disk({ mount_point: "/b", max_quota_bytes: 900 * GIB });
  expect(preferredDisk([small, big])?.mount_point).toBe("/b");
  expect(preferredDisk([{ ...small, current: true }, big])?.mount_point).toBe("/a");
  expect(preferredDisk([])).toBeUndefined();
});
