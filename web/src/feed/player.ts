// One reel's <video> and its HLS source: hls.js over Media Source Extensions, or the
// browser's own HLS where it has one and is not Chromium (Safari, iOS). Chromium's
// native HLS (recent desktop versions answer canPlayType) is younger and gives no
// control over the ladder, so there hls.js plays, as everywhere MSE exists.
//
// hls.js is loaded on first use (its own chunk), so Safari never downloads it. A player
// is attached ahead of time ("preload": the first segments of the next reel are
// buffered while the current one plays), made current ("active": a longer buffer) and
// detached again when the viewer is far away, which frees its buffers.
import type Hls from "hls.js";
import type { ErrorData, HlsConfig } from "hls.js";

export type PlayerMode = "preload" | "active";

type HlsClass = typeof Hls;

let hlsModule: Promise<HlsClass> | null = null;

function loadHls(): Promise<HlsClass> {
  hlsModule ??= import("hls.js").then((m) => m.default);
  hlsModule.catch(() => {
    hlsModule = null; // a failed chunk load (offline) is tried again next time
  });
  return hlsModule;
}

function isChromium(): boolean {
  const brands = (navigator as Navigator & { userAgentData?: { brands?: { brand: string }[] } }).userAgentData
    ?.brands;
  if (brands) return brands.some((b) => b.brand === "Chromium");
  return /\b(Chrome|Chromium|CriOS|Edg)\//.test(navigator.userAgent);
}

/** Whether this browser should play HLS itself rather than through hls.js. */
function preferNative(video: HTMLVideoElement): boolean {
  return video.canPlayType("application/vnd.apple.mpegurl") !== "" && !isChromium();
}

/** Starts loading hls.js where it will play (not where the browser's own HLS does), so
 * that the feed fetches and compiles it while GetFeed is in flight rather than after. */
export function preloadPlayer(): void {
  if (!preferNative(document.createElement("video"))) void loadHls().catch(() => undefined);
}

const PRELOAD_BUFFER_S = 4; // the next reel: enough for an instant start
const ACTIVE_BUFFER_S = 20;

const HLS_CONFIG: Partial<HlsConfig> = {
  // Never fetch a rung wider than the player shows (a phone gets 360p/480p).
  capLevelToPlayerSize: true,
  maxBufferLength: PRELOAD_BUFFER_S,
  backBufferLength: 10,
  startFragPrefetch: true,
};

export interface PlayerCallbacks {
  /** A fatal error: the reel cannot play (a short, human message). */
  readonly onFatal: (message: string) => void;
}

export class ReelPlayer {
  private hls: Hls | null = null;
  private attaching: Promise<void> | null = null;
  private native = false;
  private mediaRecoveries = 0;
  private generation = 0;

  constructor(
    readonly video: HTMLVideoElement,
    private readonly src: string,
    private readonly callbacks: PlayerCallbacks,
  ) {
    // hls.js reports its errors itself; the browser's own HLS only through the element.
    video.addEventListener("error", () => {
      if (this.native && this.attaching && video.error) this.callbacks.onFatal("This video could not be played.");
    });
  }

  get attached(): boolean {
    return this.attaching !== null;
  }

  /** Loads the source (once) and sets how much to buffer ahead. */
  attach(mode: PlayerMode): Promise<void> {
    if (this.attaching) {
      this.setMode(mode);
      return this.attaching;
    }
    const generation = ++this.generation;
    this.video.preload = "auto";
    if (preferNative(this.video)) {
      this.native = true;
      this.video.src = this.src;
      this.attaching = Promise.resolve();
      return this.attaching;
    }
    this.attaching = loadHls().then(
      (HlsClass) => {
        if (generation !== this.generation) return; // detached meanwhile
        if (!HlsClass.isSupported()) {
          if (this.video.canPlayType("application/vnd.apple.mpegurl") !== "") {
            this.native = true;
            this.video.src = this.src;
            return;
          }
          this.callbacks.onFatal("This browser cannot play HLS video.");
          return;
        }
        const hls = new HlsClass(HLS_CONFIG);
        this.hls = hls;
        this.setMode(mode);
        hls.on(HlsClass.Events.ERROR, (_event, data) => this.onError(HlsClass, hls, data));
        hls.loadSource(this.src);
        hls.attachMedia(this.video);
      },
      () => this.callbacks.onFatal("The video player could not be loaded. Check the connection."),
    );
    return this.attaching;
  }

  /** Stops loading and frees the buffers; `attach` starts over. */
  detach(): void {
    this.generation += 1;
    this.attaching = null;
    this.mediaRecoveries = 0;
    this.video.pause();
    if (this.hls) {
      this.hls.destroy();
      this.hls = null;
    }
    if (this.native || this.video.hasAttribute("src")) {
      this.video.removeAttribute("src");
      this.video.load();
    }
    this.native = false;
  }

  /** Plays; false when the browser refused (autoplay policy) or it was interrupted. */
  async play(): Promise<boolean> {
    try {
      await this.video.play();
      return true;
    } catch {
      return false;
    }
  }

  /** The rendition playing, as the ladder names it ("720p": the short edge). */
  rendition(): string {
    const hls = this.hls;
    const level = hls && hls.currentLevel >= 0 ? hls.levels[hls.currentLevel] : undefined;
    const [w, h] = level ? [level.width, level.height] : [this.video.videoWidth, this.video.videoHeight];
    return w > 0 && h > 0 ? `${Math.min(w, h)}p` : "";
  }

  private setMode(mode: PlayerMode): void {
    if (!this.hls) return;
    this.hls.config.maxBufferLength = mode === "active" ? ACTIVE_BUFFER_S : PRELOAD_BUFFER_S;
  }

  private onError(HlsClass: HlsClass, hls: Hls, data: ErrorData): void {
    if (!data.fatal || hls !== this.hls) return;
    if (data.type === HlsClass.ErrorTypes.MEDIA_ERROR && this.mediaRecoveries < 2) {
      this.mediaRecoveries += 1;
      hls.recoverMediaError();
      return;
    }
    const status = data.response?.code;
    this.callbacks.onFatal(
      data.type === HlsClass.ErrorTypes.NETWORK_ERROR
        ? status === 403 || status === 404
          ? "This video is not available."
          : "The video could not be loaded. Check the connection."
        : "This video could not be played.",
    );
  }
}
