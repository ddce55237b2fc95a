import { expect, it } from "vitest";
import { h, update } from "./dom";

it("leaves a view that would look the same as it is, and swaps one that changed", () => {
  const container = h("div", {});
  update(container, h("p", { test: "line" }, "3 tasks done"));
  const shown = container.firstChild;
  update(container, h("p", { test: "line" }, "3 tasks done"));
  expect(container.firstChild).toBe(shown);
  update(container, h("p", { test: "line" }, "4 tasks done"));
  expect(container.firstChild).not.toBe(shown);
  expect(container.textContent).toBe("4 tasks done");
});
