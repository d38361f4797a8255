// The chat subscription with recovery (ChatService.SubscribeChat, server streaming over
// gRPC-web), after Centrifugo's model (chat.proto): every publication of the stream's
// channel has an offset within an epoch. The feed remembers the last (offset, epoch)
// it saw; after a drop (network error, the browser going offline, the server ending the
// call, a SLOW_CONSUMER notice) it subscribes again with recover=true, since_offset and
// the epoch, and gets exactly what it missed. When that is impossible the joined frame
// says recovered=false: the feed reports `missed` and refills the latest page from
// GetChatHistory.
//
// The first subscription asks for no recovery; its joined frame names the channel's
// offset, and the page before it comes from GetChatHistory (before_offset = offset+1),
// so there is neither a gap nor a false "missed" on arrival. Publications may arrive
// out of offset order (history pages race live frames): the view orders them by offset.
import { Code, ConnectError } from "@connectrpc/connect";
import { apiClient } from "../api";
import {
  ChatNoticeKind,
  ChatService,
  type ChatJoined,
  type ChatMessage,
  type ChatNotice,
  type SubscribeChatResponse,
} from "../gen/reels/v1/chat_pb";
import { childController, online, sleep } from "./wait";

export type Connection =
  /** Subscribing for the first time. */
  | "connecting"
  /** Joined: publications arrive as they happen. */
  | "live"
  /** Dropped; trying again shortly. */
  | "reconnecting"
  /** The browser is offline; reconnects when it is back. */
  | "offline"
  /** The stream ended: no more publications. */
  | "ended"
  /** This user is banned from the chat. */
  | "banned"
  /** A refusal that trying again cannot fix (no such stream). */
  | "failed";

export interface ChatFeedHandlers {
  /** A message, or a notice (offset > 0: part of the channel; 0: for this client only). */
  publication(item: { message: ChatMessage } | { notice: ChatNotice }): void;
  connection(state: Connection, detail: string): void;
  /** Recovery failed: publications after `lastSeen` were missed. `reset`: a new epoch
   * (the old offsets mean nothing now: drop what is shown). The latest page of history
   * follows as publications. */
  missed(reset: boolean, lastSeen: bigint): void;
}

const HISTORY_PAGE = 50;
const BACKOFF_MS = [500, 1_000, 2_000, 4_000, 8_000];

export class ChatFeed {
  private readonly chat = apiClient(ChatService);
  /** Last offset seen of `epoch` (0 = nothing yet). */
  private offset = 0n;
  private epoch = "";
  private attempt: AbortController | null = null;
  private failures = 0;
  /** Subscriptions made (tests and diagnostics read it from the DOM). */
  subscriptions = 0;

  constructor(
    private readonly streamId: string,
    private readonly handlers: ChatFeedHandlers,
    private readonly signal: AbortSignal,
  ) {}

  /** The last (offset, epoch) seen, as a resubscription would send them. */
  get position(): { offset: bigint; epoch: string } {
    return { offset: this.offset, epoch: this.epoch };
  }

