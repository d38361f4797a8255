// The feed (placeholder for the real page): FeedService.GetFeed over gRPC-web through
// Envoy, titles in rank order, "Load more" while there is a next cursor. The section's
// data-state (loading, ready, empty, error) says where it is, for people and tests.
import { apiClient, describeError } from "../api";
import { h } from "../dom";
import { FeedService, type FeedItem } from "../gen/reels/v1/rank_pb";
import type { PageContext } from "../router";

const PAGE_SIZE = 20;

export async function feedPage({ root, signal }: PageContext): Promise<void> {
  const feed = apiClient(FeedService);
  const status = h("p", { class: "status", role: "status" });
  const list = h("ol", { class: "feed-list", "aria-label": "Reels" });
  const more = h("button", { type: "button", hidden: true }, "Load more");
  const section = h("section", { class: "feed", "aria-labelledby": "feed-title" });
  section.append(h("h1", { id: "feed-title" }, "Feed"), status, list, more);
  root.append(section);

  let cursor = "";
  const load = async (): Promise<void> => {
    section.dataset.state = "loading";
    status.textContent = "Loading…";
    more.hidden = true;
    try {
      const page = await feed.getFeed({ limit: PAGE_SIZE, cursor }, { signal });
      list.append(...page.items.map(feedItem));
      cursor = page.nextCursor;
      more.hidden = cursor === "";
      const count = list.childElementCount;
      section.dataset.state = count === 0 ? "empty" : "ready";
      if (count === 0) status.replaceChildren("No reels yet. ", h("a", { href: "/upload" }, "Upload the first one"));
      else status.replaceChildren(count === 1 ? "1 reel" : `${count} reels`);
    } catch (err) {
      if (signal.aborted) return;
      section.dataset.state = "error";
      const retry = h("button", { type: "button" }, "Try again");
      retry.addEventListener("click", () => void load());
      status.replaceChildren(h("span", { role: "alert" }, `Could not load the feed. ${describeError(err)}`), " ", retry);
    }
  };
  more.addEventListener("click", () => void load());
  await load();
}

function feedItem(item: FeedItem): HTMLLIElement {
  const seconds = Math.round(item.durationSeconds);
  const length = `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
  return h(
    "li",
    { "data-video-id": item.videoId },
    h("span", { class: "title" }, item.title || "Untitled"),
    " ",
    h("span", { class: "meta" }, `by ${item.creatorId} · ${length}`),
  );
}
