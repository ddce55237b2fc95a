import { expect, it } from "vitest";
import { ask, asProblem, errorLine, h, update } from "./dom";

it("changes only what differs, keeping the nodes, the focus and an open Details", () => {
  const container = h("div", {});
  document.body.append(container);
  const draw = (tasks: number) =>
    update(
      container,
      h("p", { test: "line" }, `${tasks} tasks done`),
      h("button", { test: "pause" }, "Pause"),
      h("details", { test: "more" }, h("summary", {}, "More"), h("p", {}, `${tasks}`)),
    );
  draw(3);
  const [line, button, details] = [...container.children] as HTMLElement[];
  button.focus();
  (details as HTMLDetailsElement).open = true;
  draw(3);
  expect([...container.children]).toEqual([line, button, details]);
  draw(4);
  expect(container.firstChild).toBe(line);
  expect(line.textContent).toBe("4 tasks done");
  expect(document.activeElement).toBe(button);
  expect((details as HTMLDetailsElement).open).toBe(true);
  expect(details.textContent).toContain("4");
  container.remove();
});

it("makes an element with another name anew, with its own handler", () => {
  const container = h("div", {});
  const clicks: string[] = [];
  const draw = (paused: boolean) =>
    update(
      container,
      paused
        ? h("button", { test: "resume", on: { click: () => clicks.push("resume") } }, "Resume")
        : h("button", { test: "pause", on: { click: () => clicks.push("pause") } }, "Pause"),
    );
  draw(false);
  const pause = container.firstChild;
  draw(true);
  expect(container.firstChild).not.toBe(pause);
  (container.firstChild as HTMLButtonElement).click();
  expect(clicks).toEqual(["resume"]);
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

it("asks in a dialog of the page's own, yes or no", async () => {
  // jsdom has <dialog> but not its methods; WebKit's own are what the end-to-end test uses.
  const proto = HTMLDialogElement.prototype as HTMLDialogElement & Record<string, unknown>;
  proto.showModal ??= function (this: HTMLDialogElement) {
    this.open = true;
  };
  proto.close ??= function (this: HTMLDialogElement, value?: string) {
    this.returnValue = value ?? "";
    this.open = false;
    this.dispatchEvent(new Event("close"));
  };
  const yes = ask("Stop lending disk space?", "Stop lending");
  expect(document.querySelector("[data-test=ask-question]")?.textContent).toBe("Stop lending disk space?");
  (document.querySelector("[data-test=ask-yes]") as HTMLButtonElement).click();
  expect(await yes).toBe(true);
  expect(document.querySelector("[data-test=ask]")).toBeNull();
  const no = ask("Close without saving your changes?", "Close without saving", "Keep editing");
  (document.querySelector("[data-test=ask-no]") as HTMLButtonElement).click();
  expect(await no).toBe(false);
});
