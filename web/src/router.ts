// A tiny History API router: paths like "/live/:id" map to pages. Envoy answers every
// app-looking path with index.html (SPA fallback), so deep links and reloads work.
// Same-origin <a href> clicks are handled here when their path is a route; any other
// link (the JSON API, media, downloads, target=...) is left to the browser.

export interface PageContext {
  /** Where the page renders; emptied before each page. */
  readonly root: HTMLElement;
  /** The route's `:name` parameters, decoded. */
  readonly params: Readonly<Record<string, string>>;
  /** The URL's query parameters. */
  readonly query: URLSearchParams;
  /** Aborted when the user leaves the page: pass it to API calls (`{ signal }`). */
  readonly signal: AbortSignal;
}

export type Page = (ctx: PageContext) => void | Promise<void>;

export interface Route {
  /** "/", "/feed", "/live/:id" (segments; `:name` matches one non-empty segment). */
  readonly path: string;
  /** The document title's first part. */
  readonly title: string;
  readonly page: Page;
  /** Which main-navigation entry is current on this route. */
  readonly nav?: string;
  /** Reachable while signed out (otherwise the sign-in page shows in its place). */
  readonly public?: boolean;
}

export interface Match {
  readonly route: Route;
  readonly params: Record<string, string>;
}

export interface RouterOptions {
  readonly routes: readonly Route[];
  /** Renders a match (or null: no route) into the page; called on every navigation. */
  readonly render: (match: Match | null, url: URL, signal: AbortSignal) => void | Promise<void>;
}

let options: RouterOptions | null = null;
let current: AbortController | null = null;

/** Finds the route for `pathname` (a trailing slash is ignored). */
export function match(routes: readonly Route[], pathname: string): Match | null {
  const want = split(pathname);
  for (const route of routes) {
    const have = split(route.path);
    if (have.length !== want.length) continue;
    const params: Record<string, string> = {};
    const ok = have.every((seg, i) => {
      const got = want[i] ?? "";
      if (seg.startsWith(":")) {
        params[seg.slice(1)] = safeDecode(got);
        return got !== "";
      }
      return seg === got;
    });
    if (ok) return { route, params };
  }
  return null;
}

export function startRouter(opts: RouterOptions): void {
  options = opts;
  window.addEventListener("popstate", () => void refresh());
  document.addEventListener("click", onClick);
  void refresh();
}

/** Goes to `path` (same origin), adding a history entry unless `replace`. */
export function navigate(path: string, { replace = false } = {}): void {
  const url = new URL(path, window.location.href);
  if (url.href !== window.location.href) {
    if (replace) window.history.replaceState(null, "", url);
    else window.history.pushState(null, "", url);
  }
  void refresh();
}

/** Renders the current URL again (after signing in or out, say). */
export async function refresh(): Promise<void> {
  if (!options) return;
  current?.abort();
  const controller = new AbortController();
  current = controller;
  const url = new URL(window.location.href);
  await options.render(match(options.routes, url.pathname), url, controller.signal);
}

function onClick(event: MouseEvent): void {
  if (!options || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = (event.target as Element | null)?.closest?.("a[href]");
  if (!(link instanceof HTMLAnchorElement)) return;
  if (link.target || link.hasAttribute("download") || link.relList.contains("external")) return;
  const url = new URL(link.href);
  if (url.origin !== window.location.origin) return;
  if (!match(options.routes, url.pathname)) return;
  event.preventDefault();
  navigate(url.pathname + url.search + url.hash);
}

function split(path: string): string[] {
  return path.split("/").filter((s) => s !== "");
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
