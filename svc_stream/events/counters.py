"""Per-video engagement counters in Redis for the feed, applied exactly once per event.

The feed reads counters on every ranking call, so they live in one Redis hash per
video (``key("video", id, "counters")``: views, plays, completions, watch_ms, likes,
shares, comments) instead of being queried from ClickHouse.

Watch counters count like people count (docs/DECISIONS.md, "Counting views"):

* ``views``: distinct view sessions, i.e. (user, session_id) pairs that sent a
  watch event (``watch_start``, progress or ``watch_complete``). A player re-sending
  watch_start after a stall is the same view.
* ``plays``: playthroughs. The first start of a session is one; a ``watch_start``
  after a ``watch_complete`` of the same session (a replay) is another.
* ``completions``: completed plays (a repeated watch_complete within one play is one).
* a session whose ``watch_start`` was lost (only progress or ``watch_complete``
  arrived) is still a view and a play: the start is inferred from its first watch
  event, so a viewer who finished is never a completion without a view.
* ``watch_ms``: watch time, bounded per view session (not per event) by what its plays
  can hold: at most duration x max(plays, replay allowance) in total (the allowance,
  3 by default, is for players that loop without reporting each loop). A player that
  re-sends ``watch_seconds`` on every event cannot inflate it; an unknown duration
  (0) leaves it unbounded.

That needs per-session state: one small hash per view session
(``key("view", video, digest(user, session))``: ``p`` = plays so far, ``d`` = 1 while
the current play has completed, ``c`` = established time (ms) of the last
watch_complete, ``w`` = watch ms counted so far), updated by the same Lua script, under
the same per-event ledger key, as the counters. A watch_start established *before* the
session's last watch_complete (a start delivered late, in a later batch) is not a
replay: the counters agree with the analytics, which order by established time. So a
redelivered event (same batch again, or after a restart) changes neither the state nor
the counters, and a session whose events arrive in several batches is still one view.
Session state expires ``LEDGER_TTL_S`` after the session's last event (every touch
renews it).

Kafka delivers at least once, so every increment is guarded by a ledger key
``key("counted", event_id)`` set with NX *in the same Lua script* as the increments:
Redis runs a script atomically, so an event is either counted and remembered, or
neither. A redelivery finds the ledger key and changes nothing. Ledger keys expire
after ``LEDGER_TTL_S`` (8 days): RecordEvents rejects events whose established
(clock-corrected) time is older than 7 days, so no replay of a client event can
arrive after its ledger key is gone. (For Redis
Cluster the keys of one call would need a common hash tag; the local default is one
Redis.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import redis.asyncio as aioredis

from reels.cache import key

LEDGER_TTL_S = 8 * 86400
FIELDS = ("views", "plays", "completions", "watch_ms", "likes", "shares", "comments")
# Follower counts per creator live beside them, same mechanism.
CREATOR_FIELDS = ("followers",)

# ARGV: ttl, ledger key prefix, then groups of events that touch the same hash and
# fields: hash, field count F, event count E, F field names, then E times
# (event id, F amounts). Every event is still guarded by its own ledger key; only
# the increments of the fresh ones are summed, so each hash field gets one HINCRBY
# per group instead of one per event.
_APPLY = """
local ttl = tonumber(ARGV[1])
local prefix = ARGV[2]
local applied = 0
local i = 3
local n = #ARGV
while i <= n do
  local hash = ARGV[i]
  local nf = tonumber(ARGV[i + 1])
  local ne = tonumber(ARGV[i + 2])
  local names = i + 3
  local acc = {}
  local touched = {}
  for j = 1, nf do
    acc[j] = 0
    touched[j] = false
  end
  local e = names + nf
  for _ = 1, ne do
    if redis.call('SET', prefix .. ARGV[e], '1', 'NX', 'EX', ttl) then
      applied = applied + 1
      for j = 1, nf do
        local amount = tonumber(ARGV[e + j])
        if amount ~= 0 then
          acc[j] = acc[j] + amount
          touched[j] = true
        end
      end
    end
    e = e + 1 + nf
  end
  for j = 1, nf do
    if touched[j] then
      redis.call('HINCRBY', hash, ARGV[names + j - 1], string.format('%d', acc[j]))
    end
  end
  i = e
