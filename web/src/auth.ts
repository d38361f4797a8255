// The signed-in user's token, in memory only: never localStorage, sessionStorage or a
// cookie, so a reload signs out and nothing outlives the tab. In dev the token comes
// from the dev issuer (`make token AS=alice`), pasted into the sign-in form, or from a
// `?token=` query parameter (tests), which is removed from the address bar at once.

export interface Identity {
  /** The token's `sub` claim: the user id Envoy forwards to the services. */
  readonly user: string;
  /** Expiry (the `exp` claim) in ms since the epoch; null when the token has none. */
  readonly expiresAt: number | null;
}

type Listener = (identity: Identity | null) => void;

/** Why the app signed out by itself, for the sign-in page to say (null: it did not,
 * or the user signed out). */
export interface SignOutNotice {
  readonly reason: "expired" | "refused";
  readonly message: string;
}

let token: string | null = null;
let identity: Identity | null = null;
let notice: SignOutNotice | null = null;
let expiryTimer: number | undefined;
const listeners = new Set<Listener>();

/** setTimeout's longest delay (about 24.8 days); a later expiry is checked again then. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The bearer token for API calls, or null when signed out. */
export function getToken(): string | null {
  return token;
}

/** Who is signed in (read from the token, unverified: Envoy verifies it), or null. */
export function currentIdentity(): Identity | null {
  return identity;
}

/** Why the app last signed out by itself (expired or refused token), until the next
 * sign-in; null otherwise. */
export function signOutNotice(): SignOutNotice | null {
  return notice;
}

/** A token whose `exp` has passed: refused at sign-in (the API would refuse it). */
export class ExpiredTokenError extends Error {
  constructor(readonly expiresAt: number) {
    super(`This token expired at ${formatExpiry(expiresAt)}; get a new one with make token`);
    this.name = "ExpiredTokenError";
  }
}

/** A time as the sign-in page shows it: the local date and time. */
export function formatExpiry(ms: number): string {
  return new Date(ms).toLocaleString([], { dateStyle: "medium", timeStyle: "medium" });
}

/** Signs in with `raw` (surrounding whitespace and a `Bearer ` prefix are dropped).
 * Throws when it is not a JWT or has expired; whether the API accepts it shows on the
 * first call. Signs out by itself when the token expires. */
export function signIn(raw: string): Identity {
  const cleaned = raw.trim().replace(/^bearer\s+/i, "");
  const decoded = decodeIdentity(cleaned);
  if (decoded.expiresAt !== null && decoded.expiresAt <= Date.now()) {
    throw new ExpiredTokenError(decoded.expiresAt);
  }
  token = cleaned;
  identity = decoded;
  notice = null;
  scheduleExpiry();
  notify();
  return decoded;
}

/** Signs out; `why` (when the app does it by itself) is shown on the sign-in page. */
export function signOut(why: SignOutNotice | null = null): void {
  if (token === null) return;
  window.clearTimeout(expiryTimer);
  token = null;
  identity = null;
  notice = why;
  notify();
}

/** The API refused `refused` (answered UNAUTHENTICATED / HTTP 401): sign out, saying
 * why — expired when its `exp` has passed, refused otherwise. Nothing when another
 * token is in use by now (a late answer to an earlier session's call). */
export function tokenRefused(refused: string | null = token): void {
  if (refused === null || refused !== token || identity === null) return;
  const exp = identity.expiresAt;
  if (exp !== null && exp <= Date.now()) {
    signOut(expiredNotice(exp));
    return;
  }
  signOut({
    reason: "refused",
    message:
      "You were signed out: the server refused your token (wrong issuer or audience, " +
      "a key that changed, or it expired). Get a new one with make token and sign in again.",
  });
}

function expiredNotice(exp: number): SignOutNotice {
  return {
    reason: "expired",
    message: `You were signed out: your token expired at ${formatExpiry(exp)}. Get a new one with make token and sign in again.`,
  };
}

function scheduleExpiry(): void {
  window.clearTimeout(expiryTimer);
  const exp = identity?.expiresAt ?? null;
  if (exp === null) return;
  const current = token;
  const wait = Math.max(0, exp - Date.now());
  expiryTimer = window.setTimeout(
    () => {
      if (token !== current) return;
      if (Date.now() >= exp) signOut(expiredNotice(exp));
      else scheduleExpiry(); // beyond one timer's reach: look again later
    },
    Math.min(wait, MAX_TIMER_MS),
  );
}

/** Calls `listener` on every sign-in and sign-out; returns the unsubscribe function. */
export function onAuthChange(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Signs in with the page URL's `?token=`, if any, and removes it from the address bar
 * (and so from history, bookmarks and the Referer of later requests). */
export function takeTokenFromUrl(): void {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl === null) return;
  url.searchParams.delete("token");
  window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
  try {
    signIn(fromUrl);
  } catch (err) {
    console.warn("ignoring ?token=:", err);
    if (err instanceof ExpiredTokenError) notice = { reason: "expired", message: `${err.message}.` };
  }
}

function notify(): void {
  for (const listener of listeners) listener(identity);
}

function decodeIdentity(jwt: string): Identity {
  const parts = jwt.split(".");
  const payload = parts.length === 3 ? parts[1] : undefined;
  if (!payload) throw new Error("not a JWT (expected three dot-separated parts)");
  let claims: unknown;
  try {
    const b64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    claims = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new Error("not a JWT (its payload is not base64url JSON)");
  }
  if (typeof claims !== "object" || claims === null) throw new Error("not a JWT payload");
  const { sub, exp } = claims as { sub?: unknown; exp?: unknown };
  if (typeof sub !== "string" || sub === "") throw new Error("the token has no subject (sub)");
  return { user: sub, expiresAt: typeof exp === "number" ? exp * 1000 : null };
}
