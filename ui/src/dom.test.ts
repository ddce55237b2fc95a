import { expect, it } from "vitest";
import { asProblem, errorLine, h, update } from "./dom";

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

it("shows a problem's plain words, with the technical text behind Details", () => {
  const line = errorLine();
  expect(line.hidden).toBe(true);
  line.show({ message: "That email and password don't match.", details: "the hub refused: wrong email or password (unauthorized)" });
  expect(line.hidden).toBe(false);
  expect(line.querySelector("p")?.textContent).toBe("That email and password don't match.");
  expect(line.querySelector("details summary")?.textContent).toBe("Details");
  expect(line.querySelector("pre")?.textContent).toContain("(unauthorized)");
  line.show("Choose at least one folder to back up.");
  expect(line.querySelector("details")).toBeNull();
  line.show(null);
  expect(line.hidden).toBe(true);
  expect(line.textContent).toBe("");
});

it("reads whatever a command or a page threw as a problem", () => {
  expect(asProblem({ message: "Offline.", details: "cannot reach" })).toEqual({ message: "Offline.", details: "cannot reach" });
  expect(asProblem("plain")).toEqual({ message: "plain", details: "" });
  expect(asProblem(new Error("thrown"))).toEqual({ message: "thrown", details: "" });
  expect(asProblem(42)).toEqual({ message: "42", details: "" });
});
