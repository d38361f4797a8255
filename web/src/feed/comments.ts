// The comments of a reel in a modal <dialog> (focus stays inside, Escape closes):
// StreamService.ListComments (newest first, "More comments" while there is a cursor)
// and AddComment. A comment keeps its client_comment_id until it is posted, so a retry
// after a lost answer returns the same comment instead of posting it twice.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { describeError } from "../api";
import { h } from "../dom";
import type { Comment, StreamService } from "../gen/reels/v1/stream_pb";

const MAX_COMMENT_CHARS = 500; // svc_stream/engagement/store.py
const PAGE_SIZE = 20;

export interface CommentsDialog {
  readonly element: HTMLDialogElement;
  open(videoId: string, title: string, returnFocus: HTMLElement): void;
}

export function commentsDialog(client: Client<typeof StreamService>, signal: AbortSignal): CommentsDialog {
  const heading = h("h2", { id: "comments-title" }, "Comments");
  const close = h("button", { type: "button", class: "comments-close", "aria-label": "Close comments" }, "✕");
  const status = h("p", { class: "comments-status", role: "status" });
  const list = h("ol", { class: "comment-list", "aria-labelledby": "comments-title" });
  const more = h("button", { type: "button", hidden: true }, "More comments");
  const text = h("textarea", {
    id: "comment-text",
    name: "text",
    rows: "2",
    required: true,
    maxlength: String(MAX_COMMENT_CHARS),
    "aria-describedby": "comment-error",
  });
  const error = h("p", { id: "comment-error", class: "error", role: "alert" });
  const post = h("button", { type: "submit" }, "Post");
  const form = h("form", { class: "comment-form" }, h("label", { for: "comment-text" }, "Add a comment"), text, error, post);
  const element = h(
    "dialog",
    { class: "reel-comments", "aria-labelledby": "comments-title" },
    h("div", { class: "comments-head" }, heading, close),
    status,
    list,
    more,
    form,
  );

  let videoId = "";
  let cursor = "";
  let returnTo: HTMLElement | null = null;
  let pendingId: string | null = null; // client_comment_id of the text being posted
  let pendingText = "";
  let loads: AbortController | null = null;

  const load = async (): Promise<void> => {
    loads?.abort();
    const controller = new AbortController();
    loads = controller;
    const forVideo = videoId;
    status.textContent = "Loading comments…";
    more.hidden = true;
    try {
      const page = await client.listComments(
        { videoId: forVideo, pageSize: PAGE_SIZE, cursor },
        { signal: AbortSignal.any([signal, controller.signal]) },
      );
      if (forVideo !== videoId) return;
      list.append(...page.comments.map(commentItem));
      cursor = page.nextCursor;
      more.hidden = cursor === "";
      status.textContent = list.childElementCount === 0 ? "No comments yet. Be the first." : "";
    } catch (err) {
      if (controller.signal.aborted || signal.aborted) return;
      status.textContent = `Could not load the comments. ${describeError(err)}`;
    }
  };

  more.addEventListener("click", () => void load());
  close.addEventListener("click", () => element.close());
  element.addEventListener("close", () => {
    loads?.abort();
    returnTo?.focus({ preventScroll: true });
  });
  // A click on the backdrop (outside the box) closes it too.
  element.addEventListener("click", (event) => {
    if (event.target === element) element.close();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void (async () => {
      const value = text.value.trim();
      if (value === "") {
        error.textContent = "Write something first.";
        text.focus();
        return;
      }
      if (pendingId === null || pendingText !== value) {
        pendingId = crypto.randomUUID();
        pendingText = value;
      }
      error.textContent = "";
      post.disabled = true;
      try {
        const reply = await client.addComment({ videoId, text: value, clientCommentId: pendingId }, { signal });
        pendingId = null;
        text.value = "";
        if (reply.comment) list.prepend(commentItem(reply.comment));
        status.textContent = "Comment posted.";
      } catch (err) {
        if (!signal.aborted) error.textContent = `Could not post the comment. ${describeError(err)}`;
      } finally {
        post.disabled = false;
      }
    })();
  });

  return {
    element,
    open(id: string, title: string, returnFocus: HTMLElement): void {
      if (id !== videoId) {
        videoId = id;
        cursor = "";
        list.replaceChildren();
        error.textContent = "";
        pendingId = null;
      } else {
        list.replaceChildren(); // newest first: read them again
        cursor = "";
      }
      returnTo = returnFocus;
      heading.textContent = `Comments on ${title}`;
      element.showModal();
      text.focus();
      void load();
    },
  };
}

function commentItem(comment: Comment): HTMLLIElement {
  const when = comment.createdAt ? timestampDate(comment.createdAt) : null;
  return h(
    "li",
    { class: "comment" },
    h("span", { class: "comment-author" }, `@${comment.userId}`),
    when ? h("time", { class: "meta", datetime: when.toISOString() }, ` ${when.toLocaleString()}`) : null,
    h("p", {}, comment.text),
  );
}
