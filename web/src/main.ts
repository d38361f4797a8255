// The app shell: header with the main navigation and who is signed in, one <main>
// the router renders pages into. Pages live in ./pages; each is a function of a
// PageContext (see router.ts) and calls the API through ./api.ts.
//
// Only the feed (the landing page) is in the entry chunk. Every other page is its own
// chunk, loaded with import() when its route is first shown (upload brings
// tus-js-client, analytics uPlot, live its player and chat), so the feed's first frame
// does not wait for code it never runs.
import "./style.css";
// First: it sends the feed's GetFeed while the modules below are still evaluated.
import "./feed/first-page";
import { currentIdentity, onAuthChange, signOut, takeTokenFromUrl } from "./auth";
import { h } from "./dom";
import { feedPage } from "./pages/feed";
import { refresh, startRouter, type Match, type Page, type Route } from "./router";

/** A page in its own chunk, loaded on first use (the module is cached after). A chunk
 * that does not load (offline) says so, with a retry. */
function lazy(load: () => Promise<Page>): Page {
  let loaded: Promise<Page> | null = null;
  return async (ctx) => {
    loaded ??= load();
    let page: Page;
    try {
      page = await loaded;
    } catch (err) {
      loaded = null; // tried again on the next render
      if (ctx.signal.aborted) return;
      console.error(err);
      const retry = h("button", { type: "button" }, "Try again");
      retry.addEventListener("click", () => void refresh());
      ctx.root.replaceChildren(
        h("p", { class: "status", role: "alert" }, "This page could not be loaded. Check the connection. ", retry),
      );
      return;
    }
    if (!ctx.signal.aborted) await page(ctx);
  };
}

const uploadPage = lazy(() => import("./pages/upload").then((m) => m.uploadPage));
const analyticsPage = lazy(() => import("./pages/analytics").then((m) => m.analyticsPage));
const liveListPage = lazy(() => import("./pages/live").then((m) => m.liveListPage));
const liveStreamPage = lazy(() => import("./pages/live").then((m) => m.liveStreamPage));
const signInPage = lazy(() => import("./pages/sign-in").then((m) => m.signInPage));
const notFoundPage = lazy(() => import("./pages/not-found").then((m) => m.notFoundPage));

const NAV: readonly { key: string; href: string; label: string }[] = [
  { key: "feed", href: "/", label: "Feed" },
  { key: "upload", href: "/upload", label: "Upload" },
  { key: "analytics", href: "/analytics", label: "Analytics" },
  { key: "live", href: "/live", label: "Live" },
];

const ROUTES: readonly Route[] = [
  { path: "/", title: "Feed", nav: "feed", page: feedPage },
  { path: "/feed", title: "Feed", nav: "feed", page: feedPage },
  { path: "/upload", title: "Upload", nav: "upload", page: uploadPage },
  { path: "/analytics", title: "Analytics", nav: "analytics", page: analyticsPage },
  { path: "/analytics/:id", title: "Analytics", nav: "analytics", page: analyticsPage },
  { path: "/live", title: "Live", nav: "live", page: liveListPage },
  { path: "/live/:id", title: "Live", nav: "live", page: liveStreamPage },
  { path: "/sign-in", title: "Sign in", public: true, page: signInPage },
];

takeTokenFromUrl();

const main = h("main", { id: "main", tabindex: "-1" });
const session = h("div", { class: "session" });
const navLinks = new Map(NAV.map((item) => [item.key, h("a", { href: item.href }, item.label)]));
const shell = [
  h("a", { class: "skip-link", href: "#main" }, "Skip to content"),
  h(
    "header",
    { class: "app-header" },
    h("a", { class: "brand", href: "/" }, "Reels"),
    h("nav", { "aria-label": "Main" }, h("ul", {}, ...[...navLinks.values()].map((a) => h("li", {}, a)))),
    session,
  ),
  main,
];
document.getElementById("app")?.replaceChildren(...shell);

function renderSession(): void {
  const who = currentIdentity();
  if (who === null) {
    session.replaceChildren(h("a", { href: "/sign-in" }, "Sign in"));
    return;
  }
  const out = h("button", { type: "button" }, "Sign out");
  out.addEventListener("click", () => signOut());
  session.replaceChildren(h("span", { class: "who" }, "Signed in as ", h("strong", {}, who.user)), " ", out);
}

let firstRender = true;

async function render(found: Match | null, url: URL, signal: AbortSignal): Promise<void> {
  const route = found?.route;
  for (const [key, link] of navLinks) {
    if (route?.nav === key) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  main.replaceChildren();
  // Signed out: the sign-in form in the page's place; signing in renders the page.
  const page = route === undefined ? notFoundPage : route.public || currentIdentity() ? route.page : signInPage;
  const title = route === undefined ? "Not found" : page === signInPage ? "Sign in" : route.title;
  document.title = `${title} · Reels`;
  // After a navigation (not the first load), focus goes to the new content, so screen
  // readers announce it and keyboard users start there.
  if (!firstRender) main.focus({ preventScroll: true });
  firstRender = false;
  await page({ root: main, params: found?.params ?? {}, query: url.searchParams, signal });
}

onAuthChange(() => {
  renderSession();
  void refresh();
});
renderSession();
startRouter({ routes: ROUTES, render });
