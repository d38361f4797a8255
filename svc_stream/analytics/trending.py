"""Trending scores live in Redis sorted sets (written by the trending job): the global
set ``trending:global`` and one per region ``trending:{CC}`` (ISO 3166-1 alpha-2).

svc_stream owns the sets; svc_rank reads them through ListTrending (``region``), or
straight from Redis when svc_stream is down.

**Regional sets.** The same decayed score, counting only what viewers in the region
did. A completion counts in the region of its player event's ``country`` (as the
client sent it, upper-cased by RecordEvents). Likes and shares carry no country
(``engagement.events`` has none), so each counts in the region of its user's latest
player event in the window; a user with no player event that says a country counts
in the global set only. Each region keeps its top ``MAX_REGIONAL_ENTRIES``; a region
whose set came out empty is deleted (the list of live regions is the set
``trending:regions``), so a stale regional list never outlives the data behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis
from reels.v1 import common_pb2, events_pb2

from reels.analytics import Analytics
from reels.cache import key

log = logging.getLogger(__name__)


def trending_key(region: str = "") -> str:
    return key("trending", region.upper() or "global")


async def top(
    client: aioredis.Redis, *, offset: int, limit: int, region: str = ""
) -> list[tuple[str, float]]:
    rows = await client.zrevrange(trending_key(region), offset, offset + limit - 1, withscores=True)
    return [
        (member.decode() if isinstance(member, bytes) else member, float(score))
        for member, score in rows
    ]


# --------------------------------------------------------------------------- the job
#
# score(video) = sum over its recent completions, standing likes and shares of
#                weight(kind) * exp(-age / tau)
# A completion says more than a view (the viewer stayed), a like more than a
# completion, a share most (it brings new viewers). A completion counts once per view
# session (user, session_id), at its first watch_complete: replays within a session
# (a looping reel) are plays, not more people who stayed, and would let one viewer
# push a video up the list. Exponential decay makes the list
# follow what is hot now without a hard window edge; events older than
# TRENDING_WINDOW contribute less than e^-(window/tau) and are not read at all.
# Only likes still standing count (an unlike cancels the like, whenever it came).


@dataclass(frozen=True, slots=True)
class Weights:
    """Weights and decay of the score (svc_stream Settings ``trending_*``)."""

    completion: float = 1.0
    like: float = 2.0
    share: float = 4.0
    tau_s: float = 6 * 3600.0


DEFAULT_WEIGHTS = Weights()
WINDOW_S = 7 * 86400
TRENDING_TTL_S = 24 * 3600
MAX_ENTRIES = 10_000
MAX_REGIONAL_ENTRIES = 1_000

_SCORES_SQL = """
SELECT video_id, sum(w * exp(-(toFloat64({now:Float64}) - ts) / {tau:Float64})) AS score
FROM (
    SELECT video_id, toFloat64(min(occurred_at)) AS ts, {wc:Float64} AS w
    FROM video_events FINAL
    WHERE type = {complete:UInt8} AND occurred_at >= {since:DateTime64(3, 'UTC')}
    GROUP BY video_id, user_id, session_id
    UNION ALL
    SELECT video_id, toFloat64(occurred_at) AS ts, {ws:Float64} AS w
    FROM engagement_events FINAL
    WHERE type = {share:UInt8} AND occurred_at >= {since:DateTime64(3, 'UTC')}
    UNION ALL
    SELECT video_id, toFloat64(max(occurred_at)) AS ts, {wl:Float64} AS w
    FROM engagement_events FINAL
    WHERE type IN ({like:UInt8}, {unlike:UInt8}) AND occurred_at >= {since:DateTime64(3, 'UTC')}
    GROUP BY video_id, user_id
    HAVING argMax(type, occurred_at) = {like:UInt8}
)
WHERE video_id != ''
GROUP BY video_id
HAVING score > 0
ORDER BY score DESC, video_id
LIMIT {limit:UInt32}
"""


_REGIONAL_SQL = """
WITH user_region AS (
    SELECT user_id, upper(argMax(country, occurred_at)) AS region
    FROM video_events FINAL
    WHERE country != '' AND user_id != '' AND occurred_at >= {since:DateTime64(3, 'UTC')}
    GROUP BY user_id
)
SELECT region, video_id,
       sum(w * exp(-(toFloat64({now:Float64}) - ts) / {tau:Float64})) AS score
