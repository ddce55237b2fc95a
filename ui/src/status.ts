// Status: what this PC lends, how your backups stand, compute and credit, the hub, and a chart
// of the last days. The local state is read every few seconds and the view updated where it
// changed; the hub is asked for snapshots and credit when the agent finishes a backup, when the
// window comes back into view, and otherwise once a minute (for what changes only at the hub: a
// snapshot's packs reaching their holders, credit earned).

import { api, problem, type Credits, type Overview, type Snapshot } from "./api";
import { cpuSeries, storedSeries, type Point } from "./chart";
import { errorLine, h, update } from "./dom";
import { formatAgo, formatCoreHours, formatDateTime, formatSize } from "./format";

const DAYS = 7;
const WIDTH = 600;
const HEIGHT = 120;
/// How often the local state is read: the agent rewrites it every few seconds.
const LOCAL_MS = 3_000;
/// How often the hub is asked when nothing here says that its answer changed.
const HUB_MS = 60_000;

export async function status(root: HTMLElement): Promise<void> {
  document.body.dataset.page = "status";
  const cards = h("div", { class: "grid" });
  const chart = h("section", { class: "card wide" });
  const error = errorLine();
  const actions = h("div", { class: "row" });
  root.append(h("header", {}, h("h1", {}, "Surplus"), actions), error, cards, chart);

  let snapshots: Snapshot[] | null = null;
  let credits: Credits | null = null;
  let asking: Promise<void> | null = null;
  const askHub = (): Promise<void> =>
    (asking ??= (async () => {
      try {
        [snapshots, credits] = await Promise.all([api.snapshots(), api.credits()]);
        error.show(null);
      } catch (failure) {
        error.show(problem(failure));
      } finally {
        asking = null;
      }
    })());

  let shown: { overview: Overview; points: Point[] } | null = null;
  const render = () => {
    if (!shown) return;
    const now = Date.now();
    drawActions(actions, shown.overview, refresh);
    update(cards, ...statusCards(shown.overview, snapshots, credits, now));
    update(chart, ...chartView(shown.points, now));
  };
  // The agent's latest snapshot when the hub was last asked (undefined: not asked yet).
  let askedAfter: string | null | undefined;
  const refresh = async () => {
    const [overview, points] = await Promise.all([api.overview(), api.history()]);
    shown = { overview, points };
    render();
    const latest = overview.state.last_backup?.[1] ?? null;
    if (latest !== askedAfter) {
      askedAfter = latest;
      await askHub();
      render();
    }
  };
  await refresh();
  setInterval(refresh, LOCAL_MS);
  const fromHub = async () => {
    await askHub();
    render();
  };
  setInterval(fromHub, HUB_MS);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") void fromHub();
  });
}

function drawActions(actions: HTMLElement, overview: Overview, redraw: () => Promise<void>): void {
  const button = (label: string, test: string, work: () => Promise<void>, kind = "secondary") =>
    h("button", { type: "button", class: kind, test, on: { click: async () => { await work(); await redraw(); } } }, label);
  update(
    actions,
    h("p", { class: `headline ${overview.tray.backup.level}`, test: "backup-health" }, overview.tray.backup.sentence),
    h("span", { class: `badge ${overview.tray.state}`, test: "tray-line" }, overview.tray.line),
    overview.tray.paused
      ? button("Resume lending", "resume", () => api.resume("lending"), "primary")
      : button("Pause lending for 1 hour", "pause-hour", () => api.pause("lending", "hour")),
    overview.tray.backups_paused
      ? button("Resume backups", "resume-backups", () => api.resume("backups"), "primary")
      : button("Pause backups for 1 hour", "pause-backups", () => api.pause("backups", "hour")),
    button("Back up now", "backup-now", api.backUpNow),
    button("Restore files...", "open-restore", () => api.openWindow("restore")),
    button("Settings...", "open-settings", () => api.openWindow("settings")),
  );
}

/** What a snapshot's state means for its owner, in words. */
export function snapshotState(state: Snapshot["state"]): string {
  switch (state) {
    case "protected":
      return "protected";
    case "uploading":
      return "uploading to other PCs";
    case "repairing":
      return "repairing (restorable meanwhile)";
    case "at_risk":
      return "at risk: restorable only if PCs that are away come back";
    case "lost":
      return "lost: too few copies are left to restore it";
  }
}

