// The feed's first page (FeedService.GetFeed), asked for as early as the app can: main.ts
// imports this module before the rest of the app, so the call is on the wire while the
// rest is still being evaluated (the other services' descriptors, the feed's views, the
// shell) instead of after it. Only on the feed's paths and when signed in (a token in the
// address: the token lives in memory, so a fresh load has no other); pages/feed.ts takes
// the answer (once) and asks again itself on a retry or a later visit.
import { apiClient } from "../api";
import { currentIdentity, takeTokenFromUrl } from "../auth";
import { FeedService, type GetFeedResponse } from "../gen/reels/v1/rank_pb";

/** Reels per GetFeed page. */
export const PAGE_SIZE = 20;

let early: Promise<GetFeedResponse> | null = null;

/** The first page asked for at start, or null (not the feed, signed out, or taken). */
export function takeFirstPage(): Promise<GetFeedResponse> | null {
  const page = early;
  early = null;
  return page;
}

takeTokenFromUrl(); // (main.ts calls it too; the second call finds nothing to take)
if (/^\/(feed\/?)?$/.test(window.location.pathname) && currentIdentity() !== null) {
  early = apiClient(FeedService).getFeed({ limit: PAGE_SIZE, cursor: "" });
  early.catch(() => undefined); // the feed page awaits it and shows the error
}
