// /live/:id: one stream. The player (./player) once the stream is LIVE, viewer
// heartbeats (./heartbeat) while it is, the chat (./chat) in every state, and for the
// stream's creator the encoder settings, key rotation, "End stream" and moderation.
// A stream not live yet is polled (GetStream) until it goes live. The page's
// data-state is the stream's state (created, live, ended) or loading / error.
import { Code, ConnectError } from "@connectrpc/connect";
import { apiClient, describeError } from "../api";
import { currentIdentity } from "../auth";
import { h } from "../dom";
import { ChatService, type LiveStream } from "../gen/reels/v1/chat_pb";
import { LiveStreamState } from "../gen/reels/v1/common_pb";
import type { PageContext } from "../router";
import { chatPanel, type StreamPhase } from "./chat";
import { onAirFor, stateLabel, viewers } from "./format";
import { credentials } from "./go-live";
import { sendHeartbeats } from "./heartbeat";
import { livePlayer } from "./player";
import { sleep } from "./wait";

const NOT_LIVE_POLL_MS = 3_000;

export async function liveStream({ root, params, signal }: PageContext): Promise<void> {
  const streamId = params.id ?? "";
  const me = currentIdentity()?.user ?? "";
  const chat = apiClient(ChatService);
  const page = h("div", { class: "live-stream", "data-state": "loading", "data-stream-id": streamId });
  const status = h("p", { class: "status", role: "status" }, "Loading the stream…");
  page.append(h("p", { class: "back" }, h("a", { href: "/live" }, "← All live streams")), status);
  root.append(page);

  let stream: LiveStream;
  try {
    const reply = await chat.getStream({ streamId }, { signal });
    if (!reply.stream) throw new Error("the service answered no stream");
    stream = reply.stream;
  } catch (err) {
    if (signal.aborted) return;
    page.dataset.state = "error";
    const missing = ConnectError.from(err).code === Code.NotFound;
    page.replaceChildren(
      h("h1", {}, missing ? "No such stream" : "Live stream"),
      h(
        "p",
        { role: "alert" },
        missing ? "There is no stream with this id. " : `Could not load the stream. ${describeError(err)} `,
        h("a", { href: "/live" }, "See who is live"),
      ),
    );
    return;
  }

  const isCreator = me !== "" && stream.creatorId === me;
  const badge = h("span", { class: "state-badge" });
  const viewerCount = h("span", { class: "viewer-count" });
  // " · " only before a viewer count or air time (none while not started).
  const viewerSep = h("span", { class: "meta-sep", hidden: true }, " · ");
  const heading = h(
    "header",
    { class: "stream-header" },
    h("h1", {}, stream.title || "Untitled stream"),
    h("p", { class: "meta" }, badge, " ", `by ${stream.creatorId}${isCreator ? " (you)" : ""}`, viewerSep, viewerCount),
    stream.description ? h("p", { class: "stream-description" }, stream.description) : null,
    stream.tags.length ? h("ul", { class: "tags", "aria-label": "Tags" }, ...stream.tags.map((t) => h("li", {}, `#${t}`))) : null,
  );
  const player = livePlayer(streamId, stream.title, signal);
  let heartbeats: AbortController | null = null;
  signal.addEventListener("abort", () => heartbeats?.abort(), { once: true });

  const show = (s: LiveStream): void => {
    page.dataset.state = (LiveStreamState[s.state] ?? "unknown").toLowerCase();
    badge.textContent = s.state === LiveStreamState.LIVE ? "LIVE" : stateLabel(s.state);
    badge.className = `state-badge ${s.state === LiveStreamState.LIVE ? "live" : ""}`;
    viewerCount.textContent =
      s.state === LiveStreamState.LIVE ? viewers(s.viewerCount) : s.state === LiveStreamState.ENDED ? `on air ${onAirFor(s.duration)}` : "";
    viewerSep.hidden = viewerCount.textContent === "";
    panel.setStreamState(phaseOf(s.state));
  };

  const goneLive = (): void => {
    player.start();
    if (heartbeats) return;
    heartbeats = new AbortController();
    const hb = heartbeats;
    signal.addEventListener("abort", () => hb.abort(), { once: true });
    void sendHeartbeats(streamId, hb.signal, (n) => {
      viewerCount.textContent = viewers(n);
      viewerSep.hidden = false;
      page.dataset.viewers = String(n);
    });
  };

  const ended = (s?: LiveStream): void => {
    heartbeats?.abort();
    if (s) show(s);
    else {
      page.dataset.state = "ended";
      badge.textContent = stateLabel(LiveStreamState.ENDED);
      badge.className = "state-badge";
      panel.setStreamState("ended");
    }
    const recording = s?.recordingVideoId;
    player.end(recording ? `The stream has ended. Its recording becomes video ${recording}.` : "The stream has ended.");
    creatorPanel?.querySelectorAll("button").forEach((b) => (b.disabled = true));
  };

  const panel = chatPanel({
    streamId,
    me,
    creatorId: stream.creatorId,
    moderator: isCreator,
    streamState: phaseOf(stream.state),
    signal,
    onEnded: () => {
      // The chat heard the end first: confirm with GetStream (duration, recording).
      chat.getStream({ streamId }, { signal }).then(
        (r) => ended(r.stream),
        () => ended(),
      );
    },
  });

  const creatorPanel = isCreator ? ownerTools(stream, signal, (s) => ended(s)) : null;
  page.replaceChildren(
    page.firstElementChild ?? "",
    heading,
    h("div", { class: "live-layout" }, h("div", { class: "live-main" }, player.element, creatorPanel), panel.element),
  );
  show(stream);
  void panel.run();

  if (stream.state === LiveStreamState.LIVE) goneLive();
  else if (stream.state === LiveStreamState.ENDED) ended(stream);
  else {
    player.idle(isCreator ? "Not live yet: start your encoder with the settings below." : "This stream has not started yet.");
    // Poll until it goes live (the ingest moves it LIVE when the encoder connects).
    while (!signal.aborted) {
      await sleep(NOT_LIVE_POLL_MS, signal);
      if (signal.aborted) return;
      try {
        const now = (await chat.getStream({ streamId }, { signal })).stream;
        if (!now || now.state === LiveStreamState.CREATED) continue;
        if (now.state === LiveStreamState.LIVE) {
          show(now);
          goneLive();
        } else ended(now);
        return;
      } catch {
        // Try again at the next tick.
      }
    }
  }
}

