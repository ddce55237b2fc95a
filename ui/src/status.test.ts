import { expect, it } from "vitest";
import type { Overview } from "./api";
import { snapshotState, statusCards } from "./status";

const overview: Overview = {
  registered: true,
  wizard_done: true,
  email: "ann@example.com",
  hub_url: "http://127.0.0.1:1",
  device_name: "ann-pc",
  settings: {
    hub_url: null,
    device_name: null,
    bandwidth_bytes_per_second: null,
    consent: { storage: true, compute: false },
    storage: { quota_bytes: null, floor_bytes: null, vault_path: null },
    compute: { cores_percent: 50, idle_minutes: 5, busy_cpu_percent: 25, on_battery: false, pause_in_full_screen: true },
    pause: { paused: "running" },
    backup: { folders: ["/home/ann/Documents"], pause: { paused: "running" } },
  },
  state: {
    connected: true,
    last_backup: [1_000, "abc"],
    last_backup_error: null,
    backing_up_since: null,
    backup_progress: null,
    last_backup_skipped: [],
    last_backup_skipped_count: 0,
    backup_holders_short: null,
    backup_protection: null,
    last_heartbeat: 1_000,
    last_error: null,
    update_needed: false,
    spare: null,
    handover: null,
    vault: { quota_bytes: 10 * 1024 ** 3, used_bytes: 3 * 1024 ** 2, reserved_bytes: 0, floor_bytes: 0 },
    tasks_done: 7,
    tasks_running: 0,
    compute_held: null,
    tasks_paused: 0,
    compute_ms_done: 0,
    idle: null,
    instructions_done: 0,
    updated_at: 1_000,
  },
  tray: { state: "donating", line: "Donating 10.0 GiB", paused: false, backups_paused: false, backup: { level: "good", sentence: "Backed up just now" } },
  has_backup_key: true,
  autostart: true,
  data_dir: "/home/ann/.local/share/surplus",
  restore_to: "/home/ann/Restored",
  home_dir: "/home/ann",
};

it("says what you give, what you get, the backups and the hub in plain words", () => {
  const snapshot = { id: "abc", time: 1_000, hostname: "ann-pc", files: 3, bytes: 2048, state: "protected" as const };
  const cards = statusCards(overview, [snapshot], { balance: 36_000, earned: 0, spent: 0, granted: 36_000, runs_done: 0 }, 2_000);
  const card = (test: string) => cards.find((c) => c.dataset.test === test)?.textContent ?? "";
  expect(card("card-give")).toContain("3.0 MiB of other people's backups kept on this PC, of up to 10.0 GiB");
  expect(card("card-give")).toContain("Not lending processor time.");
  expect(card("card-get")).toContain("2.0 KiB of your files (3 files) kept on other PCs");
  expect(card("card-get")).toContain("Credit: 10.0 hours of computer time");
  expect(card("card-backups")).toContain("protected");
  expect(card("card-hub")).toContain("Connected");
  const lending = { ...overview, settings: { ...overview.settings, consent: { storage: false, compute: true } }, state: { ...overview.state, compute_ms_done: 5_400_000 } };
  const given = statusCards(lending, [], null, 2_000).find((c) => c.dataset.test === "card-give")?.textContent;
  expect(given).toContain("Not lending disk space.");
  expect(given).toContain("1.5 hours of computer time lent: 7 tasks done.");
});

it("shows a running backup's progress, and what it could not read behind details", () => {
  const running = {
    ...overview,
    state: {
      ...overview.state,
      backing_up_since: 1_000,
      backup_progress: { files: 1_204, files_total: 3_000, bytes: 1, bytes_total: 3 },
      last_backup_skipped: [{ path: "/home/ann/Documents/locked", reason: "Permission denied (os error 13)" }],
      last_backup_skipped_count: 3,
    },
  };
  const backups = statusCards(running, [], null, 2_000)[0];
  const bar = backups.querySelector("progress");
  expect(bar?.value).toBe(1_204);
  expect(bar?.max).toBe(3_000);
  expect(bar?.getAttribute("aria-valuetext")).toBe("1,204 of 3,000 files");
  const skipped = backups.querySelector("[data-test=skipped]");
  expect(skipped?.querySelector("summary")?.textContent).toBe("3 could not be read, and are not in the backup");
  expect(skipped?.textContent).toContain("/home/ann/Documents/locked: Permission denied");
  expect(skipped?.textContent).toContain("and 2 more");
  // No bar once the backup is over.
  expect(statusCards(overview, [], null, 2_000)[0].querySelector("progress")).toBeNull();
});

it("says what each backup state means", () => {
  const at = (state: "uploading" | "protected" | "repairing" | "at_risk" | "lost") => {
    const snapshot = { id: "abc", time: 1_000, hostname: "ann-pc", files: 3, bytes: 2048, state };
    return statusCards(overview, [snapshot], null, 2_000)
      .map((card) => card.textContent)
      .join("\n");
  };
  expect(at("repairing")).toContain("repairing (restorable meanwhile)");
  expect(at("at_risk")).toContain("restorable only if PCs that are away come back");
  expect(at("lost")).toContain("too few copies");
  expect(snapshotState("uploading")).toBe("uploading to other PCs");
});

it("puts a failed backup first in its card", () => {
  const failing = { ...overview, state: { ...overview.state, last_backup_error: "the hub refused" } };
  const backups = statusCards(failing, [], null, 2_000)[0];
  expect(backups.querySelector(".error")?.textContent).toBe("the hub refused");
});

it("says an update is needed when the hub refuses this version", () => {
  const current = statusCards(overview, [], null, 2_000).map((card) => card.textContent).join("\n");
  expect(current).not.toContain("Update needed");
  const old = {
    ...overview,
    state: { ...overview.state, connected: false, last_error: "the hub refused", update_needed: true },
  };
  const hub = statusCards(old, [], null, 2_000).find((card) => card.querySelector("[data-test=update-needed]"));
  expect(hub?.textContent).toContain("Update needed: the hub no longer serves this version of Surplus");
});
