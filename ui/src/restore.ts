// Restore: pick a snapshot from a list by day, browse its folders (with each file's size and
// date) or search it by name, tick what to bring back, and restore it where it was (keeping both
// copies of a file that changed since, or replacing it) or into another folder.

import { api, problem, type Entry, type RestoreProgress, type Restored, type Snapshot } from "./api";
import { busy, errorLine, h, replace } from "./dom";
import { formatDateTime, formatSize } from "./format";
import { snapshotState } from "./status";

export function joinPath(folder: string | null, name: string): string {
  if (!folder) return name;
  return folder.endsWith("/") ? folder + name : `${folder}/${name}`;
}

export function parentPath(folder: string | null): string | null {
  if (!folder) return null;
  const cut = folder.lastIndexOf("/");
  return cut <= 0 ? (cut === 0 ? "/" : null) : folder.slice(0, cut);
}

export function progressText(p: RestoreProgress): string {
  const share = p.total_bytes > 0 ? Math.min(100, Math.round((p.bytes / p.total_bytes) * 100)) : 100;
  return `${share}%: ${p.files} of ${p.total_files} files, ${formatSize(p.bytes)} of ${formatSize(p.total_bytes)}`;
}

/// The snapshots by the day they were taken, newest day first and newest first within a day:
/// the restore window's list reads like a calendar.
export function byDay(snapshots: Snapshot[]): { day: string; snapshots: Snapshot[] }[] {
  const days = new Map<string, Snapshot[]>();
  for (const snapshot of [...snapshots].sort((a, b) => b.time - a.time)) {
    const day = new Date(snapshot.time).toLocaleDateString([], { weekday: "long", year: "numeric", month: "long", day: "numeric" });
    days.set(day, [...(days.get(day) ?? []), snapshot]);
  }
  return [...days].map(([day, snapshots]) => ({ day, snapshots }));
}

/// "1 file", "3 files".
function files(count: number): string {
  return `${count} file${count === 1 ? "" : "s"}`;
}

/// What a restore did, in a sentence.
export function restoredText(done: Restored, where: string): string {
  const parts = [`Restored ${files(done.files)} (${formatSize(done.bytes)}) ${where}.`];
  if (done.in_place > 0) parts.push(`${files(done.in_place)} already there and unchanged.`);
  if (done.kept_both > 0) {
    parts.push(`${files(done.kept_both)} had changed since: kept, with the snapshot's copy put beside as "name (restored)".`);
  }
  if (done.replaced > 0) parts.push(`${files(done.replaced)} that had changed replaced by the snapshot's copy.`);
  return parts.join(" ");
}

