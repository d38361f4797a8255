// Sign-in for development: paste a token from the dev issuer (`make token AS=alice`).
// The token stays in memory (auth.ts); a reload signs out.
import { currentIdentity, ExpiredTokenError, signIn, signOutNotice } from "../auth";
import { h } from "../dom";
import { navigate, type PageContext } from "../router";

export function signInPage({ root, query }: PageContext): void {
  const onSignInRoute = window.location.pathname.replace(/\/+$/, "") === "/sign-in";
  const next = safeNext(query.get("next"));
  const who = currentIdentity();
  if (who !== null) {
    root.append(
      h("h1", {}, "Signed in"),
      h("p", {}, "You are signed in as ", h("strong", {}, who.user), ". ", h("a", { href: next }, "Go on")),
    );
    return;
  }
  const field = h("textarea", {
    id: "token",
    name: "token",
    rows: "4",
    required: true,
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "token-help token-error",
  });
  const error = h("p", { id: "token-error", class: "error", role: "alert" });
  // Why the app signed out by itself (the token expired, or the API refused it).
  const notice = signOutNotice();
  const signedOut = notice
    ? h("p", { id: "sign-out-notice", class: "notice", role: "alert", "data-reason": notice.reason }, notice.message)
    : null;
  const form = h(
    "form",
    { class: "sign-in", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title" }, "Sign in"),
    signedOut,
    h("label", { for: "token" }, "Dev token"),
    field,
    h(
      "p",
      { id: "token-help", class: "help" },
      "Paste the output of ",
      h("code", {}, "make token AS=alice"),
      ". It is kept in this tab's memory only: a reload signs you out.",
    ),
    error,
    h("button", { type: "submit" }, "Sign in"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      signIn(field.value);
    } catch (err) {
      error.textContent =
        err instanceof ExpiredTokenError
          ? `${err.message}.`
          : `That is not a token: ${err instanceof Error ? err.message : String(err)}.`;
      field.focus();
      return;
    }
    if (onSignInRoute) navigate(next, { replace: true });
  });
  root.append(form);
  if (!onSignInRoute) field.focus({ preventScroll: true });
}

/** `?next=` only when it is a path on this origin (no open redirect). */
function safeNext(next: string | null): string {
  return next !== null && next.startsWith("/") && !next.startsWith("//") ? next : "/";
}
