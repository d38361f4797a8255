// One upload from file to published video: the tus transfer (./tus.ts), then the
// server-streamed status (UploadService.WatchVideoStatus over gRPC-web) while the video
// is transcoded, then the finished video (GetVideo) and its signed thumbnail URL
// (StreamService.GetPlayback). The job lives in this module, not in the page, so moving
// to another page and back keeps the upload running and shown.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Upload } from "tus-js-client";
import { apiClient, describeError, isRetryable } from "../api";
import { tokenRefused } from "../auth";
import { Device, VideoStatus } from "../gen/reels/v1/common_pb";
import { StreamService } from "../gen/reels/v1/stream_pb";
import { UploadService, type WatchVideoStatusResponse } from "../gen/reels/v1/upload_pb";
import {
  createTusUpload,
  describeTusError,
  forgetStored,
  metadataFor,
  storedUploadOf,
  type StoredUpload,
  type UploadDetails,
  type UploadProblem,
} from "./tus";

export type Phase =
  | "starting" // looking for a stored upload, creating or asking the offset
  | "uploading"
  | "paused"
  | "upload-error" // the transfer stopped (see problem); maybe resumable
  | "processing" // all bytes arrived; transcoding (status watch)
  | "published"
  | "failed" // the video failed (transcode, or not a usable video)
  | "watch-error"; // the status could not be followed (the video may still publish)

export interface Published {
  readonly title: string;
  readonly description: string;
  readonly hashtags: readonly string[];
  readonly durationSeconds: number;
  readonly width: number;
  readonly height: number;
  /** Signed /media/ URL; empty when the video has none (or playback was not ready). */
  readonly thumbnailUrl: string;
  readonly thumbnailNote: string;
}

export interface Snapshot {
  readonly phase: Phase;
  /** The title as typed (empty: the server takes the file name's stem). */
  readonly title: string;
  readonly fileName: string;
  readonly sent: number;
  readonly total: number;
  /** Bytes the server already had when this upload was resumed; null for a new one. */
  readonly resumedAt: number | null;
  readonly videoId: string;
  readonly stage: string;
  /** Transcoding progress 0..100; null before the first report. */
  readonly percent: number | null;
  /** A passing remark (reconnecting to the status, waiting for playback). */
  readonly note: string;
  readonly problem: UploadProblem | null;
  /** In watch-error: whether following the status again may work (the service was
   * unavailable or the network failed), so the page offers to check again. */
  readonly watchRetryable: boolean;
  readonly failureReason: string;
  readonly result: Published | null;
}

export interface JobOptions {
  readonly user: string;
  readonly file: File;
  readonly details: UploadDetails;
  readonly chunkSize: number;
  /** The stored upload of this file to continue (the page looked it up). */
  readonly resume: StoredUpload | null;
}

type Listener = (snap: Snapshot) => void;

const TRANSFER_PHASES = new Set<Phase>(["starting", "uploading", "paused", "upload-error"]);
const TERMINAL = new Set([VideoStatus.PUBLISHED, VideoStatus.FAILED, VideoStatus.DELETED]);
const WATCH_RETRY_MS = [500, 1000, 2000, 4000, 8000, 8000];
// svc_stream learns of a publication from the video.published event, a moment after
// svc_upload's status says published: GetPlayback may say NOT_FOUND/FAILED_PRECONDITION
// until then.
const PLAYBACK_WAIT_MS = 30_000;

export class UploadJob {
  readonly user: string;
  readonly file: File;
  private snap: Snapshot;
  private readonly listeners = new Set<Listener>();
  private readonly opts: JobOptions;
  private tus: Upload | null = null;
  private readonly stop = new AbortController();
  private watching = false;

  constructor(opts: JobOptions) {
    this.opts = opts;
    this.user = opts.user;
    this.file = opts.file;
    this.snap = {
      phase: "starting",
      title: opts.details.title.trim(),
      fileName: opts.file.name,
      sent: 0,
      total: opts.file.size,
      resumedAt: null,
      videoId: "",
      stage: "",
      percent: null,
      note: "",
      problem: null,
      watchRetryable: false,
      failureReason: "",
      result: null,
    };
  }

  /** The details the upload was started with. */
  get details(): UploadDetails {
    return this.opts.details;
  }

  get snapshot(): Snapshot {
    return this.snap;
  }

