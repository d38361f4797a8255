"""The feed pipeline: candidate sources → hydration → scoring → mixing → a ranked list.

:meth:`FeedPipeline.build` makes one ranked list for one user (at most ``list_size``
items, each with its metadata, counters and signed URLs), which the service caches
and pages through (:mod:`svc_rank.feed_cache`). Every stage degrades instead of
failing (the response says which way, ``FeedFallback``):

* Milvus unavailable → no ``similar`` recall (NO_VECTORS): trending, fresh,
  followees and exploration still fill the list.
* Triton's ``ranker`` absent, down or late → the rule scorer (RULE_SCORER).
* svc_stream unavailable → trending straight from Redis (REDIS_TRENDING); the media
  URLs cannot be signed, so the server prefers the rest of the user's last list.
* Redis unavailable → no user vector, served history, affinity or counters: a list
  from svc_stream's trending and Postgres (fresh, followees, exploration), ranked
  on priors, not cached (UNCACHED).

Only when every source fails does :meth:`build` return an empty list.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from reels.v1 import rank_pb2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from svc_rank import explain
from svc_rank.candidate import (
    EXPLORATION,
    FOLLOWEE,
    SIMILAR,
    Candidate,
    FeedRequest,
    ListItem,
    Scored,
    SourceUnavailable,
    merge,
)
from svc_rank.candidate_source.exploration import ExplorationSource
from svc_rank.candidate_source.followees import FolloweeSource, followees_of
from svc_rank.candidate_source.fresh import FreshSource
from svc_rank.candidate_source.similar import SimilarSource
from svc_rank.candidate_source.trending import TrendingSource
from svc_rank.feature_hydrator import aggregates
from svc_rank.feature_hydrator.counters import empty as empty_counters
from svc_rank.filter import see_fewer
from svc_rank.filter.eligibility import eligible
from svc_rank.filter.mixer import MixRules, mix
from svc_rank.index import user_state
from svc_rank.index.catalog import Catalog, VideoInfo
from svc_rank.index.vectors import VectorStore
from svc_rank.scorer import features as feature_list
from svc_rank.scorer import rules
from svc_rank.scorer.learned import LearnedRanker
from svc_rank.settings import Settings
from svc_rank.side_effect.served import served_ids
from svc_rank.stream_client import StreamClient

log = logging.getLogger(__name__)

RULES = "rules"


@dataclass(frozen=True, slots=True)
class RankingParams:
    """What may vary per request (an experiment arm's ranking configuration)."""

    weights: rules.Weights = rules.Weights()
    ranker_version: str | None = None
    """None: the service's setting; "": rule scorer only; else that model version."""
    exploration_share: float | None = None


@dataclass(slots=True)
class BuiltList:
    items: list[ListItem]
    fallbacks: set[int] = field(default_factory=set)
    scorer: str = RULES
    redis_down: bool = False
    stream_down: bool = False
    stages_ms: dict[str, float] = field(default_factory=dict)
    """Wall time of each stage of :meth:`FeedPipeline.build` (ms): context, sources,
    catalog, hydrate, score, mix, sign. The benchmark prints their medians."""


@dataclass(slots=True)
class Hydrated:
    """Everything known about one candidate for scoring and explanation."""

    candidate: Candidate
    video: VideoInfo
    counters: dict[str, int]
    follows: bool
    similarity: float | None
    terms: dict[str, float] = field(default_factory=dict)
    """The rule scorer's 0..1 inputs (``recsim.features.formula_inputs``)."""
    features: dict[str, float] = field(default_factory=dict)
    """The ranker's input row by name (``recsim.features.FEATURE_NAMES``)."""
    row: np.ndarray | None = None
    """The same row, float32 ``[N_FEATURES]``, in the model's column order."""


class FeedPipeline:
    def __init__(
        self,
        settings: Settings,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: aioredis.Redis,
        catalog: Catalog,
        vectors: VectorStore,
        stream: StreamClient,
        ranker: LearnedRanker | None,
    ) -> None:
        s = settings
        self.settings = s
        self.sessionmaker = sessionmaker
        self.redis = redis
        self.catalog = catalog
        self.stream = stream
        self.ranker = ranker
        self.similar = SimilarSource(vectors, s.similar_k)
        self.followees = FolloweeSource(sessionmaker, s.followee_k, s.followee_window_s)
        self.trending = TrendingSource(stream, redis, s.trending_k)
        self.fresh = FreshSource(
            sessionmaker,
            redis,
            k=s.fresh_k,
            window_s=s.fresh_window_s,
            max_impressions=s.fresh_max_impressions,
        )
        self.exploration = ExplorationSource(sessionmaker, s.exploration_k)
        self.default_weights = rules.Weights(s.w_completion, s.w_engagement, s.w_affinity, s.w_deep)

    # ------------------------------------------------------------------ context

    async def request_for(
        self, user_id: str, *, region: str, seed: int, exclude_served: bool = True
    ) -> tuple[FeedRequest, tuple[str, ...], bool]:
        """The user's context: vector, region, followees, served history, top tags.

        Returns (request, user's top hashtags, redis_down).
        """
        redis_down = False
        followees_task = asyncio.ensure_future(followees_of(self.sessionmaker, user_id))
        try:
            profile, served, hidden = await asyncio.gather(
                user_state.profile(self.redis, user_id),
                served_ids(self.redis, user_id, self.settings.served_window_s)
                if exclude_served
                else _none(),
                see_fewer.creators(self.redis, user_id),
            )
        except (RedisError, OSError):
            redis_down = True
            profile, served, hidden = user_state.UserProfile(None, "", ()), set(), set()
        followees = await followees_task
        request = FeedRequest(
            user_id=user_id,
            region=(region or profile.region).upper(),
            user_vector=profile.vector,
            followees=frozenset(followees),
            served=frozenset(served or ()),
            hidden_creators=frozenset(hidden),
            seed=seed,
        )
        return request, profile.top_tags, redis_down

    # ------------------------------------------------------------------ build

    async def build(
        self,
        user_id: str,
        *,
        region: str = "",
        seed: int = 0,
        params: RankingParams | None = None,
        sign_first: int | None = None,
    ) -> BuiltList:
        """One ranked list for ``user_id``. ``sign_first``: sign the URLs of only the
        first N items now (the page being served, plus a margin for unplayable ones);
        the caller signs the rest with :func:`sign_items` off the request path. None
        signs every item."""
        params = params or RankingParams(weights=self.default_weights)
        fallbacks: set[int] = set()
        stages = _Stages()
        request, user_tags, redis_down = await self.request_for(user_id, region=region, seed=seed)
        stages.mark("context")
        sources = (self.similar, self.followees, self.trending, self.fresh, self.exploration)
        results = await asyncio.gather(
            *(
                _timed(src.fetch(request, fallbacks), stages.ms, f"source.{src.name}")
                for src in sources
            ),
            return_exceptions=True,
        )
        groups: list[list[Candidate]] = []
        for src, result in zip(sources, results, strict=True):
            if isinstance(result, BaseException):
                if src is self.similar:
                    fallbacks.add(rank_pb2.FEED_FALLBACK_NO_VECTORS)
                if not isinstance(result, SourceUnavailable):
                    log.warning("source %s failed: %r", src.name, result)
                continue
            groups.append(result)
        stages.mark("sources")
        if self.similar.vectors.index is None and request.user_vector is not None:
            fallbacks.add(rank_pb2.FEED_FALLBACK_NO_VECTORS)
        merged = merge(groups)
        catalog = await self.catalog.get_many(merged)
        stages.mark("catalog")
        pool = eligible(
            merged.values(),
            catalog,
            user_id=user_id,
            served=request.served,
            hidden_creators=request.hidden_creators,
        )
        pool = _outside_interests(pool, catalog)
        hydrated, hydrate_redis_down = await self._hydrate(pool, catalog, request)
        redis_down = redis_down or hydrate_redis_down
        stages.mark("hydrate")
        scored, scorer = await self._score(hydrated, request, user_tags, params)
        stages.mark("score")
        if scorer == RULES:
            fallbacks.add(rank_pb2.FEED_FALLBACK_RULE_SCORER)
        s = self.settings
        share = (
            s.exploration_share if params.exploration_share is None else params.exploration_share
        )
        ranked = mix(
            scored,
            MixRules(
                size=s.list_size,
                exploration_share=share,
                fresh_share=s.fresh_share,
                saturation_floor=s.saturation_floor,
                saturation_decay=s.saturation_decay,
                creator_cap=s.creator_cap,
                near_duplicate_cosine=s.near_duplicate_cosine,
            ),
        )
        by_id = {h.candidate.video_id: h for h in hydrated}
        items = [_item(r, by_id[r.video_id], request, user_tags) for r in ranked]
        built = BuiltList(items, fallbacks, scorer, redis_down=redis_down, stages_ms=stages.ms)
        stages.mark("mix")
        await self._sign(built, sign_first)
        stages.mark("sign")
        if redis_down:
            fallbacks.add(rank_pb2.FEED_FALLBACK_UNCACHED)
        return built

    async def _hydrate(
        self, pool: Sequence[Candidate], catalog: dict[str, VideoInfo], request: FeedRequest
    ) -> tuple[list[Hydrated], bool]:
        """Raw aggregates (one Redis round trip) -> ``recsim.features.build_features``
        rows -> the ranker's input and the rule scorer's terms, per candidate."""
        ids = [c.video_id for c in pool]
        videos = [catalog[v] for v in ids]
        now = time.time()
        redis_down = False
        try:
            agg = await aggregates.read(
                self.redis, request.user_id, ids, (v.creator_id for v in videos), now=now
            )
        except (RedisError, OSError):
            redis_down = True
            agg = aggregates.Aggregates()
        follows = [
            v.creator_id in request.followees
            or (agg.pair.get(v.creator_id) or {}).get("f", 0.0) > 0
            for v in videos
        ]
        x = feature_list.matrix(videos, agg, follows, now=now)
        terms = rules.terms(x)
        values = x.tolist()  # Python floats, as float() of each element
        out = []
        uv = request.user_vector
        for i, (c, video) in enumerate(zip(pool, videos, strict=True)):
            similarity = c.similarity
            if similarity is None and uv is not None and video.embedding is not None:
                if video.embedding.shape == uv.shape:
                    similarity = float(video.embedding @ uv)
            raw = agg.video.get(c.video_id)
            counters = (
                {f: int(raw.get(f, 0)) for f in empty_counters()} if raw else empty_counters()
            )
            out.append(
                Hydrated(
                    c,
                    video,
                    counters,
                    follows[i],
                    similarity,
                    terms=terms[i],
                    features=dict(zip(feature_list.FEATURE_NAMES, values[i], strict=True)),
                    row=x[i],
                )
            )
        return out, redis_down

    async def _score(
        self,
        hydrated: Sequence[Hydrated],
        request: FeedRequest,
        user_tags: Sequence[str],
        params: RankingParams,
    ) -> tuple[list[Scored], str]:
        scores = [rules.rule_score(h.terms, params.weights) for h in hydrated]
        scorer = RULES
        version = params.ranker_version
        if self.ranker is not None and self.settings.ranker_enabled and version != "" and hydrated:
            learned = await self.ranker.score(_rows(hydrated), version)
            if learned is not None:
                scores = [float(x) for x in learned]
                scorer = f"ranker:{self.ranker.served_version}"
        out = []
        for h, score in zip(hydrated, scores, strict=True):
            c = h.candidate
            out.append(
                Scored(
                    video_id=c.video_id,
                    creator_id=h.video.creator_id,
                    score=score,
                    reason=c.reason,
                    reasons=frozenset(c.reasons),
                    embedding=h.video.embedding,
                    components=dict(h.terms),
                )
            )
        return out, scorer

    async def _sign(self, built: BuiltList, first: int | None) -> None:
        """Attach signed URLs to the first ``first`` items (all when None); drop the
        signed range's items that svc_stream cannot play (not in its catalog yet)."""
        n = len(built.items) if first is None else min(len(built.items), first)
        for item in built.items[n:]:
            item.signed = False
        try:
            head = await sign_items(self.stream, built.items[:n])
        except SourceUnavailable:
            built.stream_down = True
            for item in built.items:
                item.signed = False
            return
        built.items = [i for i in head if i.streaming_url] + built.items[n:]

    # ------------------------------------------------------------------ explain

    async def explain(
        self, user_id: str, video_id: str, params: RankingParams | None = None
    ) -> tuple[Hydrated, float, float | None, str, str] | None:
        """(hydrated, rule score, ranker score, scorer, explanation) of one video for
        one user, computed now; None when the video is unknown."""
        params = params or RankingParams(weights=self.default_weights)
        video = await self.catalog.get(video_id)
        if video is None:
            return None
        request, user_tags, _ = await self.request_for(
            user_id, region="", seed=0, exclude_served=False
        )
        reasons: set[int] = set()
        if video.creator_id in request.followees:
            reasons.add(FOLLOWEE)
        if request.user_vector is not None and video.embedding is not None:
            reasons.add(SIMILAR)
        candidate = Candidate(video_id, reasons or {EXPLORATION})
        (h,), _ = await self._hydrate([candidate], {video_id: video}, request)
        rule = rules.rule_score(h.terms, params.weights)
        ranker_score = None
        scorer = RULES
        if self.ranker is not None and self.settings.ranker_enabled and params.ranker_version != "":
            learned = await self.ranker.score(_rows([h]), params.ranker_version)
            if learned is not None:
                ranker_score = float(learned[0])
                scorer = f"ranker:{self.ranker.served_version}"
        text = explain.explanation(
            candidate.reason,
            creator_id=video.creator_id,
            hashtags=video.hashtags,
            user_tags=user_tags,
        )
        return h, rule, ranker_score, scorer, text


def _rows(hydrated: Sequence[Hydrated]) -> np.ndarray:
    """The ranker's input ``float32 [N, N_FEATURES]`` of hydrated candidates."""
    return np.stack([h.row for h in hydrated if h.row is not None]).astype(np.float32)


async def sign_items(
    stream: StreamClient, items: Sequence[ListItem], *, timeout_s: float | None = None
) -> list[ListItem]:
    """Sign ``items`` in one GetPlaybackUrls call; returns them in order, each marked
    ``signed``, playable ones with their URLs, the rest with empty URLs (svc_stream
    does not know them yet). ``timeout_s``: the call's deadline (s; default the
    client's). Raises :class:`SourceUnavailable`."""
    urls = await stream.media_urls([i.video_id for i in items], timeout_s=timeout_s)
    for item in items:
        u = urls.get(item.video_id)
        if u is not None:
            item.streaming_url, item.thumbnail_url = u.streaming_url, u.thumbnail_url
        item.signed = True
    return list(items)


async def _timed(awaitable: Any, into: dict[str, float], name: str) -> Any:
    """Await, recording the wall time (ms) under ``name`` (also on failure)."""
    started = time.perf_counter()
    try:
        return await awaitable
    finally:
        into[name] = (time.perf_counter() - started) * 1000.0


class _Stages:
    """Wall-clock marks of the pipeline's stages, in ms since the previous mark."""

    __slots__ = ("last", "ms")

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.ms: dict[str, float] = {}

    def mark(self, stage: str) -> None:
        now = time.perf_counter()
        self.ms[stage] = (now - self.last) * 1000.0
        self.last = now


async def _none() -> None:
    return None


def _outside_interests(pool: list[Candidate], catalog: dict[str, VideoInfo]) -> list[Candidate]:
    """Exploration-only candidates by a creator that similar/followees recalled are
    not exploration: drop them (they would be "more of the same")."""
    interest = {catalog[c.video_id].creator_id for c in pool if c.reasons & {SIMILAR, FOLLOWEE}}
    return [
        c
        for c in pool
        if not (c.reasons == {EXPLORATION} and catalog[c.video_id].creator_id in interest)
    ]


def _item(r: Scored, h: Hydrated, request: FeedRequest, user_tags: Sequence[str]) -> ListItem:
    v, cnt = h.video, h.counters
    plays = cnt["plays"]
    return ListItem(
        video_id=v.video_id,
        creator_id=v.creator_id,
        title=v.title,
        duration_s=v.duration_s,
        score=round(r.score, 6),
        reason=r.reason,
        explanation=explain.explanation(
            r.reason, creator_id=v.creator_id, hashtags=v.hashtags, user_tags=user_tags
        ),
        view_count=cnt["views"],
        like_count=cnt["likes"],
        completion_rate=round(min(1.0, cnt["completions"] / plays), 4) if plays else 0.0,
    )
