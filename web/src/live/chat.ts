// The chat panel of a stream page: the log (ordered by offset, whatever order the
// publications arrive in), a send form (ChatService.SendMessage, idempotent by
// client_message_id: a retry of the same text reuses its id), and for the stream's
// creator, moderation on each message (delete; mute or ban its author: ModerateChat).
// The subscription and its recovery live in ./chat-feed. The section's data-connection
// (connecting, live, reconnecting, offline, ended, banned, failed) and data-offset (the
// last offset seen) say where it is.
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { apiClient, describeError } from "../api";
import { h } from "../dom";
import { ChatNoticeKind, ChatService, type ChatMessage, type ChatNotice } from "../gen/reels/v1/chat_pb";
import { ModerationAction } from "../gen/reels/v1/common_pb";
import { ChatFeed, type Connection } from "./chat-feed";
import { clock, randomId } from "./format";

const MAX_SHOWN = 500;
const MAX_CHARS = 500;
const MUTE_MS = 10 * 60 * 1000;

export interface ChatPanelOptions {
  readonly streamId: string;
  /** The signed-in user. */
  readonly me: string;
  /** The stream's creator (never offered moderation on their own messages). */
  readonly creatorId: string;
  /** Show moderation controls (the creator's view). */
  readonly moderator: boolean;
  /** Called once when the chat learns the stream ended. */
  readonly onEnded?: () => void;
  /** The stream's state now: the chat takes messages only while it is live; before
   * (and after) the input is disabled and a notice says why. */
  readonly streamState: StreamPhase;
  readonly signal: AbortSignal;
}

export interface ChatPanel {
  readonly element: HTMLElement;
  /** Subscribes and keeps the log current until the page goes away. */
  run(): Promise<void>;
  /** The stream's state changed (went live, ended): opens or closes sending. */
  setStreamState(state: StreamPhase): void;
}

export type StreamPhase = "created" | "live" | "ended";

const CLOSED_NOTE: Record<StreamPhase, string> = {
  created: "The stream has not started yet: the chat opens when it goes live.",
  live: "",
  ended: "The stream has ended, so the chat is closed.",
};

