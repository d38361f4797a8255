// An app path no route knows (Envoy served index.html for it, as for every app path).
import { h } from "../dom";
import type { PageContext } from "../router";

export function notFoundPage({ root }: PageContext): void {
  root.append(
    h("h1", {}, "Page not found"),
    h("p", {}, "There is no page at ", h("code", {}, window.location.pathname), ". ", h("a", { href: "/" }, "Go to the feed")),
  );
}
