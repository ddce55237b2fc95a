// The quota slider: bounded by the disk's free space minus the floor, in whole GiB steps.

import type { DiskChoice } from "./bindings";
import { formatSize, GIB } from "./format";

/// A disk the vault may go on, as the core offers it.
export type Disk = DiskChoice;

export interface SliderRange {
  min: number;
  max: number;
  step: number;
  value: number;
}

/// The slider for `disk`, starting at `chosen` (the current quota) or the disk's default, clamped
/// to what the disk allows. A disk with less than a GiB to spare gets an empty range.
export function sliderRange(disk: Disk, chosen: number | null): SliderRange {
  const max = Math.floor(disk.max_quota_bytes / GIB) * GIB;
  const min = max >= GIB ? GIB : 0;
  const wanted = chosen ?? disk.default_quota_bytes;
  const value = Math.min(max, Math.max(min, Math.round(wanted / GIB) * GIB));
  return { min, max, step: GIB, value };
}

/// The live numbers beside the slider.
export function quotaNumbers(disk: Disk, quota: number): string[] {
  const left = Math.max(0, disk.free_bytes - quota);
  return [
    `Vault: up to ${formatSize(quota)}`,
    `Left free on ${disk.mount_point}: at least ${formatSize(left)} of ${formatSize(disk.total_bytes)}`,
    `Surplus never lets free space fall below ${formatSize(disk.floor_bytes)}`,
  ];
}

/// The disk the slider starts on: the vault's current disk, else the one with most room.
export function preferredDisk(disks: Disk[]): Disk | undefined {
  return (
    disks.find((d) => d.current) ??
    [...disks].sort((a, b) => b.max_quota_bytes - a.max_quota_bytes)[0]
  );
}