  /** Runs until the page goes away, the stream ends or the user is banned. */
  async run(): Promise<void> {
    const onOffline = (): void => {
      // Do not wait for the socket to time out: drop now, recover when back.
      this.handlers.connection("offline", "You are offline. The chat will catch up when you are back.");
      this.attempt?.abort();
    };
    window.addEventListener("offline", onOffline);
    try {
      while (!this.signal.aborted) {
        await online(this.signal);
        if (this.signal.aborted) return;
        const outcome = await this.subscribeOnce();
        if (outcome === "stop" || this.signal.aborted) return;
        if (!navigator.onLine) continue; // wait for "online" at the top of the loop
        if (outcome === "again") {
          const delay = BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)] ?? 8_000;
          this.failures += 1;
          this.handlers.connection("reconnecting", "Reconnecting to the chat…");
          await sleepOrOnline(delay, this.signal);
        }
      }
    } finally {
      window.removeEventListener("offline", onOffline);
      this.attempt?.abort();
    }
  }

  /** One subscription: "stop" (terminal), "again" (reconnect after a pause) or "now". */
  private async subscribeOnce(): Promise<"stop" | "again" | "now"> {
    const attempt = childController(this.signal);
    this.attempt = attempt;
    const recover = this.epoch !== "";
    const request = { streamId: this.streamId, recover, sinceOffset: recover ? this.offset : 0n, epoch: this.epoch };
    this.subscriptions += 1;
    if (!recover) this.handlers.connection("connecting", "Connecting to the chat…");
    let next: "stop" | "again" | "now" = "again";
    try {
      for await (const frame of this.chat.subscribeChat(request, { signal: attempt.signal })) {
        const verdict = this.handle(frame, recover);
        if (verdict !== "continue") {
          next = verdict;
          break;
        }
      }
    } catch (err) {
      if (this.signal.aborted) return "stop";
      if (attempt.signal.aborted) return "again"; // we dropped it (offline)
      const ce = ConnectError.from(err);
      switch (ce.code) {
        case Code.PermissionDenied:
          this.handlers.connection("banned", "You cannot take part in this chat (banned).");
          return "stop";
        case Code.NotFound:
          this.handlers.connection("failed", "There is no such stream.");
          return "stop";
        case Code.FailedPrecondition:
          this.handlers.connection("ended", "The stream has ended.");
          return "stop";
        case Code.Unauthenticated:
          this.handlers.connection("failed", "Sign in to follow the chat.");
          return "stop";
        default:
          return "again";
      }
    } finally {
      attempt.abort(); // ends the call if we broke out of the loop
      if (this.attempt === attempt) this.attempt = null;
    }
    return next;
  }

  private handle(frame: SubscribeChatResponse, recovering: boolean): "continue" | "stop" | "now" {
    const event = frame.event;
    switch (event.case) {
      case "joined":
        this.joined(event.value, recovering);
        return "continue";
      case "message": {
        const m = event.value;
        if (!this.advance(m.offset)) return "continue";
        this.handlers.publication({ message: m });
        return "continue";
      }
      case "notice": {
        const n = event.value;
        if (n.offset > 0n && !this.advance(n.offset)) return "continue";
        this.handlers.publication({ notice: n });
        switch (n.kind) {
          case ChatNoticeKind.STREAM_ENDED:
            this.handlers.connection("ended", "The stream has ended.");
            return "stop";
          case ChatNoticeKind.YOU_ARE_BANNED:
            this.handlers.connection("banned", n.text || "You were banned from this chat.");
            return "stop";
          case ChatNoticeKind.SLOW_CONSUMER:
            // Fell behind: resubscribe at once from the last offset (history has it).
            return "now";
          default:
            return "continue";
        }
      }
      default:
        return "continue";
    }
  }

  private joined(j: ChatJoined, recovering: boolean): void {
    const previousEpoch = this.epoch;
    this.epoch = j.epoch;
    this.failures = 0;
    this.handlers.connection("live", "");
    if (!recovering) {
      // First join: show the page of history up to the channel's offset.
      if (j.offset > this.offset) this.offset = j.offset;
      void this.fillHistory(j.offset, j.epoch);
      return;
    }
    if (j.recovered) return; // the missed publications follow this frame
    // What was missed cannot be had: say so, then show the latest page.
    const lastSeen = this.offset;
    this.offset = j.offset;
    this.handlers.missed(previousEpoch !== j.epoch, lastSeen);
    void this.fillHistory(j.offset, j.epoch);
  }

  /** True when `offset` is new (publications at or below the last offset are repeats). */
  private advance(offset: bigint): boolean {
    if (offset <= this.offset) return false;
    this.offset = offset;
    return true;
  }

  /** The page of history ending at `upTo` (inclusive), delivered as publications. */
  private async fillHistory(upTo: bigint, epoch: string): Promise<void> {
    if (upTo === 0n) return;
    try {
      const page = await this.chat.getChatHistory(
        { streamId: this.streamId, limit: HISTORY_PAGE, beforeOffset: upTo + 1n },
        { signal: this.signal, timeoutMs: 10_000 },
      );
      if (this.signal.aborted || (page.epoch && page.epoch !== epoch) || this.epoch !== epoch) return;
      for (const item of page.publications) {
        const event = item.event;
        if (event.case === "message") this.handlers.publication({ message: event.value });
        else if (event.case === "notice") this.handlers.publication({ notice: event.value });
      }
    } catch {
      // The live chat goes on; only older messages are not shown.
    }
  }
}

/** Sleeps `ms`, cut short by the browser coming back online. */
async function sleepOrOnline(ms: number, signal: AbortSignal): Promise<void> {
  const wake = childController(signal);
  const onOnline = (): void => wake.abort();
  window.addEventListener("online", onOnline, { once: true });
  try {
    await sleep(ms, wake.signal);
  } finally {
    window.removeEventListener("online", onOnline);
  }
}
