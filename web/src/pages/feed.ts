// The feed: one reel at a time, full height, swiped vertically (CSS scroll snapping:
// touch, wheel and trackpad scroll natively; the keys below move too). FeedService.GetFeed
// pages the ranked list (the next page is asked for when the viewer gets near the end).
//
// Playback (feed/player.ts): hls.js (the browser's own HLS on Safari), muted autoplay
// (what browsers allow without a gesture) with "Tap to unmute"; the next reel is
// attached ahead of time so it starts at once, reels far away are detached.
// Watch events (feed/tracker.ts, feed/events.ts) go to StreamService.RecordEvents in
// batches, flushed when the viewer moves on and handed to a keepalive request when the
// page is hidden. Like, comment, share and follow call StreamService.
//
// Keys: ArrowDown/PageDown and ArrowUp/PageUp move between reels, Space or k plays and
// pauses, m mutes; not while typing, and Space is left to a focused button.
//
// The section's data-state (loading, ready, empty, error) says where the feed is
// (data-caught-up: the first page holds only reels seen before); each
// reel's data-player (idle, loading, playing, paused, buffering, error) where its video
// is, for people and tests. `?v=<video id>` (a shared link) puts that reel first.
import "../feed/feed.css";
import { create } from "@bufbuild/protobuf";
import { apiClient, describeError, isRetryable } from "../api";
import { currentIdentity } from "../auth";
import { h } from "../dom";
import { commentsDialog } from "../feed/comments";
import { EventReporter } from "../feed/events";
import { icon, setIcon } from "../feed/icons";
import { PAGE_SIZE, takeFirstPage } from "../feed/first-page";
import { preloadPlayer, ReelPlayer } from "../feed/player";
import { buildReel, formatCount, setFollowing, type ReelView } from "../feed/reel-view";
import { WatchTracker } from "../feed/tracker";
import { Device } from "../gen/reels/v1/common_pb";
import {
  FeedFallback,
  FeedItemSchema,
  FeedReason,
  FeedService,
  type FeedItem,
  type GetFeedResponse,
} from "../gen/reels/v1/rank_pb";
import { StreamService } from "../gen/reels/v1/stream_pb";
import type { PageContext } from "../router";

/** Ask for the next page when the current reel is this close to the end. */
const LOAD_AHEAD = 3;
/** Reels this far from the current one keep their player attached (and buffers). */
const KEEP_ATTACHED = 1;
/** A scroll must rest this long before the reel it rests on becomes the current one, so
 * that a fast flick over several reels does not start (and count) each of them. */
const SETTLE_MS = 150;

interface Reel {
  readonly index: number;
  readonly item: FeedItem;
  readonly view: ReelView;
  readonly player: ReelPlayer | null;
  tracker: WatchTracker | null;
  liked: boolean;
  likeCount: bigint;
}

