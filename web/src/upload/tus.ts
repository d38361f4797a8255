// tus (resumable upload) plumbing for the upload page: tus-js-client against svc_upload's
// tus server behind Envoy (/api/v1/uploads/tus/, svc_upload/tus.py), the chunk size,
// the fingerprint that finds an unfinished upload again after a reload, and the
// server's error bodies turned into sentences.
//
// What survives a reload is tus-js-client's URL storage in localStorage: the upload's
// URL, size and the metadata it was created with, never the token (auth.ts keeps that
// in memory; every request gets it from getToken() when it is sent).
import * as tus from "tus-js-client";
import { getToken } from "../auth";

export const TUS_ENDPOINT = "/api/v1/uploads/tus/";

/** Bytes per PATCH. Envoy streams the tus route to svc_upload (no buffering filter, so
 * no body limit of its own there; `idle_timeout` 300 s): the bound is how much one
 * interrupted request may have to send again and how long it takes on a slow uplink.
 * svc_upload commits what arrived of a broken PATCH, so a reload loses less than this. */
export const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;
/** `?chunk=` (tests, slow links) may lower the chunk size to this much, not below. */
export const MIN_CHUNK_BYTES = 64 * 1024;

/** The chunk size for this page: `?chunk=<bytes>` within [MIN, DEFAULT], else the default. */
export function chunkSizeFrom(query: URLSearchParams): number {
  const raw = query.get("chunk");
  if (raw === null || !/^[0-9]+$/.test(raw.trim())) return DEFAULT_CHUNK_BYTES;
  return Math.min(DEFAULT_CHUNK_BYTES, Math.max(MIN_CHUNK_BYTES, Number(raw.trim())));
}

/** What a creator types with the file; sent as tus `Upload-Metadata` (svc_upload/tus.py
 * reads title, description, hashtags, filename, filetype). */
export interface UploadDetails {
  readonly title: string;
  readonly description: string;
  readonly hashtags: string;
}

export function metadataFor(file: File, details: UploadDetails): Record<string, string> {
  const meta: Record<string, string> = { filename: file.name };
  if (file.type) meta.filetype = file.type;
  // Empty values are left out: the server takes the file name's stem for no title.
  if (details.title.trim()) meta.title = details.title;
  if (details.description.trim()) meta.description = details.description;
  if (details.hashtags.trim()) meta.hashtags = details.hashtags;
  return meta;
}

/** An unfinished upload found in the URL storage (this browser, this user). */
export interface StoredUpload {
  readonly key: string;
  readonly uploadUrl: string;
  readonly size: number;
  readonly metadata: Readonly<Record<string, string>>;
  readonly createdAt: Date | null;
}

const storage = tus.defaultOptions.urlStorage;

// The default fingerprint (name, type, size, mtime, endpoint) plus the user: one browser
// shared by two accounts never offers one's upload to the other (the server would say
// 404 anyway), and the list of unfinished uploads is per user.
function fingerprintPrefix(user: string): string {
  return `reels-${encodeURIComponent(user)}-`;
}

function fingerprintFor(user: string, file: File): string {
  return fingerprintPrefix(user) + ["br", file.name, file.type, file.size, file.lastModified, TUS_ENDPOINT].join("-");
}

function toStored(found: tus.PreviousUpload): StoredUpload | null {
  if (!found.uploadUrl) return null;
  const created = new Date(found.creationTime);
  return {
    key: found.urlStorageKey,
    uploadUrl: found.uploadUrl,
    size: found.size ?? 0,
    metadata: found.metadata ?? {},
    createdAt: Number.isNaN(created.getTime()) ? null : created,
  };
}

/** The user's unfinished uploads stored in this browser, newest first. */
export async function storedUploads(user: string): Promise<StoredUpload[]> {
  const all = await storage.findAllUploads();
  const prefix = `tus::${fingerprintPrefix(user)}`;
  return all
    .filter((u) => u.urlStorageKey.startsWith(prefix))
    .map(toStored)
    .filter((u): u is StoredUpload => u !== null)
    .sort((a, b) => (b.createdAt?.getTime() ?? 0) - (a.createdAt?.getTime() ?? 0));
}