export function chatPanel(opts: ChatPanelOptions): ChatPanel {
  const { streamId, signal } = opts;
  const chat = apiClient(ChatService);
  const status = h("p", { class: "chat-status", role: "status" }, "Connecting to the chat…");
  const missed = h(
    "p",
    { class: "chat-missed", role: "alert", hidden: true },
    "Some messages were missed while you were away; showing the latest ones.",
  );
  const log = h("ol", { class: "chat-log", role: "log", "aria-live": "polite", "aria-labelledby": "chat-title" });
  const empty = h("p", { class: "help chat-empty" }, "No messages yet. Say hello!");
  const closedNote = h("p", { id: "chat-closed", class: "help chat-closed", role: "status", hidden: true });
  const input = h("input", {
    id: "chat-input",
    name: "text",
    type: "text",
    maxlength: String(MAX_CHARS),
    autocomplete: "off",
    required: true,
    "aria-describedby": "chat-closed chat-send-error",
  });
  const sendButton = h("button", { type: "submit" }, "Send");
  const sendError = h("p", { id: "chat-send-error", class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "chat-form" },
    h("label", { for: "chat-input", class: "visually-hidden" }, "Message"),
    input,
    sendButton,
  );
  const modStatus = h("p", { class: "mod-status", role: "status" });
  const element = h(
    "section",
    { class: "chat", "aria-labelledby": "chat-title", "data-connection": "connecting", "data-offset": "0" },
    h("h2", { id: "chat-title" }, "Chat"),
    status,
    missed,
    h("div", { class: "chat-scroll" }, empty, log),
    opts.moderator ? modStatus : null,
    closedNote,
    form,
    sendError,
  );

  /** Shown items by offset (messages, tombstones, channel notices). */
  const shown = new Map<bigint, HTMLLIElement>();
  /** Messages by id (a tombstone names the message id too). */
  const byId = new Map<string, HTMLLIElement>();
  let endedOnce = false;
  let phase = opts.streamState;
  let connection: Connection = "connecting";
  let connectionDetail = "";

  /** Sending is open while the subscription works and the stream is LIVE. */
  const updateSending = (): void => {
    const closed = connection === "ended" || connection === "banned" || connection === "failed";
    const notLive = phase !== "live" && !closed;
    input.disabled = closed || notLive;
    sendButton.disabled = closed || notLive;
    closedNote.textContent = notLive ? CLOSED_NOTE[phase] : "";
    closedNote.hidden = !notLive;
    element.dataset.streamState = phase;
    empty.textContent = phase === "live" ? "No messages yet. Say hello!" : "No messages yet.";
    status.textContent = connectionDetail || (connection === "live" && !notLive ? "Connected." : "");
  };

  const place = (offset: bigint, li: HTMLLIElement): void => {
    const existing = shown.get(offset);
    if (existing) {
      existing.replaceWith(li);
    } else {
      // Usually the newest: walk back from the end to the first smaller offset.
      let after: Element | null = log.lastElementChild;
      while (after && offsetOf(after) > offset) after = after.previousElementSibling;
      if (after) after.after(li);
      else log.prepend(li);
    }
    shown.set(offset, li);
    while (shown.size > MAX_SHOWN) {
      const first = log.firstElementChild as HTMLLIElement | null;
      if (!first) break;
      shown.delete(offsetOf(first));
      first.remove();
    }
    empty.hidden = log.childElementCount > 0;
    stickToBottom();
  };

  const stickToBottom = (): void => {
    const scroller = log.parentElement;
    if (scroller) scroller.scrollTop = scroller.scrollHeight;
  };

  const showMessage = (m: ChatMessage): void => {
    if (m.offset === 0n) return;
    const existing = shown.get(m.offset);
    if (existing && existing.dataset.messageId === m.messageId) return; // already shown
    const when = clock(m.sentAt);
    const li = h(
      "li",
      {
        class: m.userId === opts.me ? "chat-message own" : "chat-message",
        "data-offset": String(m.offset),
        "data-message-id": m.messageId,
        "data-user-id": m.userId,
      },
      h("span", { class: "chat-author" }, m.username || m.userId),
      " ",
      h("span", { class: "chat-text" }, m.text),
      " ",
      h("time", { datetime: when.iso, class: "meta" }, when.text),
      opts.moderator && m.userId !== opts.creatorId ? moderation(m) : null,
    );
    place(m.offset, li);
    byId.set(m.messageId, li);
  };

  const markDeleted = (li: HTMLLIElement): void => {
    li.classList.add("deleted");
    li.querySelector(".chat-text")?.replaceChildren("Message deleted");
    li.querySelector(".mod-actions")?.remove();
  };

  const showNotice = (n: ChatNotice): void => {
    if (n.offset === 0n) {
      // For this client only: not part of the log.
      if (n.kind === ChatNoticeKind.RATE_LIMITED || n.kind === ChatNoticeKind.REJECTED) {
        sendError.textContent = sentence(n.text);
      }
      return;
    }
    if (n.kind === ChatNoticeKind.MESSAGE_DELETED) {
      const target = shown.get(n.targetOffset) ?? byId.get(n.messageId);
      if (target && n.targetOffset !== n.offset) {
        markDeleted(target);
        return; // the tombstone itself takes no line
      }
      if (n.targetOffset === n.offset) {
        // History's tombstone in the deleted message's own place.
        const li = h(
          "li",
          { class: "chat-message deleted", "data-offset": String(n.offset), "data-message-id": n.messageId },
          h("span", { class: "chat-text" }, "Message deleted"),
        );
        place(n.offset, li);
      }
      return;
    }
    const li = h(
      "li",
      { class: "chat-notice", "data-offset": String(n.offset), "data-kind": ChatNoticeKind[n.kind] ?? "" },
      sentence(n.text),
    );
    place(n.offset, li);
  };

  const feed = new ChatFeed(
    streamId,
    {
      publication: (item) => {
        if ("message" in item) showMessage(item.message);
        else showNotice(item.notice);
        element.dataset.offset = String(feed.position.offset);
      },
      connection: (state: Connection, detail: string) => {
        element.dataset.connection = state;
        element.dataset.subscriptions = String(feed.subscriptions);
        connection = state;
        connectionDetail = detail;
        updateSending();
        if (state === "ended" && !endedOnce) {
          endedOnce = true;
          opts.onEnded?.();
        }
      },
      missed: (reset: boolean, lastSeen: bigint) => {
        missed.hidden = false;
        element.dataset.missed = "true";
        if (reset) {
          // A new epoch: the offsets shown belong to a history that is gone.
          log.replaceChildren();
          shown.clear();
          byId.clear();
        }
        // The gap sits after the last publication seen (at the top after a reset); the
        // latest page of history fills in after it, ordered by offset.
        const gap = h(
          "li",
          { class: "chat-gap", "data-offset": String(reset ? 0n : lastSeen) },
          "Some messages were missed",
        );
        let after: Element | null = log.lastElementChild;
        while (after && offsetOf(after) > lastSeen) after = after.previousElementSibling;
        if (reset || !after) log.prepend(gap);
        else after.after(gap);
        empty.hidden = true;
      },
    },
    signal,
  );

  // Sending: the id stays the same while the text does, so pressing Send again after
  // a failure (offline, timeout) is a retry the server answers once.
  let pending: { text: string; id: string } | null = null;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    if (pending === null || pending.text !== text) pending = { text, id: randomId() };
    const { id } = pending;
    // The button stays enabled: pressing it again resends the same id (a retry).
    sendError.textContent = "";
    void chat
      .sendMessage({ streamId, text, clientMessageId: id }, { signal, timeoutMs: 10_000 })
      .then((reply) => {
        if (pending?.id === id) pending = null;
        if (input.value.trim() === text) input.value = "";
        // The subscription brings it too; showing it now is the same line (by offset).
        if (reply.message) showMessage(reply.message);
      })
      .catch((err: unknown) => {
        if (signal.aborted) return;
        sendError.textContent = sendFailure(err);
      })
      .finally(() => {
        if (document.activeElement === document.body) input.focus();
      });
  });
  input.addEventListener("input", () => {
    sendError.textContent = "";
  });

  function moderation(m: ChatMessage): HTMLElement {
    const who = m.username || m.userId;
    const act = (label: string, aria: string, run: () => Promise<string | Node>): HTMLButtonElement => {
      const button = h("button", { type: "button", class: "link-button", "aria-label": aria }, label);
      button.addEventListener("click", () => {
        button.disabled = true;
        run()
          .then((done) => {
            modStatus.replaceChildren(done);
          })
          .catch((err: unknown) => {
            modStatus.replaceChildren(h("span", { class: "error" }, `Could not ${label.toLowerCase()}: ${describeError(err)}`));
          })
          .finally(() => {
            button.disabled = false;
          });
      });
      return button;
    };
    const moderate = (action: ModerationAction, extra: { messageId?: string; userId?: string; ms?: number }) =>
      chat.moderateChat(
        {
          streamId,
          action,
          messageId: extra.messageId ?? "",
          userId: extra.userId ?? "",
          duration: extra.ms === undefined ? undefined : durationFromMs(extra.ms),
        },
        { signal, timeoutMs: 10_000 },
      );
    const unban = (): HTMLElement => {
      const undo = h("button", { type: "button", class: "link-button" }, `Unban ${who}`);
      undo.addEventListener("click", () => {
        undo.disabled = true;
        moderate(ModerationAction.UNBAN_USER, { userId: m.userId })
          .then(() => modStatus.replaceChildren(`${who} may chat again.`))
          .catch((err: unknown) => modStatus.replaceChildren(h("span", { class: "error" }, describeError(err))));
      });
      return h("span", {}, `${who} is banned. `, undo);
    };
    return h(
      "span",
      { class: "mod-actions" },
      act("Delete", `Delete this message from ${who}`, async () => {
        await moderate(ModerationAction.DELETE_MESSAGE, { messageId: m.messageId });
        const li = byId.get(m.messageId);
        if (li) markDeleted(li);
        return `Deleted a message from ${who}.`;
      }),
      act("Mute", `Mute ${who} for 10 minutes`, async () => {
        await moderate(ModerationAction.MUTE_USER, { userId: m.userId, ms: MUTE_MS });
        return `${who} is muted for 10 minutes.`;
      }),
      act("Ban", `Ban ${who} from this chat`, async () => {
        await moderate(ModerationAction.BAN_USER, { userId: m.userId });
        return unban();
      }),
    );
  }

  updateSending();
  return {
    element,
    run: () => feed.run(),
    setStreamState: (now: StreamPhase) => {
      phase = now;
      updateSending();
    },
  };
}

function offsetOf(el: Element): bigint {
  try {
    return BigInt((el as HTMLElement).dataset.offset ?? "0");
  } catch {
    return 0n;
  }
}

function sentence(text: string): string {
  return text ? text.charAt(0).toUpperCase() + text.slice(1) : "";
}

function sendFailure(err: unknown): string {
  const ce = ConnectError.from(err);
  switch (ce.code) {
    case Code.PermissionDenied:
      return `You cannot send right now: ${ce.rawMessage}.`;
    case Code.ResourceExhausted:
      return `Slow down: ${ce.rawMessage}.`;
    case Code.FailedPrecondition:
      return "The stream is not live, so the chat is closed.";
    case Code.InvalidArgument:
      return `Not sent: ${ce.rawMessage}.`;
    default:
      return `Not sent (${describeError(err)}). Press Send to try again.`;
  }
}
