// /live: the streams on air now (ListStreams state LIVE, newest first, "Load more"
// while there is a next page), the signed-in user's own streams (to get back to one
// that is not live yet) and the "Go live" form.
import { apiClient, describeError, isRetryable } from "../api";
import { currentIdentity } from "../auth";
import { h } from "../dom";
import { ChatService, type LiveStream } from "../gen/reels/v1/chat_pb";
import { LiveStreamState } from "../gen/reels/v1/common_pb";
import type { PageContext } from "../router";
import { onAirFor, stateLabel, viewers } from "./format";
import { goLiveForm } from "./go-live";

const PAGE_SIZE = 20;
const OWN_PAGE_SIZE = 10;

export async function liveList({ root, signal }: PageContext): Promise<void> {
  const chat = apiClient(ChatService);
  const who = currentIdentity();
  const status = h("p", { class: "status", role: "status" });
  const list = h("ul", { class: "stream-list", "aria-labelledby": "live-now-title" });
  const more = h("button", { type: "button", hidden: true }, "Load more");
  const refresh = h("button", { type: "button", class: "secondary" }, "Refresh");
  const liveNow = h(
    "section",
    { class: "live-now", "aria-labelledby": "live-now-title", "data-state": "loading" },
    h("div", { class: "heading-row" }, h("h2", { id: "live-now-title" }, "Live now"), refresh),
    status,
    list,
    more,
  );
  const ownList = h("ul", { class: "stream-list own", "aria-labelledby": "own-streams-title" });
  const own = h(
    "section",
    { class: "own-streams", "aria-labelledby": "own-streams-title", hidden: true },
    h("h2", { id: "own-streams-title" }, "Your streams"),
    ownList,
  );
  root.append(
    h(
      "div",
      { class: "live-page" },
      h("h1", {}, "Live"),
      liveNow,
      who ? goLiveForm(() => void loadOwn(), signal) : null,
      own,
    ),
  );

  let token = "";
  const load = async (reset: boolean): Promise<void> => {
    if (reset) token = "";
    liveNow.dataset.state = "loading";
    status.textContent = "Loading…";
    more.hidden = true;
    try {
      const page = await chat.listStreams(
        { state: LiveStreamState.LIVE, pageSize: PAGE_SIZE, pageToken: token },
        { signal },
      );
      if (reset) list.replaceChildren();
      list.append(...page.streams.map((s) => streamItem(s, false)));
      token = page.nextPageToken;
      more.hidden = token === "";
      const count = list.childElementCount;
      liveNow.dataset.state = count === 0 ? "empty" : "ready";
      status.textContent =
        count === 0 ? "Nobody is live right now." : count === 1 ? "1 stream on air." : `${count} streams on air.`;
    } catch (err) {
      if (signal.aborted) return;
      liveNow.dataset.state = "error";
      const retry = isRetryable(err) ? h("button", { type: "button" }, "Try again") : null;
      retry?.addEventListener("click", () => void load(reset));
      status.replaceChildren(h("span", { role: "alert" }, `Could not load the live streams. ${describeError(err)}`), ...(retry ? [" ", retry] : []));
    }
  };

  const loadOwn = async (): Promise<void> => {
    if (!who) return;
    try {
      const page = await chat.listStreams({ creatorId: who.user, pageSize: OWN_PAGE_SIZE }, { signal });
      ownList.replaceChildren(...page.streams.map((s) => streamItem(s, true)));
      own.hidden = page.streams.length === 0;
    } catch {
      // The list of one's own streams is a convenience: leave it hidden.
    }
  };

  more.addEventListener("click", () => void load(false));
  refresh.addEventListener("click", () => void load(true));
  await Promise.all([load(true), loadOwn()]);
}

function streamItem(stream: LiveStream, showState: boolean): HTMLLIElement {
  const live = stream.state === LiveStreamState.LIVE;
  return h(
    "li",
    { class: "stream-item", "data-stream-id": stream.streamId, "data-state": LiveStreamState[stream.state] ?? "" },
    h("a", { class: "stream-title", href: `/live/${encodeURIComponent(stream.streamId)}` }, stream.title || "Untitled stream"),
    " ",
    live ? h("span", { class: "live-badge inline" }, "LIVE") : null,
    h(
      "span",
      { class: "meta stream-meta" },
      [
        `by ${stream.creatorId}`,
        showState && !live ? stateLabel(stream.state) : null,
        live ? viewers(stream.viewerCount) : null,
        live ? `on air ${onAirFor(stream.duration)}` : null,
      ]
        .filter((x) => x !== null)
        .join(" · "),
    ),
  );
}
