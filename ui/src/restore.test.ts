import { expect, it } from "vitest";
import { joinPath, parentPath, progressText } from "./restore";

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
