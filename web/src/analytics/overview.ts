// The signed-in creator's overview: StreamService.GetCreatorAnalytics for their own id
// (the service answers PERMISSION_DENIED for anyone else's), headline figures, their
// most viewed videos (each a link to its own page) and where the audience watches from.
import { apiClient, describeError, isRetryable } from "../api";
import { currentIdentity } from "../auth";
import { h } from "../dom";
import { StreamService, type GetCreatorAnalyticsResponse } from "../gen/reels/v1/stream_pb";
import { navigate, type PageContext } from "../router";
import { barTable } from "./bars";
import { countryName, formatCount, formatSeconds, formatShare } from "./format";
import { statList } from "./stats";
import { videoTitles } from "./titles";

export async function creatorOverview({ root, signal }: PageContext): Promise<void> {
  const who = currentIdentity();
  const stream = apiClient(StreamService);
  const status = h("p", { class: "status", role: "status" });
  const body = h("div", { class: "analytics-body" });
  const section = h(
    "section",
    { class: "analytics analytics-overview", "aria-labelledby": "analytics-title", "data-state": "loading" },
    h("h1", { id: "analytics-title" }, "Analytics"),
    status,
    body,
    videoLookup(),
  );
  root.append(section);
  if (who === null) return;

  const load = async (): Promise<void> => {
    section.dataset.state = "loading";
    status.textContent = "Loading your analytics…";
    try {
      const reply = await stream.getCreatorAnalytics({ creatorId: who.user }, { signal });
      const titles = await videoTitles(
        reply.topVideos.map((v) => v.key),
        signal,
      );
      if (signal.aborted) return;
      body.replaceChildren(...render(reply, titles));
      section.dataset.state = reply.videoCount === 0n ? "empty" : "ready";
      status.replaceChildren(
        reply.videoCount === 0n
          ? h("span", {}, "No published videos yet. ", h("a", { href: "/upload" }, "Upload one"), " to see how it does.")
          : `Figures for ${who.user}'s ${plural(reply.videoCount, "published video")}.`,
      );
    } catch (err) {
      if (signal.aborted) return;
      section.dataset.state = "error";
      // "Try again" only where asking again can work (unavailable, timed out, offline).
      const retry = isRetryable(err) ? h("button", { type: "button" }, "Try again") : null;
      retry?.addEventListener("click", () => void load());
      status.replaceChildren(h("span", { role: "alert" }, `Could not load your analytics. ${describeError(err)}`), ...(retry ? [" ", retry] : []));
    }
  };
  await load();
}

function render(reply: GetCreatorAnalyticsResponse, titles: Map<string, string>): Node[] {
  const figures = statList("Channel totals", [
    { key: "followers", label: "Followers", shown: formatCount(reply.followers), raw: String(reply.followers) },
    { key: "videos", label: "Videos", shown: formatCount(reply.videoCount), raw: String(reply.videoCount) },
    {
      key: "views",
      label: "Views",
      shown: formatCount(reply.views),
      raw: String(reply.views),
      hint: "Distinct viewing sessions",
    },
    {
      key: "plays",
      label: "Plays",
      shown: formatCount(reply.plays),
      raw: String(reply.plays),
      hint: "Views plus replays",
    },
    {
      key: "completion-rate",
      label: "Average completion",
      shown: formatShare(reply.averageCompletionRate),
      raw: String(reply.averageCompletionRate),
      hint: "Views watched to the end",
    },
    {
      key: "average-watch",
      label: "Average watch time",
      shown: formatSeconds(reply.averageWatchSeconds),
      raw: String(reply.averageWatchSeconds),
      hint: "Per view",
    },
    { key: "likes", label: "Likes", shown: formatCount(reply.likes), raw: String(reply.likes) },
    { key: "shares", label: "Shares", shown: formatCount(reply.shares), raw: String(reply.shares) },
    { key: "comments", label: "Comments", shown: formatCount(reply.comments), raw: String(reply.comments) },
  ]);
  const topVideos = barTable(
    reply.topVideos.map((v) => ({
      key: v.key,
      count: v.count,
      label: h("a", { href: `/analytics/${encodeURIComponent(v.key)}` }, titles.get(v.key) ?? h("code", { class: "video-id" }, v.key)),
    })),
    {
      caption: "Your most viewed videos",
      labelHeader: "Video",
      empty: "No views yet.",
    },
  );
  const countries = barTable(
    reply.topCountries.map((c) => ({ key: c.key, count: c.count, label: countryName(c.key) })),
    {
      caption: "Views by country",
      labelHeader: "Country",
      empty: "No country reported yet.",
      shareOfTotal: true,
    },
  );
  return [
    h("h2", { class: "visually-hidden" }, "Totals"),
    figures,
    h(
      "div",
      { class: "analytics-columns" },
      h("section", { "aria-labelledby": "top-videos-title" }, h("h2", { id: "top-videos-title" }, "Top videos"), topVideos),
      h(
        "section",
        { "aria-labelledby": "top-countries-title" },
        h("h2", { id: "top-countries-title" }, "Top countries"),
        countries,
      ),
    ),
  ];
}

/** A form to open any of one's videos by id (the overview lists the top five only). */
function videoLookup(): HTMLElement {
  const input = h("input", {
    id: "analytics-video-id",
    name: "video",
    required: true,
    autocomplete: "off",
    spellcheck: "false",
  });
  const form = h(
    "form",
    { class: "video-lookup", "aria-labelledby": "video-lookup-title" },
    h("h2", { id: "video-lookup-title" }, "A video's analytics"),
    h("label", { for: "analytics-video-id" }, "Video id"),
    h("div", { class: "inline-field" }, input, h("button", { type: "submit" }, "Open")),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = input.value.trim();
    if (id) navigate(`/analytics/${encodeURIComponent(id)}`);
  });
  return form;
}

function plural(n: bigint, noun: string): string {
  return `${formatCount(n)} ${noun}${n === 1n ? "" : "s"}`;
}
