// A tiny element builder: h("button", { onclick, class: "x" }, "text") instead of a framework.
// The pages are small and re-render their own regions, so plain DOM keeps the bundle tiny.

export type Child = Node | string | number | null | undefined | false | Child[];
type Props = Record<string, unknown>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value as EventListener);
    } else if (name === "value" || name === "checked" || name === "selected") {
      (element as unknown as Record<string, unknown>)[name] = value;
    } else {
      element.setAttribute(name === "className" ? "class" : name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

export function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces everything inside ``parent`` with ``children``. */
export function replace(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, children);
}

/** A status badge: the word, styled by its value (``running``, ``failed``...). */
export function badge(status: string): HTMLElement {
  return h("span", { class: `badge badge-${status}` }, status);
}

/** An alert with the message of an error; ``role=alert`` so screen readers announce it. */
export function errorBox(error: unknown): HTMLElement {
  const message = error instanceof Error ? error.message : String(error);
  return h("p", { class: "error", role: "alert" }, message);
}

/** A definition list from label/value pairs, skipping empty values. */
export function facts(rows: [string, Child][], wide = false): HTMLElement {
  return h(
    "dl",
    { class: wide ? "facts wide" : "facts" },
    rows.filter(([, value]) => value !== null && value !== undefined && value !== "").map(([label, value]) => [
      h("dt", {}, label),
      h("dd", {}, value),
    ]),
  );
}
