// "Go live": ChatService.CreateStream, then the encoder settings. The stream key is in
// CreateStream's (and RotateStreamKey's) answer only (the service stores it hashed), so
// the panel shows it once, says so, and offers to copy it; it is never stored.
import { apiClient, describeError } from "../api";
import { h } from "../dom";
import { ChatService, type LiveStream } from "../gen/reels/v1/chat_pb";

const MAX_TITLE = 200;
const MAX_DESCRIPTION = 2000;

/** The form; `onCreated` runs after a stream was created (to refresh lists). */
export function goLiveForm(onCreated: (stream: LiveStream) => void, signal: AbortSignal): HTMLElement {
  const chat = apiClient(ChatService);
  const title = h("input", { id: "go-live-title", name: "title", required: true, maxlength: String(MAX_TITLE) });
  const description = h("textarea", {
    id: "go-live-description",
    name: "description",
    rows: "2",
    maxlength: String(MAX_DESCRIPTION),
  });
  const tags = h("input", { id: "go-live-tags", name: "tags", "aria-describedby": "go-live-tags-help" });
  const error = h("p", { class: "error", role: "alert" });
  const submit = h("button", { type: "submit" }, "Create stream");
  const result = h("div", { class: "go-live-result" });
  const form = h(
    "form",
    { class: "go-live-form" },
    h("label", { for: "go-live-title" }, "Title"),
    title,
    h("label", { for: "go-live-description" }, "Description (optional)"),
    description,
    h("label", { for: "go-live-tags" }, "Tags (optional)"),
    tags,
    h("p", { id: "go-live-tags-help", class: "help" }, "Separated by commas or spaces, e.g. music, live."),
    error,
    submit,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    const request = {
      title: title.value.trim(),
      description: description.value.trim(),
      tags: tags.value
        .split(/[\s,]+/)
        .map((t) => t.trim())
        .filter((t) => t !== ""),
    };
    chat
      .createStream(request, { signal, timeoutMs: 10_000 })
      .then((reply) => {
        const stream = reply.stream;
        if (!stream) throw new Error("the service answered no stream");
        form.reset();
        result.replaceChildren(credentials(stream, "created"));
        result.querySelector<HTMLElement>("h3")?.focus();
        onCreated(stream);
      })
      .catch((err: unknown) => {
        if (signal.aborted) return;
        error.textContent = `Could not create the stream. ${describeError(err)}`;
      })
      .finally(() => {
        submit.disabled = false;
      });
  });
  return h(
    "section",
    { class: "go-live", "aria-labelledby": "go-live-title-heading" },
    h("h2", { id: "go-live-title-heading" }, "Go live"),
    h("p", { class: "help" }, "Create a stream, then point your encoder (OBS, ffmpeg) at the server and key shown."),
    form,
    result,
  );
}

/** The encoder settings of a stream whose key was just issued ("created" or "rotated"). */
export function credentials(stream: LiveStream, why: "created" | "rotated"): HTMLElement {
  const full = `${stream.ingestUrl.replace(/\/+$/, "")}/${stream.streamKey}`;
  return h(
    "section",
    { class: "credentials", "aria-labelledby": "credentials-title", "data-stream-id": stream.streamId },
    h(
      "h3",
      { id: "credentials-title", tabindex: "-1" },
      why === "created" ? `Stream “${stream.title}” created` : "New stream key",
    ),
    h(
      "p",
      { class: "warning", role: "note" },
      h("strong", {}, "The stream key is shown only this once."),
      " Copy it now: anyone with it can broadcast as you. Lost it? Rotate the key on the stream page.",
    ),
    h(
      "dl",
      { class: "credential-list" },
      credential("Server (RTMP)", stream.ingestUrl, "ingest-url"),
      credential("Stream key", stream.streamKey, "stream-key"),
      credential("Full URL (ffmpeg)", full, "ingest-full"),
    ),
    h(
      "p",
      {},
      h("a", { href: `/live/${encodeURIComponent(stream.streamId)}` }, "Open your stream page"),
      " — it goes live as soon as your encoder connects.",
    ),
  );
}

function credential(label: string, value: string, key: string): HTMLElement {
  const code = h("code", { class: "credential-value", "data-credential": key }, value);
  const copy = h("button", { type: "button", class: "secondary", "aria-label": `Copy the ${label.toLowerCase()}` }, "Copy");
  copy.addEventListener("click", () => {
    const done = (text: string): void => {
      copy.textContent = text;
      setTimeout(() => (copy.textContent = "Copy"), 2_000);
    };
    if (!navigator.clipboard) return done("Select and copy");
    navigator.clipboard.writeText(value).then(
      () => done("Copied"),
      () => done("Select and copy"),
    );
  });
  return h("div", { class: "credential" }, h("dt", {}, label), h("dd", {}, code, " ", copy));
}
