// The retention curve: the share of view sessions still watching at each 5 % of the
// video, drawn with uPlot (canvas, loaded on demand) with labelled axes. A canvas says
// nothing to a screen reader, so the figure carries a one-sentence summary
// (role="img" + aria-label on the drawing) and the same points as a table under a
// disclosure that everyone can open.
import type uPlot from "uplot";
import { h } from "../dom";
import type { RetentionPoint } from "../gen/reels/v1/stream_pb";
import { formatShare } from "./format";

const HEIGHT = 260;
const MIN_WIDTH = 280;

export interface RetentionChart {
  readonly element: HTMLElement;
  /** Draws the curve; call once the element is in the document (it measures it). */
  draw(signal: AbortSignal): Promise<void>;
}

export function retentionChart(points: readonly RetentionPoint[], views: bigint): RetentionChart {
  const sorted = [...points].sort((a, b) => a.percentOfDuration - b.percentOfDuration);
  const summary = describe(sorted, views);
  const canvasBox = h("div", { class: "chart-canvas", role: "img", "aria-label": summary });
  const table = h(
    "table",
    { class: "retention-table" },
    h("caption", {}, "Viewers still watching, by position in the video"),
    h(
      "thead",
      {},
      h("tr", {}, h("th", { scope: "col" }, "Position in the video"), h("th", { scope: "col" }, "Still watching")),
    ),
    h(
      "tbody",
      {},
      ...sorted.map((p) =>
        h(
          "tr",
          { "data-percent": String(p.percentOfDuration) },
          h("th", { scope: "row" }, `${p.percentOfDuration}%`),
          h("td", { "data-value": String(p.shareOfViewers) }, formatShare(p.shareOfViewers)),
        ),
      ),
    ),
  );
  const figure = h(
    "figure",
    { class: "retention-chart", "data-drawn": "false" },
    canvasBox,
    h("figcaption", { class: "help" }, summary),
    h("details", { class: "chart-data" }, h("summary", {}, "Show the data as a table"), table),
  );

  const draw = async (signal: AbortSignal): Promise<void> => {
    if (sorted.length === 0) {
      canvasBox.replaceChildren(h("p", { class: "help empty" }, "No retention data yet."));
      return;
    }
    const [{ default: UPlot }] = await Promise.all([import("uplot"), import("uplot/dist/uPlot.min.css")]);
    if (signal.aborted) return;
    const style = getComputedStyle(figure);
    const text = style.color || "#111";
    const accent = style.getPropertyValue("--accent").trim() || "#e11d48";
    const grid = withAlpha(text, 0.15);
    const axisFont = `12px ${style.fontFamily}`;
    const labelFont = `600 12px ${style.fontFamily}`;
    const pct = (_: uPlot, splits: number[]): string[] => splits.map((v) => `${Math.round(v)}%`);
    const options: uPlot.Options = {
      width: Math.max(MIN_WIDTH, canvasBox.clientWidth),
      height: HEIGHT,
      // The legend repeats the hovered point in words; the axes carry the units.
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: false, range: [0, 100] },
        y: { range: [0, 100] },
      },
      axes: [
        {
          label: "Position in the video",
          stroke: text,
          font: axisFont,
          labelFont,
          grid: { stroke: grid, width: 1 },
          ticks: { stroke: grid, width: 1 },
          values: pct,
          incrs: [10, 20, 25, 50],
        },
        {
          label: "Viewers still watching",
          stroke: text,
          font: axisFont,
          labelFont,
          grid: { stroke: grid, width: 1 },
          ticks: { stroke: grid, width: 1 },
          values: pct,
          incrs: [10, 20, 25, 50],
          size: 50,
        },
      ],
      series: [
        { label: "Position", value: (_u, v) => (v == null ? "–" : `${v}%`) },
        {
          label: "Still watching",
          stroke: accent,
          fill: withAlpha(accent, 0.15),
          width: 2,
          points: { show: true, size: 5, fill: accent },
          value: (_u, v) => (v == null ? "–" : `${v.toFixed(1)}%`),
        },
      ],
    };
    const data: uPlot.AlignedData = [
      sorted.map((p) => p.percentOfDuration),
      sorted.map((p) => Math.round(p.shareOfViewers * 1000) / 10),
    ];
    const plot = new UPlot(options, data, canvasBox);
    figure.dataset.drawn = "true";
    const resize = new ResizeObserver(() => {
      const width = Math.max(MIN_WIDTH, canvasBox.clientWidth);
      if (width !== plot.width) plot.setSize({ width, height: HEIGHT });
    });
    resize.observe(canvasBox);
    signal.addEventListener(
      "abort",
      () => {
        resize.disconnect();
        plot.destroy();
      },
      { once: true },
    );
  };

  return { element: figure, draw };
}

/** One sentence for the curve: how many views it stands for and where they left. */
function describe(points: readonly RetentionPoint[], views: bigint): string {
  if (points.length === 0) return "Retention: no data yet.";
  const at = (p: number): string => {
    const point = points.find((x) => x.percentOfDuration === p);
    return point ? formatShare(point.shareOfViewers) : "–";
  };
  const sessions = views === 1n ? "1 view" : `${views} views`;
  return (
    `Retention curve over ${sessions}: ${at(0)} of viewers at the start, ${at(25)} at a quarter, ` +
    `${at(50)} at half way, ${at(75)} at three quarters and ${at(100)} to the end.`
  );
}

/** `color` (rgb(), rgba() or #rrggbb) with opacity `alpha`, for canvas strokes. */
function withAlpha(color: string, alpha: number): string {
  const rgb = color.match(/^rgba?\(\s*([\d.]+)[,\s]+([\d.]+)[,\s]+([\d.]+)/);
  if (rgb) return `rgba(${rgb[1]}, ${rgb[2]}, ${rgb[3]}, ${alpha})`;
  const hex = color.match(/^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i);
  if (hex) return `rgba(${parseInt(hex[1] ?? "0", 16)}, ${parseInt(hex[2] ?? "0", 16)}, ${parseInt(hex[3] ?? "0", 16)}, ${alpha})`;
  return color;
}
