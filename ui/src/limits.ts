// How much processor time this PC lends: three presets for the usual wishes, and "custom" for
// any other combination. Pure, so the settings and the wizard agree and vitest checks it.

import type { ComputeSettings } from "./bindings";

/// The parts of the compute settings a preset sets.
export type ComputeLimits = Pick<ComputeSettings, "cores_percent" | "idle_minutes" | "busy_cpu_percent" | "on_battery">;

export type PresetName = "light" | "balanced" | "generous";

export interface Preset {
  label: string;
  /// What it means, in a sentence.
  description: string;
  limits: ComputeLimits;
}

export const PRESETS: Record<PresetName, Preset> = {
  light: {
    label: "Light",
    description: "A quarter of the processor, after 15 minutes away, and only when nothing else is busy.",
    limits: { cores_percent: 25, idle_minutes: 15, busy_cpu_percent: 15, on_battery: false },
  },
  balanced: {
    label: "Balanced",
    description: "Half the processor, after 5 minutes away. The default.",
    limits: { cores_percent: 50, idle_minutes: 5, busy_cpu_percent: 25, on_battery: false },
  },
  generous: {
    label: "Generous",
    description: "The whole processor, after 2 minutes away, even beside other light work.",
    limits: { cores_percent: 100, idle_minutes: 2, busy_cpu_percent: 50, on_battery: false },
  },
};

/// The preset these limits are exactly, or "custom".
export function presetOf(limits: ComputeLimits): PresetName | "custom" {
  for (const [name, preset] of Object.entries(PRESETS) as [PresetName, Preset][]) {
    const p = preset.limits;
    if (
      p.cores_percent === limits.cores_percent &&
      p.idle_minutes === limits.idle_minutes &&
      p.busy_cpu_percent === limits.busy_cpu_percent &&
      p.on_battery === limits.on_battery
    ) {
      return name;
    }
  }
  return "custom";
}

/// A rate in bytes per second as the megabytes per second a person types (decimal, as network
/// speeds are sold), and back; 0 is no limit.
export function megabytesPerSecond(bytes: number | null): number {
  return bytes ? Math.round(bytes / 100_000) / 10 : 0;
}

export function bytesPerSecond(megabytes: number): number {
  return Number.isFinite(megabytes) && megabytes > 0 ? Math.round(megabytes * 1_000_000) : 0;
}

/// "22:00-06:00" as the two times of a window, or null for any time.
export function splitWindow(window: string | undefined): [string, string] | null {
  const match = window?.match(/^(\d{2}:\d{2})-(\d{2}:\d{2})$/);
  return match ? [match[1], match[2]] : null;
}
