"""A stream's chat channel in Redis: one atomic Lua step per publication, its history,
and the reads recovery and GetChatHistory need.

The publishing step (Centrifugo's design; :data:`LUA_LIB` ``publish``), all at once:

1. takes the channel's epoch, creating a new random one (and dropping whatever history
   and tombstones are left) when the channel's keys are gone (never published to,
   expired, or Redis lost them);
2. increments the channel's offset (``HINCRBY meta offset``);
3. appends ``offset``, ``epoch`` (and for a message ``sent_at``, from Redis' clock so
   every instance agrees) to the serialized proto: protobuf lets fields be appended
   to an encoded message, so the payload is built without decoding it in Lua;
4. ``XADD``\\ s it to the channel's history, a Redis stream capped at ``history_size``
   entries (``MAXLEN ~``) whose entry ids are ``<offset>-0``, so a range of offsets is
   one ``XRANGE``; the history (and the channel's other keys) expire
   ``history_ttl_s`` after the last publication (Centrifugo's ``history_ttl``);
5. ``PUBLISH``\\ es ``offset:epoch:kind:payload`` on the channel's pub/sub topic;
6. ``XADD``\\ s the Kafka event (a ``ChatMessageEvent``, offset and epoch appended) to
   the one relay stream (svc_chat.chat.relay) when the publication has one.

Because numbering, storing and broadcasting are one step, the order a subscriber sees
is the order of the history, on every instance. Keys of a channel share the hash tag
``{<stream_id>}``; the relay stream is global (on Redis Cluster it would have to be
sharded by slot: one relay stream per hash tag range).

Deleting a message does not rewrite the history (stream entries are immutable): its
offset joins the channel's ``deleted`` set and every read serves a tombstone in its
place (svc_chat.chat.publication).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from reels.cache import key
from svc_chat.chat.publication import Publication
from svc_chat.chat.settings import ChatSettings

# --------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class ChannelKeys:
    """Every Redis key (and the pub/sub topic) of one stream's chat channel."""

    stream_id: str
    base: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", key("chat", "{" + self.stream_id + "}"))

    @property
    def meta(self) -> str:
        """Hash: ``epoch``, ``offset`` (the last publication's)."""
        return self.base + ":meta"

    @property
    def history(self) -> str:
        """Stream: the last ``history_size`` publications, entry id ``<offset>-0``."""
        return self.base + ":history"

    @property
    def deleted(self) -> str:
        """Set: offsets of deleted messages (served as tombstones)."""
        return self.base + ":deleted"

    @property
    def pubsub(self) -> str:
        return self.base + ":pub"

    @property
    def mode(self) -> str:
        """Hash: ``slow`` (ms between one user's messages), ``followers`` (0/1)."""
        return self.base + ":mode"

    @property
    def bans(self) -> str:
        """Hash: banned user -> 1."""
        return self.base + ":bans"

    @property
    def mutes(self) -> str:
        """Hash: timed-out user -> until (ms since the epoch, Redis clock)."""
        return self.base + ":mutes"

    @property
    def moderators(self) -> str:
        """Set: the moderators the creator named."""
        return self.base + ":mods"

    def idempotency(self, user_id: str, client_message_id: str) -> str:
        """String: the first accepted result of (user, client_message_id)."""
        return f"{self.base}:idem:{len(user_id)}:{user_id}:{client_message_id}"

    def rate(self, user_id: str) -> str:
        """Sorted set: the user's accepted sends in the rate window (score = ms)."""
        return f"{self.base}:rate:{user_id}"

    def slow(self, user_id: str) -> str:
        """String: when the user last sent (ms), kept for the slow-mode interval."""
        return f"{self.base}:slow:{user_id}"


def relay_key() -> str:
    """The one stream every instance appends Kafka events to (svc_chat.chat.relay)."""
    return key("chat", "relay")


def new_epoch() -> str:
    """A random epoch: 12 hex digits (48 bits), never reused in practice."""
    return secrets.token_hex(6)


# --------------------------------------------------------------------------- Lua

