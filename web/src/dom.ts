// Builds DOM nodes from data without innerHTML: text is always text (titles and names
// come from users), attributes are set one by one.

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | boolean | undefined>;

/** `h("button", { type: "button" }, "Retry")`: an element with attributes and children.
 * A `true` attribute is present-and-empty, `false`/undefined ones are left out. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child);
  }
  return el;
}
