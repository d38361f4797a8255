// Small text helpers for the upload page.

/** 1536 -> "1.5 KB", 4_200_000 -> "4.0 MB" (binary multiples, one decimal). */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return "?";
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** Whole percent of `part` in `total`, 0..100 (floor, so 100 only when complete). */
export function percentOf(part: number, total: number): number {
  if (total <= 0) return 0;
  return Math.max(0, Math.min(100, Math.floor((part / total) * 100)));
}

/** 75.4 -> "1:15". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** Characters as the server counts them (after NFC, code points). */
export function charCount(text: string): number {
  return [...text.normalize("NFC")].length;
}

const STAGES: Readonly<Record<string, string>> = {
  queued: "Waiting for a transcoder",
  starting: "Starting",
  probe: "Reading the video",
  encode: "Transcoding",
  transcode: "Transcoding",
  artifacts: "Making the thumbnail and previews",
  thumbnails: "Making the thumbnail and previews",
  publish: "Publishing",
  done: "Done",
};

/** The transcoder's stage name in words. */
export function stageLabel(stage: string): string {
  if (stage === "") return "Processing";
  return STAGES[stage] ?? stage.charAt(0).toUpperCase() + stage.slice(1).replace(/[_-]+/g, " ");
}
