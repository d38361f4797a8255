"""The raw aggregates behind the ranker's features, read in one Redis round trip.

Everything :func:`recsim.features.build_features` documents, from what the platform
really keeps (every key is written as events arrive, never per request):

=========================  ==========================================================
aggregate                  platform source
=========================  ==========================================================
video_views                svc_stream ``video:{id}:counters`` ``views`` (view sessions)
video_watch_sum            ``watch_ms / 1000 / duration`` (the sum of the views' watch
                           ratios: each view's ratio is its watched seconds / duration)
video_completions          svc_rank ``rank:video:{id}`` ``c``: views that completed
                           (once per view session: a replay that completes again is
                           not a second completed view), at most ``views``
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
    """svc_stream counters plus svc_rank's per-view ``s``/``q``/``c`` (views started,
    past 25 %, completed) and ``recent``."""
    creator: dict[str, dict[str, float]] = field(default_factory=dict)
    """``n``, ``w``, ``followers``."""
    pair: dict[str, dict[str, float]] = field(default_factory=dict)
    user: UserAggregates = field(default_factory=UserAggregates)


def _vec(raw: object) -> np.ndarray | None:
    if not raw or not isinstance(raw, bytes | bytearray):
        return None
    return np.frombuffer(raw, dtype=np.float32).astype(np.float64)


SEP = "\x1f"
"""Separator of the ids packed into one script argument (ASCII unit separator: never
part of an id, which the upload and event validators keep printable)."""

_READ = """
local SEP = ARGV[1]
local function split(str)  -- keeps empty parts (a key template's empty suffix)
  local out, i = {}, 1
  if str == '' then return out end
  while true do
    local j = string.find(str, SEP, i, true)
    if not j then out[#out + 1] = string.sub(str, i); return out end
    out[#out + 1] = string.sub(str, i, j - 1)
    i = j + 1
  end
end
local vf, ids, creators, pf = split(ARGV[2]), split(ARGV[3]), split(ARGV[4]), split(ARGV[5])
local hour0, h = tonumber(ARGV[6]), tonumber(ARGV[7])
local tpl = split(ARGV[8])  -- prefix/suffix pairs, see TEMPLATES
local function k(t, id) return tpl[2 * t - 1] .. id .. tpl[2 * t] end
local function z(v) if v then return v end return '0' end
local function s(v) if v then return v end return '' end
local function hm(key, fields)
  local out, i = {}, 1
  while i <= #fields do
    local j = math.min(i + 999, #fields)
    local part = redis.call('HMGET', key, unpack(fields, i, j))
    for x = 1, #part do out[#out + 1] = part[x] end
    i = j + 1
  end
  return out
end
local n, c, nf = #ids, #creators, #vf
local videos = {}
for i = 1, n do
  local row = redis.call('HMGET', k(1, ids[i]), unpack(vf))
  local sq = redis.call('HMGET', k(2, ids[i]), 's', 'q', 'c')
  for x = 1, nf do videos[#videos + 1] = z(row[x]) end
  videos[#videos + 1], videos[#videos + 2], videos[#videos + 3] = z(sq[1]), z(sq[2]), z(sq[3])
end
local cr = {}
for i = 1, c do
  local nw = redis.call('HMGET', k(3, creators[i]), 'n', 'w')
  cr[#cr + 1], cr[#cr + 2] = z(nw[1]), z(nw[2])
  cr[#cr + 1] = z(redis.call('HGET', k(4, creators[i]), 'followers'))
end
local pair = {}
if #pf > 0 then
  local names = {}
  for i = 1, c do
    for x = 1, #pf do names[#names + 1] = creators[i] .. '|' .. pf[x] end
  end
  local pv = hm(ARGV[9], names)
  for x = 1, #pv do pair[x] = z(pv[x]) end
end
local user = redis.call('HMGET', ARGV[10], 'n', 'w', 'tw', 'te', 'vec')
local recent = {}
for i = 1, n do recent[i] = 0 end
if n > 0 then
  for hr = hour0, hour0 + h - 1 do
    local vals = hm(k(5, hr), ids)
    for i = 1, n do
      local v = tonumber(vals[i])
      if v then recent[i] = recent[i] + v end
    end
  end
end
for i = 1, n do recent[i] = string.format('%.17g', recent[i]) end
return {table.concat(videos, ','), table.concat(cr, ','), table.concat(pair, ','),
  table.concat(recent, ','), s(user[1]), s(user[2]), s(user[3]), s(user[4]), s(user[5])}
"""
"""One server-side read of every aggregate: the HMGETs the keys' layout asks for, the
24 hourly ``recent`` buckets summed in Redis, and every table sent back as one
comma-joined string (missing fields as 0). The ids go in as one packed argument
each and the script builds the key names from templates (the prefixed key with a
placeholder id, cut in two): redis-py's pure-Python command packer and reply
parser were most of a cache miss with one argument and one reply element per
field. Keys are therefore not declared to Redis: this needs one Redis instance
(not Redis Cluster), as the feed's other multi-key scripts do."""

_HOLE = "\x00"


def _template(make: object) -> tuple[str, str]:
    before, _, after = make(_HOLE).partition(_HOLE)  # type: ignore[operator]
    return before, after


def _numbers(raw: bytes, width: int) -> np.ndarray:
    """A comma-joined reply table as ``float64 [rows, width]`` (garbage reads as 0)."""
    if not raw:
        return np.zeros((0, width))
    parts = raw.split(b",")
    try:
        flat = np.array(parts, dtype=np.float64)
    except ValueError:
        flat = np.array([_f(v) for v in parts], dtype=np.float64)
    return flat.reshape(-1, width)


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
    n_hours = RECENT_HOURS if video_ids else 0
    templates = (
        counters_key,
        user_state.video_key,
        user_state.creator_key,
        creator_counters_key,
        user_state.recent_key,
    )
    args = [
        SEP,
        SEP.join(VIDEO_FIELDS),
        SEP.join(video_ids),
        SEP.join(creators),
        SEP.join(user_state.PAIR_FIELDS),
        hour - RECENT_HOURS + 1,
        n_hours,
        SEP.join(part for t in templates for part in _template(t)),
        user_state.pair_key(user_id),
        user_state.user_key(user_id),
    ]
    videos, creator_rows, pair, recent, n, w, tw, te, vec = await redis.register_script(_READ)(
        keys=[], args=args
    )
    out = Aggregates()
    nv = len(VIDEO_FIELDS)
    table = _numbers(videos, nv + 3).tolist()
    recent_sums = _numbers(recent, 1)[:, 0].tolist()
    for vid, values, rec in zip(video_ids, table, recent_sums, strict=True):
        row = dict(zip(VIDEO_FIELDS, values, strict=False))
        row["s"], row["q"], row["c"] = values[nv], values[nv + 1], values[nv + 2]
        row["recent"] = rec
        out.video[vid] = row
    for c, (n_, w_, followers) in zip(creators, _numbers(creator_rows, 3).tolist(), strict=True):
        out.creator[c] = {"n": n_, "w": w_, "followers": followers}
    if creators:
        k = len(user_state.PAIR_FIELDS)
        for c, chunk in zip(creators, _numbers(pair, k).tolist(), strict=True):
            out.pair[c] = dict(zip(user_state.PAIR_FIELDS, chunk, strict=True))
    topic = _vec(tw)
    out.user = UserAggregates(_f(n), _f(w), topic if topic is not None else _vec(vec), _vec(te))
    return out
