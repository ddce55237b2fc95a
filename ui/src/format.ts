// Numbers and times as a person reads them. Sizes are binary (GiB), as the agent core prints them.

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export const GIB = 1024 ** 3;

export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  let value = bytes;
  let unit = 0;
  while ((value >= 1024 || Math.round(value * 10) >= 10240) && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${UNITS[unit]}`;
}

/// A moment relative to `now`: "just now", "5 min ago", "3 h ago", or the date.
export function formatAgo(at: number | null | undefined, now: number): string {
  if (at == null) return "never";
  const seconds = Math.max(0, Math.round((now - at) / 1000));
  if (seconds < 60) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return new Date(at).toLocaleDateString();
}

export function formatDateTime(at: number): string {
  return new Date(at).toLocaleString([], {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
}

/// Seconds of one processor core's work (how compute and its credit are counted), as a person
/// says it: "40 minutes of computer time", "10.0 hours of computer time".
export function formatComputerTime(coreSeconds: number): string {
  const minutes = Math.round(Math.max(0, coreSeconds) / 60);
  if (minutes < 60) return `${minutes} minute${minutes === 1 ? "" : "s"} of computer time`;
  return `${(coreSeconds / 3600).toFixed(1)} hours of computer time`;
}
