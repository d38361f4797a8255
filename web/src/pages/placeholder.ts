// Stand-in for pages still to be written (upload, analytics, live).
import { h } from "../dom";
import type { Page } from "../router";

export function placeholderPage(title: string): Page {
  return ({ root, params }) => {
    root.append(
      h("h1", {}, title),
      ...(params.id ? [h("p", {}, "Stream ", h("code", {}, params.id))] : []),
      h("p", { class: "help" }, "This page is not built yet."),
    );
  };
}
