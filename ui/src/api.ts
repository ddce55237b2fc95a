// The commands of the tray app's shell, typed. Every call goes to the agent core through it.

import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import type { Disk } from "./quota";
import type { Point } from "./chart";

export interface Settings {
  hub_url: string | null;
  device_name: string | null;
  consent: { storage: boolean; compute: boolean };
  storage: { quota_bytes: number | null; floor_bytes: number | null; vault_path: string | null };
  compute: { cores_percent: number; idle_minutes: number; busy_cpu_percent: number; on_battery: boolean };
  pause: { paused: "running" } | { paused: "indefinitely" } | { paused: "until"; until: number };
  backup: { folders: string[] };
}

export interface AgentState {
  connected: boolean;
  last_backup: [number, string] | null;
  last_backup_error: string | null;
  last_heartbeat: number | null;
  last_error: string | null;
  update_needed?: boolean;
  vault: { quota_bytes: number; used_bytes: number; reserved_bytes: number; floor_bytes: number } | null;
  tasks_done: number;
  tasks_running: number;
  compute_held: string | null;
  compute_ms_done: number;
}

export interface TrayStatus {
  state: "donating" | "paused" | "attention";
  line: string;
  paused: boolean;
}

export interface Overview {
  registered: boolean;
  wizard_done: boolean;
  email: string | null;
  hub_url: string;
  device_name: string;
  settings: Settings;
  state: AgentState;
  tray: TrayStatus;
  has_backup_key: boolean;
  autostart: boolean;
  data_dir: string;
  restore_to: string;
}

export interface Enrolled {
  email: string;
  plan: string;
  device_id: string;
  has_backup_key: boolean;
}

export interface Choices {
  consent_storage?: boolean;
  consent_compute?: boolean;
  vault_disk?: string;
  quota_bytes?: number;
  folders?: string[];
  cores_percent?: number;
}

export interface Snapshot {
  id: string;
  time: number;
  hostname: string;
  files: number;
  bytes: number;
  state: "uploading" | "protected" | "repairing" | "at_risk" | "lost";
}

export interface Entry {
  name: string;
  kind: "file" | "dir" | "symlink";
  size: number;
  mode: string;
  mtime: number;
}

export interface Credits {
  balance: number;
  earned: number;
  spent: number;
}

export interface RestoreProgress {
  files: number;
  bytes: number;
  total_files: number;
  total_bytes: number;
}

export const api = {
  overview: () => invoke<Overview>("overview"),
  disks: () => invoke<Disk[]>("disks"),
  suggestedFolders: () => invoke<string[]>("suggested_folders"),
  enroll: (enrollment: { hub: string; email: string; password: string; signup: boolean; device_name: string }) =>
    invoke<Enrolled>("enroll", { enrollment }),
  apply: (choices: Choices) => invoke<Settings>("apply", { choices }),
  generatePassphrase: () => invoke<string>("generate_passphrase"),
  passphraseProblem: (passphrase: string) => invoke<string | null>("passphrase_problem", { passphrase }),
  /// Unlocks or sets up the backup key; answers what is wrong with an old passphrase that opened
  /// the key but is too weak (then ask for a better one), else null.
  setRecoveryPassphrase: (passphrase: string) => invoke<string | null>("set_recovery_passphrase", { passphrase }),
  changeRecoveryPassphrase: (passphrase: string) => invoke<void>("change_recovery_passphrase", { passphrase }),
  logOutEverywhere: () => invoke<void>("log_out_everywhere"),
  finishWizard: (autostart: boolean) => invoke<void>("finish_wizard", { autostart }),
  setAutostart: (on: boolean) => invoke<void>("set_autostart", { on }),
  pause: (until: "hour" | "tomorrow") => invoke<void>("pause", { until }),
  resume: () => invoke<void>("resume"),
  backUpNow: () => invoke<void>("back_up_now"),
  snapshots: () => invoke<Snapshot[]>("snapshots"),
  listSnapshot: (snapshot: string, path: string | null) => invoke<Entry[]>("list_snapshot", { snapshot, path }),
  restore: (snapshot: string, paths: string[], target: string) =>
    invoke<{ files: number; bytes: number; in_place: number }>("restore", { snapshot, paths, target }),
  credits: () => invoke<Credits>("credits"),
  history: () => invoke<Point[]>("history"),
  openWindow: (page: string) => invoke<void>("open_window", { page }),
  closeWindow: (page: string) => invoke<void>("close_window", { page }),
  onRestoreProgress: (handler: (progress: RestoreProgress) => void): Promise<UnlistenFn> =>
    listen<RestoreProgress>("restore-progress", (event) => handler(event.payload)),
};

/// The text of an error a command returned.
export function problem(error: unknown): string {
  if (typeof error === "string") return error;
  if (error instanceof Error) return error.message;
  return String(error);
}
