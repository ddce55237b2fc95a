// A few lines instead of a framework: build elements, swap a container's children.

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

/// Like `replace`, but leaves the container as it is when the new children would look the same,
/// so that a view redrawn on a timer keeps its nodes (and the focus, a selection, a hover) until
/// something shown changes.
export function update(container: Element, ...children: Child[]): void {
  const fresh = document.createElement("div");
  replace(fresh, ...children);
  if (fresh.innerHTML !== container.innerHTML) container.replaceChildren(...fresh.childNodes);
}

/// A line under a form that says what went wrong (empty when nothing did).
export function errorLine(): HTMLParagraphElement & { show(message: string | null): void } {
  const line = h("p", { class: "error", role: "alert", test: "error" }) as HTMLParagraphElement & {
    show(message: string | null): void;
  };
  line.show = (message) => {
    line.textContent = message ?? "";
    line.hidden = !message;
  };
  line.show(null);
  return line;
}

/// Runs `work` with `button` disabled and showing `busy`, and reports its error on `error`.
/// Says whether the work succeeded.
export async function busy(
  button: HTMLButtonElement,
  text: string,
  error: { show(message: string | null): void },
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
    error.show(typeof failure === "string" ? failure : failure instanceof Error ? failure.message : String(failure));
    return false;
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
}
