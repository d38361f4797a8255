// Headline figures as a description list: each figure is a <dt> label and a <dd>
// value, and carries data-stat (its key) and data-value (the raw number) so tests and
// scripts read the number without parsing the locale's formatting.
import { h } from "../dom";

export interface Stat {
  /** Stable key, e.g. "views", "completion-rate". */
  readonly key: string;
  readonly label: string;
  /** What people read ("66.7%"). */
  readonly shown: string;
  /** The number as the API gave it ("0.6667", "3"). */
  readonly raw: string;
  /** One line under the value explaining it. */
  readonly hint?: string;
}

export function statList(label: string, stats: readonly Stat[]): HTMLDListElement {
  return h(
    "dl",
    { class: "stat-list", "aria-label": label },
    ...stats.map((stat) =>
      h(
        "div",
        { class: "stat", "data-stat": stat.key },
        h("dt", {}, stat.label),
        h("dd", { "data-value": stat.raw }, stat.shown),
        stat.hint ? h("dd", { class: "stat-hint" }, stat.hint) : null,
      ),
    ),
  );
}
