import { expect, it } from "vitest";
import { byDay, joinPath, parentPath, progressText, restoredText } from "./restore";

it("walks a snapshot's folders", () => {
  expect(joinPath(null, "home")).toBe("home");
  expect(joinPath("/", "home")).toBe("/home");
  expect(joinPath("/home", "ann")).toBe("/home/ann");
  expect(parentPath("/home/ann")).toBe("/home");
  expect(parentPath("/home")).toBe("/");
  expect(parentPath("home")).toBeNull();
  expect(parentPath(null)).toBeNull();
});

it("tells restore progress in files and bytes", () => {
  expect(progressText({ files: 1, total_files: 4, bytes: 512, total_bytes: 2048 })).toBe(
    "25%: 1 of 4 files, 512 B of 2.0 KiB",
  );
  expect(progressText({ files: 0, total_files: 0, bytes: 0, total_bytes: 0 })).toMatch(/^100%/);
});

it("lists snapshots by day, newest first", () => {
  const at = (iso: string, id: string) => ({ id, time: new Date(iso).getTime(), hostname: "pc", files: 1, bytes: 1, state: "protected" as const });
  const days = byDay([at("2026-11-29T09:00", "a"), at("2026-11-30T08:00", "b"), at("2026-11-30T18:00", "c")]);
  expect(days.map((d) => d.snapshots.map((s) => s.id))).toEqual([["c", "b"], ["a"]]);
  expect(days[0].day).toBe(new Date("2026-11-30T08:00").toLocaleDateString([], { weekday: "long", year: "numeric", month: "long", day: "numeric" }));
});

it("says what a restore did to the files that were there", () => {
  expect(restoredText({ files: 3, bytes: 2048, in_place: 0, replaced: 0, kept_both: 0 }, "into /tmp/r")).toBe("Restored 3 files (2.0 KiB) into /tmp/r.");
  const back = restoredText({ files: 1, bytes: 10, in_place: 5, replaced: 0, kept_both: 1 }, "where they were");
  expect(back).toBe(
    'Restored 1 file (10 B) where they were. 5 files already there and unchanged. 1 file had changed since: kept, with the snapshot\'s copy put beside as "name (restored)".',
  );
  expect(restoredText({ files: 1, bytes: 1, in_place: 0, replaced: 1, kept_both: 0 }, "where they were")).toContain("1 file that had changed replaced");
});