FROM (
    SELECT video_id, upper(argMin(country, occurred_at)) AS region,
           toFloat64(min(occurred_at)) AS ts, {wc:Float64} AS w
    FROM video_events FINAL
    WHERE type = {complete:UInt8} AND occurred_at >= {since:DateTime64(3, 'UTC')}
    GROUP BY video_id, user_id, session_id
    UNION ALL
    SELECT s.video_id AS video_id, r.region AS region, s.ts AS ts, {ws:Float64} AS w
    FROM (
        SELECT video_id, user_id, toFloat64(occurred_at) AS ts
        FROM engagement_events FINAL
        WHERE type = {share:UInt8} AND occurred_at >= {since:DateTime64(3, 'UTC')}
    ) AS s
    INNER JOIN user_region AS r ON s.user_id = r.user_id
    UNION ALL
    SELECT l.video_id AS video_id, r.region AS region, l.ts AS ts, {wl:Float64} AS w
    FROM (
        SELECT video_id, user_id, toFloat64(max(occurred_at)) AS ts
        FROM engagement_events FINAL
        WHERE type IN ({like:UInt8}, {unlike:UInt8})
          AND occurred_at >= {since:DateTime64(3, 'UTC')}
        GROUP BY video_id, user_id
        HAVING argMax(type, occurred_at) = {like:UInt8}
    ) AS l
    INNER JOIN user_region AS r ON l.user_id = r.user_id
)
WHERE video_id != '' AND match(region, '^[A-Z]{2}$')
GROUP BY region, video_id
HAVING score > 0
ORDER BY region, score DESC, video_id
LIMIT {limit:UInt32} BY region
"""


def _params(now: float, weights: Weights, limit: int) -> dict[str, object]:
    return {
        "now": now,
        "tau": weights.tau_s,
        "since": datetime.fromtimestamp(now - WINDOW_S, UTC),
        "wc": weights.completion,
        "ws": weights.share,
        "wl": weights.like,
        "complete": common_pb2.EventType.EVENT_TYPE_WATCH_COMPLETE,
        "share": events_pb2.EngagementType.ENGAGEMENT_TYPE_SHARE,
        "like": events_pb2.EngagementType.ENGAGEMENT_TYPE_LIKE,
        "unlike": events_pb2.EngagementType.ENGAGEMENT_TYPE_UNLIKE,
        "limit": limit,
    }


async def compute_regional_scores(
    analytics: Analytics, now: float | None = None, weights: Weights = DEFAULT_WEIGHTS
) -> dict[str, list[tuple[str, float]]]:
    """Per region (upper-case alpha-2): decayed scores as of ``now``, highest first."""
    now = time.time() if now is None else now
    rows = await analytics.query_rows(_REGIONAL_SQL, _params(now, weights, MAX_REGIONAL_ENTRIES))
    out: dict[str, list[tuple[str, float]]] = {}
    for region, video, score in rows:
        out.setdefault(str(region), []).append((str(video), float(score)))
    return out


async def compute_scores(
    analytics: Analytics, now: float | None = None, weights: Weights = DEFAULT_WEIGHTS
) -> list[tuple[str, float]]:
    """Decayed scores as of ``now`` (epoch seconds), highest first."""
    now = time.time() if now is None else now
    rows = await analytics.query_rows(_SCORES_SQL, _params(now, weights, MAX_ENTRIES))
    return [(str(v), float(s)) for v, s in rows]


async def publish_scores(client: aioredis.Redis, scores: list[tuple[str, float]]) -> None:
    """Replace the global set atomically: build a temporary key, then RENAME over it.

    Readers (ListTrending) never see a half-written set or an empty gap.
    """
    target = trending_key()
    if not scores:
        await client.delete(target)
        return
    staging = f"{target}:next:{uuid.uuid4().hex[:8]}"
    async with client.pipeline(transaction=True) as pipe:
        pipe.zadd(staging, dict(scores))
        pipe.expire(staging, TRENDING_TTL_S)
        pipe.rename(staging, target)
        await pipe.execute()


def regions_key() -> str:
    """The regions that have a trending set now (a Redis set of alpha-2 codes)."""
    return key("trending", "regions")


async def publish_regional(
    client: aioredis.Redis, regional: dict[str, list[tuple[str, float]]]
) -> None:
    """Replace every regional set (each atomically, as the global one) and delete the
    sets of regions that have no scores any more."""
    raw = await client.smembers(regions_key())
    before = {r.decode() if isinstance(r, bytes) else str(r) for r in raw}
    live = {region for region, scores in regional.items() if scores}
    tag = uuid.uuid4().hex[:8]
    async with client.pipeline(transaction=True) as pipe:
        for region in sorted(live):
            target = trending_key(region)
            staging = f"{target}:next:{tag}"
            pipe.zadd(staging, dict(regional[region]))
            pipe.expire(staging, TRENDING_TTL_S)
            pipe.rename(staging, target)
        for region in sorted(before - live):
            pipe.delete(trending_key(region))
        pipe.delete(regions_key())
        if live:
            pipe.sadd(regions_key(), *sorted(live))
            pipe.expire(regions_key(), TRENDING_TTL_S)
        await pipe.execute()


async def recompute(
    analytics: Analytics,
    client: aioredis.Redis,
    now: float | None = None,
    weights: Weights = DEFAULT_WEIGHTS,
) -> list[tuple[str, float]]:
    """One round of the job: global and regional scores from ClickHouse into Redis;
    returns the global scores."""
    now = time.time() if now is None else now
    scores = await compute_scores(analytics, now, weights)
    regional = await compute_regional_scores(analytics, now, weights)
    await publish_scores(client, scores)
    await publish_regional(client, regional)
    return scores


class TrendingJob:
    """Recomputes trending every ``interval_s`` (``REELS_TRENDING_INTERVAL_S``, default 60).

    ``run()`` is a supervised loop of svc_stream's App. A failed round keeps the last
    good set and tries again at the next tick (not sooner: a round is a full scan).
    """

    def __init__(
        self,
        analytics: Analytics,
        client: aioredis.Redis,
        interval_s: float = 60.0,
        weights: Weights = DEFAULT_WEIGHTS,
    ) -> None:
        self.analytics = analytics
        self.client = client
        self.interval_s = interval_s
        self.weights = weights
        self.rounds = 0

    async def run(self) -> None:
        """Recompute forever (until cancelled)."""
        while True:
            try:
                await recompute(self.analytics, self.client, weights=self.weights)
                self.rounds += 1
            except Exception as exc:  # noqa: BLE001 - keep the last good set, try again later
                log.warning("trending: recompute failed: %s", exc)
            await asyncio.sleep(self.interval_s)
