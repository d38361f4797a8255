// Upload: a video file with its title, description and hashtags, sent with tus (resumable,
// in chunks, with progress; web/src/upload/tus.ts), then the transcoding followed over
// the server-streamed status, then the published video with its thumbnail
// (web/src/upload/job.ts, panel.ts).
//
// After a reload (or a lost connection) choosing the same file again continues the
// upload where the server's offset stands: tus-js-client keeps the upload URL in
// localStorage (never the token). `?chunk=<bytes>` lowers the chunk size (tests, slow
// links); see chunkSizeFrom for the bounds.
import "../upload/upload.css";
import { currentIdentity, onAuthChange } from "../auth";
import { h } from "../dom";
import type { PageContext } from "../router";
import { charCount, formatBytes } from "../upload/format";
import { currentJob, setCurrentJob, UploadJob } from "../upload/job";
import { hashtagNotes } from "../upload/hashtags";
import { createPanel } from "../upload/panel";
import {
  chunkSizeFrom,
  describeTusError,
  discardStored,
  storedUploadOf,
  storedUploads,
  TUS_ENDPOINT,
  type StoredUpload,
} from "../upload/tus";

// svc_upload's limits (svc_upload/limits.py UploadLimits); the server checks them again
// and its answer (field violations) is shown when it refuses.
const TITLE_MAX = 150;
const DESCRIPTION_MAX = 2200;

// A sign-out (or another user signing in) stops this tab's upload: its requests would
// go out without the token. The server keeps what it received; choosing the same file
// after signing in again continues it.
onAuthChange((who) => {
  const job = currentJob();
  if (job !== null && (who === null || who.user !== job.user)) setCurrentJob(null);
});

