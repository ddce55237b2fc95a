// Status: the backups' health first, then what this PC gives and what you get back, the hub,
// and a chart of the last days. The core sends a new overview whenever what it knows changes
// (the `overview` event), and the page changes in place only what differs, so that the focus
// and a screen reader's place stay. The hub is asked for snapshots and credit when the agent
// finishes a backup, when the window comes back into view, and otherwise once a minute (for what
// changes only at the hub: a snapshot's packs reaching their holders, credit earned).

import { api, problem, type Credits, type Overview, type Snapshot } from "./api";
import { cpuSeries, dailyRows, storedSeries, type Point } from "./chart";
import { errorLine, h, update } from "./dom";
import { formatAgo, formatComputerTime, formatDateTime, formatSize } from "./format";

const DAYS = 7;
const WIDTH = 600;
const HEIGHT = 120;
/// How often the hub is asked when nothing here says that its answer changed.
const HUB_MS = 60_000;
/// How often the chart's history is read again: the agent adds a point every quarter hour.
const HISTORY_MS = 60_000;
/// How long "Back up now" says it is starting before the agent's state shows the backup.
const STARTING_MS = 30_000;

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

  let overview = await api.overview();
  let points = await api.history();
  let pointsRead = Date.now();
  // "Back up now" was pressed then, when the latest backup was this one: it says "Backing up..."
  // from the press, before the agent's state shows the backup running.
  let asked: { at: number; latest: string | null } | null = null;
  const latestBackup = () => overview.state.last_backup?.[1] ?? null;

  const render = () => {
    const now = Date.now();
    if (asked && (overview.state.backing_up_since != null || latestBackup() !== asked.latest || now - asked.at > STARTING_MS)) {
      asked = null;
    }
    const backUp = async () => {
      asked = { at: Date.now(), latest: latestBackup() };
      render();
      try {
        await api.backUpNow();
      } catch (failure) {
        asked = null;
        error.show(problem(failure));
        render();
      }
    };
    drawActions(actions, overview, asked !== null, backUp, show);
    update(cards, ...statusCards(overview, snapshots, credits, now));
    update(chart, ...chartView(points, now));
  };
  const show = async () => {
    overview = await api.overview();
    render();
  };
  // The agent's latest snapshot when the hub was last asked (undefined: not asked yet).
  let askedAfter: string | null | undefined;
  const news = async (fresh: Overview) => {
    overview = fresh;
    if (Date.now() - pointsRead > HISTORY_MS) {
      points = await api.history();
      pointsRead = Date.now();
    }
    render();
    if (latestBackup() !== askedAfter) {
      askedAfter = latestBackup();
      await askHub();
      render();
    }
  };
  await api.onOverview((fresh) => void news(fresh));
  await news(overview);
  const fromHub = async () => {
    await askHub();
    render();
  };
  setInterval(fromHub, HUB_MS);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") void fromHub();
  });
}

