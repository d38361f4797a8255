// One video's analytics (/analytics/:id): StreamService.GetVideoAnalytics, which only
// the video's creator may read. Headline figures, the retention curve (a chart with a
// text alternative), how far view sessions got (completion distribution), and the
// audience's countries and devices.
import { Code, ConnectError } from "@connectrpc/connect";
import { apiClient, describeError, isRetryable } from "../api";
import { h } from "../dom";
import { StreamService, type GetVideoAnalyticsResponse } from "../gen/reels/v1/stream_pb";
import type { PageContext } from "../router";
import { barTable } from "./bars";
import { countryName, deviceName, formatCount, formatSeconds, formatShare } from "./format";
import { retentionChart } from "./retention-chart";
import { statList } from "./stats";
import { videoTitles } from "./titles";

export async function videoAnalytics({ root, params, signal }: PageContext): Promise<void> {
  const videoId = params.id ?? "";
  const stream = apiClient(StreamService);
  const title = h("p", { class: "video-title" }, h("code", { class: "video-id" }, videoId));
  const status = h("p", { class: "status", role: "status" });
  const refresh = h("button", { type: "button", class: "secondary", hidden: true }, "Refresh");
  const body = h("div", { class: "analytics-body" });
  const section = h(
    "section",
    {
      class: "analytics analytics-video",
      "aria-labelledby": "analytics-title",
      "data-state": "loading",
      "data-video-id": videoId,
    },
    h("p", { class: "back" }, h("a", { href: "/analytics" }, "← All your analytics")),
    h("h1", { id: "analytics-title" }, "Video analytics"),
    title,
    h("div", { class: "status-row" }, status, refresh),
    body,
  );
  root.append(section);

  // Each render draws into a fresh scope: a refresh tears the previous chart down.
  let drawn: AbortController | null = null;
  signal.addEventListener("abort", () => drawn?.abort(), { once: true });

  void videoTitles([videoId], signal).then((titles) => {
    const name = titles.get(videoId);
    if (name) title.replaceChildren(h("span", {}, name), " ", h("code", { class: "video-id" }, videoId));
  });

  const load = async (): Promise<void> => {
    section.dataset.state = "loading";
    status.textContent = "Loading…";
    refresh.hidden = true;
    try {
      const reply = await stream.getVideoAnalytics({ videoId }, { signal });
      if (signal.aborted) return;
      drawn?.abort();
      drawn = new AbortController();
      const chart = retentionChart(reply.retention, reply.views);
      body.replaceChildren(...render(reply, chart.element));
      await chart.draw(drawn.signal);
      if (signal.aborted) return;
      section.dataset.state = reply.views === 0n ? "empty" : "ready";
      status.textContent =
        reply.views === 0n
          ? "No views yet: figures appear once people watch (they may take a few seconds to arrive)."
          : `Updated ${new Date().toLocaleTimeString()}.`;
      refresh.hidden = false;
    } catch (err) {
      if (signal.aborted) return;
      section.dataset.state = "error";
      const ce = ConnectError.from(err);
      const why =
        ce.code === Code.PermissionDenied
          ? "Only the video's creator can see its analytics."
          : ce.code === Code.NotFound
            ? "There is no published video with this id."
            : `Could not load the analytics. ${describeError(err)}`;
      // "Try again" only where asking again can work (unavailable, timed out, offline):
      // not for "not yours", "no such video" or a bad id.
      const retry = isRetryable(err) ? h("button", { type: "button" }, "Try again") : null;
      retry?.addEventListener("click", () => void load());
      status.replaceChildren(h("span", { role: "alert" }, why), ...(retry ? [" ", retry] : []));
    }
  };
  refresh.addEventListener("click", () => void load());
  await load();
}

function render(reply: GetVideoAnalyticsResponse, chart: HTMLElement): Node[] {
  const figures = statList("Video totals", [
    {
      key: "views",
      label: "Views",
      shown: formatCount(reply.views),
      raw: String(reply.views),
      hint: "Distinct viewing sessions",
    },
    {
      key: "completion-rate",
      label: "Completion rate",
      shown: formatShare(reply.completionRate),
      raw: String(reply.completionRate),
      hint: "Views watched to the end",
    },
    {
      key: "average-watch",
      label: "Average watch time",
      shown: formatSeconds(reply.averageWatchSeconds),
      raw: String(reply.averageWatchSeconds),
      hint: "Per view",
    },
    {
      key: "plays",
      label: "Plays",
      shown: formatCount(reply.plays),
      raw: String(reply.plays),
      hint: "Views plus replays",
    },
    { key: "likes", label: "Likes", shown: formatCount(reply.likes), raw: String(reply.likes) },
    { key: "shares", label: "Shares", shown: formatCount(reply.shares), raw: String(reply.shares) },
    { key: "comments", label: "Comments", shown: formatCount(reply.comments), raw: String(reply.comments) },
  ]);
  const buckets = [...reply.completionDistribution].sort((a, b) => a.lowerPercent - b.lowerPercent);
  const distribution = barTable(
    buckets.map((b) => ({
      key: `${b.lowerPercent}-${b.upperPercent}`,
      count: b.count,
      label: b.upperPercent >= 100 ? `${b.lowerPercent}–100%` : `${b.lowerPercent}–${b.upperPercent}%`,
    })),
    {
      caption: "View sessions by how far into the video they got",
      labelHeader: "Got as far as",
      countHeader: "Views",
      empty: "No views yet.",
      shareOfTotal: true,
    },
  );
  const countries = barTable(
    reply.topCountries.map((c) => ({ key: c.key, count: c.count, label: countryName(c.key) })),
    { caption: "Views by country", labelHeader: "Country", empty: "No country reported yet.", shareOfTotal: true },
  );
  const devices = barTable(
    reply.topDevices.map((d) => ({ key: d.key, count: d.count, label: deviceName(d.key) })),
    { caption: "Views by device", labelHeader: "Device", empty: "No device reported yet.", shareOfTotal: true },
  );
  return [
    h("h2", { class: "visually-hidden" }, "Totals"),
    figures,
    h(
      "section",
      { class: "retention", "aria-labelledby": "retention-title" },
      h("h2", { id: "retention-title" }, "Retention"),
      h("p", { class: "help" }, "The share of views still watching at each point of the video."),
      chart,
    ),
    h(
      "section",
      { class: "completion", "aria-labelledby": "completion-title" },
      h("h2", { id: "completion-title" }, "How far viewers got"),
      distribution,
    ),
    h(
      "div",
      { class: "analytics-columns" },
      h("section", { "aria-labelledby": "countries-title" }, h("h2", { id: "countries-title" }, "Top countries"), countries),
      h("section", { "aria-labelledby": "devices-title" }, h("h2", { id: "devices-title" }, "Top devices"), devices),
    ),
  ];
}
