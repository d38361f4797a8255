"""What GetFeed serves when it cannot afford to build a ranked list: the stale list.

Building a list (five candidate sources, hydration, scoring, signing) costs tens of
milliseconds of this process's one CPU; serving a cached page costs about one. Under
more load than the builds can keep up with, queueing them only makes every feed late
and then failed (the issue-14 measurement: 503s at 700 req/s). So builds are bounded
(``REELS_RANK_MAX_CONCURRENT_BUILDS``, a :class:`reels.admission.Admission`); a GetFeed
that finds no build slot within ``REELS_RANK_BUILD_WAIT_MS`` serves a page of the
**stale list** instead, flagged ``FEED_FALLBACK_OVERLOAD``:

* the region's trending videos (svc_stream), ``REELS_RANK_STALE_FEED_SIZE`` of them,
  looked up in the catalog and **signed once** per ``REELS_RANK_STALE_FEED_TTL_S``, so
  a degraded page costs a Redis read or two and no call to another service;
* filtered for the user like any list (not their own videos, not re-uploads, not
  creators they see fewer of, not what they were served lately); when that leaves
  too few, videos served before fill the page, flagged ``FEED_REASON_SEEN_BEFORE``;
* never stored as the user's list: their next page builds a personalized list again
  as soon as there is capacity (the cursor names a list id nobody caches).

The same stale list is what GetFeed serves when a **dependency is down** and the
list it built for the user came out empty (Redis down: no user state, and trending
is svc_stream's Redis too; what is left may have nothing for this user). An empty
page with ``has_more`` false reads as "end of feed" to a client, so instead: a page
of the stale list, filtered the same way (what Redis cannot tell, served history
and see-fewer, is left unfiltered), flagged ``FEED_FALLBACK_OVERLOAD`` plus the
outage's own flag (``FEED_FALLBACK_UNCACHED`` for Redis), its items explained as
shown "while your feed is unavailable" (:data:`OUTAGE_EXPLANATION`). With no stale
list at all (a fresh process whose dependencies were down from the start) GetFeed
answers UNAVAILABLE with RetryInfo rather than an empty page.

Cached lists (the hit path) are never degraded. The stale list is refreshed in the
background once it is older than its TTL, by one task per region; an older list is
served meanwhile, and a failed refresh keeps the old one. Only when no stale list
could ever be made (svc_stream down since start) does GetFeed wait for a build slot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from redis.exceptions import RedisError
from reels.v1 import rank_pb2

from svc_rank.candidate import Candidate, ListItem, SourceUnavailable
from svc_rank.feature_hydrator.counters import empty as empty_counters
from svc_rank.feature_hydrator.counters import video_counters
from svc_rank.feed import sign_items
from svc_rank.filter.eligibility import eligible
from svc_rank.index.catalog import Catalog
from svc_rank.stream_client import StreamClient

log = logging.getLogger(__name__)

EXPLANATION = "Trending now (shown while your feed is busy)"
OUTAGE_EXPLANATION = "Trending now (shown while your feed is unavailable)"
SEEN_BEFORE_EXPLANATION = "Seen before: shown while your feed is busy"
SEEN_BEFORE_OUTAGE_EXPLANATION = "Seen before: shown while your feed is unavailable"
# After a failed first refresh, callers go straight to waiting for a build slot for
# this long (s) rather than each trying svc_stream again.
RETRY_AFTER_FAILURE_S = 1.0


@dataclass(frozen=True, slots=True)
class _Snapshot:
    items: tuple[ListItem, ...]
    made_at: float  # monotonic seconds


class StaleFeed:
    """Per region, the last trending list made playable (signed), for overload pages."""

    def __init__(
        self,
        stream: StreamClient,
        catalog: Catalog,
        redis: object,
        *,
        size: int,
        ttl_s: float,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.catalog = catalog
        self.redis = redis
        self.size = size
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._lists: dict[str, _Snapshot] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._failed_at: dict[str, float] = {}

    async def items(self, region: str) -> list[ListItem] | None:
        """The region's stale list (copies), or None when none could be made yet.

        A list older than the TTL is returned as it is while a background task
        refreshes it; with no list at all this waits for the first one."""
        snap = self._lists.get(region)
        if snap is None:
            failed = self._failed_at.get(region)
            if failed is not None and self._clock() - failed < RETRY_AFTER_FAILURE_S:
                return None  # svc_stream just failed us: do not pile more calls on it
            await asyncio.shield(self._refresh_task(region))  # one refresh, many waiters
            snap = self._lists.get(region)
            if snap is None:
                return None
        elif self._clock() - snap.made_at > self.ttl_s:
            self._refresh_task(region)
        return [replace(i) for i in snap.items]

    def warm(self, region: str) -> None:
        """Start making the region's first stale list in the background (no-op once
        there is one, while one is being made, or just after a failure), so the first
        overload finds it ready."""
        if region in self._lists or region in self._refreshing:
            return
        failed = self._failed_at.get(region)
        if failed is not None and self._clock() - failed < RETRY_AFTER_FAILURE_S:
            return
        self._refresh_task(region)

    def _refresh_task(self, region: str) -> asyncio.Task[None]:
        task = self._refreshing.get(region)
        if task is None:
            task = asyncio.create_task(self._refresh(region))
            self._refreshing[region] = task
            task.add_done_callback(lambda _t: self._refreshing.pop(region, None))
        return task

    async def _refresh(self, region: str) -> None:
        try:
            rows = await self.stream.trending(
                limit=self.size, region=region, timeout_s=self.timeout_s
            )
            if region and not rows:
                rows = await self.stream.trending(limit=self.size, timeout_s=self.timeout_s)
            ids = [vid for vid, _ in rows]
            catalog = await self.catalog.get_many(ids)
            try:
                counts = await video_counters(self.redis, ids)  # type: ignore[arg-type]
            except (RedisError, OSError):
                counts = {}
            items = []
            for vid, score in rows:
                video = catalog.get(vid)
                if video is None or not video.master_playlist_key:
                    continue
                cnt = counts.get(vid) or empty_counters()
                plays = cnt["plays"]
                items.append(
                    ListItem(
                        video_id=vid,
                        creator_id=video.creator_id,
                        title=video.title,
                        duration_s=video.duration_s,
                        score=score,
                        reason=rank_pb2.FEED_REASON_TRENDING,
                        explanation=EXPLANATION,
                        view_count=cnt["views"],
                        like_count=cnt["likes"],
                        completion_rate=round(min(1.0, cnt["completions"] / plays), 4)
                        if plays
                        else 0.0,
                        signed=False,
                    )
                )
            await sign_items(self.stream, items, timeout_s=self.timeout_s)
        except (SourceUnavailable, RedisError, OSError) as exc:
            log.warning("stale feed list for region %r not refreshed: %s", region, exc)
            self._failed_at[region] = self._clock()
            return
        playable = tuple(i for i in items if i.streaming_url)
        self._lists[region] = _Snapshot(playable, self._clock())

    async def close(self) -> None:
        for task in list(self._refreshing.values()):
            task.cancel()


def for_user(
    items: list[ListItem],
    catalog: dict[str, object],
    *,
    user_id: str,
    served: set[str] | frozenset[str],
    hidden_creators: set[str] | frozenset[str],
    want: int,
    outage: bool = False,
) -> list[ListItem]:
    """The stale list as one user may see it: unseen eligible items first, then (only
    when fewer than ``want`` are left) eligible items served before, flagged
    ``FEED_REASON_SEEN_BEFORE``. ``outage``: served because a dependency is down,
    not for lack of capacity; the explanations say so."""
    by_id = {i.video_id: i for i in items}
    cands = [Candidate(i.video_id) for i in items]
    unseen = eligible(
        cands, catalog, user_id=user_id, served=served, hidden_creators=hidden_creators
    )
    out = [by_id[c.video_id] for c in unseen]
    if outage:
        for item in out:
            item.explanation = OUTAGE_EXPLANATION
    if len(out) < want:
        seen = eligible(
            cands, catalog, user_id=user_id, served=frozenset(), hidden_creators=hidden_creators
        )
        have = {i.video_id for i in out}
        for c in seen:
            if c.video_id in have:
                continue
            item = by_id[c.video_id]
            item.reason = rank_pb2.FEED_REASON_SEEN_BEFORE
            item.explanation = SEEN_BEFORE_OUTAGE_EXPLANATION if outage else SEEN_BEFORE_EXPLANATION
            out.append(item)
    return out
