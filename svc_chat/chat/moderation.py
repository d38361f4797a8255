"""Chat moderation, held in Redis so it holds on every instance at once.

**Sending** is one Lua step (:data:`_SEND`) that checks, in this order, and publishes
only if everything passes (svc_chat.chat.channel's ``publish``):

1. idempotency: a (user, client_message_id) already accepted returns its first result
   and publishes nothing, whatever the rules say now;
2. ban (PERMISSION_DENIED, no end), timeout (PERMISSION_DENIED + RetryInfo: when it
   ends), followers-only (PERMISSION_DENIED: follow the creator first);
3. slow mode: one message per N seconds per user (RESOURCE_EXHAUSTED + RetryInfo);
4. rate limit: a sliding-window log (the sends of the last ``rate_window_s`` seconds, a
   sorted set per user and stream), ``rate_limit`` messages (20 per 30 s) for everyone,
   ``privileged_rate_limit`` for the creator and moderators (RESOURCE_EXHAUSTED +
   RetryInfo: when the oldest send leaves the window).

The creator and the moderators are exempt from 2 and 3. Every time comes from Redis'
clock, so instances with skewed clocks agree. Each refusal carries an ``ErrorInfo``
(domain ``chat.reels.v1``, reason ``CHAT_BANNED``, ``CHAT_TIMED_OUT``,
``CHAT_FOLLOWERS_ONLY``, ``CHAT_SLOW_MODE``, ``CHAT_RATE_LIMITED``) beside the RetryInfo.

**Actions** (ModerateChat) change the state and publish their notice in the same Lua
step (:data:`_MODERATE`), so the notice's offset orders it among the messages: a ban
takes effect for sends at once (the next send is refused by the same state) and for
subscriptions when each instance's hub delivers the USER_BANNED notice (milliseconds).
An action that changes nothing (banning a banned user) publishes nothing.

**Followers** of each creator are a Redis set kept from ``engagement.events``
(svc_chat.chat.follows); it is consulted only while followers-only mode is on.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.rpc import error_details_pb2

from reels import errors
from reels.cache import key
from svc_chat.chat import notices
from svc_chat.chat.channel import CHANNEL_ARGS, LUA_LIB, Channel, ChannelKeys
from svc_chat.chat.settings import ChatSettings

DOMAIN = "chat.reels.v1"
MAX_TIMEOUT_S = 7 * 86400
MAX_SLOW_MODE_S = 3600


def followers_key(creator_id: str) -> str:
    """Set: the users who follow ``creator_id`` (from engagement.events)."""
    return key("chat", "followers", creator_id)


# --------------------------------------------------------------------------- refusals


def _error_info(reason: str, metadata: dict[str, str]) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata)


class ChatForbidden(errors.PermissionDenied):
    """PERMISSION_DENIED with why (ErrorInfo) and, when it ends, RetryInfo."""

    def __init__(self, message: str, reason: str, retry_after_seconds: float | None = None):
        super().__init__(message)
        self.reason = reason
        self.retry_after_seconds = retry_after_seconds

    def details(self) -> list[object]:
        out: list[object] = [_error_info(self.reason, {})]
        if self.retry_after_seconds is not None:
            out.append(
                error_details_pb2.RetryInfo(retry_delay=notices.duration(self.retry_after_seconds))
            )
        return out


class ChatThrottled(errors.ResourceExhausted):
    """RESOURCE_EXHAUSTED with why (ErrorInfo) and RetryInfo."""

    def __init__(self, message: str, reason: str, retry_after_seconds: float) -> None:
        super().__init__(message, retry_after_seconds)
        self.reason = reason

    def details(self) -> list[object]:
        return [_error_info(self.reason, {}), *super().details()]


def retry_after_of(exc: BaseException) -> float | None:
    """When a refused send may work again (None: not by waiting)."""
    return getattr(exc, "retry_after_seconds", None)


# --------------------------------------------------------------------------- Lua

_SEND = r"""
-- KEYS 5.. : idem mode bans mutes mods rate slow
-- ARGV 8.. : user creator follower(?/1/0) payload event message_id
--            idem_ttl rate_limit rate_window privileged_limit
local c = channel()
local idem, mode_key, bans, mutes, mods, rate, slow_key =
  KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local user, creator, follower = ARGV[8], ARGV[9], ARGV[10]