export function statusCards(overview: Overview, snapshots: Snapshot[] | null, credits: Credits | null, now: number): HTMLElement[] {
  const { state, settings } = overview;
  const vault = state.vault;
  const latest = snapshots && snapshots.length > 0 ? snapshots[snapshots.length - 1] : null;
  const backupLine = state.last_backup_error
    ? h("p", { class: "error" }, state.last_backup_error)
    : latest
      ? h(
          "p",
          { test: "last-snapshot", "data-snapshot": latest.id },
          `Last snapshot ${formatDateTime(latest.time)}: ${latest.files} files, ${formatSize(latest.bytes)}, `,
          h("strong", { test: "backup-state" }, snapshotState(latest.state)),
        )
      : h("p", {}, settings.backup.folders.length === 0 ? "No folders chosen." : "No snapshot yet.");
  return [
    h(
      "section",
      { class: "card", test: "card-storage" },
      h("h2", {}, "Stored for others"),
      settings.consent.storage
        ? h("p", { class: "big" }, formatSize(vault?.used_bytes ?? 0))
        : h("p", {}, "Not lending disk space."),
      settings.consent.storage && vault && h("p", { class: "hint" }, `of up to ${formatSize(vault.quota_bytes)}, ${formatSize(vault.reserved_bytes)} set aside`),
    ),
    h(
      "section",
      { class: "card", test: "card-backups" },
      h("h2", {}, "Your backups"),
      backupLine,
      h("p", { class: "hint" }, `${settings.backup.folders.length} folder(s); last backup ${formatAgo(state.last_backup?.[0], now)}`),
    ),
    h(
      "section",
      { class: "card", test: "card-compute" },
      h("h2", {}, "Compute"),
      h("p", { class: "big" }, `${state.tasks_done} tasks done`),
      h(
        "p",
        { class: "hint" },
        !settings.consent.compute
          ? "Not lending processor time."
          : state.tasks_running > 0
            ? `${state.tasks_running} running${state.compute_held ? `, held: ${state.compute_held}` : ""}`
            : "None running.",
      ),
      credits && h("p", { test: "credits" }, `Credit: ${formatCoreHours(credits.balance)}`),
    ),
    h(
      "section",
      { class: "card", test: "card-hub" },
      h("h2", {}, "Connection"),
      h("p", { class: state.connected ? "ok" : "error", test: "connection" }, state.connected ? "Connected" : "Not connected"),
      state.update_needed &&
        h(
          "p",
          { class: "error", test: "update-needed" },
          "Update needed: the hub no longer serves this version of Surplus. Install the new version to keep backing up and lending.",
        ),
      h("p", { class: "hint" }, `${overview.hub_url}, last heard ${formatAgo(state.last_heartbeat, now)}`),
      state.last_error && h("p", { class: "hint" }, state.last_error),
    ),
  ];
}

function chartView(points: Point[], now: number): (Node | false)[] {
  const stored = storedSeries(points, now, DAYS, WIDTH, HEIGHT);
  const cpu = cpuSeries(points, now, DAYS, WIDTH, HEIGHT);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  svg.setAttribute("class", "chart");
  svg.dataset.test = "chart";
  for (let day = 1; day < DAYS; day++) {
    const line = document.createElementNS(svg.namespaceURI, "line");
    const x = String((day / DAYS) * WIDTH);
    line.setAttribute("x1", x);
    line.setAttribute("x2", x);
    line.setAttribute("y1", "0");
    line.setAttribute("y2", String(HEIGHT));
    line.setAttribute("class", "gridline");
    svg.append(line);
  }
  for (const [series, kind] of [[stored, "stored"], [cpu, "cpu"]] as const) {
    const path = document.createElementNS(svg.namespaceURI, "path");
    path.setAttribute("d", series.path);
    path.setAttribute("class", kind);
    svg.append(path);
  }
  return [
    h("h2", {}, `The last ${DAYS} days`),
    svg,
    h(
      "p",
      { class: "legend" },
      h("span", { class: "key stored" }), ` Stored for others (peak ${formatSize(stored.peak)})  `,
      h("span", { class: "key cpu" }), ` Processor minutes lent (peak ${cpu.peak.toFixed(1)} per quarter hour)`,
    ),
    points.length < 2 && h("p", { class: "hint" }, "The chart fills in as the days go by."),
  ];
}
