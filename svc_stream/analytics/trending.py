"""Trending scores live in one Redis sorted set (written by the trending job).

svc_stream owns the set; svc_rank reads it only through ListTrending.
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


async def compute_scores(
    analytics: Analytics, now: float | None = None, weights: Weights = DEFAULT_WEIGHTS
) -> list[tuple[str, float]]:
    """Decayed scores as of ``now`` (epoch seconds), highest first."""
    now = time.time() if now is None else now
    rows = await analytics.query_rows(
        _SCORES_SQL,
        {
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
            "limit": MAX_ENTRIES,
        },
    )
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


async def recompute(
    analytics: Analytics,
    client: aioredis.Redis,
    now: float | None = None,
    weights: Weights = DEFAULT_WEIGHTS,
) -> list[tuple[str, float]]:
    """One round of the job: scores from ClickHouse into Redis."""
    scores = await compute_scores(analytics, now, weights)
    await publish_scores(client, scores)
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
