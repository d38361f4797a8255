// Player events (watch_start, 25/50/75 %, complete) for StreamService.RecordEvents.
//
// Events are queued and sent in batches over gRPC-web: on a timer, when the queue is
// long, and at once when the viewer moves on to another reel. Every event carries a
// client event id (crypto.randomUUID()), so a retry of a batch that did reach the
// server is the *same* events there (svc_stream derives its event id from user +
// client_event_id and accepts a repeat once). A failed send keeps the batch at the head
// of the queue and retries with backoff; `sent_at` is stamped anew on every attempt, so
// the server can correct the client clock (svc_stream/events/validation.py).
//
// What svc_stream accepts (validation.py): client_event_id and video_id required,
// printable, no whitespace, at most 128 / 64 characters; session_id at most 128,
// rendition at most 32; a known type; occurred_at set; position and watch seconds
// finite and >= 0, position <= duration + 1 s, watch seconds <= 3 x duration + 1 s per
// event; country empty or ISO alpha-2 (a browser does not know it: left empty).
import { create, toJson } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { getToken } from "../auth";
import { Device, EventType } from "../gen/reels/v1/common_pb";
import {
  PlayerEventSchema,
  RecordEventsRequestSchema,
  type PlayerEvent,
  type StreamService,
} from "../gen/reels/v1/stream_pb";

export { EventType };

/** One event as the player reports it; ids, time and device are filled in here. */
export interface WatchEvent {
  readonly videoId: string;
  readonly type: EventType;
  /** View session id: one per time a reel becomes the current one (see tracker.ts). */
  readonly sessionId: string;
  readonly positionSeconds: number;
  /** Seconds actually watched since the previous event of this session. */
  readonly watchSeconds: number;
  /** "720p"; "" when unknown. */
  readonly rendition: string;
}

export interface EventReporterOptions {
  /** Send this long after the first queued event at the latest. */
  readonly batchDelayMs?: number;
  /** Send at once when this many events are queued. */
  readonly batchSize?: number;
}

const MAX_BATCH = 500; // svc_stream's limit per RecordEvents call
const MAX_QUEUE = 2000; // offline for long: the oldest events are dropped beyond this
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30_000;
// A keepalive request's body may be at most 64 KiB (all keepalive requests in flight
// together): stay well below it.
const KEEPALIVE_MAX_BYTES = 60_000;
// Answers after which sending the same batch again cannot help.
const FINAL = new Set([Code.InvalidArgument, Code.Unauthenticated, Code.PermissionDenied, Code.Unimplemented]);

export class EventReporter {
  private queue: PlayerEvent[] = [];
  /** The batch of the send in progress (kept to be re-queued when it fails). */
  private inFlight: PlayerEvent[] = [];
  private sending: Promise<void> | null = null;
  private timer: number | undefined;
  private failures = 0;
  private closed = false;
  private readonly batchDelayMs: number;
  private readonly batchSize: number;

  constructor(
    private readonly client: Client<typeof StreamService>,
    { batchDelayMs = 5000, batchSize = 20 }: EventReporterOptions = {},
  ) {
    this.batchDelayMs = batchDelayMs;
    this.batchSize = batchSize;
  }

  /** Events queued or in flight (not yet acknowledged by the server). */
  get pending(): number {
    return this.queue.length + this.inFlight.length;
  }

  record(event: WatchEvent): void {
    if (this.closed) return;
    this.queue.push(
      create(PlayerEventSchema, {
        clientEventId: crypto.randomUUID(),
        videoId: event.videoId,
        type: event.type,
        occurredAt: timestampNow(),
        positionSeconds: clampSeconds(event.positionSeconds),
        watchSeconds: clampSeconds(event.watchSeconds),
        rendition: event.rendition.slice(0, 32),
        device: Device.WEB,
        sessionId: event.sessionId,
      }),
    );
    if (this.queue.length > MAX_QUEUE) this.queue.splice(0, this.queue.length - MAX_QUEUE);
    if (this.queue.length >= this.batchSize) void this.flush();
    else this.schedule(this.batchDelayMs);
  }

  /** Sends what is queued now (one batch after another); resolves when done or failed
   * (a failure is retried later on its own). */
  flush(): Promise<void> {
    if (this.sending) return this.sending;
    if (this.queue.length === 0) return Promise.resolve();
    window.clearTimeout(this.timer);
    this.timer = undefined;
    this.sending = this.sendAll().finally(() => {
      this.sending = null;
      // Recorded while that send was under way: their turn comes with the next batch.
      if (this.queue.length > 0) this.schedule(this.batchDelayMs);
    });
    return this.sending;
  }