  /** Calls `listener` now and on every change; returns the unsubscribe function. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    listener(this.snap);
    return () => this.listeners.delete(listener);
  }

  private set(change: Partial<Snapshot>): void {
    this.snap = { ...this.snap, ...change };
    for (const listener of this.listeners) listener(this.snap);
  }

  /** Starts (or, with `resume`, continues) the transfer. */
  start(): void {
    const { opts } = this;
    let resuming = opts.resume !== null;
    this.tus = createTusUpload(
      {
        user: opts.user,
        file: opts.file,
        metadata: metadataFor(opts.file, opts.details),
        chunkSize: opts.chunkSize,
        resume: opts.resume,
      },
      {
        onProgress: (sent, total) => {
          // A progress event of the request that pause() aborted may still arrive.
          if (this.stop.signal.aborted || this.snap.phase === "paused") return;
          // The first progress of a resumed upload is the server's offset (from HEAD).
          const resumedAt = resuming ? sent : this.snap.resumedAt;
          resuming = false;
          this.set({ phase: "uploading", sent, total, problem: null, resumedAt, note: "" });
        },
        onRetry: (attempt, err) => {
          if (this.stop.signal.aborted) return;
          // 409: the server's offset moved on (a broken-off PATCH was committed after
          // all); asking HEAD again is routine, not trouble worth a word.
          if (err.originalResponse?.getStatus() === 409) return;
          this.set({ note: `Connection trouble: trying again (attempt ${attempt + 1})…` });
        },
        onVideoId: (videoId) => {
          if (videoId !== this.snap.videoId) this.set({ videoId });
        },
        onSuccess: () => {
          if (this.stop.signal.aborted) return;
          this.set({ phase: "processing", sent: this.snap.total, problem: null, note: "" });
          void this.watch();
        },
        onError: (err) => {
          if (this.stop.signal.aborted) return;
          const problem = describeTusError(err);
          // A refused token (401) signs out like every other call's UNAUTHENTICATED:
          // the header stops saying "Signed in as", the sign-in page says why.
          if (problem.status === 401) tokenRefused();
          this.set({ phase: "upload-error", problem });
          // Of no further use (too big, quota, not a video, expired): a new upload of
          // the same file must not try to resume it.
          if (problem.forget) void this.forget();
        },
      },
    );
    this.tus.start();
  }

  get canPause(): boolean {
    return this.snap.phase === "uploading" || this.snap.phase === "starting";
  }

  get canResume(): boolean {
    return this.snap.phase === "paused" || (this.snap.phase === "upload-error" && !!this.snap.problem?.retryable);
  }

  /** Stops sending; what the server has is kept (resume() continues from there). */
  pause(): void {
    if (!this.tus || !this.canPause) return;
    void this.tus.abort(false);
    this.set({ phase: "paused", note: "" });
  }

  /** Continues a paused or interrupted transfer: HEAD for the offset, then PATCH. */
  resume(): void {
    if (!this.tus || !this.canResume) return;
    this.set({ phase: "starting", problem: null });
    this.tus.start();
  }

  /** Follows the status again after it could not be followed (watch-error). */
  retryWatch(): void {
    if (this.snap.phase !== "watch-error" || !this.snap.videoId) return;
    this.set({ phase: "processing", note: "" });
    void this.watch();
  }

  /** Gives the upload up: deleted on the server (tus termination) and forgotten here. */
  async cancel(): Promise<void> {
    const { tus, snap } = this;
    this.stop.abort();
    this.listeners.clear();
    if (tus === null || !TRANSFER_PHASES.has(snap.phase)) return;
    try {
      await tus.abort(true);
    } catch {
      // Not created yet, or already gone: nothing to delete.
    }
    await this.forget();
  }

  /** Stops everything this job runs (transfer, status stream); the server keeps what it has. */
  dispose(): void {
    if (this.tus && this.canPause) void this.tus.abort(false);
    this.stop.abort();
    this.listeners.clear();
  }

  private async forget(): Promise<void> {
    const stored = await storedUploadOf(this.user, this.file).catch(() => null);
    if (stored) await forgetStored(stored.key).catch(() => undefined);
  }

