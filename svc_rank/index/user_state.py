"""Per-user state in Redis: the user vector, user × creator affinity counters, the
user's hashtags and region. Written by the consumers as events arrive (never per
request), read by the feed's hydrators in one round trip each.

**The user vector** is the completion-weighted mean of the embeddings of the videos
the user watched, with exponential decay toward newer watches:

    S = Σ_i w_i · e_i · 2^(−(t_ref − t_i) / H)        (t_i: the event's client time)

``w_i`` is how much of the video the watch covered, credited as it happens: each of
PROGRESS_25, PROGRESS_50, PROGRESS_75 and WATCH_COMPLETE adds 0.25, so a full watch
weighs 1, a watch abandoned after a quarter 0.25, and a watch_start alone nothing
(a skip says "not this", not "more like this"). The half-life ``H`` is 3 days of event
time (``REELS_RANK_USER_VECTOR_HALF_LIFE_S``): a short-video diet shifts within days,
and a week-old session still counts a quarter. Only the direction of S matters
(similar recall searches by cosine), so the stored sum is rescaled to the newest
event's time ``t_ref`` on each update: ``S ← S·2^(−(t − t_ref)/H) + w·e`` for a newer
event, ``S ← S + w·e·2^(−(t_ref − t)/H)`` for a late one. The result does not depend
on arrival order, so replays, late batches and several partitions (video.events is
keyed by video, so one user's events arrive on many) all give the same vector.

Kept as a hash ``rank:user:{user}``: ``vec`` (float32 bytes of S), ``t`` (t_ref, ms),
``region``. Each event is applied once: a ledger key ``rank:seen:{event_id}`` is set
in the same MULTI as the update, under WATCH of both keys (optimistic; a concurrent
update of the same user retries).

**Affinity counters** ``rank:pair:{user}`` hold per creator ``{creator}|f`` (follows,
0/1), ``|l`` (net likes), ``|s`` (views started), ``|q`` (views past 25 %) and ``|c``
(completions), ``|w`` (watch-ratio sum); skips are read as ``s − q``. **Hashtags**
``rank:tags:{user}`` is a sorted set of the hashtags of watched videos by credited
weight (the explanation "Because you watched #tag").

**The learned ranker's aggregates** (the raw inputs of ``recsim.features.build_features``,
see :mod:`svc_rank.feature_hydrator.aggregates`), applied in the same MULTI:

* a watch event's watch ratio is ``watch_seconds / duration`` of the event (the
  player reports the seconds watched since its previous event), capped at 1 per
  event; a view's ratio is the sum over its events (replays may push it past 1);
* ``rank:user:{user}`` ``n`` views started, ``w`` watch-ratio sum, ``tw`` (float32
  bytes of ``Σ wr_i·e_i``, the undecayed watch-ratio-weighted sum of the watched
  videos' embeddings) and ``te`` (``Σ e_i``, one per view) — together they give
  ``topic_affinity`` and ``topic_lift`` exactly as recsim defines them;
* ``rank:creator:{creator}`` ``n`` views started, ``w`` watch-ratio sum;
* ``rank:video:{video}`` ``s`` views started, ``q`` views past 25 % (skips = s − q),
  ``c`` views that completed;
* ``rank:recent:{hour}`` video → views started in that hour (expires after 26 h),
  the ``video_views_recent`` window.

**A view is a view session, not a play** (:mod:`reels.view_sessions`: the player's
``session_id``, or a 30-minute window for clients without one). A replay within the
session — a short video looping, or restarted — is the same view: its watch_start,
PROGRESS_25 and WATCH_COMPLETE count once per view (flags in
``rank:view:{user}:{session}:{video}``, 1 day), as recsim counts impressions
(``views``), watch ratios under 0.2 (``skips``) and ratios of at least 1
(``completions``). Its watch time still adds up (the ratio may pass 1), and every
play's credit still moves the user vector.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import WatchError
from reels.v1 import common_pb2

from reels.cache import key
from svc_rank.index.catalog import VideoInfo

LEDGER_TTL_S = 8 * 86400
USER_TTL_S = 90 * 86400
PAIR_FIELDS = ("f", "l", "s", "q", "c", "w")

# Credit of each watch event toward the user vector (sums to 1 for a full watch).
WATCH_CREDIT = {
    common_pb2.EVENT_TYPE_PROGRESS_25: 0.25,
    common_pb2.EVENT_TYPE_PROGRESS_50: 0.25,
    common_pb2.EVENT_TYPE_PROGRESS_75: 0.25,
    common_pb2.EVENT_TYPE_WATCH_COMPLETE: 0.25,
}


def user_key(user_id: str) -> str:
    return key("rank", "user", user_id)


def pair_key(user_id: str) -> str:
    return key("rank", "pair", user_id)


def tags_key(user_id: str) -> str:
    return key("rank", "tags", user_id)


def creator_key(creator_id: str) -> str:
    return key("rank", "creator", creator_id)


def video_key(video_id: str) -> str:
    return key("rank", "video", video_id)


def view_key(user_id: str, session: str, video_id: str) -> str:
    """Which of a view's firsts (``s`` start, ``q`` past 25 %, ``c`` complete) were
    counted: a replay in the same view session counts none of them again. The three
    ids are hashed together (SHA-256 of their JSON list): ids may contain ``:``, so
    joining them would let two different views share a key."""
    digest = hashlib.sha256(json.dumps([user_id, session, video_id]).encode()).hexdigest()
    return key("rank", "view", digest[:32])


VIEW_TTL_S = 86400


def recent_key(hour: int) -> str:
    """Views started in epoch hour ``hour`` (a hash: video id -> count)."""
    return key("rank", "recent", hour)


RECENT_TTL_S = 26 * 3600


def watch_ratio(watch_seconds: float, duration_s: float) -> float:
    """One event's contribution to its view's watch ratio (0..1)."""
    if duration_s <= 0 or not watch_seconds > 0:
        return 0.0
    return min(1.0, watch_seconds / duration_s)


def ledger_key(event_id: str) -> str:
    return key("rank", "seen", event_id)


def decayed_sum(
    stored: np.ndarray | None,
    stored_t_ms: int,
    add: np.ndarray,
    weight: float,
    t_ms: int,
    half_life_s: float,
) -> tuple[np.ndarray, int]:
    """The new (S, t_ref) after adding ``weight·add`` seen at ``t_ms`` (pure)."""
    if stored is None or stored.shape != add.shape:
        return (weight * add).astype(np.float32), t_ms
    if t_ms >= stored_t_ms:
        factor = 2.0 ** (-(t_ms - stored_t_ms) / 1000.0 / half_life_s)
        return (stored * factor + weight * add).astype(np.float32), t_ms
    factor = 2.0 ** (-(stored_t_ms - t_ms) / 1000.0 / half_life_s)
    return (stored + weight * factor * add).astype(np.float32), stored_t_ms


def _vec(raw: bytes | None) -> np.ndarray | None:
    if not raw:
        return None
    return np.frombuffer(raw, dtype=np.float32).copy()


@dataclass(frozen=True, slots=True)
class WatchUpdate:
    event_id: str
    user_id: str
    video_id: str
    video: VideoInfo | None
    """The catalog's entry (None while its video.published is still on the way)."""
    kind: int
    occurred_ms: int
    country: str = ""
    watch_seconds: float = 0.0
    session: str = ""
    """The view session (:func:`reels.view_sessions.effective_session`); "" = every
    watch_start is a new view (no session known)."""