  /**
   * The page is being hidden (tab switch, app switch, navigation away, close): hand
   * everything not yet acknowledged to the browser in a request that outlives the page.
   *
   * `navigator.sendBeacon` is what the issue suggests, but it cannot set headers, and
   * Envoy's jwt_authn requires the token on POST /api/v1/events (every /api route but
   * the web app's own). Envoy would also take it from an `access_token` query
   * parameter, but a bearer token in a URL leaks into the logs of whatever proxies
   * the request passes; the app keeps its token in memory and sends it as a header
   * only. So this is `fetch(..., { keepalive: true })` with the Authorization header:
   * like a beacon, the browser finishes it after the page is gone. It goes to the JSON
   * route (Envoy's transcoder turns it into the same RecordEvents call); gRPC-web over
   * a keepalive fetch would work too, but the JSON body is what the route documents
   * for plain HTTP clients.
   *
   * Events of a gRPC-web send still in flight go again: a repeat of a client event id
   * is accepted once (a duplicate), so nothing is counted twice. When the page stays
   * alive (only hidden), a failed hand-over puts the events back in the queue.
   */
  flushOnHide(): void {
    const token = getToken();
    if (token === null) return;
    window.clearTimeout(this.timer);
    this.timer = undefined;
    const all = [...this.inFlight, ...this.queue];
    const batch: PlayerEvent[] = [];
    let bytes = 64;
    for (const event of all.slice(0, MAX_BATCH)) {
      const size = JSON.stringify(toJson(PlayerEventSchema, event)).length + 1;
      if (bytes + size > KEEPALIVE_MAX_BYTES) break;
      batch.push(event);
      bytes += size;
    }
    if (batch.length === 0) return;
    const handed = new Set(batch.map((e) => e.clientEventId));
    this.queue = this.queue.filter((e) => !handed.has(e.clientEventId));
    if (this.queue.length > 0) this.schedule(this.batchDelayMs); // more than one request holds
    const body = JSON.stringify(
      toJson(RecordEventsRequestSchema, create(RecordEventsRequestSchema, { events: batch, sentAt: timestampNow() })),
    );
    let request: Promise<Response>;
    try {
      request = fetch("/api/v1/events", {
        method: "POST",
        keepalive: true,
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body,
      });
    } catch {
      this.requeue(batch);
      return;
    }
    request
      .then((resp) => {
        // 4xx other than 429 will not get better by sending again.
        if (!resp.ok && (resp.status === 429 || resp.status >= 500)) this.requeue(batch);
      })
      .catch(() => this.requeue(batch));
  }

  /** No more events are taken; what is left is sent (over gRPC-web, not tied to any
   * page's abort signal) and retried like any batch. */
  close(): Promise<void> {
    const done = this.flush();
    this.closed = true;
    return done;
  }

  private requeue(events: PlayerEvent[]): void {
    const queued = new Set(this.queue.map((e) => e.clientEventId));
    this.queue.unshift(...events.filter((e) => !queued.has(e.clientEventId)));
    this.retryLater();
  }

  private schedule(delayMs: number): void {
    if (this.timer !== undefined) return;
    this.timer = window.setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, delayMs);
  }

  private retryLater(): void {
    this.failures += 1;
    const backoff = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (this.failures - 1));
    window.clearTimeout(this.timer);
    this.timer = undefined;
    this.schedule(backoff / 2 + Math.random() * (backoff / 2));
  }

  private async sendAll(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, MAX_BATCH);
      this.inFlight = batch;
      try {
        const reply = await this.client.recordEvents({ events: batch, sentAt: timestampNow() });
        this.failures = 0;
        const rejected = reply.results.filter((r) => !r.accepted);
        if (rejected.length > 0) {
          // Judged one by one and refused (the reason names the field): a player bug,
          // not something a retry fixes.
          console.warn(
            "RecordEvents rejected events:",
            rejected.map((r) => `${r.index}: ${r.reason}`),
          );
        }
      } catch (err) {
        const code = ConnectError.from(err).code;
        if (FINAL.has(code)) {
          console.warn("RecordEvents refused a batch; dropping it:", ConnectError.from(err).rawMessage);
          continue;
        }
        // Unavailable, a network error, a timeout, rate limiting: the same events again
        // later (same client ids, new sent_at).
        this.requeue(batch);
        return;
      } finally {
        this.inFlight = [];
      }
    }
  }
}

function clampSeconds(value: number): number {
  return Number.isFinite(value) && value > 0 ? Math.round(value * 1000) / 1000 : 0;
}