end
return applied
"""


# Watch events. ARGV: ttl, ledger key prefix, the replay allowance, then one JSON
# array (cjson: a few large arguments cost far less to send than five per event) of
# groups per video: [counters hash, the video's duration in ms (0 = unknown),
# [[event id, session state key, kind, watch_ms, established ms], ...]]; kind is
# 1 (watch_start), 5 (watch_complete) or 0 (progress: watch time only). Events of one
# session must come in the order they happened (the caller sorts a batch). A session's
# state is read once per call (HMGET), kept in a Lua table while the call's events
# update it, and written back once (HSET + EXPIRE): the script is atomic, so this is
# the same as writing it after every event.
_APPLY_WATCH = """
local ttl = tonumber(ARGV[1])
local prefix = ARGV[2]
local allowance = tonumber(ARGV[3])
local groups = cjson.decode(ARGV[4])
local applied = 0
local states = {}
local order = {}
for _, group in ipairs(groups) do
  local hash = group[1]
  local duration = tonumber(group[2])
  local views, plays, completions, watch = 0, 0, 0, 0
  for _, ev in ipairs(group[3]) do
    if redis.call('SET', prefix .. ev[1], '1', 'NX', 'EX', ttl) then
      applied = applied + 1
      local key = ev[2]
      local kind = tonumber(ev[3])
      local at = tonumber(ev[5])
      local st = states[key]
      if st == nil then
        local v = redis.call('HMGET', key, 'p', 'd', 'c', 'w')
        if v[1] then
          st = {p = tonumber(v[1]), d = v[2] == '1', c = tonumber(v[3] or '0'),
                w = tonumber(v[4] or '0')}
        end
      end
      if st == nil then
        -- The session's first watch event: a view and its first play (a lost
        -- watch_start is inferred from whatever watch event came first).
        views = views + 1
        plays = plays + 1
        st = {p = 1, d = false, c = 0, w = 0}
      elseif kind == 1 then
        if st.d and at >= st.c then
          plays = plays + 1
          st.p = st.p + 1
          st.d = false
        end
      end
      if states[key] == nil then
        states[key] = st
        order[#order + 1] = key
      end
      if kind == 5 then
        if not st.d then
          completions = completions + 1
          st.d = true
        end
        if at > st.c then
          st.c = at
        end
      end
      local add = tonumber(ev[4])
      if duration > 0 then
        local cap = math.floor(duration * math.max(st.p, allowance))
        add = math.max(0, math.min(add, cap - st.w))
      end
      if add > 0 then
        st.w = st.w + add
        watch = watch + add
      end
    end
  end
  if views ~= 0 then redis.call('HINCRBY', hash, 'views', views) end
  if plays ~= 0 then redis.call('HINCRBY', hash, 'plays', plays) end
  if completions ~= 0 then redis.call('HINCRBY', hash, 'completions', completions) end
  if watch ~= 0 then redis.call('HINCRBY', hash, 'watch_ms', string.format('%d', watch)) end
end
for _, key in ipairs(order) do
  local st = states[key]
  redis.call('HSET', key, 'p', string.format('%d', st.p), 'd', st.d and '1' or '0',
             'c', string.format('%d', st.c), 'w', string.format('%d', st.w))
  redis.call('EXPIRE', key, ttl)
end
return applied
"""

WATCH_START_KIND = 1
WATCH_COMPLETE_KIND = 5
# Watch time of a view session is bounded by duration x max(plays, this): a player that
# loops by itself reports one play (svc_stream Settings.events_replay_allowance, the
# same allowance RecordEvents judges a single event's watch_seconds by).
DEFAULT_REPLAY_ALLOWANCE = 3.0


class WatchDelta(NamedTuple):
    """One watch event for the view/play/completion counters of ``video_id``.

    ``kind`` is :data:`WATCH_START_KIND`, :data:`WATCH_COMPLETE_KIND` or 0 (progress:
    watch time only); ``session`` is the view session's (user, session id).

    A named tuple, not a frozen dataclass: the sink makes one per watch event, and a
    frozen dataclass's ``__init__`` (``object.__setattr__`` per field) was ~20 % of the
    sink's CPU per event (py-spy, issue 14).
    """

    event_id: str
    video_id: str
    user_id: str
    session_id: str
    kind: int
    watch_ms: int
    occurred_ms: int = 0
    """Established time of the event (epoch ms): orders a late start against a complete."""


def view_session_key(video_id: str, user_id: str, session_id: str) -> str:
    """The Redis hash holding one view session's state (user and session hashed: any
    characters, bounded length)."""
    digest = hashlib.sha256(f"{user_id}\x00{session_id}".encode()).hexdigest()[:32]
    return key("view", video_id, digest)


@dataclass(frozen=True, slots=True)
class CounterDelta:
    """What one event adds: ``increments`` to the hash of ``subject`` (video or creator)."""

    event_id: str
    hash_key: str
    increments: Mapping[str, int]


def video_counters_key(video_id: str) -> str:
    return key("video", video_id, "counters")


def creator_counters_key(creator_id: str) -> str:
    return key("creator", creator_id, "counters")


class Counters:
    """Applies counter deltas idempotently; one script call per consumed batch."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        chunk: int = 500,
        replay_allowance: float = DEFAULT_REPLAY_ALLOWANCE,
    ) -> None:
        self.redis = redis
        self.chunk = chunk
        self.replay_allowance = replay_allowance
        self._script = redis.register_script(_APPLY)
        self._watch_script = redis.register_script(_APPLY_WATCH)

    async def apply_watch(
        self, deltas: Sequence[WatchDelta], durations: Mapping[str, float] | None = None
    ) -> int:
        """Apply watch events not applied before, in the given order; returns how many
        were new. Each chunk is one atomic script call, all pipelined in one round trip.

        ``durations`` (seconds, by video id) bound each view session's watch time; a
        video missing from it has its watch time unbounded.
        """
        durations = durations or {}
        if not deltas:
            return 0
        calls: list[list[str | int | bytes]] = []
        prefix = key("counted", "")
        allowance = repr(float(self.replay_allowance))
        session_keys: dict[tuple[str, str, str], str] = {}  # one sha256 per session
        for start in range(0, len(deltas), self.chunk):
            groups: dict[str, list[list[str | int]]] = {}
            for d in deltas[start : start + self.chunk]:
                skey = (d.video_id, d.user_id, d.session_id)
                session = session_keys.get(skey)
                if session is None:
                    session = session_keys[skey] = view_session_key(*skey)
                events = groups.get(d.video_id)
                if events is None:
                    events = groups[d.video_id] = []
                events.append([d.event_id, session, d.kind, d.watch_ms, d.occurred_ms])
            payload = json.dumps(
                [
                    [
                        video_counters_key(video_id),
                        max(0, round(durations.get(video_id, 0.0) * 1000)),
                        events,
                    ]
                    for video_id, events in groups.items()
                ],
                separators=(",", ":"),
            )
            calls.append([LEDGER_TTL_S, prefix, allowance, payload])
        if len(calls) == 1:
            return int(await self._watch_script(keys=[], args=calls[0]))
        async with self.redis.pipeline(transaction=False) as pipe:
            for call in calls:
                await self._watch_script(keys=[], args=call, client=pipe)
            results = await pipe.execute()
        return sum(int(r) for r in results)

    async def apply(self, deltas: Sequence[CounterDelta]) -> int:
        """Apply the deltas of events not applied before; returns how many events were new.

        Each chunk of ``chunk`` events is one atomic script call; all chunks go to
        Redis in one pipelined round trip.
        """
        if not deltas:
            return 0
        calls: list[list[str | int]] = []
        prefix = key("counted", "")
        for start in range(0, len(deltas), self.chunk):
            groups: dict[tuple[str, tuple[str, ...]], list[str | int]] = {}
            for d in deltas[start : start + self.chunk]:
                fields = tuple(d.increments)
                args = groups.get((d.hash_key, fields))
                if args is None:
                    args = groups[(d.hash_key, fields)] = []
                args.append(d.event_id)
                args.extend(d.increments.values())
            call: list[str | int] = [LEDGER_TTL_S, prefix]
            for (hash_key, fields), args in groups.items():
                call += [hash_key, len(fields), len(args) // (len(fields) + 1), *fields]
                call += args
            calls.append(call)
        if len(calls) == 1:
            return int(await self._script(keys=[], args=calls[0]))
        async with self.redis.pipeline(transaction=False) as pipe:
            for call in calls:
                await self._script(keys=[], args=call, client=pipe)
            results = await pipe.execute()
        return sum(int(r) for r in results)

    async def video(self, video_id: str) -> dict[str, int]:
        """The video's counters (zeros for what never happened)."""
        raw = await self.redis.hgetall(video_counters_key(video_id))
        return _decode(raw, FIELDS)

    async def videos(self, video_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        ids = list(video_ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for vid in ids:
                pipe.hgetall(video_counters_key(vid))
            rows = await pipe.execute()
        return {vid: _decode(raw, FIELDS) for vid, raw in zip(ids, rows, strict=True)}

    async def creator(self, creator_id: str) -> dict[str, int]:
        raw = await self.redis.hgetall(creator_counters_key(creator_id))
        return _decode(raw, CREATOR_FIELDS)


def _decode(raw: Mapping[bytes | str, bytes | str], fields: Sequence[str]) -> dict[str, int]:
    out = dict.fromkeys(fields, 0)
    for k, v in raw.items():
        name = k.decode() if isinstance(k, bytes) else k
        out[name] = int(v)
    return out