async def apply_watch(
    redis: aioredis.Redis,
    update: WatchUpdate,
    *,
    half_life_s: float,
    served_key: str,
) -> bool:
    """Apply one ``video.events`` record exactly once; False when it was seen before."""
    ledger = ledger_key(update.event_id)
    ukey = user_key(update.user_id)
    video = update.video
    credit = WATCH_CREDIT.get(update.kind, 0.0)
    first_field = _VIEW_FIRSTS.get(update.kind)
    vwkey = (
        view_key(update.user_id, update.session, update.video_id)
        if update.session and (first_field or update.kind in _PAST_QUARTER)
        else None
    )
    ratio = watch_ratio(update.watch_seconds, video.duration_s) if video is not None else 0.0
    embedding = video.embedding if video is not None else None
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(ledger, ukey, *((vwkey,) if vwkey else ()))
                if await pipe.exists(ledger):
                    await pipe.reset()
                    return False
                # Counted once per view: a replay's start / 25 % / completion is not new.
                # Any milestone past 25 % (50, 75, complete) also means "past 25 %": a
                # player that sends watch_start then watch_complete did not skip.
                first = first_field is not None and (
                    vwkey is None or not await pipe.hexists(vwkey, first_field)
                )
                past_quarter = update.kind in _PAST_QUARTER and (
                    (update.kind == common_pb2.EVENT_TYPE_PROGRESS_25 and first)
                    or (
                        vwkey is not None
                        and update.kind != common_pb2.EVENT_TYPE_PROGRESS_25
                        and not await pipe.hexists(vwkey, "q")
                    )
                )
                started = first and update.kind == common_pb2.EVENT_TYPE_WATCH_START
                new_vec: tuple[np.ndarray, int] | None = None
                topic: dict[str, bytes] = {}
                need_vec = bool(credit) and embedding is not None
                need_topic = embedding is not None and (started or ratio > 0)
                if need_vec or need_topic:
                    raw_vec, raw_t, raw_tw, raw_te = await pipe.hmget(ukey, "vec", "t", "tw", "te")
                    if need_vec:
                        assert embedding is not None
                        new_vec = decayed_sum(
                            _vec(raw_vec),
                            int(raw_t or 0),
                            embedding,
                            credit,
                            update.occurred_ms,
                            half_life_s,
                        )
                    if need_topic:
                        assert embedding is not None
                        if ratio > 0:
                            topic["tw"] = _add(_vec(raw_tw), embedding, ratio).tobytes()
                        if started:
                            topic["te"] = _add(_vec(raw_te), embedding, 1.0).tobytes()
                pipe.multi()
                pipe.set(ledger, 1, ex=LEDGER_TTL_S)
                if vwkey is not None and (first or past_quarter):
                    flags = {first_field: 1} if first else {}
                    if past_quarter:
                        flags["q"] = 1
                    pipe.hset(vwkey, mapping=flags)  # type: ignore[arg-type]
                    pipe.expire(vwkey, VIEW_TTL_S)
                if new_vec is not None:
                    pipe.hset(ukey, mapping={"vec": new_vec[0].tobytes(), "t": new_vec[1]})
                if topic:
                    pipe.hset(ukey, mapping=topic)  # type: ignore[arg-type]
                if update.country:
                    pipe.hset(ukey, "region", update.country.upper())
                if video is not None:
                    ckey, vkey = creator_key(video.creator_id), video_key(update.video_id)
                    if started:
                        pipe.hincrby(ukey, "n", 1)
                        pipe.hincrby(ckey, "n", 1)
                        pipe.hincrby(vkey, "s", 1)
                        hour = min(update.occurred_ms, int(time.time() * 1000)) // 3_600_000
                        rkey = recent_key(hour)
                        pipe.hincrby(rkey, update.video_id, 1)
                        pipe.expire(rkey, RECENT_TTL_S)
                    if past_quarter:
                        pipe.hincrby(vkey, "q", 1)
                    if first and update.kind == common_pb2.EVENT_TYPE_WATCH_COMPLETE:
                        pipe.hincrby(vkey, "c", 1)
                    if ratio > 0:
                        pipe.hincrbyfloat(ukey, "w", ratio)
                        pipe.hincrbyfloat(ckey, "w", ratio)
                    pipe.expire(ckey, USER_TTL_S)
                    pipe.expire(vkey, USER_TTL_S)
                pipe.expire(ukey, USER_TTL_S)
                if video is not None:
                    field = first_field if first and first_field != "q" else None
                    pkey = pair_key(update.user_id)
                    if field:
                        pipe.hincrby(pkey, f"{video.creator_id}|{field}", 1)
                    if past_quarter:
                        pipe.hincrby(pkey, f"{video.creator_id}|q", 1)
                    if ratio > 0:
                        pipe.hincrbyfloat(pkey, f"{video.creator_id}|w", ratio)
                    if field or ratio > 0:
                        pipe.expire(pkey, USER_TTL_S)
                    if credit and video.hashtags:
                        tkey = tags_key(update.user_id)
                        for tag in video.hashtags:
                            pipe.zincrby(tkey, credit, tag)
                        pipe.expire(tkey, USER_TTL_S)
                if started:
                    # Watched (from the feed or a shared link): never served again
                    # within the window, like a served item; known to the catalog or not.
                    at = min(update.occurred_ms, int(time.time() * 1000))
                    pipe.zadd(served_key, {update.video_id: at})
                await pipe.execute()
                return True
            except WatchError:
                continue


