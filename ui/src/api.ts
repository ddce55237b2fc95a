// The commands of the tray app's shell, typed. Every call goes to the agent core through it.

import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import { open, save } from "@tauri-apps/plugin-dialog";
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
  SearchResults,
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
  searchSnapshot: (snapshot: string, needle: string) => invoke<SearchResults>("search_snapshot", { snapshot, needle }),
  /// Restores `paths` (all of the snapshot when empty) into the folder `target`, or back where
  /// they were when it is null: keeping both copies of a file that changed since, unless `replace`.
  restore: (snapshot: string, paths: string[], target: string | null, replace: boolean) =>
    invoke<Restored>("restore", { snapshot, paths, target, replace }),
  /// The folder as it will be kept, once the core found it exists and can be read.
  checkFolder: (path: string) => invoke<string>("check_folder", { path }),
  savePassphrase: (path: string, passphrase: string) => invoke<void>("save_passphrase", { path, passphrase }),
  /// The native folder chooser: the folders picked, none when it was cancelled.
  chooseFolders: async (title: string, multiple: boolean, defaultPath?: string): Promise<string[]> => {
    const picked = await open({ directory: true, multiple, title, defaultPath });
    return picked === null ? [] : Array.isArray(picked) ? picked : [picked];
  },
  /// The native save dialog: the file chosen, or null when it was cancelled.
  chooseFileToSave: (title: string, defaultPath: string): Promise<string | null> => save({ title, defaultPath }),
  credits: () => invoke<Credits>("credits"),
  history: () => invoke<Point[]>("history"),
  openWindow: (page: string) => invoke<void>("open_window", { page }),
  closeWindow: (page: string) => invoke<void>("close_window", { page }),
  /// The core's news: a new overview whenever what it knows of this device changes.
  onOverview: (handler: (overview: Overview) => void): Promise<UnlistenFn> =>
    listen<Overview>("overview", (event) => handler(event.payload)),
  onRestoreProgress: (handler: (progress: RestoreProgress) => void): Promise<UnlistenFn> =>
    listen<RestoreProgress>("restore-progress", (event) => handler(event.payload)),
};

/// An error a command returned, as a `Problem` (plain words, and the technical text apart).
export { asProblem as problem } from "./dom";
