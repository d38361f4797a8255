// The progress panel of one upload job: the transfer (<progress> with text, Pause /
// Resume / Cancel), then the processing (<progress> fed by the status stream), then the
// published video with its thumbnail, or what went wrong. Rendered from the job's
// snapshots; a screen reader hears phase changes and every quarter of the transfer
// through one polite live region (not every progress event).
import { h } from "../dom";
import { charCount, formatBytes, formatDuration, percentOf, stageLabel } from "./format";
import type { Snapshot, UploadJob } from "./job";

export interface PanelActions {
  /** Clear the job and go back to the form (keeping or clearing the details). */
  readonly done: (keepDetails: boolean) => void;
}

export interface Panel {
  readonly element: HTMLElement;
  /** Follows `job` until the returned function is called. */
  attach(job: UploadJob): () => void;
  focus(): void;
}

export function createPanel(actions: PanelActions): Panel {
  const heading = h("h2", { id: "upload-job-title", tabindex: "-1" });
  const file = h("p", { class: "upload-file-name" });

  const sendBar = h("progress", { id: "upload-progress", max: "100", value: "0" });
  const sendText = h("p", { id: "upload-progress-text", class: "progress-text" });
  const resumed = h("p", { class: "upload-resumed", hidden: true });
  const sendStep = h(
    "div",
    { class: "upload-step", "data-step": "transfer" },
    h("label", { for: "upload-progress" }, "Upload progress"),
    sendBar,
    sendText,
    resumed,
  );

  const processBar = h("progress", { id: "process-progress", max: "100" });
  const processText = h("p", { id: "process-progress-text", class: "progress-text" });
  const processStep = h(
    "div",
    { class: "upload-step", "data-step": "processing", hidden: true },
    h("label", { for: "process-progress" }, "Processing progress"),
    processBar,
    processText,
  );

  const problem = h("div", { class: "upload-problem", role: "alert" });
  const note = h("p", { class: "upload-note", role: "status" });
  const result = h("div", { class: "upload-result", hidden: true });

  const pause = h("button", { type: "button" }, "Pause");
  const resume = h("button", { type: "button", class: "primary" }, "Resume");
  const cancel = h("button", { type: "button" }, "Cancel upload");
  const recheck = h("button", { type: "button", class: "primary" }, "Check again");
  const again = h("button", { type: "button" }, "Choose another file");
  const buttonList = [pause, resume, cancel, recheck, again];
  const buttons = h("div", { class: "upload-actions" }, ...buttonList);

  // Polite announcements: phase changes and each quarter of the transfer.
  const announce = h("p", { class: "upload-sr-only", "aria-live": "polite", "aria-atomic": "true" });

  const element = h(
    "section",
    { class: "upload-job", "aria-labelledby": "upload-job-title" },
    heading,
    file,
    sendStep,
    processStep,
    problem,
    note,
    result,
    buttons,
    announce,
  );

  let job: UploadJob | null = null;
  let lastPhase = "";
  let lastQuarter = -1;
  let shownResult: Snapshot["result"] = null;
  let shownProblem = "";

  pause.addEventListener("click", () => {
    job?.pause();
    resume.focus();
  });
  resume.addEventListener("click", () => {
    job?.resume();
    pause.focus();
  });
  cancel.addEventListener("click", () => {
    const j = job;
    if (j === null) return;
    void j.cancel();
    actions.done(true);
  });
  recheck.addEventListener("click", () => job?.retryWatch());
  again.addEventListener("click", () => {
    // After a refused file the details are kept for the next one; after an upload
    // that went through, the form starts empty.
    actions.done(job?.snapshot.phase === "upload-error");
  });

  function render(snap: Snapshot): void {
    element.dataset.state = snap.phase;
    if (snap.videoId) element.dataset.videoId = snap.videoId;
    const transfer = ["starting", "uploading", "paused", "upload-error"].includes(snap.phase);
    heading.textContent = HEADINGS[snap.phase];
    if (file.dataset.name !== snap.fileName) {
      file.dataset.name = snap.fileName;
      file.replaceChildren(
        ...(snap.title ? [h("strong", {}, `“${snap.title}”`), h("br")] : []),
        "File: ",
        h("strong", {}, snap.fileName),
        ` (${formatBytes(snap.total)})`,
      );
    }

    // The transfer.
    const pct = percentOf(snap.sent, snap.total);
    sendBar.value = pct;
    sendBar.textContent = `${pct} %`;
    sendText.textContent =
      snap.phase === "starting" && snap.sent === 0
        ? "Connecting…"
        : `${formatBytes(snap.sent)} of ${formatBytes(snap.total)} sent (${pct} %)` +
          (snap.phase === "paused" ? ", paused" : "");
    if (snap.resumedAt !== null) {
      resumed.hidden = false;
      resumed.textContent =
        snap.resumedAt > 0
          ? `Resumed at ${percentOf(snap.resumedAt, snap.total)} %: ` +
            `${formatBytes(snap.resumedAt)} were already on the server.`
          : "Resumed: the server had nothing of it yet.";
    }

    // The processing.
    processStep.hidden = transfer;
    if (!transfer) {
      const done = snap.phase === "published";
      const percent = done ? 100 : snap.percent;
      if (percent === null) {
        processBar.removeAttribute("value"); // indeterminate
        processBar.textContent = "Waiting";
      } else {
        processBar.value = Math.floor(percent);
        processBar.textContent = `${Math.floor(percent)} %`;
      }
      processText.textContent = done
        ? "Published"
        : snap.phase === "failed"
          ? "Failed"
          : `${stageLabel(snap.stage)}${percent === null ? "…" : ` · ${Math.floor(percent)} %`}`;
    }

    // Problems: the upload's (the server's error body) or the video's failure. Replaced
    // only when it changes, so the alert is announced once.
    const problemKey =
      snap.phase === "upload-error"
        ? `u:${snap.problem?.status}:${snap.problem?.detail}`
        : snap.phase === "failed"
          ? `f:${snap.failureReason}`
          : "";
    if (problemKey !== shownProblem) {
      shownProblem = problemKey;
      if (snap.phase === "upload-error" && snap.problem) {
        const p = snap.problem;
        problem.replaceChildren(
          h("strong", {}, p.title),
          h("p", {}, p.detail),
          ...(p.fields.length > 0 ? [h("ul", {}, ...p.fields.map((f) => h("li", {}, f)))] : []),
        );
      } else if (snap.phase === "failed") {
        problem.replaceChildren(h("strong", {}, "Processing failed"), h("p", {}, snap.failureReason));
      } else {
        problem.replaceChildren();
      }
    }
    if (note.textContent !== snap.note) note.textContent = snap.note;

    // Buttons: what can be done now. A focused button that goes away hands the focus
    // to the next thing to do (or the heading), not to the page's body.
    const focused = buttonList.find((b) => b === document.activeElement);
    const retryable = snap.phase === "upload-error" && !!snap.problem?.retryable;
    pause.hidden = !(snap.phase === "uploading" || snap.phase === "starting");
    resume.hidden = !(snap.phase === "paused" || retryable);
    cancel.hidden = !transfer || (snap.phase === "upload-error" && !retryable);
    recheck.hidden = snap.phase !== "watch-error" || snap.videoId === "" || !snap.watchRetryable;
    again.hidden = transfer && !(snap.phase === "upload-error" && !retryable);
    again.textContent = snap.phase === "upload-error" ? "Choose another file" : "Upload another video";
    if (focused?.hidden) (buttonList.find((b) => !b.hidden) ?? heading).focus();

    if (snap.result !== shownResult) {
      shownResult = snap.result;
      renderResult(snap);
    }

    // Announcements.
    if (snap.phase !== lastPhase) {
      lastPhase = snap.phase;
      announce.textContent = ANNOUNCE[snap.phase](snap);
    } else if (snap.phase === "uploading") {
      const quarter = Math.floor(pct / 25);
      if (quarter !== lastQuarter && quarter > 0 && quarter < 4) announce.textContent = `${pct} % uploaded`;
      lastQuarter = quarter;
    }
  }

  function renderResult(snap: Snapshot): void {
    const r = snap.result;
    result.hidden = r === null;
    if (r === null) {
      result.replaceChildren();
      return;
    }
    const title = r.title || "Untitled";
    const media = r.thumbnailUrl
      ? h("img", {
          class: "upload-thumbnail",
          src: r.thumbnailUrl,
          alt: `Thumbnail of “${title}”`,
          ...(r.width > 0 && r.height > 0 ? { width: String(r.width), height: String(r.height) } : {}),
          decoding: "async",
        })
      : h("p", { class: "upload-thumbnail-missing" }, r.thumbnailNote);
    const facts = [
      r.durationSeconds > 0 ? formatDuration(r.durationSeconds) : "",
      r.width > 0 && r.height > 0 ? `${r.width}×${r.height}` : "",
    ].filter((s) => s !== "");
    const parts: (Node | null)[] = [
      h(
        "figure",
        {},
        media,
        h(
          "figcaption",
          {},
          h("strong", { class: "upload-result-title" }, title),
          facts.length > 0 ? h("span", { class: "meta" }, ` · ${facts.join(" · ")}`) : null,
        ),
      ),
      r.description ? h("p", { class: "upload-result-description" }, shorten(r.description, 300)) : null,
      r.hashtags.length > 0
        ? h("ul", { class: "upload-tags", "aria-label": "Hashtags" }, ...r.hashtags.map((t) => h("li", {}, `#${t}`)))
        : null,
      h(
        "p",
        { class: "upload-links" },
        h("a", { href: `/analytics/${encodeURIComponent(snap.videoId)}` }, "View its analytics"),
        " · ",
        h("a", { href: "/" }, "Go to the feed"),
      ),
    ];
    result.replaceChildren(...parts.filter((p): p is Node => p !== null));
  }

  return {
    element,
    attach(next: UploadJob): () => void {
      job = next;
      lastPhase = "";
      lastQuarter = -1;
      shownResult = null;
      shownProblem = "";
      delete file.dataset.name;
      resumed.hidden = true;
      const unsubscribe = next.subscribe(render);
      return () => {
        unsubscribe();
        if (job === next) job = null;
      };
    },
    focus(): void {
      heading.focus({ preventScroll: false });
    },
  };
}

function shorten(text: string, max: number): string {
  return charCount(text) <= max ? text : `${[...text].slice(0, max).join("")}…`;
}

const HEADINGS: Readonly<Record<Snapshot["phase"], string>> = {
  starting: "Starting the upload",
  uploading: "Uploading",
  paused: "Upload paused",
  "upload-error": "Upload stopped",
  processing: "Processing your video",
  published: "Published",
  failed: "Processing failed",
  "watch-error": "Uploaded",
};

const ANNOUNCE: Readonly<Record<Snapshot["phase"], (s: Snapshot) => string>> = {
  starting: () => "Starting the upload.",
  uploading: (s) => (s.resumedAt ? `Resumed at ${percentOf(s.resumedAt, s.total)} %.` : "Uploading."),
  paused: (s) => `Upload paused at ${percentOf(s.sent, s.total)} %.`,
  "upload-error": (s) => `Upload stopped: ${s.problem?.title ?? "error"}.`,
  processing: () => "Upload complete. Processing the video.",
  published: () => "Your video is published.",
  failed: (s) => `Processing failed: ${s.failureReason}`,
  "watch-error": (s) => s.note,
};