_PAST_QUARTER = frozenset(
    {
        common_pb2.EVENT_TYPE_PROGRESS_25,
        common_pb2.EVENT_TYPE_PROGRESS_50,
        common_pb2.EVENT_TYPE_PROGRESS_75,
        common_pb2.EVENT_TYPE_WATCH_COMPLETE,
    }
)

_VIEW_FIRSTS = {
    common_pb2.EVENT_TYPE_WATCH_START: "s",
    common_pb2.EVENT_TYPE_PROGRESS_25: "q",
    common_pb2.EVENT_TYPE_WATCH_COMPLETE: "c",
}


def _add(stored: np.ndarray | None, add: np.ndarray, weight: float) -> np.ndarray:
    if stored is None or stored.shape != add.shape:
        return (weight * add).astype(np.float32)
    return (stored + weight * add).astype(np.float32)


# Ledger + increments in one script, so an event changes the counters once or not at all.
_INCR = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  local i = 3
  while i <= #ARGV do
    redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
    i = i + 2
  end
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


async def apply_pair_increments(
    redis: aioredis.Redis, event_id: str, user_id: str, increments: Mapping[str, int]
) -> bool:
    """Add ``increments`` (``"{creator}|l": 1``...) to the user's affinity counters once."""
    args: list[str | int] = [LEDGER_TTL_S, USER_TTL_S]
    for name, amount in increments.items():
        args += [name, int(amount)]
    result = await redis.eval(_INCR, 2, ledger_key(event_id), pair_key(user_id), *args)
    return bool(result)


