"""The raw aggregates behind the ranker's features, read in one Redis round trip.

Everything :func:`recsim.features.build_features` documents, from what the platform
really keeps (every key is written as events arrive, never per request):

=========================  ==========================================================
aggregate                  platform source
=========================  ==========================================================
video_views                svc_stream ``video:{id}:counters`` ``views`` (view sessions)
video_watch_sum            ``watch_ms / 1000 / duration`` (the sum of the views' watch
                           ratios: each view's ratio is its watched seconds / duration)
video_completions          ``completions``, at most ``views`` (a replay that completes
                           again is not a second completed view)
video_skips                svc_rank ``rank:video:{id}`` ``s − q``: views started that
                           never reached 25 % (the player's first milestone; recsim's
                           ``SKIP_BELOW`` is 0.2), at most ``views``
video_engagements          ``likes + shares + comments``
video_views_recent         ``rank:recent:{hour}``: views started in the last 24 hourly
                           buckets (the current hour included)
video_age_days             now − the catalog's ``published_at``
video_duration_s           the catalog's duration
creator_views / _watch_sum svc_rank ``rank:creator:{id}`` ``n`` / ``w``
creator_followers          svc_stream ``creator:{id}:counters`` ``followers``
user_views / _watch_sum    ``rank:user:{user}`` ``n`` / ``w``
pair_*                     ``rank:pair:{user}`` ``{creator}|s`` views, ``|w`` watch-ratio
                           sum, ``|l`` net likes (≥ 0), ``|c`` completions, ``|s − |q``
                           skips; follows = the followee graph or ``|f``
topic_affinity             cosine(``tw``, the video's embedding): ``tw`` is the user's
                           undecayed watch-ratio-weighted sum of watched embeddings
                           (recsim's user vector; its "content vectors" stand in for
                           the embeddings). Users without ``tw`` yet (history from
                           before it was kept) use the decayed user vector. 0 without
                           a vector or an embedding — recsim's value for a user with
                           no history.
topic_lift                 ``(tw − m·te) · e_v / (n + 5)`` with ``m`` the user's
                           smoothed mean watch ratio: recsim's
                           ``Σ (wr_i − m)·<e_i, e_v> / (n + 5)`` (linear, so it is
                           kept as two sums); 0 without them
=========================  ==========================================================

A watch ratio on the platform is reported per event (``watch_seconds / duration``,
capped at 1 per event, summed per view), see :mod:`svc_rank.index.user_state`.
When Redis is down every count is 0 and every feature is recsim's prior.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import redis.asyncio as aioredis

from reels.cache import key
from svc_rank.feature_hydrator.counters import FIELDS as VIDEO_FIELDS
from svc_rank.feature_hydrator.counters import counters_key
from svc_rank.index import user_state

RECENT_HOURS = 24


def creator_counters_key(creator_id: str) -> str:
    """svc_stream's per-creator counters (``followers``); svc_rank only reads them."""
    return key("creator", creator_id, "counters")


def _f(raw: object) -> float:
    if raw is None:
        return 0.0
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


@dataclass(slots=True)
class UserAggregates:
    views: float = 0.0
    watch_sum: float = 0.0
    topic_watch: np.ndarray | None = None
    """``tw``: Σ wr_i·e_i (not normalised)."""
    topic_count: np.ndarray | None = None
    """``te``: Σ e_i."""


@dataclass(slots=True)
class Aggregates:
    """What one request reads: per video, per creator, per (user, creator), the user."""

    video: dict[str, dict[str, float]] = field(default_factory=dict)
    """svc_stream counters plus ``s``/``q`` (starts, past 25 %) and ``recent``."""
    creator: dict[str, dict[str, float]] = field(default_factory=dict)
    """``n``, ``w``, ``followers``."""
    pair: dict[str, dict[str, float]] = field(default_factory=dict)
    user: UserAggregates = field(default_factory=UserAggregates)


def _vec(raw: object) -> np.ndarray | None:
    if not raw or not isinstance(raw, bytes | bytearray):
        return None
    return np.frombuffer(raw, dtype=np.float32).astype(np.float64)


async def read(
    redis: aioredis.Redis,
    user_id: str,
    video_ids: Sequence[str],
    creator_ids: Iterable[str],
    *,
    now: float | None = None,
) -> Aggregates:
    """Every aggregate of the candidates, in one pipelined round trip."""
    creators = list(dict.fromkeys(creator_ids))
    hour = int((time.time() if now is None else now) // 3600)
    pair_fields = [f"{c}|{f}" for c in creators for f in user_state.PAIR_FIELDS]
    async with redis.pipeline(transaction=False) as pipe:
        for vid in video_ids:
            pipe.hmget(counters_key(vid), VIDEO_FIELDS)
            pipe.hmget(user_state.video_key(vid), ("s", "q"))
        for c in creators:
            pipe.hmget(user_state.creator_key(c), ("n", "w"))
            pipe.hget(creator_counters_key(c), "followers")
        if pair_fields:
            pipe.hmget(user_state.pair_key(user_id), pair_fields)
        pipe.hmget(user_state.user_key(user_id), ("n", "w", "tw", "te", "vec"))
        if video_ids:
            for h in range(hour - RECENT_HOURS + 1, hour + 1):
                pipe.hmget(user_state.recent_key(h), list(video_ids))
        rows = await pipe.execute()
    out = Aggregates()
    it = iter(rows)
    for vid in video_ids:
        counters = next(it)
        started, past25 = next(it)
        row = {f: _f(v) for f, v in zip(VIDEO_FIELDS, counters, strict=True)}
        row["s"], row["q"], row["recent"] = _f(started), _f(past25), 0.0
        out.video[vid] = row
    for c in creators:
        n, w = next(it)
        out.creator[c] = {"n": _f(n), "w": _f(w), "followers": _f(next(it))}
    if pair_fields:
        values = next(it)
        k = len(user_state.PAIR_FIELDS)
        for i, c in enumerate(creators):
            chunk = values[i * k : (i + 1) * k]
            out.pair[c] = {f: _f(v) for f, v in zip(user_state.PAIR_FIELDS, chunk, strict=True)}
    n, w, tw, te, vec = next(it)
    topic = _vec(tw)
    out.user = UserAggregates(_f(n), _f(w), topic if topic is not None else _vec(vec), _vec(te))
    if video_ids:
        for _ in range(RECENT_HOURS):
            for vid, v in zip(video_ids, next(it), strict=True):
                out.video[vid]["recent"] += _f(v)
    return out