local payload, event, message_id = ARGV[11], ARGV[12], ARGV[13]
local idem_ttl, limit, window, privileged_limit =
  ARGV[14], tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17])

local first = redis.call('GET', idem)
if first then return {'duplicate', first} end

local privileged = user == creator or redis.call('SISMEMBER', mods, user) == 1
local now = now_ms()
local slow = 0
if not privileged then
  if redis.call('HEXISTS', bans, user) == 1 then return {'banned', 0} end
  local muted = tonumber(redis.call('HGET', mutes, user) or '0')
  if muted > now then return {'muted', muted - now} end
  if muted > 0 then redis.call('HDEL', mutes, user) end
  local mode = redis.call('HMGET', mode_key, 'followers', 'slow')
  if mode[1] == '1' and follower ~= '1' then
    if follower == '?' then return {'need_follower', 0} end
    return {'followers_only', 0}
  end
  slow = tonumber(mode[2] or '0')
  if slow > 0 then
    local last = tonumber(redis.call('GET', slow_key) or '0')
    if last > 0 and now - last < slow then return {'slow', slow - (now - last), slow} end
  end
else
  limit = privileged_limit
end

redis.call('ZREMRANGEBYSCORE', rate, '-inf', now - window)
if redis.call('ZCARD', rate) >= limit then
  local oldest = redis.call('ZRANGE', rate, 0, 0, 'WITHSCORES')
  return {'rate', tonumber(oldest[2]) + window - now, limit}
end

local published = publish(c, 'm', payload, event, message_id, user)
redis.call('ZADD', rate, now, message_id)
redis.call('PEXPIRE', rate, window)
if slow > 0 then redis.call('SET', slow_key, now, 'PX', slow) end
redis.call('SET', idem, published[3], 'PX', idem_ttl)
return {'ok', published[3]}
"""

_MODERATE = r"""
-- KEYS 5: the state the action changes (bans, mutes, mods, mode, deleted); 6: mutes
-- ARGV 8.. : op subject value payload event
local c = channel()
local state = KEYS[5]
local op, subject, value, payload, event = ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local changed
local result = 0
if op == 'ban' then
  changed = redis.call('HSETNX', state, subject, 1) == 1
  redis.call('HDEL', KEYS[6], subject)
elseif op == 'unban' then
  changed = redis.call('HDEL', state, subject) == 1
elseif op == 'mute' then
  result = now_ms() + tonumber(value)
  redis.call('HSET', state, subject, result)
  changed = true
elseif op == 'unmute' then
  local muted = tonumber(redis.call('HGET', state, subject) or '0')
  redis.call('HDEL', state, subject)
  changed = muted > now_ms()
elseif op == 'add_mod' then
  changed = redis.call('SADD', state, subject) == 1
elseif op == 'remove_mod' then
  changed = redis.call('SREM', state, subject) == 1
elseif op == 'mode' then
  changed = (redis.call('HGET', state, subject) or '0') ~= value
  redis.call('HSET', state, subject, value)
elseif op == 'delete' then
  local entry = redis.call('XRANGE', c.history, value .. '-0', value .. '-0')
  if #entry == 0 then return {'gone', 0} end
  changed = redis.call('SADD', state, value) == 1
