// The DOM of one reel in the feed: the video, the overlay with title, creator and the
// "why you see this" line, and the action rail (like, comment, share, mute, play).
// Nodes only (built with h(), never innerHTML: titles and names come from users); the
// page (pages/feed.ts) wires the behaviour.
import { h } from "../dom";
import type { FeedItem } from "../gen/reels/v1/rank_pb";
import { icon, type IconName } from "./icons";

export interface ReelView {
  readonly li: HTMLLIElement;
  readonly video: HTMLVideoElement;
  /** Pointer convenience over the video (tap: unmute, then play/pause); the same
   * actions have labelled buttons for keyboards and screen readers. */
  readonly surface: HTMLDivElement;
  readonly unmute: HTMLButtonElement;
  readonly like: HTMLButtonElement;
  readonly likeCount: HTMLSpanElement;
  readonly comment: HTMLButtonElement;
  readonly share: HTMLButtonElement;
  readonly shareCount: HTMLSpanElement;
  readonly mute: HTMLButtonElement;
  readonly playPause: HTMLButtonElement;
  readonly follow: HTMLButtonElement | null;
  readonly progress: HTMLSpanElement;
  readonly message: HTMLDivElement;
}

const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

export function formatCount(n: bigint | number): string {
  return compact.format(Number(n));
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function iconButton(cls: string, label: string, name: IconName, ...extra: Node[]): HTMLButtonElement {
  return h(
    "button",
    { type: "button", class: `reel-action ${cls}`, "aria-label": label },
    h("span", { class: "reel-icon" }, icon(name)),
    ...extra,
  );
}

export function buildReel(item: FeedItem, index: number, opts: { canFollow: boolean }): ReelView {
  const id = `reel-${index}`;
  const title = item.title || "Untitled";
  const video = h("video", {
    class: "reel-video",
    playsinline: true,
    "webkit-playsinline": true,
    muted: true,
    preload: "none",
    "aria-labelledby": `${id}-title`,
    "disablepictureinpicture": true,
  });
  video.muted = true; // the attribute only sets the default; autoplay needs the property
  if (item.thumbnailUrl) video.poster = item.thumbnailUrl;

  const surface = h("div", { class: "reel-surface", "aria-hidden": "true" });
  const unmute = h(
    "button",
    { type: "button", class: "reel-unmute" },
    icon("muted"),
    "Tap to unmute",
  );
  const likeCount = h("span", { class: "reel-count" }, formatCount(item.likeCount));
  const like = iconButton("reel-like", "Like", "like", likeCount);
  like.setAttribute("aria-pressed", "false");
  const comment = iconButton("reel-comment", "Comments", "comment", h("span", { class: "reel-count" }, "Comment"));
  const shareCount = h("span", { class: "reel-count" }, "Share");
  const share = iconButton("reel-share", "Share", "share", shareCount);
  const mute = iconButton("reel-mute", "Mute", "muted");
  mute.setAttribute("aria-pressed", "true"); // pressed = muted
  const playPause = iconButton("reel-play", "Play", "play");

  const follow =
    opts.canFollow && item.creatorId
      ? h("button", { type: "button", class: "reel-follow", "aria-pressed": "false" })
      : null;
  if (follow) setFollowing(follow, item.creatorId, false);
  const progress = h("span", { class: "reel-progress-bar" });
  const message = h("div", { class: "reel-message", hidden: true });
  const meta: string[] = [];
  if (item.durationSeconds > 0) meta.push(formatDuration(item.durationSeconds));
  if (item.viewCount > 0n) meta.push(`${formatCount(item.viewCount)} ${item.viewCount === 1n ? "view" : "views"}`);

  const li = h(
    "li",
    {
      class: "reel",
      id,
      "data-video-id": item.videoId,
      "data-index": String(index),
      "data-player": "idle",
      tabindex: "-1",
      "aria-labelledby": `${id}-title`,
      "aria-describedby": item.explanation ? `${id}-why` : undefined,
    },
    h(
      "div",
      { class: "reel-stage" },
      video,
      surface,
      h("span", { class: "reel-paused-icon" }, icon("play")),
      unmute,
      message,
      h(
        "div",
        { class: "reel-info" },
        h(
          "p",
          { class: "reel-creator" },
          item.creatorId ? h("span", { class: "reel-handle" }, `@${item.creatorId}`) : null,
          follow,
        ),
        h("h2", { class: "title", id: `${id}-title` }, title),
        item.explanation
          ? h(
              "p",
              { class: "reel-why", id: `${id}-why` },
              h("span", { class: "reel-sr-only" }, "Why you see this: "),
              h("span", { "aria-hidden": "true" }, "✦ "),
              item.explanation,
            )
          : null,
        meta.length > 0 ? h("p", { class: "meta" }, meta.join(" · ")) : null,
      ),
      h("div", { class: "reel-rail", role: "group", "aria-label": `Actions for ${title}` }, like, comment, share, mute, playPause),
      h("span", { class: "reel-progress", "aria-hidden": "true" }, progress),
    ),
  );
  return { li, video, surface, unmute, like, likeCount, comment, share, shareCount, mute, playPause, follow, progress, message };
}

/** A follow button's text ("Follow"/"Following", with the creator for screen readers:
 * "Follow @ana") and pressed state. */
export function setFollowing(button: HTMLButtonElement, creatorId: string, following: boolean): void {
  button.setAttribute("aria-pressed", String(following));
  button.replaceChildren(following ? "Following" : "Follow", h("span", { class: "reel-sr-only" }, ` @${creatorId}`));
}
