// A ranked or bucketed count as a real table (readable by screen readers, sortable by
// eye) with a proportional bar in each row: the bar is decoration (aria-hidden), the
// number next to it is the data.
import { h } from "../dom";
import { formatCount, formatShare } from "./format";

export interface BarRow {
  /** The row's label: text, or a node such as a link. */
  readonly label: Node | string;
  readonly count: bigint | number;
  /** data-key of the row (a country code, a bucket "0-10"). */
  readonly key: string;
}

export interface BarTableOptions {
  readonly caption: string;
  /** Header of the label column ("Country", "Reached"). */
  readonly labelHeader: string;
  /** Header of the count column. */
  readonly countHeader?: string;
  /** Shown instead of the table when there are no rows (or every count is 0). */
  readonly empty: string;
  /** Show each row's share of the total beside its count. */
  readonly shareOfTotal?: boolean;
}

export function barTable(rows: readonly BarRow[], options: BarTableOptions): HTMLElement {
  const counts = rows.map((row) => Number(row.count));
  const total = counts.reduce((a, b) => a + b, 0);
  const most = Math.max(0, ...counts);
  if (rows.length === 0 || most === 0) {
    return h("div", { class: "bar-table-wrap" }, h("p", { class: "help empty" }, options.empty));
  }
  const body = rows.map((row, i) => {
    const n = counts[i] ?? 0;
    const width = most > 0 ? (n / most) * 100 : 0;
    return h(
      "tr",
      { "data-key": row.key },
      h("th", { scope: "row" }, row.label),
      h(
        "td",
        { class: "bar-cell" },
        h(
          "span",
          { class: "bar-track", "aria-hidden": "true" },
          h("span", { class: n > 0 ? "bar" : "bar zero", style: `inline-size: ${width.toFixed(1)}%` }),
        ),
        h(
          "span",
          { class: "bar-value", "data-value": String(row.count) },
          formatCount(row.count),
          options.shareOfTotal && total > 0 ? h("span", { class: "meta" }, ` (${formatShare(n / total)})`) : null,
        ),
      ),
    );
  });
  return h(
    "div",
    { class: "bar-table-wrap" },
    h(
      "table",
      { class: "bar-table" },
      h("caption", {}, options.caption),
      h(
        "thead",
        {},
        h("tr", {}, h("th", { scope: "col" }, options.labelHeader), h("th", { scope: "col" }, options.countHeader ?? "Views")),
      ),
      h("tbody", {}, ...body),
    ),
  );
}
