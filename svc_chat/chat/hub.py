"""The per-instance hub: one Redis pub/sub connection, fanned out to local subscribers.

Owncast's chat hub runs in one process and gives each client a bounded buffer; this one
does the same on every instance, fed by Redis pub/sub so a message published on any
instance reaches every subscriber of every instance:

* **One connection, per-channel refcounts.** The hub SUBSCRIBEs to a channel when its
  first local subscriber arrives and waits for Redis' confirmation before the
  subscription reads its starting offset, so nothing published after that offset can
  be missed. It UNSUBSCRIBEs ``channel_linger_s`` after the last local subscriber left
  (a reconnect storm does not churn Redis).
* **Fan-out never waits.** Each publication is decoded once and offered to each local
  subscriber's bounded queue (svc_chat.chat.subscription); a full queue ends that
  subscriber with SLOW_CONSUMER, the others are not slowed.
* **Gap detection.** The hub remembers the last offset it delivered per channel. A
  publication that skips ahead (pub/sub lost messages: a dropped connection, an output
  buffer limit) is preceded by the missing offsets read from the history (XRANGE), so
  local subscribers see contiguous, strictly increasing offsets. After a reconnect
  (Redis confirms every channel again) each channel is re-synced the same way, so a
  publication lost just before a quiet spell is not left behind. What the history no
  longer has is not invented: subscriptions then end with a notice and resubscribe
  (``recovered: false``), never a silent gap.
* **Housekeeping** (a second loop): local subscribers are reported as viewers every
  ``viewer_touch_s``, and a stream that ended without its STREAM_ENDED publication
  reaching the channel (the streams part's hook failed) still ends its local
  subscriptions within that interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from reels import errors
from reels.cache import key
from svc_chat.chat.channel import Channel, ChannelKeys
from svc_chat.chat.publication import Publication
from svc_chat.chat.settings import ChatSettings

if TYPE_CHECKING:
    from svc_chat.chat.subscription import Subscription

log = logging.getLogger(__name__)

ViewerCallback = Callable[[str, list[str]], Awaitable[None]]
EndedCheck = Callable[[str], Awaitable[bool]]


class _ChannelState:
    __slots__ = ("keys", "subs", "ready", "epoch", "last", "idle_since")

    def __init__(self, keys: ChannelKeys) -> None:
        self.keys = keys
        self.subs: set[Subscription] = set()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.epoch: str | None = None
        self.last = 0
        self.idle_since: float | None = time.monotonic()
        """When the last local subscriber left (None while there is one)."""


@dataclass
class HubStats:
    """Counters for tests, logs and benchmarks."""

    delivered: int = 0
    """Publications delivered (each counted once, whatever the number of subscribers)."""
    refilled: int = 0
    """Publications read back from the history to fill a pub/sub gap."""
    resets: int = 0
    """Gaps the history could no longer fill (subscriptions ended with a notice)."""
    slow_consumers: int = 0
    """Subscribers dropped because their queue was full."""


class Hub:
    """Local fan-out of every channel this instance has subscribers for."""

    def __init__(
        self,
        redis: aioredis.Redis,
        channel: Channel,
        settings: ChatSettings,
        *,
        touch_viewers: ViewerCallback | None = None,
        stream_ended: EndedCheck | None = None,
    ) -> None:
        self.redis = redis
        self.store = channel
        self.settings = settings
        self.touch_viewers = touch_viewers
        self.stream_ended = stream_ended
        self.channels: dict[str, _ChannelState] = {}
        self.stats = HubStats()
        self.pubsub: Any = None
        self.control = key("chat", "hub")
        """Always subscribed, so the connection is never idle-without-subscriptions."""
        self._commands = asyncio.Lock()
        self._closed = False

    # ------------------------------------------------------------------ subscribers

    async def attach(self, sub: Subscription) -> None:
        """Register ``sub`` on its channel; returns once Redis confirmed the channel
        (UNAVAILABLE with RetryInfo when it does not within ``subscribe_timeout_s``)."""
        if self._closed:
            raise errors.Unavailable("this instance is shutting down; subscribe again", 1.0)
        name = sub.keys.pubsub
        state = self.channels.get(name)
        if state is None:
            state = _ChannelState(sub.keys)
            self.channels[name] = state
            if self.pubsub is not None:
                async with self._commands:
                    await self.pubsub.subscribe(name)
        state.subs.add(sub)
        state.idle_since = None
        try:
            await asyncio.wait_for(asyncio.shield(state.ready), self.settings.subscribe_timeout_s)
        except TimeoutError:
            self.detach(sub)
            raise errors.Unavailable(
                "the chat cannot reach its message bus right now; subscribe again", 1.0
            ) from None

    def detach(self, sub: Subscription) -> None:
        state = self.channels.get(sub.keys.pubsub)
        if state is None or sub not in state.subs:
            return
        state.subs.discard(sub)
        if not state.subs:
            state.idle_since = time.monotonic()

    def local_users(self, keys: ChannelKeys) -> set[str]:
        """The users subscribed to ``keys``' channel on this instance."""
        state = self.channels.get(keys.pubsub)
        return {s.user_id for s in state.subs} if state else set()

    def subscriber_count(self) -> int:
        return sum(len(s.subs) for s in self.channels.values())

    # ------------------------------------------------------------------ the reader

    async def run(self) -> None:
        """Read the pub/sub connection until cancelled (a supervised, required loop:
        when it fails, the supervisor restarts it and every channel is re-synced)."""
        pubsub = self.redis.pubsub()
        try:
            async with self._commands:
                self.pubsub = pubsub
                names = list(self.channels)  # no await between: see attach()
                await pubsub.subscribe(self.control, *names)
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is not None:
                    await self._on_message(message)
        finally:
            self.pubsub = None
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _on_message(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        channel = message["channel"]
        name = channel.decode() if isinstance(channel, bytes) else channel
        state = self.channels.get(name)
        if state is None:
            return
        if kind == "message":
            try:
                pub = Publication.from_pubsub(message["data"])
            except Exception:  # noqa: BLE001 - a foreign publish must not stop the hub
                log.warning("chat hub: undecodable publication on %s", name)
                return
            await self._accept(state, pub)
        elif kind == "subscribe":
            await self._sync(state)
            if not state.ready.done():
                state.ready.set_result(None)

    async def _sync(self, state: _ChannelState) -> None:
        """(Re)confirmed subscription: start from the channel's offset, or fill what was
        published while the connection was down."""
        top = await self.store.top(state.keys)
        if top is None:  # no keys (yet, or lost): the first publication sets the epoch
            state.epoch, state.last = None, 0
            return
        epoch, offset = top
        if state.epoch is None:
            state.epoch, state.last = epoch, offset
            return
        if epoch != state.epoch:
            state.epoch, state.last = epoch, 0
        if offset > state.last:
            await self._refill(state, state.last + 1, offset)

    async def _accept(self, state: _ChannelState, pub: Publication) -> None:
        if pub.epoch != state.epoch:
            # A new epoch (the channel's keys were lost): its offsets start again; each
            # subscriber of the old epoch ends with a reset notice when offered it.
            state.epoch, state.last = pub.epoch, 0
        if pub.offset <= state.last:
            return  # already delivered (read back from the history by a refill)
        if pub.offset > state.last + 1:
            await self._refill(state, state.last + 1, pub.offset - 1)
        self._deliver(state, pub)

    async def _refill(self, state: _ChannelState, first: int, last: int) -> None:
        epoch, pubs = await self.store.read_range(state.keys, first, last)
        expected = first
        for pub in pubs:
            if pub.offset != expected or epoch != state.epoch:
                break
            self._deliver(state, pub)
            self.stats.refilled += 1
            expected += 1
        if expected <= last:
            # The history lost part of the gap: subscribers see the jump and resubscribe.
            self.stats.resets += 1
            log.warning(
                "chat hub: offsets %d..%d of %s are no longer in the history",
                expected,
                last,
                state.keys.stream_id,
            )
            state.last = last

    def _deliver(self, state: _ChannelState, pub: Publication) -> None:
        state.last = pub.offset
        self.stats.delivered += 1
        for sub in tuple(state.subs):
            sub.offer(pub)

    # ------------------------------------------------------------------ housekeeping

    async def housekeeping(self) -> None:
        """Every second: leave channels idle for ``channel_linger_s``; every
        ``viewer_touch_s``: report local subscribers as viewers, and end the
        subscriptions of streams that ended without their STREAM_ENDED publication (a
        failed hook) (a supervised loop)."""
        next_touch = time.monotonic()
        while True:
            await asyncio.sleep(min(1.0, self.settings.viewer_touch_s))
            await self._leave_idle()
            if time.monotonic() >= next_touch:
                next_touch = time.monotonic() + self.settings.viewer_touch_s
                await self.touch_all()
                await self._end_ended()

    async def _end_ended(self) -> None:
        if self.stream_ended is None:
            return
        for state in list(self.channels.values()):
            if not state.subs:
                continue
            try:
                ended = await self.stream_ended(state.keys.stream_id)
            except Exception as exc:  # noqa: BLE001 - checked again next round
                log.warning("chat hub: state of %s unknown: %r", state.keys.stream_id, exc)
                continue
            if ended:
                for sub in tuple(state.subs):
                    sub.stream_over()

    async def _leave_idle(self) -> None:
        now = time.monotonic()
        linger = self.settings.channel_linger_s
        for name, state in list(self.channels.items()):
            if state.subs or state.idle_since is None or now - state.idle_since < linger:
                continue
            async with self._commands:
                if state.subs or self.channels.get(name) is not state:
                    continue  # someone arrived meanwhile
                del self.channels[name]
                if self.pubsub is not None:
                    await self.pubsub.unsubscribe(name)

    async def touch_all(self) -> None:
        """Report every local subscriber as a viewer of its stream (cross-instance
        counts age out in Redis when an instance stops touching)."""
        if self.touch_viewers is None:
            return
        for state in list(self.channels.values()):
            users = sorted({s.user_id for s in state.subs})
            if not users:
                continue
            try:
                await self.touch_viewers(state.keys.stream_id, users)
            except Exception as exc:  # noqa: BLE001 - viewer counts must not stop chat
                log.warning(
                    "chat hub: touching viewers of %s failed: %r", state.keys.stream_id, exc
                )

    async def close(self) -> None:
        """Shutting down: every local subscription ends with UNAVAILABLE (resubscribe,
        on another instance)."""
        self._closed = True
        for state in list(self.channels.values()):
            for sub in tuple(state.subs):
                sub.fail(errors.Unavailable("this chat server is restarting; subscribe again", 1.0))
