// Number formatting for the analytics pages: one place decides how a count, a share
// and a duration read, so the overview and the video page agree.

const counts = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const shares = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });
const regions = safeDisplayNames();

/** 1234 → "1,234" (locale grouping); int64 fields arrive as bigint. */
export function formatCount(n: bigint | number): string {
  return counts.format(n);
}

/** 0.6667 → "66.7%" (a share 0..1). */
export function formatShare(share: number): string {
  return shares.format(Number.isFinite(share) ? share : 0);
}

/** Seconds as "42.5 s", or "3:05" from a minute on. */
export function formatSeconds(seconds: number): string {
  const s = Number.isFinite(seconds) && seconds > 0 ? seconds : 0;
  if (s < 60) return `${s.toFixed(1)} s`;
  const whole = Math.round(s);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

/** "DE" → "Germany" where the browser knows the region, else the code as it came. */
export function countryName(code: string): string {
  if (!/^[A-Za-z]{2}$/.test(code)) return code;
  try {
    return regions?.of(code.toUpperCase()) ?? code;
  } catch {
    return code;
  }
}

const DEVICES: Readonly<Record<string, string>> = {
  web: "Web",
  ios: "iOS",
  android: "Android",
  unspecified: "Unknown",
};

/** svc_stream's device keys ("web", "ios", ...) as people read them. */
export function deviceName(key: string): string {
  return DEVICES[key] ?? key;
}

function safeDisplayNames(): Intl.DisplayNames | null {
  try {
    return new Intl.DisplayNames(undefined, { type: "region" });
  } catch {
    return null;
  }
}