end
if not changed then return {'unchanged', result} end
redis.call('PEXPIRE', state, math.max(tonumber(c.meta_ttl), tonumber(value) or 0))
publish(c, 'n', payload, event, '', '')
return {'ok', result}
"""

# _SEND and _MODERATE read their own arguments from ARGV[8], after the channel's.
assert CHANNEL_ARGS == 7


@dataclass(frozen=True)
class Accepted:
    payload: bytes
    """The serialized ChatMessage (offset, epoch, sent_at set)."""
    duplicate: bool
    """True when this was a retry: the first result, nothing published."""


class Moderation:
    """The send gate and the moderation actions (both Lua, on the channel's keys)."""

    def __init__(self, channel: Channel, settings: ChatSettings) -> None:
        self.channel = channel
        self.redis = channel.redis
        self.settings = settings
        self._send = self.redis.register_script(LUA_LIB + _SEND)
        self._moderate = self.redis.register_script(LUA_LIB + _MODERATE)

    # ------------------------------------------------------------------ sending

    async def send(
        self,
        keys: ChannelKeys,
        *,
        user_id: str,
        creator_id: str,
        client_message_id: str,
        message_id: str,
        payload: bytes,
        event: bytes,
    ) -> Accepted:
        """Check every rule and publish ``payload`` (a ChatMessage without offset, epoch
        and sent_at) in one step, or raise why not (module docstring)."""
        follower = "?"
        while True:
            status, value, *extra = await self._run_send(
                keys, user_id, creator_id, client_message_id, message_id, payload, event, follower
            )
            status = status.decode()
            if status == "need_follower":
                follows = await self.redis.sismember(followers_key(creator_id), user_id)
                follower = "1" if follows else "0"
                continue
            break
        if status in ("ok", "duplicate"):
            return Accepted(bytes(value), status == "duplicate")
        raise refusal(status, int(value), int(extra[0]) if extra else 0, self.settings, creator_id)

    async def _run_send(
        self,
        keys: ChannelKeys,
        user_id: str,
        creator_id: str,
        client_message_id: str,
        message_id: str,
        payload: bytes,
        event: bytes,
        follower: str,
    ) -> list[bytes]:
        s = self.settings
        return await self._send(  # type: ignore[no-any-return]
            keys=[
                *self.channel.channel_keys(keys),
                keys.idempotency(user_id, client_message_id),
                keys.mode,
                keys.bans,
                keys.mutes,
                keys.moderators,
                keys.rate(user_id),
                keys.slow(user_id),
            ],
            args=[
                *self.channel.channel_args(keys),
                user_id,
                creator_id,
                follower,
                payload,
                event,
                message_id,
                int(s.idempotency_ttl_s * 1000),
                s.rate_limit,
                int(s.rate_window_s * 1000),
                s.privileged_rate_limit,
            ],
        )

    async def first_result(self, keys: ChannelKeys, user_id: str, client_message_id: str) -> bytes:
        """The accepted ChatMessage of an earlier send with this key (b"" if none)."""
        return await self.redis.get(keys.idempotency(user_id, client_message_id)) or b""

    # ------------------------------------------------------------------ roles

    async def is_moderator(self, keys: ChannelKeys, user_id: str) -> bool:
        return bool(await self.redis.sismember(keys.moderators, user_id))

    async def modes(self, keys: ChannelKeys) -> tuple[float, bool]:
        """(slow mode in seconds, followers-only) of a channel."""
        followers, slow = await self.redis.hmget(keys.mode, ["followers", "slow"])
        return int(slow or 0) / 1000, followers == b"1"

    # ------------------------------------------------------------------ actions

    async def apply(
        self,
        keys: ChannelKeys,
        op: str,
        *,
        state_key: str,
        subject: str,
        value: str,
        payload: bytes,
        event: bytes,
    ) -> tuple[str, int]:
        """Run one action (module docstring): ('ok' | 'unchanged' | 'gone', result)
        where result is a timeout's end (ms since the epoch, Redis clock)."""
        status, result = await self._moderate(
            keys=[*self.channel.channel_keys(keys), state_key, keys.mutes],
            args=[*self.channel.channel_args(keys), op, subject, value, payload, event],
        )
        return status.decode(), int(result)


def refusal(
    status: str, value_ms: int, limit: int, settings: ChatSettings, creator_id: str
) -> errors.ReelsError:
    """The error a refused send raises (``value_ms``: when it may work again)."""
    wait = value_ms / 1000
    if status == "banned":
        return ChatForbidden("you are banned from this chat", "CHAT_BANNED")
    if status == "muted":
        return ChatForbidden(
            f"you are timed out in this chat; you may send again in {notices.human_seconds(wait)}",
            "CHAT_TIMED_OUT",
            wait,
        )
    if status == "followers_only":
        return ChatForbidden(
            f"this chat is followers-only: follow {creator_id} to chat", "CHAT_FOLLOWERS_ONLY"
        )
    if status == "slow":
        return ChatThrottled(
            f"slow mode is on (one message every {notices.human_seconds(limit / 1000)}); "
            f"you may send again in {notices.human_seconds(wait)}",
            "CHAT_SLOW_MODE",
            wait,
        )
    if status == "rate":
        return ChatThrottled(
            f"you are sending too fast ({limit} messages per "
            f"{notices.human_seconds(settings.rate_window_s)}); "
            f"you may send again in {notices.human_seconds(wait)}",
            "CHAT_RATE_LIMITED",
            wait,
        )
    return errors.ReelsError(f"unexpected answer from the chat store: {status}")
