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


_READ = """
local n, c, h, nf, np = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4]), tonumber(ARGV[5])
local vf, a = {}, 5
for i = 1, nf do vf[i] = ARGV[a + i] end
a = a + nf
local ids = {}
for i = 1, n do ids[i] = ARGV[a + i] end
a = a + n
local pf = {}
for i = 1, np do pf[i] = ARGV[a + i] end
local function s(v) if v then return v end return '' end
local function hm(k, fields)
  local out, i = {}, 1
  while i <= #fields do
    local j = math.min(i + 999, #fields)
    local part = redis.call('HMGET', k, unpack(fields, i, j))
    for x = 1, #part do out[#out + 1] = part[x] end
    i = j + 1
  end
  return out
end
local videos = {}
for i = 1, n do
  local row = redis.call('HMGET', KEYS[i], unpack(vf))
  local sq = redis.call('HMGET', KEYS[n + i], 's', 'q')
  local parts = {}
  for x = 1, nf do parts[x] = s(row[x]) end
  parts[nf + 1], parts[nf + 2] = s(sq[1]), s(sq[2])
  videos[i] = table.concat(parts, ',')
end
local base = 2 * n
local creators = {}
for i = 1, c do
  local nw = redis.call('HMGET', KEYS[base + i], 'n', 'w')
  local fo = redis.call('HGET', KEYS[base + c + i], 'followers')
  creators[i] = s(nw[1]) .. ',' .. s(nw[2]) .. ',' .. s(fo)
end
base = base + 2 * c
local pair = ''
if np > 0 then
  local pv = hm(KEYS[base + 1], pf)
  local parts = {}
  for x = 1, #pv do parts[x] = s(pv[x]) end
  pair = table.concat(parts, ',')
end
local user = redis.call('HMGET', KEYS[base + 2], 'n', 'w', 'tw', 'te', 'vec')
local recent = {}
for i = 1, n do recent[i] = 0 end
if n > 0 then
  for hr = 1, h do
    local vals = hm(KEYS[base + 2 + hr], ids)
    for i = 1, n do
      local v = tonumber(vals[i])
      if v then recent[i] = recent[i] + v end
    end
  end
end
for i = 1, n do recent[i] = string.format('%.17g', recent[i]) end
return {videos, creators, pair, table.concat(recent, ','),
  s(user[1]), s(user[2]), s(user[3]), s(user[4]), s(user[5])}
"""
"""One server-side read of every aggregate: the same HMGETs the keys' layout asks
for, but the 24 hourly ``recent`` buckets summed in Redis and each row sent back
as one comma-joined string (a few hundred reply elements instead of ~20k; the
pure-Python RESP parser was most of a cache miss)."""


def _row(raw: bytes) -> list[float]:
    return [_f(v) for v in raw.split(b",")]


async def read(
    redis: aioredis.Redis,
    user_id: str,
    video_ids: Sequence[str],
    creator_ids: Iterable[str],
    *,
    now: float | None = None,
) -> Aggregates:
    """Every aggregate of the candidates, in one round trip (one Lua script)."""
    video_ids = list(video_ids)
    creators = list(dict.fromkeys(creator_ids))
    hour = int((time.time() if now is None else now) // 3600)
    pair_fields = [f"{c}|{f}" for c in creators for f in user_state.PAIR_FIELDS]
    hours = range(hour - RECENT_HOURS + 1, hour + 1) if video_ids else range(0)
    keys = [
        *(counters_key(v) for v in video_ids),
        *(user_state.video_key(v) for v in video_ids),
        *(user_state.creator_key(c) for c in creators),
        *(creator_counters_key(c) for c in creators),
        user_state.pair_key(user_id),
        user_state.user_key(user_id),
        *(user_state.recent_key(h) for h in hours),
    ]
    args = [
        len(video_ids),
        len(creators),
        len(hours),
        len(VIDEO_FIELDS),
        len(pair_fields),
        *VIDEO_FIELDS,
        *video_ids,
        *pair_fields,
    ]
    videos, creator_rows, pair, recent, n, w, tw, te, vec = await redis.register_script(_READ)(
        keys=keys, args=args
    )
    out = Aggregates()
    recent_sums = _row(recent) if video_ids else []
    for i, (vid, raw) in enumerate(zip(video_ids, videos, strict=True)):
        values = _row(raw)
        row = dict(zip(VIDEO_FIELDS, values, strict=False))
        row["s"], row["q"] = values[-2], values[-1]
        row["recent"] = recent_sums[i]
        out.video[vid] = row
    for c, raw in zip(creators, creator_rows, strict=True):
        n_, w_, followers = _row(raw)
        out.creator[c] = {"n": n_, "w": w_, "followers": followers}
    if pair_fields:
        values = _row(pair)
        k = len(user_state.PAIR_FIELDS)
        for i, c in enumerate(creators):
            chunk = values[i * k : (i + 1) * k]
            out.pair[c] = dict(zip(user_state.PAIR_FIELDS, chunk, strict=True))
    topic = _vec(tw)
    out.user = UserAggregates(_f(n), _f(w), topic if topic is not None else _vec(vec), _vec(te))
    return out
