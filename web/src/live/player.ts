// The live player: StreamService.GetPlayback for the stream id answers the signed live
// master (is_live); hls.js (loaded on demand) plays it, or the browser itself where it
// plays HLS natively (Safari). Until the first segments exist GetPlayback answers
// UNAVAILABLE (NOT_FOUND until svc_stream has heard the stream started): the player
// waits and asks again. A fatal network error re-asks GetPlayback (fresh signatures);
// a media error is recovered in place. The container's data-state says where it is:
// idle (not started), waiting, loading, playing, ended, error.
import { Code, ConnectError } from "@connectrpc/connect";
import type Hls from "hls.js";
import { apiClient, describeError } from "../api";
import { h } from "../dom";
import { StreamService } from "../gen/reels/v1/stream_pb";
import { childController, sleep } from "./wait";

const RETRY_MS = [1_000, 2_000, 3_000, 5_000];

export interface LivePlayer {
  readonly element: HTMLElement;
  /** Starts (or restarts) playback; returns at once. */
  start(): void;
  /** Not playing yet (the stream has not started): says `message`. */
  idle(message: string): void;
  /** Stops for good: the stream ended. */
  end(message?: string): void;
}

export function livePlayer(streamId: string, title: string, signal: AbortSignal): LivePlayer {
  const video = h("video", {
    class: "live-video",
    controls: true,
    muted: true,
    playsinline: true,
    autoplay: true,
    "aria-label": `Live video: ${title}`,
  });
  video.muted = true; // the attribute alone does not mute a video created by script
  const note = h("p", { class: "player-note", role: "status" });
  const element = h(
    "div",
    { class: "live-player", "data-state": "waiting" },
    h("div", { class: "video-frame" }, video, h("span", { class: "live-badge", "aria-hidden": "true" }, "LIVE")),
    note,
  );
  const stream = apiClient(StreamService);
  let run: AbortController | null = null;
  let hls: Hls | null = null;
  let ended = false;

  const setState = (state: string, text: string): void => {
    element.dataset.state = state;
    note.textContent = text;
  };

  const teardown = (): void => {
    run?.abort();
    run = null;
    hls?.destroy();
    hls = null;
    video.removeAttribute("src");
    video.load();
  };
  signal.addEventListener("abort", teardown, { once: true });

  video.addEventListener("playing", () => {
    if (!ended) setState("playing", "");
  });
  video.addEventListener("waiting", () => {
    if (!ended && element.dataset.state === "playing") note.textContent = "Buffering…";
  });

  const play = async (attempt: AbortSignal): Promise<void> => {
    let tries = 0;
    while (!attempt.aborted) {
      let url: string;
      try {
        const reply = await stream.getPlayback({ videoId: streamId, userAgent: navigator.userAgent }, { signal: attempt });
        url = reply.masterManifestUrl;
      } catch (err) {
        if (attempt.aborted) return;
        const code = ConnectError.from(err).code;
        if (code === Code.FailedPrecondition) {
          end("The stream has ended.");
          return;
        }
        const waitingForVideo = code === Code.Unavailable || code === Code.NotFound;
        setState(
          waitingForVideo ? "waiting" : "error",
          waitingForVideo ? "Waiting for the stream's video…" : `Could not start the video. ${describeError(err)}`,
        );
        await sleep(RETRY_MS[Math.min(tries++, RETRY_MS.length - 1)] ?? 5_000, attempt);
        continue;
      }
      setState("loading", "Loading the live video…");
      await attach(url, attempt);
      return;
    }
  };

  const attach = async (url: string, attempt: AbortSignal): Promise<void> => {
    const { default: HlsJs } = await import("hls.js");
    if (attempt.aborted) return;
    if (!HlsJs.isSupported()) {
      if (video.canPlayType("application/vnd.apple.mpegurl")) {
        video.src = url;
        void video.play().catch(() => undefined);
        return;
      }
      setState("error", "This browser cannot play live video (no Media Source Extensions).");
      return;
    }
    const player = new HlsJs({ liveDurationInfinity: true, backBufferLength: 30 });
    hls = player;
    let mediaRecoveries = 0;
    player.on(HlsJs.Events.MANIFEST_PARSED, () => {
      void video.play().catch(() => {
        note.textContent = "Press play to watch.";
      });
    });
    player.on(HlsJs.Events.ERROR, (_event, data) => {
      if (!data.fatal || attempt.aborted) return;
      if (data.type === HlsJs.ErrorTypes.MEDIA_ERROR && mediaRecoveries++ < 3) {
        player.recoverMediaError();
        return;
      }
      // A network error (the stream paused, a signature expired) or an unrecoverable
      // one: start over from GetPlayback, after a moment.
      setState("waiting", "The video was interrupted; reconnecting…");
      restart(2_000);
    });
    player.loadSource(url);
    player.attachMedia(video);
  };

  const restart = (delayMs = 0): void => {
    if (ended || signal.aborted) return;
    teardown();
    const controller = childController(signal);
    run = controller;
    void (async () => {
      if (delayMs > 0) await sleep(delayMs, controller.signal);
      if (!controller.signal.aborted) await play(controller.signal);
    })();
  };

  const end = (message = "The stream has ended."): void => {
    ended = true;
    teardown();
    setState("ended", message);
  };

  const idle = (message: string): void => {
    teardown();
    setState("idle", message);
  };

  return { element, start: () => restart(0), idle, end };
}