@dataclass(frozen=True, slots=True)
class UserProfile:
    vector: np.ndarray | None
    region: str
    top_tags: tuple[str, ...]


async def profile(redis: aioredis.Redis, user_id: str, *, tags: int = 5) -> UserProfile:
    """The user's unit vector (None without history), region and top hashtags."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hmget(user_key(user_id), "vec", "region")
        pipe.zrevrange(tags_key(user_id), 0, tags - 1)
        (raw_vec, raw_region), raw_tags = await pipe.execute()
    vector = _vec(raw_vec)
    if vector is not None:
        norm = float(np.linalg.norm(vector))
        vector = vector / norm if norm > 0 and np.isfinite(norm) else None
    region = raw_region.decode() if isinstance(raw_region, bytes) else (raw_region or "")
    return UserProfile(
        vector,
        region,
        tuple(t.decode() if isinstance(t, bytes) else str(t) for t in raw_tags),
    )


async def pair_counts(
    redis: aioredis.Redis, user_id: str, creators: Iterable[str]
) -> dict[str, dict[str, float]]:
    """Affinity counters of the user on each creator (zeros when none)."""
    names = list(dict.fromkeys(creators))
    if not names:
        return {}
    fields = [f"{c}|{f}" for c in names for f in PAIR_FIELDS]
    values = await redis.hmget(pair_key(user_id), fields)
    out: dict[str, dict[str, int]] = {}
    for i, creator in enumerate(names):
        chunk = values[i * len(PAIR_FIELDS) : (i + 1) * len(PAIR_FIELDS)]
        out[creator] = {f: _num(v) for f, v in zip(PAIR_FIELDS, chunk, strict=True)}
    return out


def _num(raw: bytes | str | None) -> float:
    """A counter as a number (integer counters and HINCRBYFLOAT sums alike)."""
    return float(raw) if raw is not None else 0.0
