import { expect, it } from "vitest";
import { next, pagesFor, passphraseProblem, previous } from "./wizard-flow";

it("skips the quota page when nothing is lent", () => {
  const none = { storage: false, compute: false };
  expect(pagesFor(none)).not.toContain("quota");
  expect(next("consent", none)).toBe("folders");
  expect(previous("folders", none)).toBe("consent");
  expect(next("consent", { storage: true, compute: false })).toBe("quota");
  expect(next("consent", { storage: false, compute: true })).toBe("quota");
});

it("stays on the last page", () => {
  expect(next("done", { storage: true, compute: true })).toBe("done");
  expect(previous("welcome", { storage: true, compute: true })).toBe("welcome");
});

it("asks for a long passphrase typed twice alike", () => {
  expect(passphraseProblem("short", "short")).toMatch(/12 characters/);
  expect(passphraseProblem("long enough here", "long enough herE")).toMatch(/differ/);
  expect(passphraseProblem("long enough here", "long enough here")).toBeNull();
});