export async function uploadPage({ root, query, signal }: PageContext): Promise<void> {
  const who = currentIdentity();
  if (who === null) return;
  const user = who.user;
  const chunkSize = chunkSizeFrom(query);

  // --- the form -------------------------------------------------------------------
  const fileInput = h("input", {
    type: "file",
    id: "upload-file",
    name: "file",
    accept: "video/*",
    required: true,
    "aria-describedby": "upload-file-help upload-file-note",
  });
  const fileHelp = h("p", { id: "upload-file-help", class: "help" }, "A video file (MP4, MOV, WebM, …).");
  const fileNote = h("p", { id: "upload-file-note", class: "upload-resume-note", "aria-live": "polite" });

  const titleInput = h("input", {
    type: "text",
    id: "upload-title-input",
    name: "title",
    autocomplete: "off",
    "aria-describedby": "upload-title-help upload-title-count",
  });
  const titleCount = h("span", { id: "upload-title-count", class: "upload-count" });
  const descriptionInput = h("textarea", {
    id: "upload-description",
    name: "description",
    rows: "3",
    "aria-describedby": "upload-description-count",
  });
  const descriptionCount = h("span", { id: "upload-description-count", class: "upload-count" });
  const hashtagsInput = h("input", {
    type: "text",
    id: "upload-hashtags",
    name: "hashtags",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "#dance #citylife",
    "aria-describedby": "upload-hashtags-help upload-hashtags-note",
  });
  // Which typed tags the server will drop or split (emoji, punctuation), said as the
  // user types: advice, not a refusal.
  const hashtagsNote = h("p", { id: "upload-hashtags-note", class: "help upload-hashtags-note", "aria-live": "polite", hidden: true });
  const updateHashtagsNote = (): void => {
    const notes = hashtagNotes(hashtagsInput.value);
    hashtagsNote.replaceChildren(...notes.map((n) => h("span", { class: "upload-hashtag-note" }, n)));
    hashtagsNote.hidden = notes.length === 0;
  };
  hashtagsInput.addEventListener("input", updateHashtagsNote);

  const formError = h("p", { id: "upload-form-error", class: "error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary" }, "Upload");
  const startOver = h("button", { type: "button", hidden: true }, "Start over instead");
  const fieldset = h(
    "fieldset",
    { class: "upload-fields" },
    h("legend", { class: "upload-sr-only" }, "Video and details"),
    h(
      "div",
      { class: "upload-field" },
      h("label", { for: "upload-file" }, "Video file"),
      fileInput,
      fileHelp,
      fileNote,
    ),
    h(
      "div",
      { class: "upload-field" },
      h("label", { for: "upload-title-input" }, "Title"),
      titleInput,
      h(
        "p",
        { class: "help upload-help-row" },
        h("span", { id: "upload-title-help" }, "Optional: the file name is used when empty."),
        titleCount,
      ),
    ),
    h(
      "div",
      { class: "upload-field" },
      h("label", { for: "upload-description" }, "Description"),
      descriptionInput,
      h("p", { class: "help upload-help-row" }, h("span", {}, "Optional."), descriptionCount),
    ),
    h(
      "div",
      { class: "upload-field" },
      h("label", { for: "upload-hashtags" }, "Hashtags"),
      hashtagsInput,
      h("p", { id: "upload-hashtags-help", class: "help" }, "Optional: up to 30, separated by spaces or commas."),
      hashtagsNote,
    ),
    formError,
    h("div", { class: "upload-actions" }, submit, startOver),
  );
  const form = h("form", { class: "upload-form", "aria-labelledby": "upload-title", novalidate: true }, fieldset);

  // --- unfinished uploads in this browser --------------------------------------------
  const storedList = h("ul", { class: "upload-stored-list" });
  const storedBox = h(
    "section",
    { class: "upload-stored", "aria-labelledby": "upload-stored-title", hidden: true },
    h("h2", { id: "upload-stored-title" }, "Unfinished uploads"),
    h("p", { class: "help" }, "Choose the same file again to continue where it stopped."),
    storedList,
  );

  const panel = createPanel({ done: (keepDetails) => showForm(keepDetails) });
  panel.element.hidden = true;

  const section = h(
    "section",
    { class: "upload", "aria-labelledby": "upload-title" },
    h("h1", { id: "upload-title" }, "Upload"),
    storedBox,
    form,
    panel.element,
  );
  root.append(section);

  // --- behaviour -----------------------------------------------------------------------
  let resumeFrom: StoredUpload | null = null;
  let detach: (() => void) | null = null;
  signal.addEventListener("abort", () => detach?.(), { once: true });

  const counter = (field: HTMLInputElement | HTMLTextAreaElement, out: HTMLElement, max: number) => {
    const n = charCount(field.value);
    out.textContent = `${n} / ${max}`;
    out.classList.toggle("over", n > max);
    field.setAttribute("aria-invalid", String(n > max));
  };
  const counters = (): void => {
    counter(titleInput, titleCount, TITLE_MAX);
    counter(descriptionInput, descriptionCount, DESCRIPTION_MAX);
  };
  titleInput.addEventListener("input", counters);
  descriptionInput.addEventListener("input", counters);
  counters();

  const setResume = (stored: StoredUpload | null): void => {
    resumeFrom = stored;
    for (const field of [titleInput, descriptionInput, hashtagsInput]) field.readOnly = stored !== null;
    submit.textContent = stored === null ? "Upload" : "Resume upload";
    startOver.hidden = stored === null;
    if (stored === null) {
      fileNote.textContent = "";
      return;
    }
    titleInput.value = stored.metadata.title ?? "";
    descriptionInput.value = stored.metadata.description ?? "";
    hashtagsInput.value = stored.metadata.hashtags ?? "";
    updateHashtagsNote();
    counters();
    const when = stored.createdAt ? ` on ${stored.createdAt.toLocaleString()}` : "";
    fileNote.textContent =
      `This file was partly uploaded${when}. Resume continues where it stopped; ` +
      "its details were sent then and stay as they are.";
  };

  const refreshStored = async (): Promise<void> => {
    const list = await storedUploads(user).catch(() => []);
    if (signal.aborted) return;
    storedBox.hidden = list.length === 0 || !panel.element.hidden;
    storedList.replaceChildren(...list.map(storedItem));
  };

  const storedItem = (stored: StoredUpload): HTMLLIElement => {
    const name = stored.metadata.filename ?? "a file";
    const title = stored.metadata.title;
    const discard = h(
      "button",
      { type: "button", "aria-label": `Discard the unfinished upload of ${name}` },
      "Discard",
    );
    discard.addEventListener("click", () => {
      discard.disabled = true;
      void discardStored(stored)
        .then(async () => {
          if (resumeFrom?.key === stored.key) setResume(null);
          await refreshStored();
          (storedList.querySelector("button") ?? fileInput).focus();
        })
        .catch((err: unknown) => {
          discard.disabled = false;
          formError.textContent = `Could not discard it: ${discardProblem(err)}`;
        });
    });
    return h(
      "li",
      {},
      h("span", { class: "upload-stored-name" }, title ? `“${title}” (${name})` : name),
      " ",
      h(
        "span",
        { class: "meta" },
        `${formatBytes(stored.size)}${stored.createdAt ? `, started ${stored.createdAt.toLocaleString()}` : ""}`,
      ),
      " ",
      discard,
    );
  };

  const onFile = async (): Promise<void> => {
    formError.textContent = "";
    const file = fileInput.files?.[0] ?? null;
    if (resumeFrom !== null) setResume(null);
    if (file === null) return;
    const stored = await storedUploadOf(user, file).catch(() => null);
    if (signal.aborted || fileInput.files?.[0] !== file) return; // changed meanwhile
    if (stored !== null && stored.size === file.size) setResume(stored);
  };
  fileInput.addEventListener("change", () => void onFile());

  startOver.addEventListener("click", () => {
    const stored = resumeFrom;
    if (stored === null) return;
    startOver.disabled = true;
    void discardStored(stored)
      .then(() => {
        setResume(null);
        fileNote.textContent = "The earlier upload was discarded: this one starts from the beginning.";
        titleInput.focus();
        return refreshStored();
      })
      .catch((err: unknown) => {
        formError.textContent = `Could not discard the earlier upload: ${discardProblem(err)}`;
      })
      .finally(() => {
        startOver.disabled = false;
      });
  });

  const refuse = (message: string, field: HTMLElement): void => {
    formError.textContent = message;
    field.focus();
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    formError.textContent = "";
    const file = fileInput.files?.[0];
    if (file === undefined) return refuse("Choose a video file first.", fileInput);
    if (file.size === 0) return refuse(`“${file.name}” is empty. Choose a video file.`, fileInput);
    if (file.type !== "" && !file.type.startsWith("video/")) {
      return refuse(`“${file.name}” is not a video (its type is ${file.type}). Choose a video file.`, fileInput);
    }
    if (charCount(titleInput.value) > TITLE_MAX) {
      return refuse(`The title is too long: at most ${TITLE_MAX} characters.`, titleInput);
    }
    if (charCount(descriptionInput.value) > DESCRIPTION_MAX) {
      return refuse(`The description is too long: at most ${DESCRIPTION_MAX} characters.`, descriptionInput);
    }
    const job = new UploadJob({
      user,
      file,
      details: { title: titleInput.value, description: descriptionInput.value, hashtags: hashtagsInput.value },
      chunkSize,
      resume: resumeFrom,
    });
    setCurrentJob(job);
    showJob(job);
    job.start();
    panel.focus();
  });

  function showJob(job: UploadJob): void {
    detach?.();
    const { details } = job;
    titleInput.value = details.title;
    descriptionInput.value = details.description;
    hashtagsInput.value = details.hashtags;
    updateHashtagsNote();
    counters();
    // The form stays in the page (disabled, hidden) while the job is shown: on a phone
    // the progress is what matters, and "Choose another file" brings the form back.
    fieldset.disabled = true;
    form.hidden = true;
    storedBox.hidden = true;
    panel.element.hidden = false;
    section.dataset.state = "job";
    detach = panel.attach(job);
  }

  function showForm(keepDetails: boolean): void {
    detach?.();
    detach = null;
    setCurrentJob(null);
    panel.element.hidden = true;
    fieldset.disabled = false;
    form.hidden = false;
    section.dataset.state = "form";
    fileInput.value = ""; // the file was sent, or was the problem
    setResume(null);
    if (!keepDetails) form.reset();
    counters();
    void refreshStored();
    fileInput.focus();
  }

  // The size limit, for the help text (tus discovery is public; best effort).
  void fetch(TUS_ENDPOINT, { method: "OPTIONS", signal })
    .then((res) => {
      const max = Number(res.headers.get("Tus-Max-Size") ?? "");
      if (Number.isFinite(max) && max > 0) {
        fileHelp.textContent = `A video file (MP4, MOV, WebM, …), up to ${formatBytes(max)}.`;
      }
    })
    .catch(() => undefined);

  const running = currentJob();
  if (running !== null && running.user === user) {
    showJob(running);
  } else {
    section.dataset.state = "form";
    await refreshStored();
  }
}

/** Why a tus termination (Discard, Start over) failed, in a few words. */
function discardProblem(err: unknown): string {
  const problem = describeTusError(err);
  if (problem.status === 0) return "the server could not be reached. Try again.";
  return `${problem.title} (HTTP ${problem.status}). ${problem.detail}`;
}