/** The newest unfinished upload of exactly this file (same name, type, size, mtime). */
export async function storedUploadOf(user: string, file: File): Promise<StoredUpload | null> {
  const found = await storage.findUploadsByFingerprint(fingerprintFor(user, file));
  const usable = found.map(toStored).filter((u): u is StoredUpload => u !== null);
  usable.sort((a, b) => (b.createdAt?.getTime() ?? 0) - (a.createdAt?.getTime() ?? 0));
  return usable[0] ?? null;
}

export async function forgetStored(key: string): Promise<void> {
  await storage.removeUpload(key);
}

/** Deletes an unfinished upload on the server (tus termination) and forgets it here.
 * A server that no longer has it (404/410) counts as done. */
export async function discardStored(upload: StoredUpload): Promise<void> {
  try {
    await tus.Upload.terminate(upload.uploadUrl, { onBeforeRequest: authorize, retryDelays: null });
  } catch (err) {
    const status = err instanceof tus.DetailedError ? (err.originalResponse?.getStatus() ?? 0) : 0;
    if (status !== 404 && status !== 410) throw err;
  }
  await forgetStored(upload.key);
}

function authorize(req: tus.HttpRequest): void {
  const token = getToken();
  if (token !== null) req.setHeader("Authorization", `Bearer ${token}`);
}

export interface TusCallbacks {
  onProgress(sent: number, total: number): void;
  /** A request failed and will be tried again (`attempt` from 0) after a pause. */
  onRetry(attempt: number, err: tus.DetailedError): void;
  /** The server named the video this upload becomes (Reels-Video-Id on every answer). */
  onVideoId(videoId: string): void;
  onSuccess(): void;
  onError(err: Error): void;
}

export interface TusOptions {
  readonly user: string;
  readonly file: File;
  readonly metadata: Record<string, string>;
  readonly chunkSize: number;
  /** Continue this stored upload (HEAD, then PATCH from the server's offset). */
  readonly resume: StoredUpload | null;
}

/** A tus upload of `file`; call start() (again after pause()) to send it. */
export function createTusUpload(opts: TusOptions, cb: TusCallbacks): tus.Upload {
  const upload = new tus.Upload(opts.file, {
    endpoint: TUS_ENDPOINT,
    chunkSize: opts.chunkSize,
    metadata: opts.metadata,
    fingerprint: async (file) => fingerprintFor(opts.user, file as File),
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: true,
    // tus-js-client retries 5xx, network errors, 409 (offset moved: it asks HEAD again)
    // and 423; never the other 4xx (quota, too big, not a video: nothing to retry).
    retryDelays: [0, 1000, 3000, 5000, 10000],
    onShouldRetry: (err, attempt) => {
      // tus-js-client's own rule (it is replaced, not extended, by this option).
      const status = err.originalResponse?.getStatus() ?? 0;
      const retry =
        (status < 400 || status >= 500 || status === 409 || status === 423) &&
        (typeof navigator === "undefined" || navigator.onLine !== false);
      if (retry) cb.onRetry(attempt, err);
      return retry;
    },
    onBeforeRequest: authorize,
    onAfterResponse: (_req, res) => {
      const videoId = res.getHeader("Reels-Video-Id");
      if (videoId) cb.onVideoId(videoId);
    },
    onProgress: (sent, total) => cb.onProgress(sent, total),
    onSuccess: () => cb.onSuccess(),
    onError: (err) => cb.onError(err),
  });
  if (opts.resume !== null) {
    upload.resumeFromPreviousUpload({
      size: opts.resume.size,
      metadata: { ...opts.resume.metadata },
      creationTime: opts.resume.createdAt?.toString() ?? "",
      urlStorageKey: opts.resume.key,
      uploadUrl: opts.resume.uploadUrl,
      parallelUploadUrls: null,
    });
  }
  return upload;
}

/** A failed upload, explained for the page. */
export interface UploadProblem {
  /** Short heading: "Too big", "Daily upload limit reached", ... */
  readonly title: string;
  /** What happened and what to do, in sentences (the server's own message included). */
  readonly detail: string;
  /** Per-field reasons from the server (`field_violations`), when it gave any. */
  readonly fields: readonly string[];
  /** Whether trying again (resume) can help; false when the file or account is the issue. */
  readonly retryable: boolean;
  /** Whether the stored upload is of no use any more (start over with a new one). */
  readonly forget: boolean;
  readonly status: number;
}