function drawActions(
  actions: HTMLElement,
  overview: Overview,
  starting: boolean,
  backUp: () => Promise<void>,
  redraw: () => Promise<void>,
): void {
  const button = (label: string, test: string, work: () => Promise<void>, kind = "secondary") =>
    h("button", { type: "button", class: kind, test, on: { click: async () => { await work(); await redraw(); } } }, label);
  const backingUp = starting || overview.state.backing_up_since != null;
  update(
    actions,
    h(
      "p",
      { class: `headline ${overview.tray.backup.level}`, test: "backup-health", role: "status" },
      overview.tray.backup.sentence,
    ),
    h("span", { class: `badge ${overview.tray.state}`, test: "tray-line" }, overview.tray.line),
    overview.tray.paused
      ? button("Resume lending", "resume", () => api.resume("lending"), "primary")
      : button("Pause lending for 1 hour", "pause-hour", () => api.pause("lending", "hour")),
    overview.tray.backups_paused
      ? button("Resume backups", "resume-backups", () => api.resume("backups"), "primary")
      : button("Pause backups for 1 hour", "pause-backups", () => api.pause("backups", "hour")),
    backingUp
      ? h("button", { type: "button", class: "secondary", test: "backing-up", disabled: true }, "Backing up...")
      : h("button", { type: "button", class: "secondary", test: "backup-now", on: { click: () => void backUp() } }, "Back up now"),
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
  const progress = state.backing_up_since != null ? state.backup_progress : null;
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
  const skipped = state.last_backup_skipped;
  const computeTime = formatComputerTime(state.compute_ms_done / 1000);
  return [
    h(
      "section",
      { class: "card", test: "card-backups" },
      h("h2", {}, "Your backups"),
      progress &&
        progress.files_total > 0 &&
        h("progress", {
          test: "backup-progress",
          max: progress.files_total,
          value: Math.min(progress.files, progress.files_total),
          "aria-label": "Backup progress",
          "aria-valuetext": `${progress.files.toLocaleString("en")} of ${progress.files_total.toLocaleString("en")} files`,
        }),
      backupLine,
      h("p", { class: "hint" }, `${settings.backup.folders.length} folder(s); last backup ${formatAgo(state.last_backup?.[0], now)}`),
      state.last_backup_skipped_count > 0 &&
        h(
          "details",
          { test: "skipped" },
          h("summary", {}, `${state.last_backup_skipped_count} could not be read, and are not in the backup`),
          h("ul", {}, ...skipped.map((entry) => h("li", {}, h("code", {}, entry.path), `: ${entry.reason}`))),
          state.last_backup_skipped_count > skipped.length &&
            h("p", { class: "hint" }, `and ${state.last_backup_skipped_count - skipped.length} more (see the log).`),
        ),
    ),
    h(
      "section",
      { class: "card", test: "card-give" },
      h("h2", {}, "What you give"),
      settings.consent.storage
        ? h(
            "p",
            { test: "card-storage" },
            h("span", { class: "big" }, formatSize(vault?.used_bytes ?? 0)),
            " of other people's backups kept on this PC",
            vault && h("span", { class: "hint" }, `, of up to ${formatSize(vault.quota_bytes)} (${formatSize(vault.reserved_bytes)} set aside)`),
          )
        : h("p", { test: "card-storage" }, "Not lending disk space."),
      h(
        "p",
        { test: "card-compute" },
        !settings.consent.compute
          ? "Not lending processor time."
          : `${computeTime} lent: ${state.tasks_done} tasks done. ${
              state.tasks_running > 0
                ? `${state.tasks_running} running${state.compute_held ? `, held: ${state.compute_held}` : ""}.`
                : "None running."
            }`,
      ),
    ),
    h(
      "section",
      { class: "card", test: "card-get" },
      h("h2", {}, "What you get"),
      h(
        "p",
        { test: "kept-elsewhere" },
        latest ? `${formatSize(latest.bytes)} of your files (${latest.files} files) kept on other PCs` : "None of your files are kept on other PCs yet.",
      ),
      credits &&
        h(
          "p",
          { test: "credits" },
          `Credit: ${formatComputerTime(credits.balance)} to run your own compute jobs on other PCs`,
        ),
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
  svg.setAttribute("role", "img");
  svg.setAttribute(
    "aria-label",
    `Chart of the last ${DAYS} days: at most ${formatSize(stored.peak)} stored for others, at most ${cpu.peak.toFixed(1)} processor minutes lent per quarter hour. The numbers by day follow.`,
  );
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
    h(
      "details",
      { test: "chart-table" },
      h("summary", {}, "The numbers by day"),
      h(
        "table",
        {},
        h("caption", { class: "hint" }, `What this PC lent each day, the last ${DAYS} days`),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Day"), h("th", { scope: "col" }, "Most stored for others"), h("th", { scope: "col" }, "Processor minutes lent"))),
        h(
          "tbody",
          {},
          ...dailyRows(points, now, DAYS).map((row) =>
            h(
              "tr",
              {},
              h("th", { scope: "row" }, new Date(row.day).toLocaleDateString([], { weekday: "short", month: "short", day: "numeric" })),
              h("td", {}, formatSize(row.peakStored)),
              h("td", {}, row.computeMinutes.toFixed(1)),
            ),
          ),
        ),
      ),
    ),
  ];
}
