// Small formatting helpers of the live pages.
import { durationMs, timestampDate, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";
import { LiveStreamState } from "../gen/reels/v1/common_pb";

const counts = new Intl.NumberFormat();

export function viewers(n: bigint): string {
  return `${counts.format(n)} ${n === 1n ? "viewer" : "viewers"}`;
}

/** A Duration as "1 h 05 min", "12 min", "40 s". */
export function onAirFor(d: Duration | undefined): string {
  const s = d ? Math.max(0, Math.round(durationMs(d) / 1000)) : 0;
  if (s < 60) return `${s} s`;
  const min = Math.floor(s / 60);
  if (min < 60) return `${min} min`;
  return `${Math.floor(min / 60)} h ${String(min % 60).padStart(2, "0")} min`;
}

export function clock(ts: Timestamp | undefined): { text: string; iso: string } {
  const date = ts ? timestampDate(ts) : new Date();
  return { text: date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }), iso: date.toISOString() };
}

export function stateLabel(state: LiveStreamState): string {
  switch (state) {
    case LiveStreamState.LIVE:
      return "Live";
    case LiveStreamState.CREATED:
      return "Not started";
    case LiveStreamState.ENDED:
      return "Ended";
    default:
      return "Unknown";
  }
}

/** A fresh idempotency key (crypto.randomUUID needs a secure context; this does not). */
export function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