interface ErrorBody {
  code?: unknown;
  message?: unknown;
  field_violations?: unknown;
}

function parseBody(raw: string): { message: string; fields: string[] } {
  try {
    const body = JSON.parse(raw) as ErrorBody;
    const message = typeof body.message === "string" ? body.message : "";
    const fields = Array.isArray(body.field_violations)
      ? body.field_violations.flatMap((v: unknown) => {
          if (typeof v !== "object" || v === null) return [];
          const { field, description } = v as { field?: unknown; description?: unknown };
          return typeof field === "string" && typeof description === "string" ? [`${field}: ${description}`] : [];
        })
      : [];
    return { message, fields };
  } catch {
    // Envoy's own answers are plain text (or empty).
    return { message: raw.trim().slice(0, 300), fields: [] };
  }
}

/** The server's message as a sentence: capital first letter, closing full stop. */
function sentence(text: string): string {
  const t = text.trim();
  if (t === "") return "";
  const capital = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

function retryAfterText(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds <= 0) return "later";
  if (seconds < 90) return `in ${Math.ceil(seconds)} seconds`;
  if (seconds < 90 * 60) return `in ${Math.round(seconds / 60)} minutes`;
  return `in about ${Math.round(seconds / 3600)} hours`;
}

/** The server's error answer (JSON `{code, message, field_violations}`) as a problem the
 * page can show; a network failure (no answer) as a retryable one. */
export function describeTusError(err: unknown): UploadProblem {
  const res = err instanceof tus.DetailedError ? err.originalResponse : null;
  if (res === null) {
    const offline = typeof navigator !== "undefined" && navigator.onLine === false;
    return {
      title: offline ? "You are offline" : "The connection was lost",
      detail:
        "The upload stopped before the server answered. What arrived is kept: press Resume " +
        "(or choose the same file again after a reload) to continue where it stopped.",
      fields: [],
      retryable: true,
      forget: false,
      status: 0,
    };
  }
  const status = res.getStatus();
  const body = parseBody(res.getBody() ?? "");
  const { message } = body;
  // A field's reason that the message already says is not repeated.
  const fields = body.fields.filter((f) => !message.includes(f.slice(f.indexOf(": ") + 2)));
  const said = sentence(message);
  const base = { fields, status };
  switch (status) {
    case 413:
      return {
        ...base,
        title: "This file is too big",
        detail: `${said} Choose a shorter or smaller video (trim it, or export it at a lower resolution).`,
        retryable: false,
        forget: true,
      };
    case 429: {
      const wait = Number(res.getHeader("Retry-After") ?? "");
      return {
        ...base,
        title: "Daily upload limit reached",
        detail: `${said} You can upload again ${retryAfterText(wait)}.`,
        retryable: false,
        forget: true,
      };
    }
    case 422:
      return {
        ...base,
        title: "This file is not a usable video",
        detail: `${said} The whole file arrived, but it could not be read as a video. Choose another file.`,
        retryable: false,
        forget: true,
      };
    case 415:
      return {
        ...base,
        title: "Not a supported file type",
        detail: `${said} Choose a video file.`,
        retryable: false,
        forget: true,
      };
    case 431:
      return {
        ...base,
        title: "The details are too long",
        detail: `${said} Shorten the description or hashtags and try again.`,
        retryable: false,
        forget: true,
      };
    case 401:
      return {
        ...base,
        title: "Not signed in",
        detail: "The token was refused (expired?). Sign in again, then choose the same file to resume.",
        retryable: false,
        forget: false,
      };
    case 404:
    case 410:
      return {
        ...base,
        title: status === 410 ? "This upload expired" : "This upload no longer exists",
        detail: `${said} Start the upload again.`,
        retryable: false,
        forget: true,
      };
    case 400:
      return {
        ...base,
        title: "The upload was refused",
        detail: said || "The server did not accept the details.",
        retryable: false,
        forget: true,
      };
    default:
      if (status >= 500) {
        return {
          ...base,
          title: "The upload service is unavailable",
          detail: `${said || `It answered ${status}.`} What arrived is kept: press Resume to try again.`,
          retryable: true,
          forget: false,
        };
      }
      return {
        ...base,
        title: `The upload failed (HTTP ${status})`,
        detail: said,
        retryable: true,
        forget: false,
      };
  }
}
