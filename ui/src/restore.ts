// Restore: pick a snapshot, browse its tree, restore files or folders to a chosen place.

import { api, problem, type Entry, type RestoreProgress, type Snapshot } from "./api";
import { busy, errorLine, h, replace } from "./dom";
import { formatDateTime, formatSize } from "./format";

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

export async function restore(root: HTMLElement): Promise<void> {
  document.body.dataset.page = "restore";
  const error = errorLine();
  const picker = h("select", { id: "snapshot", test: "snapshot" });
  const crumbs = h("p", { class: "crumbs", test: "crumbs" });
  const tree = h("ul", { class: "tree", test: "tree" });
  const target = h("input", { type: "text", id: "target", test: "target" });
  const go = h("button", { type: "button", class: "primary", test: "restore" }, "Restore");
  const bar = h("progress", { max: "100", value: "0", test: "progress" });
  const progressLine = h("p", { class: "hint", test: "progress-text" });
  const chosen = new Set<string>();
  let snapshots: Snapshot[] = [];
  let folder: string | null = null;

  root.append(
    h("header", {}, h("h1", {}, "Restore files")),
    error,
    h("label", { for: "snapshot" }, "Snapshot"),
    picker,
    crumbs,
    tree,
    h("label", { for: "target" }, "Restore into"),
    target,
    h("p", { class: "hint" }, "Tick files or folders to restore only those; tick nothing to restore the whole snapshot. Files already there are kept."),
    h("div", { class: "row end" }, go),
    bar,
    progressLine,
  );

  const browse = async (path: string | null) => {
    folder = path;
    const entries: Entry[] = await api.listSnapshot(picker.value, path);
    replace(
      crumbs,
      h("button", { type: "button", class: "link", on: { click: () => browse(null) } }, "top"),
      folder && ` / ${folder}`,
      folder && h("button", { type: "button", class: "link", on: { click: () => browse(parentPath(folder)) } }, " (up)"),
    );
    replace(
      tree,
      ...entries.map((entry) => {
        const path = joinPath(folder, entry.name);
        const box = h("input", { type: "checkbox", test: `pick-${entry.name}` });
        box.checked = chosen.has(path);
        box.addEventListener("change", () => (box.checked ? chosen.add(path) : chosen.delete(path)));
        const name =
          entry.kind === "dir"
            ? h("button", { type: "button", class: "link", test: `open-${entry.name}`, on: { click: () => browse(path) } }, `${entry.name}/`)
            : h("span", {}, entry.name);
        return h("li", {}, box, " ", name, h("span", { class: "hint" }, entry.kind === "file" ? ` ${formatSize(entry.size)}` : ""));
      }),
    );
  };

  try {
    const overview = await api.overview();
    target.value = overview.restore_to;
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
  for (const s of [...snapshots].reverse()) {
    picker.append(h("option", { value: s.id }, `${formatDateTime(s.time)}: ${s.files} files, ${formatSize(s.bytes)} (${s.state})`));
  }
  picker.addEventListener("change", () => {
    chosen.clear();
    browse(null).catch((failure) => error.show(problem(failure)));
  });
  await browse(null).catch((failure) => error.show(problem(failure)));
  await api.onRestoreProgress((p) => {
    bar.value = p.total_bytes > 0 ? (p.bytes / p.total_bytes) * 100 : 100;
    progressLine.textContent = progressText(p);
  });
  go.addEventListener("click", () =>
    busy(go, "Restoring...", error, async () => {
      const done = await api.restore(picker.value, [...chosen], target.value.trim());
      bar.value = 100;
      progressLine.textContent = `Restored ${done.files} files, ${formatSize(done.bytes)} into ${target.value}` +
        (done.in_place > 0 ? ` (${done.in_place} were there already and were kept)` : "");
    }),
  );
}
