// The commands of the tray app's shell, typed. Every call goes to the agent core through it.

import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import type {
  Choices,
  Credits,
  DiskChoice,
  Enrolled,
  Enrollment,
  EntryView,
  Overview,
  Point,
  RestoreProgress,
  Restored,
  Settings,
  SnapshotView,
} from "./bindings";

// What the commands take and answer, generated from the agent core's Rust types
// (crates/surplus-agent/tests/bindings.rs writes ui/src/bindings/).
export type * from "./bindings";
export { MIN_PASSPHRASE } from "./bindings";
export type Snapshot = SnapshotView;
export type Entry = EntryView;

export const api = {
  overview: () => invoke<Overview>("overview"),
  disks: () => invoke<DiskChoice[]>("disks"),
  suggestedFolders: () => invoke<string[]>("suggested_folders"),
  enroll: (enrollment: Enrollment) => invoke<Enrolled>("enroll", { enrollment }),
  checkHub: (url: string) => invoke<void>("check_hub", { url }),
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
  pause: (what: "lending" | "backups", until: "hour" | "tomorrow") => invoke<void>("pause", { what, until }),
  resume: (what: "lending" | "backups") => invoke<void>("resume", { what }),
  backUpNow: () => invoke<void>("back_up_now"),
  snapshots: () => invoke<Snapshot[]>("snapshots"),
  listSnapshot: (snapshot: string, path: string | null) => invoke<Entry[]>("list_snapshot", { snapshot, path }),
  restore: (snapshot: string, paths: string[], target: string) =>
    invoke<Restored>("restore", { snapshot, paths, target }),
  credits: () => invoke<Credits>("credits"),
  history: () => invoke<Point[]>("history"),
  openWindow: (page: string) => invoke<void>("open_window", { page }),
  closeWindow: (page: string) => invoke<void>("close_window", { page }),
  onRestoreProgress: (handler: (progress: RestoreProgress) => void): Promise<UnlistenFn> =>
    listen<RestoreProgress>("restore-progress", (event) => handler(event.payload)),
};

/// An error a command returned, as a `Problem` (plain words, and the technical text apart).
export { asProblem as problem } from "./dom";
