// The app shell: header with the main navigation and who is signed in, one <main>
// the router renders pages into. Pages live in ./pages; each is a function of a
// PageContext (see router.ts) and calls the API through ./api.ts.
import "./style.css";
import { currentIdentity, onAuthChange, signOut, takeTokenFromUrl } from "./auth";
import { h } from "./dom";
import { analyticsPage } from "./pages/analytics";
import { feedPage } from "./pages/feed";
import { liveListPage, liveStreamPage } from "./pages/live";
import { notFoundPage } from "./pages/not-found";
import { signInPage } from "./pages/sign-in";
import { uploadPage } from "./pages/upload";
import { refresh, startRouter, type Match, type Route } from "./router";

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
