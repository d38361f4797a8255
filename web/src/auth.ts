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

let token: string | null = null;
let identity: Identity | null = null;
const listeners = new Set<Listener>();

/** The bearer token for API calls, or null when signed out. */
export function getToken(): string | null {
  return token;
}

/** Who is signed in (read from the token, unverified: Envoy verifies it), or null. */
export function currentIdentity(): Identity | null {
  return identity;
}

/** Signs in with `raw` (surrounding whitespace and a `Bearer ` prefix are dropped).
 * Throws when it is not a JWT; whether the API accepts it shows on the first call. */
export function signIn(raw: string): Identity {
  const cleaned = raw.trim().replace(/^bearer\s+/i, "");
  const decoded = decodeIdentity(cleaned);
  token = cleaned;
  identity = decoded;
  notify();
  return decoded;
}

export function signOut(): void {
  if (token === null) return;
  token = null;
  identity = null;
  notify();
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