# Shared by every script that publishes. Lua 5.1 numbers are doubles: offsets and
# milliseconds are exact far beyond any channel's life (2^53).
LUA_LIB = r"""
local function varint(n)
  local out = {}
  while n >= 128 do
    out[#out + 1] = string.char(n % 128 + 128)
    n = math.floor(n / 128)
  end
  out[#out + 1] = string.char(n)
  return table.concat(out)
end

local function f_varint(tag, n)
  if n == 0 then return '' end
  return string.char(tag) .. varint(n)
end

local function f_bytes(tag, s)
  return string.char(tag) .. varint(#s) .. s
end

-- google.protobuf.Timestamp as field `tag` (seconds = 1, nanos = 2)
local function f_time(tag, ms)
  local body = f_varint(8, math.floor(ms / 1000)) .. f_varint(16, (ms % 1000) * 1000000)
  return f_bytes(tag, body)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The channel's epoch; a new one (and no stale history) when its keys are gone.
local function ensure(meta, history, deleted, candidate, meta_ttl)
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    epoch = candidate
    redis.call('DEL', history, deleted)
    redis.call('HSET', meta, 'epoch', epoch, 'offset', 0)
    redis.call('PEXPIRE', meta, meta_ttl)
  end
  return epoch
end

-- c: meta history deleted relay channel stream_id size ttl meta_ttl relay_max epoch_candidate
-- kind: 'm' (ChatMessage: field 5 sent_at, 7 offset, 8 epoch) or 'n' (ChatNotice: 7, 8)
-- event: a ChatMessageEvent without offset (10), epoch (11), sent_at (6); '' = none
local function publish(c, kind, payload, event, message_id, user)
  local epoch = ensure(c.meta, c.history, c.deleted, c.candidate, c.meta_ttl)
  local offset = redis.call('HINCRBY', c.meta, 'offset', 1)
  local now = now_ms()
  payload = payload .. f_varint(0x38, offset) .. f_bytes(0x42, epoch)
  if kind == 'm' then payload = payload .. f_time(0x2A, now) end
  redis.call('XADD', c.history, 'MAXLEN', '~', c.size, offset .. '-0',
    'k', kind, 'p', payload, 'm', message_id, 'u', user)
  redis.call('PEXPIRE', c.history, c.ttl)
  redis.call('PEXPIRE', c.meta, c.meta_ttl)
  redis.call('PUBLISH', c.channel, offset .. ':' .. epoch .. ':' .. kind .. ':' .. payload)
  if event ~= '' then
    event = event .. f_varint(0x50, offset) .. f_bytes(0x5A, epoch) .. f_time(0x32, now)
    redis.call('XADD', c.relay, 'MAXLEN', '~', c.relay_max, '*', 's', c.stream_id, 'e', event)
  end
  return {offset, epoch, payload}
end

-- The channel description every publishing script receives as KEYS[1..4] and
-- ARGV[1..7]; a script's own arguments follow.
local function channel()
  return {
    meta = KEYS[1], history = KEYS[2], deleted = KEYS[3], relay = KEYS[4],
    channel = ARGV[1], stream_id = ARGV[2], size = ARGV[3], ttl = ARGV[4],
    meta_ttl = ARGV[5], relay_max = ARGV[6], candidate = ARGV[7],
  }
end
"""

# Number of ARGV entries the channel description takes (the script's own follow).
CHANNEL_ARGS = 7

_JOIN = r"""
-- KEYS: meta history deleted bans; ARGV: candidate meta_ttl user since max epoch
local epoch = ensure(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
local top = tonumber(redis.call('HGET', KEYS[1], 'offset'))
local banned = redis.call('HEXISTS', KEYS[4], ARGV[3])
local since = tonumber(ARGV[4])
local entries = {}
local deleted = {}
if epoch == ARGV[6] and since >= 0 and since < top and top - since <= tonumber(ARGV[5]) then
  entries = redis.call('XRANGE', KEYS[2], (since + 1) .. '-0', '+', 'COUNT', top - since)
  for _, o in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    if tonumber(o) > since then deleted[#deleted + 1] = o end
  end
end
return {epoch, top, banned, entries, deleted}
"""

_PUBLISH = r"""
-- ARGV after the channel: kind payload event
return publish(channel(), ARGV[8], ARGV[9], ARGV[10], '', '')
"""

_FIND = r"""
-- KEYS: history; ARGV: message_id. Newest first, 200 entries a call.
local last = '+'
while true do
  local batch = redis.call('XREVRANGE', KEYS[1], last, '-', 'COUNT', 200)
  if #batch == 0 then return {} end
  for _, entry in ipairs(batch) do
    local f = entry[2]
    for i = 1, #f, 2 do
      if f[i] == 'm' and f[i + 1] == ARGV[1] then
        local user = ''
        for j = 1, #f, 2 do if f[j] == 'u' then user = f[j + 1] end end
        return {entry[1], user}
      end
    end
  end
  local oldest = batch[#batch][1]
  local o = tonumber(string.match(oldest, '^(%d+)'))
  if o <= 1 then return {} end
  last = (o - 1) .. '-0'
end
"""


# --------------------------------------------------------------------------- reads


@dataclass(frozen=True)
class JoinState:
    """What a new subscription learns in one atomic read (see :meth:`Channel.join`)."""

    epoch: str
    offset: int
    banned: bool
    missed: list[Publication] | None
    """The publications after ``since`` (None: not asked, or the history no longer
    holds them all)."""


@dataclass(frozen=True)
class Page:
    epoch: str
    publications: list[Publication]
    has_more: bool


