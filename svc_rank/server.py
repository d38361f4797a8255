"""FeedService: GetFeed pages through a cached ranked list; GetTrending; ExplainFeedItem.

GetFeed, step by step:

1. The caller is the authenticated user (``user_id`` in the request is honoured only
   on calls without one: tests, tools with auth off; a signed-in user never reads
   another user's feed).
2. No cursor: the cached list ``feed:{user}`` if one is alive (``cache_hit``), else a
   new list (:class:`~svc_rank.feed.FeedPipeline`), cached for 60 s; page 1.
3. A cursor of the cached list: the next page of that same list (no duplicates, no
   gaps). A cursor of a list that expired or was replaced: a new list, which
   excludes everything served so far (served history), from its first item.
4. Too few unseen videos left for the page (everything was served within the
   window): the list is topped up with served ones, least recently served first,
   flagged ``FEED_REASON_SEEN_BEFORE`` / ``FEED_FALLBACK_SEEN_BEFORE`` — never an
   empty feed while there are videos to show.
5. The page's ids go into the served history and impressions (side effects).

Redis down: nothing is cached; the list is built for the request and a cursor pages
by rebuilding the list with the same seed (the same list while the inputs stay the
same). svc_stream down: the rest of the user's last list, or trending read from
Redis. The response names every fallback used; none of them is an error to the
client while any source answers.

A dependency down and the list built for the user empty all the same (nothing left
to rank for them): never an empty page with ``has_more`` false (a client reads that
as the end of the feed). A page of the stale trending list (svc_rank/overload.py)
flagged FEED_FALLBACK_OVERLOAD (+ UNCACHED when Redis is down), or, when no stale
list was ever made, UNAVAILABLE with RetryInfo (``OUTAGE_RETRY_AFTER_S``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import duration_pb2, timestamp_pb2
from redis.exceptions import RedisError
from reels.v1 import rank_pb2, rank_pb2_grpc

from reels import errors, metrics
from reels.admission import Admission
from reels.auth import current_user
from reels.text import shown
from svc_rank import cursor, feed_cache, overload
from svc_rank.candidate import Candidate, ListItem, SourceUnavailable
from svc_rank.feature_hydrator.counters import empty as empty_counters
from svc_rank.feature_hydrator.counters import video_counters
from svc_rank.feed import FeedPipeline, RankingParams, sign_items
from svc_rank.filter import see_fewer
from svc_rank.filter.eligibility import eligible
from svc_rank.overload import StaleFeed
from svc_rank.scorer import features as feature_list
from svc_rank.scorer.rules import TERMS
from svc_rank.settings import Settings
from svc_rank.side_effect.served import record_served, served_ids, served_oldest_first
from svc_rank.stream_client import StreamClient

if TYPE_CHECKING:
    from svc_rank.experiments.results import ResultsService

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
SIGN_MARGIN = 5
"""A new list signs its first two pages plus this many (room for unplayable items) on
the request path; each later page served signs the one after it in the background
(``_sign_ahead``), and a page reached before that is signed when it is served."""
OUTAGE_RETRY_AFTER_S = 1.0
"""RetryInfo of the UNAVAILABLE GetFeed answers when a dependency is down and there
is neither a list nor a stale list to serve (s): the stale list's first refresh is
retried after ``overload.RETRY_AFTER_FAILURE_S`` (1 s), so sooner is pointless."""

ArmChooser = Callable[[str, str | None], tuple[str, RankingParams | None]]
"""(user, forced arm or None) → (arm name, its ranking params; None = defaults).
The experiments package plugs in here; without it every user gets the defaults."""

_FALLBACK_NAMES = {
    rank_pb2.FEED_FALLBACK_RULE_SCORER: "rule_scorer",
    rank_pb2.FEED_FALLBACK_NO_VECTORS: "no_vectors",
    rank_pb2.FEED_FALLBACK_LAST_LIST: "last_list",
    rank_pb2.FEED_FALLBACK_REDIS_TRENDING: "redis_trending",
    rank_pb2.FEED_FALLBACK_UNCACHED: "uncached",
    rank_pb2.FEED_FALLBACK_UNSIGNED: "unsigned",
    rank_pb2.FEED_FALLBACK_SEEN_BEFORE: "seen_before",
    rank_pb2.FEED_FALLBACK_OVERLOAD: "overload",
}


def _limit(value: int) -> int:
    if value < 0 or value > MAX_LIMIT:
        raise errors.InvalidArgument(
            f"limit must be between 1 and {MAX_LIMIT}", [("limit", f"got {value}")]
        )
    return value or DEFAULT_LIMIT


def _caller(override: str) -> str:
    user = current_user.get()
    if user:
        return user
    if override:
        return override
    raise errors.Unauthenticated("the feed needs an authenticated user")


MAX_ID_CHARS = 128
MAX_FORCED_ARM_CHARS = 200


def _id(field: str, value: str) -> str:
    """A creator or video id from the request: 1-128 characters, none of them a control
    character (NUL included); INVALID_ARGUMENT naming ``field`` otherwise."""
    value = value.strip()
    if not value or len(value) > MAX_ID_CHARS:
        raise errors.InvalidArgument(
            f"{field} is required (1-{MAX_ID_CHARS} characters)",
            [(field, f"got {len(value)} characters")],
        )
    if any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 for ch in value):
        raise errors.InvalidArgument(
            f"{field} has a control character", [(field, "no control characters (NUL, ESC...)")]
        )
    return value


def _region(value: str) -> str:
    """ "" or an ISO 3166-1 alpha-2 code (two ASCII letters, any case) -> upper case."""
    if not value:
        return ""
    if len(value) != 2 or not value.isascii() or not value.isalpha():
        raise errors.InvalidArgument(
            "region must be an ISO 3166-1 alpha-2 country code such as 'US' (or empty)",
            [("region", f"got {len(value)} characters")],
        )
    return value.upper()


def _seed(list_id: str) -> int:
    return int(list_id[:8], 16)


def _feed_item(item: ListItem, rank: int) -> rank_pb2.FeedItem:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(int(item.duration_s * 1e9))
    return rank_pb2.FeedItem(
        video_id=item.video_id,
        creator_id=item.creator_id,
        title=item.title,
        thumbnail_url=item.thumbnail_url,
        manifest_url=item.streaming_url,
        duration=duration,
        score=item.score,
        reason=item.reason,  # type: ignore[arg-type]
        explanation=item.explanation,
        rank=rank,
        duration_seconds=item.duration_s,
        view_count=item.view_count,
        like_count=item.like_count,
        completion_rate=item.completion_rate,
        streaming_url=item.streaming_url,
    )


def _default_arms(user: str, forced: str | None) -> tuple[str, RankingParams | None]:
    return "", None


class FeedService(rank_pb2_grpc.FeedServiceServicer):
    def __init__(
        self,
        settings: Settings,
        pipeline: FeedPipeline,
        stream: StreamClient,
        *,
        arms: ArmChooser | None = None,
        results: ResultsService | None = None,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.redis = pipeline.redis
        self.stream = stream
        self.arms = arms or _default_arms
        # Exposure logging: the chooser's ``served(user, label, request_id=, scorer=)``
        # when it has one (svc_rank.experiments.ExperimentArms); background, never raises.
        self._served = getattr(self.arms, "served", None)
        self.results = results
        self._signing: set[asyncio.Task[None]] = set()
        # Overload (svc_rank/overload.py): bounded builds, and the stale list.
        self.builds = Admission(
            "rank", settings.max_concurrent_builds, settings.build_wait_ms / 1000
        )
        self.stale = StaleFeed(
            stream,
            pipeline.catalog,
            pipeline.redis,
            size=settings.stale_feed_size,
            ttl_s=settings.stale_feed_ttl_s,
            timeout_s=settings.trending_timeout_s,
        )

    async def close(self) -> None:
        """Wait (briefly) for the background URL signing of new lists to finish."""
        await self.stale.close()
        if self._signing:
            _, pending = await asyncio.wait(self._signing, timeout=2.0)
            for task in pending:
                task.cancel()

    def _sign_ahead(self, user: str, lst: feed_cache.CachedList, start: int, limit: int) -> None:
        """Sign the next page's URLs (``limit + SIGN_MARGIN`` items from ``start``) off the
        request path and write them into the cache, if it still holds this list.
        Lists are signed one page ahead of the reader: items nobody pages to are
        never signed."""
        ahead = [i for i in lst.items[start : start + limit + SIGN_MARGIN] if not i.signed]
        if not ahead:
            return
        task = asyncio.create_task(self._sign_and_store(user, lst, ahead))
        self._signing.add(task)
        task.add_done_callback(self._signing.discard)

    async def _sign_and_store(
        self, user: str, lst: feed_cache.CachedList, items: list[ListItem]
    ) -> None:
        try:
            await sign_items(self.stream, items)
            await feed_cache.replace(self.redis, user, lst)
        except (SourceUnavailable, RedisError, OSError) as exc:
            # The hit path signs what is still unsigned when its page is served.
            log.info("signing ahead in list %s deferred: %s", lst.list_id, exc)

    async def _playable(
        self, page: list[ListItem], *, stream_down_list: bool
    ) -> tuple[list[ListItem], bool]:
        """The page as served, and whether unsigned items had to be left out.

        Unsigned items are signed now (one call); items svc_stream cannot play are left
        out. With svc_stream down, a list built while it was down (trending read from
        Redis, never signed) goes out as it is, URLs missing (REDIS_TRENDING); any
        other list's unsigned items are left out of the page (UNSIGNED)."""
        unsigned = [i for i in page if not i.signed]
        if unsigned:
            try:
                await sign_items(self.stream, unsigned)
            except SourceUnavailable:
                if stream_down_list:
                    return page, False
                return [i for i in page if i.signed and i.streaming_url], True
        return [i for i in page if i.streaming_url or not i.signed], False

    def _forced(self, request: Any) -> str | None:
        """The arm a request forces (``experiment``), checked: an arm no running
        experiment has is INVALID_ARGUMENT, not silently the user's own arm."""
        if not request.HasField("experiment"):
            return None
        forced = request.experiment
        if not forced:
            return None
        resolve = getattr(self.arms, "resolve", None)
        if len(forced) > MAX_FORCED_ARM_CHARS or resolve is None or resolve(forced) is None:
            raise errors.InvalidArgument(
                f"no running experiment arm '{shown(forced, 80)}' (an arm is named "
                "'<experiment>:<arm>' of a running phase)",
                [("experiment", "not a running experiment's arm")],
            )
        return forced

    # ------------------------------------------------------------------ GetFeed

    async def _new_list(
        self,
        user: str,
        *,
        region: str,
        list_id: str,
        params: RankingParams | None,
        experiment: str,
        cache: bool,
        offset: int = 0,
        limit: int = DEFAULT_LIMIT,
    ) -> feed_cache.CachedList:
        self.stale.warm(region)
        if not await self.builds.try_acquire():
            stale = await self._stale_list(user, region, offset + limit)
            if stale is not None:
                return stale
            await self.builds.acquire()  # no stale list could be made: wait our turn
        try:
            built = await self.pipeline.build(
                user,
                region=region,
                seed=_seed(list_id),
                params=params,
                sign_first=offset + 2 * limit + SIGN_MARGIN,
            )
        finally:
            self.builds.release()
        fallbacks = set(built.fallbacks)
        items = built.items
        if built.stream_down:
            rest = await self._rest_of_last_list(user) if cache and not built.redis_down else []
            if rest:
                items = rest
                fallbacks.add(rank_pb2.FEED_FALLBACK_LAST_LIST)
                fallbacks.discard(rank_pb2.FEED_FALLBACK_REDIS_TRENDING)
            else:
                fallbacks.add(rank_pb2.FEED_FALLBACK_REDIS_TRENDING)
        if built.redis_down:
            cache = False
        elif not built.stream_down and len(items) <= offset:
            # Nothing unseen left for this page: fill it with served ones (flagged).
            items = items + await self._seen_before(
                user, {i.video_id for i in items}, offset + limit - len(items)
            )
        if not items and (built.redis_down or built.stream_down):
            # A dependency is down and nothing is left to rank for this user: an empty
            # page would read as "end of feed". The stale trending list instead, or
            # UNAVAILABLE + RetryInfo when none was ever made (svc_rank/overload.py).
            return await self._outage_list(
                user, region, offset + limit, redis_down=built.redis_down
            )
        lst = feed_cache.CachedList(list_id, items, sorted(fallbacks), built.scorer, experiment)
        if cache and items:
            try:
                await feed_cache.store(
                    self.redis,
                    user,
                    lst,
                    ttl_s=self.settings.feed_ttl_s,
                    last_ttl_s=self.settings.last_list_ttl_s,
                )
            except (RedisError, OSError):
                lst.fallbacks = sorted({*lst.fallbacks, rank_pb2.FEED_FALLBACK_UNCACHED})
        return lst

    async def _outage_list(
        self, user: str, region: str, want: int, *, redis_down: bool
    ) -> feed_cache.CachedList:
        """The stale list for ``user`` when the list built for them came out empty
        because a dependency is down: flagged FEED_FALLBACK_OVERLOAD (plus UNCACHED
        for Redis). Raises UNAVAILABLE with RetryInfo (``OUTAGE_RETRY_AFTER_S``) when
        no stale list was ever made or none of it is left for this user."""
        stale = await self._stale_list(user, region, want, outage=True)
        if stale is None or not stale.items:
            down = "Redis" if redis_down else "svc_stream"
            raise errors.Unavailable(
                f"the feed cannot be built while {down} is unavailable, retry shortly",
                OUTAGE_RETRY_AFTER_S,
            )
        if redis_down:
            stale.fallbacks = sorted({*stale.fallbacks, rank_pb2.FEED_FALLBACK_UNCACHED})
        return stale

    async def _stale_list(
        self, user: str, region: str, want: int, *, outage: bool = False
    ) -> feed_cache.CachedList | None:
        """The overload list for ``user`` (svc_rank/overload.py), never cached as theirs;
        None when no stale list could be made. Flagged FEED_FALLBACK_OVERLOAD.
        ``outage``: served because a dependency is down (the explanations say so)."""
        items = await self.stale.items(region)
        if items is None:
            return None
        try:
            served = await served_ids(self.redis, user, self.settings.served_window_s)
            hidden = await see_fewer.creators(self.redis, user)
        except (RedisError, OSError):
            served, hidden = set(), set()
        catalog = await self.pipeline.catalog.get_many([i.video_id for i in items])
        mine = overload.for_user(
            items,
            catalog,
            user_id=user,
            served=served,
            hidden_creators=hidden,
            want=want,
            outage=outage,
        )
        return feed_cache.CachedList(
            secrets.token_hex(8), mine, [rank_pb2.FEED_FALLBACK_OVERLOAD], "stale"
        )

    async def _seen_before(self, user: str, have: set[str], want: int) -> list[ListItem]:
        """Up to ``want`` videos served to the user before (none of ``have``), least
        recently served first, still eligible (published, not the user's own, not a
        re-upload, not a creator they see fewer of): the refill of a list that ran
        short, so a feed is never empty while there are videos to show. Flagged
        ``FEED_REASON_SEEN_BEFORE``; [] when Redis cannot say."""
        try:
            ids = await served_oldest_first(
                self.redis, user, self.settings.served_window_s, want * 3 + 20
            )
            hidden = await see_fewer.creators(self.redis, user)
            ids = [v for v in ids if v not in have]
            catalog = await self.pipeline.catalog.get_many(ids)
            pool = eligible(
                (Candidate(v) for v in ids),
                catalog,
                user_id=user,
                served=frozenset(),
                hidden_creators=hidden,
            )[:want]
            counts = await video_counters(self.redis, [c.video_id for c in pool])
        except (RedisError, OSError) as exc:
            log.info("no seen-before refill for %s: %s", user, exc)
            return []
        items = []
        for c in pool:
            video, cnt = catalog[c.video_id], counts.get(c.video_id) or empty_counters()
            plays = cnt["plays"]
            items.append(
                ListItem(
                    video_id=c.video_id,
                    creator_id=video.creator_id,
                    title=video.title,
                    duration_s=video.duration_s,
                    score=0.0,
                    reason=rank_pb2.FEED_REASON_SEEN_BEFORE,
                    explanation="Seen before: you're all caught up",
                    view_count=cnt["views"],
                    like_count=cnt["likes"],
                    completion_rate=round(min(1.0, cnt["completions"] / plays), 4)
                    if plays
                    else 0.0,
                    signed=False,  # signed when its page is served, like a list's tail
                )
            )
        return items

    async def _rest_of_last_list(self, user: str) -> list[ListItem]:
        try:
            last = await feed_cache.load(self.redis, user, last=True)
            if last is None:
                return []
            served = await served_ids(self.redis, user, self.settings.served_window_s)
        except (RedisError, OSError):
            return []
        return [i for i in last.items if i.video_id not in served and i.streaming_url]

    async def GetFeed(  # noqa: N802 - generated name
        self, request: rank_pb2.GetFeedRequest, context: grpc.aio.ServicerContext
    ) -> rank_pb2.GetFeedResponse:
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        user = _caller(request.user_id)
        limit = _limit(request.limit)
        position = cursor.decode_feed(request.cursor)
        forced = self._forced(request)
        region = _region(request.region)
        experiment, params = self.arms(user, forced)
        redis_ok = True
        cached: feed_cache.CachedList | None = None
        try:
            cached = await feed_cache.load(self.redis, user)
        except (RedisError, OSError):
            redis_ok = False
        cache_hit = False
        if cached is not None and (position is None or position.list_id == cached.list_id):
            lst, offset, cache_hit = cached, position.offset if position else 0, True
        elif position is not None and not redis_ok:
            # No cache to page through: rebuild the cursor's list (same seed) and go on.
            lst = await self._new_list(
                user,
                region=region,
                list_id=position.list_id,
                params=params,
                experiment=experiment,
                cache=False,
                offset=position.offset,
                limit=limit,
            )
            offset = position.offset
        else:
            lst = await self._new_list(
                user,
                region=region,
                list_id=secrets.token_hex(8),
                params=params,
                experiment=experiment,
                cache=redis_ok,
                limit=limit,
            )
            offset = 0
        fallbacks = set(lst.fallbacks)
        if not redis_ok:
            fallbacks.add(rank_pb2.FEED_FALLBACK_UNCACHED)
        page, left_out = await self._playable(
            lst.items[offset : offset + limit],
            stream_down_list=rank_pb2.FEED_FALLBACK_REDIS_TRENDING in lst.fallbacks,
        )
        if left_out:
            fallbacks.add(rank_pb2.FEED_FALLBACK_UNSIGNED)
        if any(i.reason == rank_pb2.FEED_REASON_SEEN_BEFORE for i in page):
            fallbacks.add(rank_pb2.FEED_FALLBACK_SEEN_BEFORE)
        more = offset + limit < len(lst.items)
        if more and redis_ok and cache_hit:
            self._sign_ahead(user, lst, offset + limit, limit)
        if page and redis_ok:
            try:
                # Only what the client can play counts as served: an item without URLs
                # (svc_stream down) may be offered again by a later list.
                await record_served(
                    self.redis,
                    user,
                    [i.video_id for i in page if i.streaming_url],
                    window_s=self.settings.served_window_s,
                    max_items=self.settings.served_max,
                )
            except (RedisError, OSError) as exc:
                log.warning("served history not recorded: %s", exc)
        # The arm whose ranking built the list served this page (a list cached before
        # the user's arm existed carries no label and logs no exposure).
        if page and lst.experiment and self._served is not None:
            self._served(user, lst.experiment, request_id=request_id, scorer=lst.scorer)
        if not more and redis_ok and lst.items:
            try:
                await feed_cache.drop_finished(self.redis, user, lst.list_id)
            except (RedisError, OSError) as exc:
                log.info("finished list %s not dropped: %s", lst.list_id, exc)
        next_cursor = cursor.encode_feed(lst.list_id, offset + limit) if more else ""
        elapsed_ms = (time.perf_counter() - started) * 1000
        metrics.feed_ranking_latency.record(elapsed_ms, {"cache_hit": str(cache_hit).lower()})
        for fb in fallbacks:
            metrics.feed_fallbacks.add(1, {"fallback": _FALLBACK_NAMES.get(fb, str(fb))})
        return rank_pb2.GetFeedResponse(
            items=[_feed_item(item, offset + i) for i, item in enumerate(page)],
            next_cursor=next_cursor,
            cursor=next_cursor,
            has_more=more,
            request_id=request_id,
            experiment=lst.experiment or experiment,
            cache_hit=cache_hit,
            response_time_ms=round(elapsed_ms, 3),
            fallbacks=sorted(fallbacks),  # type: ignore[arg-type]
            scorer=lst.scorer,
        )

    # ------------------------------------------------------------------ GetTrending

    async def GetTrending(  # noqa: N802 - generated name
        self, request: rank_pb2.GetTrendingRequest, context: grpc.aio.ServicerContext
    ) -> rank_pb2.GetTrendingResponse:
        """Trending now (svc_stream's scores), each item playable as it is: metadata,
        counters and signed URLs, like a feed item. A region with no trending set of
        its own yet gets the global one. Errors: INVALID_ARGUMENT (limit, cursor,
        region), UNAVAILABLE (svc_stream down: nothing to rank or sign)."""
        limit = _limit(request.limit)
        offset = cursor.decode(request.cursor)
        region = _region(request.region)

        async def page(region: str) -> list[tuple[str, float]]:
            try:
                return await self.stream.trending(
                    limit=limit + 1,
                    offset=offset,
                    region=region,
                    timeout_s=self.settings.trending_timeout_s,
                )
            except SourceUnavailable as exc:
                raise errors.Unavailable("trending source unavailable, retry shortly", 1.0) from exc

        rows = await page(region)
        if region and not rows and offset == 0:
            rows = await page("")  # nothing trending in this region yet: the global set
        more = len(rows) > limit
        rows = rows[:limit]
        ids = [vid for vid, _ in rows]
        catalog = await self.pipeline.catalog.get_many(ids)
        try:
            urls = await self.stream.media_urls(ids)
        except SourceUnavailable as exc:
            raise errors.Unavailable("playback URLs unavailable, retry shortly", 1.0) from exc
        try:
            counts = await video_counters(self.redis, ids)
        except (RedisError, OSError):
            counts = {}
        items = []
        for vid, score in rows:
            video, u = catalog.get(vid), urls.get(vid)
            if video is None or u is None:
                continue  # not playable (yet): left out, as in the feed
            cnt = counts.get(vid) or empty_counters()
            plays = cnt["plays"]
            item = ListItem(
                video_id=vid,
                creator_id=video.creator_id,
                title=video.title,
                duration_s=video.duration_s,
                score=score,
                reason=rank_pb2.FEED_REASON_TRENDING,
                explanation="Trending now",
                view_count=cnt["views"],
                like_count=cnt["likes"],
                completion_rate=round(min(1.0, cnt["completions"] / plays), 4) if plays else 0.0,
                streaming_url=u.streaming_url,
                thumbnail_url=u.thumbnail_url,
            )
            items.append(_feed_item(item, offset + len(items)))
        return rank_pb2.GetTrendingResponse(
            items=items, next_cursor=cursor.encode(offset + limit) if more else ""
        )

    # ------------------------------------------------------------------ ExplainFeedItem

    async def ExplainFeedItem(  # noqa: N802 - generated name
        self, request: rank_pb2.ExplainFeedItemRequest, context: grpc.aio.ServicerContext
    ) -> rank_pb2.ExplainFeedItemResponse:
        user = _caller(request.user_id)
        video_id = _id("video_id", request.video_id)
        forced = self._forced(request)
        experiment, params = self.arms(user, forced)
        result = await self.pipeline.explain(user, video_id, params)
        if result is None:
            raise errors.NotFound("video", video_id)
        hydrated, rule, ranker_score, scorer, text = result
        weights = (params.weights if params else self.pipeline.default_weights).as_dict()
        reason = hydrated.candidate.reason
        try:  # the reason it really has in the user's current list, when it is there
            cached = await feed_cache.load(self.redis, user)
        except (RedisError, OSError):
            cached = None
        for item in cached.items if cached else ():
            if item.video_id == request.video_id:
                reason, text = item.reason, item.explanation
                break
        return rank_pb2.ExplainFeedItemResponse(
            video_id=request.video_id,
            score=ranker_score if ranker_score is not None else rule,
            components=[
                rank_pb2.ScoreComponent(name=t, value=hydrated.terms[t], weight=weights[t])
                for t in TERMS
            ],
            reason=reason,  # type: ignore[arg-type]
            explanation=text,
            experiment=experiment,
            scorer=scorer,
            ranker_score=ranker_score,
            features=[
                rank_pb2.ScoreComponent(name=n, value=hydrated.features.get(n, 0.0), weight=0.0)
                for n in feature_list.FEATURE_NAMES
            ],
            reupload_of=hydrated.video.reupload_of,
        )

    # ------------------------------------------------------------------ SeeFewer

    async def SeeFewer(  # noqa: N802 - generated name
        self, request: rank_pb2.SeeFewerRequest, context: grpc.aio.ServicerContext
    ) -> rank_pb2.SeeFewerResponse:
        """ "See fewer of this creator" (svc_rank/filter/see_fewer.py): the creator is
        left out of the caller's feed for ``see_fewer_ttl_s``; the cached list is
        dropped so the next request already honours it."""
        user = _caller(request.user_id)
        creator = _id("creator_id", request.creator_id)
        if creator == user:
            raise errors.InvalidArgument(
                "you cannot see fewer of yourself", [("creator_id", "is the caller")]
            )
        try:
            until = await see_fewer.add(
                self.redis, user, creator, ttl_s=self.settings.see_fewer_ttl_s
            )
            await self.redis.delete(feed_cache.feed_key(user), feed_cache.last_key(user))
        except (RedisError, OSError) as exc:
            raise errors.Unavailable("preferences store unavailable, retry shortly", 1.0) from exc
        stamp = timestamp_pb2.Timestamp()
        stamp.FromNanoseconds(int(until * 1e9))
        return rank_pb2.SeeFewerResponse(creator_id=creator, until=stamp)

    # ------------------------------------------------------------------ experiments

    async def GetExperimentResults(  # noqa: N802 - generated name
        self, request: rank_pb2.GetExperimentResultsRequest, context: grpc.aio.ServicerContext
    ) -> rank_pb2.GetExperimentResultsResponse:
        if self.results is None:
            raise errors.NotFound("experiment", request.experiment_id, "no experiments run here")
        return await self.results.results(request)