function phaseOf(state: LiveStreamState): StreamPhase {
  return state === LiveStreamState.LIVE ? "live" : state === LiveStreamState.ENDED ? "ended" : "created";
}

/** The creator's tools: encoder settings (the key only right after a rotation), key
 * rotation and ending the stream (asked twice). */
function ownerTools(stream: LiveStream, signal: AbortSignal, onEnded: (s: LiveStream) => void): HTMLElement {
  const chat = apiClient(ChatService);
  const streamId = stream.streamId;
  const result = h("div", { class: "owner-result" });
  const error = h("p", { class: "error", role: "alert" });
  const rotate = h("button", { type: "button", class: "secondary" }, "Rotate stream key");
  const end = h("button", { type: "button", class: "danger" }, "End stream");
  const confirm = h("span", { class: "confirm", hidden: true });
  const yes = h("button", { type: "button", class: "danger" }, "Yes, end the stream");
  const no = h("button", { type: "button", class: "secondary" }, "Keep streaming");
  confirm.append("End the stream for everyone? ", yes, " ", no);

  rotate.addEventListener("click", () => {
    rotate.disabled = true;
    error.textContent = "";
    chat
      .rotateStreamKey({ streamId }, { signal, timeoutMs: 10_000 })
      .then((r) => {
        if (r.stream) result.replaceChildren(credentials(r.stream, "rotated"));
      })
      .catch((err: unknown) => {
        error.textContent = `Could not rotate the key. ${describeError(err)}`;
      })
      .finally(() => (rotate.disabled = false));
  });
  end.addEventListener("click", () => {
    end.hidden = true;
    confirm.hidden = false;
    yes.focus();
  });
  no.addEventListener("click", () => {
    confirm.hidden = true;
    end.hidden = false;
    end.focus();
  });
  yes.addEventListener("click", () => {
    yes.disabled = true;
    error.textContent = "";
    chat
      .endStream({ streamId }, { signal, timeoutMs: 10_000 })
      .then((r) => {
        confirm.hidden = true;
        if (r.stream) onEnded(r.stream);
      })
      .catch((err: unknown) => {
        error.textContent = `Could not end the stream. ${describeError(err)}`;
        yes.disabled = false;
      });
  });

  return h(
    "section",
    { class: "owner-tools", "aria-labelledby": "owner-tools-title" },
    h("h2", { id: "owner-tools-title" }, "Your broadcast"),
    h(
      "dl",
      { class: "credential-list" },
      h("div", { class: "credential" }, h("dt", {}, "Server (RTMP)"), h("dd", {}, h("code", { "data-credential": "ingest-url" }, stream.ingestUrl))),
      h(
        "div",
        { class: "credential" },
        h("dt", {}, "Stream key"),
        h("dd", {}, "Shown only when issued. Lost it? Rotate it (the old key stops working at once)."),
      ),
    ),
    h("p", { class: "owner-actions" }, rotate, " ", end, confirm),
    error,
    result,
  );
}