class Channel:
    """The Redis side of every channel: publishing notices, joining, reading history."""

    def __init__(self, redis: aioredis.Redis, settings: ChatSettings) -> None:
        self.redis = redis
        self.settings = settings
        self._join = redis.register_script(LUA_LIB + _JOIN)
        self._publish = redis.register_script(LUA_LIB + _PUBLISH)
        self._find = redis.register_script(_FIND)

    # ------------------------------------------------------------------ publishing

    def channel_keys(self, keys: ChannelKeys) -> list[str]:
        return [keys.meta, keys.history, keys.deleted, relay_key()]

    def channel_args(self, keys: ChannelKeys) -> list[str | int]:
        s = self.settings
        return [
            keys.pubsub,
            keys.stream_id,
            s.history_size,
            int(s.history_ttl_s * 1000),
            int(s.history_meta_ttl_s * 1000),
            s.relay_max_len,
            new_epoch(),
        ]

    async def publish(
        self, keys: ChannelKeys, kind: str, payload: bytes, event: bytes = b""
    ) -> int:
        """Publish one notice (or message) as is; returns its offset."""
        reply = await self._publish(
            keys=self.channel_keys(keys),
            args=[*self.channel_args(keys), kind, payload, event],
        )
        return int(reply[0])

    # ------------------------------------------------------------------ reads

    async def join(
        self, keys: ChannelKeys, user_id: str, since: int | None, epoch: str = ""
    ) -> JoinState:
        """Epoch (created if the channel has none yet, so a client that joins an empty
        channel can recover from offset 0 later), the current offset, whether
        ``user_id`` is banned and, when ``since`` is given and ``epoch`` is the
        channel's, every publication after it if the history still holds them all
        (``missed``; None otherwise). One atomic step: nothing can be published
        between the offset it reports and the range it reads."""
        s = self.settings
        current, top, banned, entries, deleted = await self._join(
            keys=[keys.meta, keys.history, keys.deleted, keys.bans],
            args=[
                new_epoch(),
                int(s.history_meta_ttl_s * 1000),
                user_id,
                -1 if since is None else since,
                s.history_size,
                epoch,
            ],
        )
        top = int(top)
        current = current.decode()
        missed: list[Publication] | None = None
        if since is not None and epoch == current:
            pubs = _decode(entries, deleted)
            if since == top or (
                since < top
                and len(pubs) == top - since
                and [p.offset for p in pubs] == list(range(since + 1, top + 1))
            ):
                missed = pubs
        return JoinState(current, top, bool(banned), missed)

    async def top(self, keys: ChannelKeys) -> tuple[str, int] | None:
        """(epoch, last offset), or None when the channel has no keys."""
        epoch, offset = await self.redis.hmget(keys.meta, ["epoch", "offset"])
        if epoch is None:
            return None
        return epoch.decode(), int(offset or 0)

    async def read_range(
        self, keys: ChannelKeys, first: int, last: int
    ) -> tuple[str | None, list[Publication]]:
        """The channel's epoch and the publications ``first..last`` the history still has
        (fewer when it was trimmed; check the offsets)."""
        if last < first:
            return None, []
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(keys.meta, "epoch")
            pipe.xrange(keys.history, f"{first}-0", f"{last}-0")
            pipe.smembers(keys.deleted)
            epoch, entries, deleted = await pipe.execute()
        return (epoch.decode() if epoch else None), _decode(entries, deleted)

    async def page(self, keys: ChannelKeys, before: int, limit: int) -> Page:
        """Up to ``limit`` publications before offset ``before`` (0: the newest),
        oldest first."""
        if before == 1:
            epoch = await self.redis.hget(keys.meta, "epoch")
            return Page(epoch.decode() if epoch else "", [], False)
        upper = "+" if before <= 0 else f"{before - 1}-0"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(keys.meta, "epoch")
            pipe.xrevrange(keys.history, upper, "-", count=limit + 1)
            pipe.smembers(keys.deleted)
            epoch, entries, deleted = await pipe.execute()
        pubs = _decode(list(reversed(entries)), deleted)
        has_more = len(pubs) > limit
        return Page(epoch.decode() if epoch else "", pubs[-limit:] if has_more else pubs, has_more)

    async def find_message(self, keys: ChannelKeys, message_id: str) -> tuple[int, str] | None:
        """(offset, author) of a message still in the history, else None."""
        found = await self._find(keys=[keys.history], args=[message_id])
        if not found:
            return None
        entry_id, user = found
        return int(entry_id.decode().split("-", 1)[0]), user.decode()


def _decode(entries: list[Any], deleted: Iterable[Any] | None) -> list[Publication]:
    gone = {int(o) for o in (deleted or ())}
    out = []
    for entry_id, fields in entries:
        if isinstance(fields, list):  # raw Lua reply: [k1, v1, k2, v2...]
            fields = dict(zip(fields[::2], fields[1::2], strict=True))
        out.append(Publication.from_entry(entry_id, fields, gone))
    return out