export async function feedPage({ root, query, signal }: PageContext): Promise<void> {
  const feed = apiClient(FeedService);
  // The first page: asked for as the app started (feed/first-page.ts), or now, before
  // anything else is built; hls.js is fetched meanwhile, so the first reel's player is
  // ready when GetFeed answers.
  let firstPage: Promise<GetFeedResponse> | null =
    takeFirstPage() ?? feed.getFeed({ limit: PAGE_SIZE, cursor: "" }, { signal });
  firstPage.catch(() => undefined); // handled where it is awaited (loadFirst)
  preloadPlayer();
  const stream = apiClient(StreamService);
  const reporter = new EventReporter(stream);
  const me = currentIdentity()?.user ?? "";

  const status = h("p", { class: "status", role: "status" });
  const list = h("ol", { class: "feed-list", "aria-label": "Reels" });
  const toast = h("p", { class: "feed-toast", role: "status", "aria-live": "polite" });
  const prev = h("button", { type: "button", class: "feed-step", "aria-label": "Previous reel" }, icon("up"));
  const next = h("button", { type: "button", class: "feed-step", "aria-label": "Next reel" }, icon("down"));
  const comments = commentsDialog(stream, signal);
  const section = h(
    "section",
    { class: "feed", "aria-labelledby": "feed-title", "aria-describedby": "feed-keys" },
    h("h1", { id: "feed-title", class: "reel-sr-only" }, "Feed"),
    h(
      "p",
      { id: "feed-keys", class: "reel-sr-only" },
      "Arrow Down or Page Down: next reel. Arrow Up or Page Up: previous reel. Space or K: play or pause. M: mute or unmute.",
    ),
    status,
    list,
    h("div", { class: "feed-steps" }, prev, next),
    toast,
    comments.element,
  );
  section.dataset.state = "loading";
  root.append(section);

  const reels: Reel[] = [];
  const following = new Map<string, boolean>(); // creator id -> followed (this page's view)
  let active = -1;
  let muted = true;
  let cursor = "";
  let loading: Promise<void> | null = null;
  let resumeOnShow = false;
  let settleTimer: number | undefined;
  let toastTimer: number | undefined;
  const reduceMotion = window.matchMedia("(prefers-reduced-motion: reduce)");

  const say = (text: string): void => {
    toast.textContent = text;
    window.clearTimeout(toastTimer);
    toastTimer = window.setTimeout(() => (toast.textContent = ""), 4000);
  };

  // ------------------------------------------------------------------ playback

  const updateMuteUi = (): void => {
    section.classList.toggle("is-muted", muted);
    for (const reel of reels) {
      if (reel.view.mute.getAttribute("aria-pressed") === String(muted)) continue;
      reel.view.mute.setAttribute("aria-pressed", String(muted)); // "Mute, pressed": muted
      setIcon(reel.view.mute.querySelector(".reel-icon")!, muted ? "muted" : "sound");
    }
  };

  const setPlayerState = (reel: Reel, state: string): void => {
    reel.view.li.dataset.player = state;
    const label = state === "playing" || state === "buffering" ? "Pause" : "Play";
    if (reel.view.playPause.getAttribute("aria-label") === label) return;
    reel.view.playPause.setAttribute("aria-label", label);
    setIcon(reel.view.playPause.querySelector(".reel-icon")!, label === "Pause" ? "pause" : "play");
  };

  const startPlayback = async (reel: Reel): Promise<void> => {
    if (!reel.player || reel.index !== active) return;
    const video = reel.view.video;
    video.muted = muted;
    if (await reel.player.play()) return;
    if (reel.index !== active) return;
    if (!video.muted) {
      // Sound needs a user gesture first (autoplay policy): start muted instead.
      muted = true;
      video.muted = true;
      updateMuteUi();
      if (await reel.player.play()) return;
    }
    if (reel.index === active && reel.view.li.dataset.player !== "error") setPlayerState(reel, "paused");
  };

  const togglePlay = (): void => {
    const reel = reels[active];
    if (!reel?.player) return;
    if (reel.view.video.paused) void startPlayback(reel);
    else reel.view.video.pause();
  };

  const toggleMute = (): void => {
    muted = !muted;
    const reel = reels[active];
    if (reel) {
      reel.view.video.muted = muted;
      if (!muted && reel.view.video.paused) void startPlayback(reel);
    }
    updateMuteUi();
  };

  const fail = (reel: Reel, message: string): void => {
    setPlayerState(reel, "error");
    const retry = h("button", { type: "button" }, "Try again");
    retry.addEventListener("click", () => {
      reel.view.message.hidden = true;
      reel.player?.detach();
      setPlayerState(reel, "loading");
      if (reel.index === active) void reel.player?.attach("active").then(() => startPlayback(reel));
    });
    reel.view.message.replaceChildren(h("p", {}, message), reel.player ? retry : "");
    reel.view.message.hidden = false;
    if (reel.index === active) arrange(); // the next reel need not wait for this one
  };

  /** Whether the current reel has its first frame (or cannot play): the next reel is
   * preloaded only then, so that its playlists and segments do not compete with the
   * current one's start. */
  const currentStarted = (): boolean => {
    const reel = reels[active];
    if (!reel?.player) return true;
    return reel.view.video.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA || reel.view.li.dataset.player === "error";
  };

  /** Attaches players near the current reel and detaches the others. */
  const arrange = (): void => {
    if (active < 0) return;
    const started = currentStarted();
    for (const reel of reels) {
      if (!reel.player) continue;
      const distance = reel.index - active;
      if (distance === 1) {
        if (started) void reel.player.attach("preload");
      }
      else if (distance !== 0 && Math.abs(distance) > KEEP_ATTACHED && reel.player.attached) {
        reel.player.detach();
        reel.view.message.hidden = true;
        setPlayerState(reel, "idle");
      }
    }
  };

  const activate = (index: number): void => {
    if (index === active || index < 0 || index >= reels.length) return;
    const before = reels[active];
    if (before) {
      before.tracker = null; // its view is over: later media events report nothing
      before.view.video.pause();
      before.view.li.classList.remove("is-active");
      before.view.li.removeAttribute("aria-current");
      void reporter.flush(); // the watch events of the reel just left go now
    }
    active = index;
    const reel = reels[index]!;
    reel.view.li.classList.add("is-active");
    reel.view.li.setAttribute("aria-current", "true");
    prev.disabled = index === 0;
    next.disabled = index === reels.length - 1 && cursor === "";
    if (reel.player) {
      const player = reel.player;
      reel.tracker = new WatchTracker(reporter, reel.item.videoId, reel.item.durationSeconds, () =>
        player.rendition(),
      );
      if (reel.view.li.dataset.player === "idle") setPlayerState(reel, "loading");
      void player.attach("active").then(() => startPlayback(reel));
    }
    arrange();
    if (index >= reels.length - LOAD_AHEAD && cursor !== "") void loadMore();
  };

  /** Moves to reel `index` (keys, buttons): current at once, then scrolled into view. */
  const go = (index: number, { focus = false } = {}): void => {
    if (index < 0 || index >= reels.length) return;
    const reel = reels[index]!;
    activate(index);
    list.scrollTo({ top: reel.view.li.offsetTop, behavior: reduceMotion.matches ? "auto" : "smooth" });
    if (focus) reel.view.li.focus({ preventScroll: true });
  };

  // A swipe or wheel scroll ends on a reel (scroll snapping): once the scroll rests, the
  // reel it rests on is the current one. Every reel is exactly the list's height, so
  // that is the scroll offset in reel heights. (A key's move is current at once and its
  // scroll rests on the same reel; a scroll that interrupts it decides where it ends.)
  const settle = (): void => {
    const height = list.clientHeight;
    if (reels.length === 0 || height === 0) return;
    const index = Math.min(reels.length - 1, Math.max(0, Math.round(list.scrollTop / height)));
    if (index !== active) activate(index);
  };
  const onScroll = (): void => {
    window.clearTimeout(settleTimer);
    settleTimer = window.setTimeout(settle, SETTLE_MS);
  };
  list.addEventListener("scroll", onScroll, { passive: true });

  // ------------------------------------------------------------------ engagement

  const toggleLike = async (reel: Reel): Promise<void> => {
    const want = !reel.liked;
    const button = reel.view.like;
    button.disabled = true;
    try {
      const reply = want
        ? await stream.likeVideo({ videoId: reel.item.videoId }, { signal })
        : await stream.unlikeVideo({ videoId: reel.item.videoId }, { signal });
      reel.liked = reply.liked;
      reel.likeCount = reply.likeCount;
      button.setAttribute("aria-pressed", String(reply.liked));
      reel.view.likeCount.textContent = formatCount(reply.likeCount);
    } catch (err) {
      if (!signal.aborted) say(`Could not ${want ? "like" : "unlike"} it. ${describeError(err)}`);
    } finally {
      button.disabled = false;
    }
  };

  const toggleFollow = async (reel: Reel): Promise<void> => {
    const creator = reel.item.creatorId;
    const want = !(following.get(creator) ?? false);
    try {
      const reply = want
        ? await stream.followCreator({ creatorId: creator }, { signal })
        : await stream.unfollowCreator({ creatorId: creator }, { signal });
      following.set(creator, reply.following);
      for (const other of reels) {
        if (other.item.creatorId !== creator || !other.view.follow) continue;
        setFollowing(other.view.follow, creator, reply.following);
      }
      say(reply.following ? `Following @${creator}.` : `Unfollowed @${creator}.`);
    } catch (err) {
      if (!signal.aborted) say(`Could not ${want ? "follow" : "unfollow"} @${creator}. ${describeError(err)}`);
    }
  };

  const shareReel = async (reel: Reel): Promise<void> => {
    const url = new URL("/feed", window.location.origin);
    url.searchParams.set("v", reel.item.videoId);
    const title = reel.item.title || "A reel";
    let channel: string;
    try {
      if (typeof navigator.share === "function") {
        await navigator.share({ title, url: url.href });
        channel = "web_share";
      } else {
        await navigator.clipboard.writeText(url.href);
        channel = "copy_link";
        say("Link copied.");
      }
    } catch (err) {
      if (err instanceof DOMException && err.name === "AbortError") return; // share sheet dismissed
      say(`Copy this link to share: ${url.href}`);
      channel = "copy_link";
    }
    try {
      const reply = await stream.shareVideo({ videoId: reel.item.videoId, channel }, { signal });
      reel.view.shareCount.textContent = formatCount(reply.shareCount);
    } catch (err) {
      if (!signal.aborted) say(`The share was not recorded. ${describeError(err)}`);
    }
  };

  // ------------------------------------------------------------------ building

  const addReels = (items: readonly FeedItem[]): void => {
    for (const item of items) {
      const index = reels.length;
      const view = buildReel(item, index, { canFollow: item.creatorId !== me });
      const player = item.streamingUrl
        ? new ReelPlayer(view.video, item.streamingUrl, { onFatal: (message) => fail(reel, message) })
        : null;
      const reel: Reel = { index, item, view, player, tracker: null, liked: false, likeCount: item.likeCount };
      reels.push(reel);
      wire(reel);
      list.append(view.li);
      if (!player) fail(reel, "This reel cannot be played right now.");
      if (view.follow && following.get(item.creatorId)) setFollowing(view.follow, item.creatorId, true);
    }
    if (active >= 0) next.disabled = active === reels.length - 1 && cursor === "";
    updateMuteUi();
  };

  const wire = (reel: Reel): void => {
    const { view } = reel;
    const video = view.video;
    // The current reel's first frame: now the next one may preload (arrange).
    video.addEventListener("loadeddata", () => {
      if (reel.index === active) arrange();
    });
    video.addEventListener("playing", () => {
      setPlayerState(reel, "playing");
      reel.tracker?.playing(video);
    });
    video.addEventListener("pause", () => {
      if (reel.view.li.dataset.player !== "error") setPlayerState(reel, "paused");
    });
    video.addEventListener("waiting", () => {
      if (reel.index === active && !video.paused) setPlayerState(reel, "buffering");
    });
    video.addEventListener("timeupdate", () => {
      reel.tracker?.timeUpdate(video);
      const d = video.duration;
      const share = Number.isFinite(d) && d > 0 ? Math.min(1, video.currentTime / d) : 0;
      view.progress.style.transform = `scaleX(${share})`;
    });
    video.addEventListener("ended", () => {
      reel.tracker?.ended(video);
      if (reel.index !== active) return;
      // Reels loop; the next pass is a replay (its own watch_start).
      video.currentTime = 0;
      void startPlayback(reel);
    });
    view.surface.addEventListener("click", () => {
      if (reel.index !== active) return go(reel.index);
      if (muted) toggleMute();
      else togglePlay();
    });
    view.unmute.addEventListener("click", () => {
      if (reel.index !== active) go(reel.index);
      if (muted) toggleMute();
    });
    view.mute.addEventListener("click", () => toggleMute());
    view.playPause.addEventListener("click", () => {
      if (reel.index !== active) return go(reel.index);
      togglePlay();
    });
    view.like.addEventListener("click", () => void toggleLike(reel));
    view.comment.addEventListener("click", () =>
      comments.open(reel.item.videoId, reel.item.title || "Untitled", view.comment),
    );
    view.share.addEventListener("click", () => void shareReel(reel));
    view.follow?.addEventListener("click", () => void toggleFollow(reel));
    // Focus moving into another reel (Tab) makes it the current one.
    view.li.addEventListener("focusin", () => {
      if (reel.index !== active) go(reel.index);
    });
  };

  // ------------------------------------------------------------------ paging

  const loadMore = (): Promise<void> => {
    loading ??= (async () => {
      try {
        const page = await feed.getFeed({ limit: PAGE_SIZE, cursor }, { signal });
        cursor = page.nextCursor;
        addReels(page.items);
        status.replaceChildren(`${reels.length} reels`);
      } catch (err) {
        if (signal.aborted) return;
        const retry = isRetryable(err) ? h("button", { type: "button" }, "Try again") : null;
        retry?.addEventListener("click", () => {
          status.replaceChildren();
          void loadMore();
        });
        status.replaceChildren(h("span", { role: "alert" }, `Could not load more reels. ${describeError(err)}`), ...(retry ? [" ", retry] : []));
      } finally {
        loading = null;
      }
    })();
    return loading;
  };

  /** A shared link's reel (`?v=`), put first: GetPlayback has its URL and length (the
   * title and creator are not part of it). Nothing when it is unknown. */
  const sharedReel = async (videoId: string): Promise<FeedItem | null> => {
    try {
      const playback = await stream.getPlayback({ videoId, device: Device.WEB }, { signal });
      if (playback.isLive || !playback.masterManifestUrl) return null;
      const seconds = playback.duration ? Number(playback.duration.seconds) + playback.duration.nanos / 1e9 : 0;
      return create(FeedItemSchema, {
        videoId,
        title: "Shared reel",
        explanation: "Shared with you",
        streamingUrl: playback.masterManifestUrl,
        manifestUrl: playback.masterManifestUrl,
        thumbnailUrl: playback.thumbnailUrl,
        durationSeconds: seconds,
      });
    } catch {
      return null;
    }
  };

  const loadFirst = async (): Promise<void> => {
    section.dataset.state = "loading";
    status.textContent = "Loading…";
    try {
      const shared = query.get("v");
      const pending = firstPage ?? feed.getFeed({ limit: PAGE_SIZE, cursor: "" }, { signal });
      firstPage = null; // a retry asks again
      const [page, first] = await Promise.all([
        pending,
        shared ? sharedReel(shared) : Promise.resolve(null),
      ]);
      if (signal.aborted) return; // left meanwhile (the early first page has no signal)
      cursor = page.nextCursor;
      const items = first ? [first, ...page.items.filter((i) => i.videoId !== first.videoId)] : page.items;
      addReels(items);
      // The server tops the page up with reels served before when nothing unseen is
      // left (FEED_FALLBACK_SEEN_BEFORE): "caught up", not "no reels".
      const caughtUp =
        page.fallbacks.includes(FeedFallback.SEEN_BEFORE) &&
        page.items.every((i) => i.reason === FeedReason.SEEN_BEFORE);
      section.dataset.caughtUp = String(caughtUp);
      if (reels.length === 0) {
        section.dataset.state = "empty";
        status.replaceChildren(
          ...(caughtUp
            ? ["You're all caught up: you have seen every reel. New ones show up here once they are published."]
            : ["No reels yet. ", h("a", { href: "/upload" }, "Upload the first one")]),
        );
        return;
      }
      const count = reels.length === 1 ? "1 reel" : `${reels.length} reels`;
      status.replaceChildren(caughtUp ? `You're all caught up: ${count} you have seen before.` : count);
      section.dataset.state = "ready";
      activate(0);
    } catch (err) {
      if (signal.aborted) return;
      section.dataset.state = "error";
      const retry = isRetryable(err) ? h("button", { type: "button" }, "Try again") : null;
      retry?.addEventListener("click", () => void loadFirst());
      status.replaceChildren(h("span", { role: "alert" }, `Could not load the feed. ${describeError(err)}`), ...(retry ? [" ", retry] : []));
    }
  };

  // ------------------------------------------------------------------ page-wide

  const onKey = (event: KeyboardEvent): void => {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    if (comments.element.open || reels.length === 0) return;
    const target = event.target instanceof Element ? event.target : null;
    if (target?.closest("input, textarea, select, [contenteditable]:not([contenteditable='false'])")) return;
    const fromFeed = target === null || target === document.body || section.contains(target) || target === root;
    switch (event.key) {
      case "ArrowDown":
      case "PageDown":
        go(active + 1, { focus: fromFeed });
        break;
      case "ArrowUp":
      case "PageUp":
        go(active - 1, { focus: fromFeed });
        break;
      case " ":
        if (target?.closest("button, a, summary")) return; // Space presses the button
        togglePlay();
        break;
      case "k":
      case "K":
        togglePlay();
        break;
      case "m":
      case "M":
        toggleMute();
        break;
      default:
        return;
    }
    event.preventDefault();
  };

  const onVisibility = (): void => {
    const reel = reels[active];
    if (document.visibilityState === "hidden") {
      reporter.flushOnHide();
      resumeOnShow = reel !== undefined && !reel.view.video.paused;
      reel?.view.video.pause();
    } else if (resumeOnShow && reel) {
      resumeOnShow = false;
      void startPlayback(reel);
    }
  };
  const onPageHide = (): void => reporter.flushOnHide();

  prev.addEventListener("click", () => go(active - 1));
  next.addEventListener("click", () => go(active + 1));
  document.addEventListener("keydown", onKey);
  document.addEventListener("visibilitychange", onVisibility);
  window.addEventListener("pagehide", onPageHide);
  signal.addEventListener(
    "abort",
    () => {
      document.removeEventListener("keydown", onKey);
      document.removeEventListener("visibilitychange", onVisibility);
      window.removeEventListener("pagehide", onPageHide);
      window.clearTimeout(settleTimer);
      window.clearTimeout(toastTimer);
      if (comments.element.open) comments.element.close();
      for (const reel of reels) {
        reel.tracker = null;
        reel.player?.detach();
      }
      void reporter.close(); // the last batch, not tied to this page's signal
    },
    { once: true },
  );

  await loadFirst();
}