  /** Follows the video's status until it is published or failed; reconnects when the
   * stream drops (the first message of every stream is the current status). */
  async watch(): Promise<void> {
    const videoId = this.snap.videoId;
    if (this.watching || !videoId) {
      if (!videoId) this.set({ phase: "watch-error", note: "The server did not name the video; see the feed later." });
      return;
    }
    this.watching = true;
    const signal = this.stop.signal;
    const client = apiClient(UploadService);
    let failures = 0;
    try {
      while (!signal.aborted) {
        let last: WatchVideoStatusResponse | null = null;
        try {
          for await (const msg of client.watchVideoStatus({ videoId }, { signal })) {
            failures = 0;
            last = msg;
            this.applyStatus(msg);
            if (TERMINAL.has(msg.status)) break;
          }
        } catch (err) {
          if (signal.aborted) return;
          const code = ConnectError.from(err).code;
          const fatal = code === Code.NotFound || code === Code.Unauthenticated || code === Code.PermissionDenied;
          if (fatal || failures >= WATCH_RETRY_MS.length) {
            this.set({
              phase: "watch-error",
              note: `Could not follow the processing: ${describeError(err)}`,
              watchRetryable: !fatal && isRetryable(err),
            });
            return;
          }
        }
        if (last !== null && TERMINAL.has(last.status)) {
          if (last.status === VideoStatus.PUBLISHED) await this.loadResult(videoId);
          return;
        }
        // The stream ended or broke before a final status: reconnect after a pause.
        const delay = WATCH_RETRY_MS[Math.min(failures, WATCH_RETRY_MS.length - 1)] ?? 8000;
        failures += 1;
        this.set({ note: "Reconnecting to the processing status…" });
        await sleep(delay, signal);
      }
    } finally {
      this.watching = false;
    }
  }

  private applyStatus(msg: WatchVideoStatusResponse): void {
    const percent = msg.status === VideoStatus.PUBLISHED ? 100 : Math.max(0, Math.min(100, msg.percent));
    const base: Partial<Snapshot> = { stage: msg.stage, note: "" };
    switch (msg.status) {
      case VideoStatus.PUBLISHED:
        this.set({ ...base, phase: "processing", percent, note: "Published. Fetching the video…" });
        break;
      case VideoStatus.FAILED:
        this.set({ ...base, phase: "failed", failureReason: msg.failureReason || "The video could not be processed." });
        break;
      case VideoStatus.DELETED:
        this.set({ ...base, phase: "failed", failureReason: "The video was deleted." });
        break;
      default:
        this.set({
          ...base,
          phase: "processing",
          // A report with stage but no percent yet (queued) stays indeterminate.
          percent: msg.stage === "" && msg.percent === 0 ? null : percent,
        });
    }
  }

  private async loadResult(videoId: string): Promise<void> {
    const signal = this.stop.signal;
    try {
      const { video } = await apiClient(UploadService).getVideo({ videoId }, { signal });
      const result: Published = {
        title: video?.title ?? "",
        description: video?.description ?? "",
        hashtags: video?.hashtags ?? [],
        durationSeconds: Number(video?.duration?.seconds ?? 0n) + (video?.duration?.nanos ?? 0) / 1e9,
        width: video?.width ?? 0,
        height: video?.height ?? 0,
        thumbnailUrl: "",
        thumbnailNote: "Loading the thumbnail…",
      };
      this.set({ phase: "published", percent: 100, note: "", result });
      const thumbnail = await this.thumbnail(videoId);
      this.set({ result: { ...result, ...thumbnail } });
    } catch (err) {
      if (signal.aborted) return;
      this.set({
        phase: "watch-error",
        note: `Published, but the video could not be loaded: ${describeError(err)}`,
        watchRetryable: isRetryable(err),
      });
    }
  }

  private async thumbnail(videoId: string): Promise<{ thumbnailUrl: string; thumbnailNote: string }> {
    const signal = this.stop.signal;
    const stream = apiClient(StreamService);
    const deadline = Date.now() + PLAYBACK_WAIT_MS;
    for (let delay = 250; ; delay = Math.min(delay * 2, 2000)) {
      try {
        const playback = await stream.getPlayback({ videoId, device: Device.WEB }, { signal });
        return playback.thumbnailUrl
          ? { thumbnailUrl: playback.thumbnailUrl, thumbnailNote: "" }
          : { thumbnailUrl: "", thumbnailNote: "This video has no thumbnail." };
      } catch (err) {
        if (signal.aborted) throw err;
        const code = ConnectError.from(err).code;
        const early = code === Code.NotFound || code === Code.FailedPrecondition || code === Code.Unavailable;
        if (!early || Date.now() + delay > deadline) {
          return { thumbnailUrl: "", thumbnailNote: `The thumbnail is not available yet (${describeError(err)}).` };
        }
        await sleep(delay, signal);
      }
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

// The job of this tab (one at a time), kept across page renders.
let current: UploadJob | null = null;

export function currentJob(): UploadJob | null {
  return current;
}

export function setCurrentJob(job: UploadJob | null): void {
  if (current !== null && current !== job) current.dispose();
  current = job;
}