export async function restore(root: HTMLElement): Promise<void> {
  document.body.dataset.page = "restore";
  const error = errorLine();
  const picker = h("select", { id: "snapshot", test: "snapshot" });
  const search = h("input", { type: "search", id: "search", test: "search", placeholder: "Part of a file or folder name" });
  const crumbs = h("nav", { class: "crumbs", test: "crumbs", "aria-label": "Folder" });
  const tree = h("tbody", { test: "tree" });
  const found = h("p", { class: "hint", role: "status", test: "found" });
  let home = "";
  const where = destination(() => home);
  const go = h("button", { type: "submit", class: "primary", test: "restore" }, "Restore");
  const bar = h("progress", { max: "100", value: "0", test: "progress", "aria-label": "Restore progress" });
  const progressLine = h("p", { class: "hint", role: "status", test: "progress-text" });
  const chosen = new Set<string>();
  let snapshots: Snapshot[] = [];

  const form = h(
    "form",
    { on: { submit: (event: Event) => event.preventDefault() } },
    h("label", { for: "snapshot" }, "Snapshot"),
    picker,
    h("label", { for: "search" }, "Search this snapshot by name"),
    h(
      "div",
      { class: "row" },
      search,
      h("button", { type: "button", class: "secondary", test: "search-go", on: { click: () => void find() } }, "Search"),
    ),
    found,
    crumbs,
    h(
      "table",
      { class: "entries" },
      h("caption", { class: "hint" }, "Tick files or folders to restore only those; tick nothing to restore the whole snapshot."),
      h(
        "thead",
        {},
        h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col", class: "number" }, "Size"), h("th", { scope: "col" }, "Modified")),
      ),
      tree,
    ),
    where.element,
    h("div", { class: "row end" }, go),
    bar,
    progressLine,
  );
  root.append(h("header", {}, h("h1", {}, "Restore files")), error, form);

  const row = (path: string, entry: Entry, shownName: string, open: (() => void) | null) => {
    const box = h("input", { type: "checkbox", test: `pick-${entry.name}`, "aria-label": `Restore ${path}` });
    box.checked = chosen.has(path);
    box.addEventListener("change", () => (box.checked ? chosen.add(path) : chosen.delete(path)));
    const name = open
      ? h("button", { type: "button", class: "link", test: `open-${entry.name}`, on: { click: open } }, `${shownName}/`)
      : h("span", {}, shownName);
    return h(
      "tr",
      {},
      h("td", {}, h("label", {}, box, " "), name),
      h("td", { class: "number" }, entry.kind === "file" ? formatSize(entry.size) : ""),
      h("td", {}, entry.mtime > 0 ? formatDateTime(entry.mtime) : ""),
    );
  };

  const browse = async (folder: string | null) => {
    found.textContent = "";
    const entries: Entry[] = await api.listSnapshot(picker.value, folder);
    replace(
      crumbs,
      h("button", { type: "button", class: "link", on: { click: () => void browse(null) } }, "All folders"),
      folder && ` / ${folder}`,
      folder && h("button", { type: "button", class: "link", on: { click: () => void browse(parentPath(folder)) } }, " (up)"),
    );
    replace(
      tree,
      ...entries.map((entry) => {
        const path = joinPath(folder, entry.name);
        return row(path, entry, entry.name, entry.kind === "dir" ? () => void browse(path) : null);
      }),
    );
    if (entries.length === 0) tree.append(h("tr", {}, h("td", { colspan: 3, class: "hint" }, "This folder was empty.")));
  };

  const find = async () => {
    const needle = search.value.trim();
    if (!needle) {
      await browse(null).catch((failure) => error.show(problem(failure)));
      return;
    }
    error.show(null);
    try {
      const results = await api.searchSnapshot(picker.value, needle);
      replace(crumbs, h("button", { type: "button", class: "link", on: { click: () => void browse(null) } }, "All folders"), ` / search for "${needle}"`);
      replace(
        tree,
        ...results.found.map(({ path, entry }) =>
          row(path, entry, path, entry.kind === "dir" ? () => void browse(path) : null),
        ),
      );
      found.textContent =
        results.found.length === 0
          ? `Nothing in this snapshot has "${needle}" in its name.`
          : `${results.found.length}${results.more ? "+" : ""} found${results.more ? ": type more of the name to narrow it down" : ""}.`;
    } catch (failure) {
      error.show(problem(failure));
    }
  };
  search.addEventListener("keydown", (event) => {
    if ((event as KeyboardEvent).key !== "Enter") return;
    event.preventDefault();
    void find();
  });

  try {
    const overview = await api.overview();
    where.setFolder(overview.restore_to);
    home = overview.home_dir;
    snapshots = await api.snapshots();
  } catch (failure) {
    error.show(problem(failure));
    return;
  }
  if (snapshots.length === 0) {
    error.show("There is no snapshot yet: the first backup has not finished.");
    go.disabled = true;
    return;
  }
  for (const { day, snapshots: ofDay } of byDay(snapshots)) {
    picker.append(
      h(
        "optgroup",
        { label: day },
        ...ofDay.map((s) =>
          h(
            "option",
            { value: s.id },
            `${new Date(s.time).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}: ${s.files} files, ${formatSize(s.bytes)} (${snapshotState(s.state)})`,
          ),
        ),
      ),
    );
  }
  picker.addEventListener("change", () => {
    chosen.clear();
    search.value = "";
    browse(null).catch((failure) => error.show(problem(failure)));
  });
  await browse(null).catch((failure) => error.show(problem(failure)));
  await api.onRestoreProgress((p) => {
    bar.value = p.total_bytes > 0 ? (p.bytes / p.total_bytes) * 100 : 100;
    progressLine.textContent = progressText(p);
  });
  form.addEventListener("submit", () =>
    busy(go, "Restoring...", error, async () => {
      const target = where.read();
      const done = await api.restore(picker.value, [...chosen], target.folder, target.replace);
      bar.value = 100;
      progressLine.textContent = restoredText(done, target.folder === null ? "where they were" : `into ${target.folder}`);
    }),
  );
}

/// Where to restore: back where the files were (keeping both copies of a file that changed
/// since, or replacing it, with a warning), or into a folder, typed or chosen.
function destination(home: () => string): {
  element: HTMLElement;
  setFolder(folder: string): void;
  read(): { folder: string | null; replace: boolean };
} {
  const original = h("input", { type: "radio", name: "where", id: "where-original", value: "original", test: "where-original" });
  const folder = h("input", { type: "radio", name: "where", id: "where-folder", value: "folder", test: "where-folder", checked: true });
  const keepBoth = h("input", { type: "radio", name: "existing", id: "keep-both", test: "keep-both", checked: true });
  const replaceThem = h("input", { type: "radio", name: "existing", id: "replace", test: "replace" });
  const warning = h(
    "p",
    { class: "warning", test: "replace-warning", hidden: true },
    "Files that changed since this snapshot will be overwritten with the snapshot's copies. What changed since is lost.",
  );
  const target = h("input", { type: "text", id: "target", test: "target", "aria-label": "Folder to restore into" });
  const choose = h(
    "button",
    {
      type: "button",
      class: "secondary",
      test: "choose-target",
      on: {
        click: async () => {
          const [picked] = await api.chooseFolders("Choose where to restore", false, target.value || home());
          if (picked) target.value = picked;
        },
      },
    },
    "Choose...",
  );
  const originalOptions = h(
    "fieldset",
    { class: "nested", test: "existing" },
    h("legend", {}, "Where a file there changed since the snapshot"),
    h("label", {}, keepBoth, " Keep both: put the restored copy beside it"),
    h("label", {}, replaceThem, " Replace it with the snapshot's copy"),
    warning,
  );
  const folderRow = h("div", { class: "row" }, target, choose);
  const sync = () => {
    originalOptions.hidden = !original.checked;
    folderRow.hidden = !folder.checked;
    warning.hidden = !(original.checked && replaceThem.checked);
  };
  for (const input of [original, folder, keepBoth, replaceThem]) input.addEventListener("change", sync);
  sync();
  return {
    element: h(
      "fieldset",
      { test: "destination" },
      h("legend", {}, "Restore to"),
      h("label", {}, original, " Where the files were"),
      originalOptions,
      h("label", {}, folder, " Another folder"),
      folderRow,
    ),
    setFolder: (value) => {
      target.value = value;
    },
    read: () => {
      if (original.checked) return { folder: null, replace: replaceThem.checked };
      const value = target.value.trim();
      if (!value) throw "Choose the folder to restore into.";
      return { folder: value, replace: false };
    },
  };
}
