// A few lines instead of a framework: build elements, swap or morph a container's children.

import morphdom from "morphdom";

import type { Problem } from "./bindings";

type Child = Node | string | number | null | undefined | false;

export type Props = {
  class?: string;
  id?: string;
  test?: string;
  on?: Partial<Record<keyof HTMLElementEventMap, (event: Event) => void>>;
  [attribute: string]: unknown;
};

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "on") {
      for (const [event, handler] of Object.entries(value as Record<string, EventListener>)) {
        element.addEventListener(event, handler);
      }
    } else if (key === "test") {
      element.dataset.test = String(value);
    } else if (key === "class") {
      element.className = String(value);
    } else if (key in element && key !== "list") {
      (element as unknown as Record<string, unknown>)[key] = value;
    } else {
      element.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(typeof child === "number" ? String(child) : child);
  }
  return element;
}

export function replace(container: Element, ...children: Child[]): void {
  container.replaceChildren();
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    container.append(typeof child === "number" ? String(child) : child);
  }
}

/// Like `replace`, but changes only what differs between the container's children and the new
/// ones (morphdom), so that a view redrawn as news arrives keeps its nodes: the focus, a
/// selection, an open `<details>`, a screen reader's place. Elements are matched by their
/// `data-test` (or id): one with another name is a new element with its own handlers, as when
/// "Pause" becomes "Resume"; one with the same name keeps the handlers it has.
export function update(container: Element, ...children: Child[]): void {
  const fresh = container.cloneNode(false) as Element;
  replace(fresh, ...children);
  morphdom(container, fresh, {
    childrenOnly: true,
    getNodeKey: (node) => (node instanceof HTMLElement ? node.dataset.test || node.id || undefined : undefined),
    onBeforeElUpdated: (from, to) => {
      if (from instanceof HTMLDetailsElement && to instanceof HTMLDetailsElement) to.open = from.open;
      return !from.isEqualNode(to);
    },
  });
}

/// What went wrong, in the core's plain words with its technical text apart: from a command's
/// rejection (a `Problem`), a message, or anything thrown.
export function asProblem(failure: unknown): Problem {
  if (typeof failure === "string") return { message: failure, details: "" };
  if (failure instanceof Error) return { message: failure.message, details: "" };
  if (typeof failure === "object" && failure !== null && "message" in failure) {
    const { message, details } = failure as Partial<Problem>;
    return { message: String(message), details: typeof details === "string" ? details : "" };
  }
  return { message: String(failure), details: "" };
}

export type ErrorLine = HTMLDivElement & { show(problem: Problem | string | null): void };

/// A line under a form that says what went wrong (hidden when nothing did), with the technical
/// text behind "Details". A part of a page with a line of its own names it apart (`test`).
export function errorLine(test = "error"): ErrorLine {
  const line = h("div", { class: "error", role: "alert", test }) as ErrorLine;
  line.show = (shown) => {
    const problem = shown === null ? null : asProblem(shown);
    replace(
      line,
      problem && h("p", { test: "error-message" }, problem.message),
      problem?.details &&
        h("details", {}, h("summary", {}, "Details"), h("pre", { test: "error-details" }, problem.details)),
    );
    line.hidden = !problem?.message;
  };
  line.show(null);
  return line;
}

/// Runs `work` with `button` disabled and showing `busy`, and reports its error on `error`.
/// Says whether the work succeeded.
export async function busy(
  button: HTMLButtonElement,
  text: string,
  error: { show(problem: Problem | string | null): void },
  work: () => Promise<void>,
): Promise<boolean> {
  const label = button.textContent;
  button.disabled = true;
  button.textContent = text;
  error.show(null);
  try {
    await work();
    return true;
  } catch (failure) {
    error.show(asProblem(failure));
    return false;
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
}

/// Asks the user to confirm, in a modal dialog of the page's own (`<dialog>`: the focus moves into
/// it and Escape cancels): whether they chose `yes`. The page's own, because the dialog plugin
/// turns `window.confirm` into a promise that a plain `if` takes as a yes.
export function ask(question: string, yes: string, no = "Cancel"): Promise<boolean> {
  return new Promise((resolve) => {
    const dialog: HTMLDialogElement = h(
      "dialog",
      { class: "ask", test: "ask", "aria-labelledby": "ask-question" },
      h("p", { id: "ask-question", test: "ask-question" }, question),
      h(
        "div",
        { class: "row end" },
        h("button", { type: "button", class: "secondary", test: "ask-no", on: { click: () => dialog.close("no") } }, no),
        h("button", { type: "button", class: "primary", test: "ask-yes", on: { click: () => dialog.close("yes") } }, yes),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "yes");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}
