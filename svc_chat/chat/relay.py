"""The ``streams.chat`` relay: the one relay Redis stream -> Kafka, effectively once.

Every accepted publication that is a message, a deletion or a moderation action has its
``ChatMessageEvent`` appended to one Redis stream in the same Lua step that numbers,
stores and broadcasts it (svc_chat.chat.channel), so an event exists if and only if the
publication does. This loop moves them to Kafka:

* **One relay at a time.** Instances elect a leader with a Redis lease
  (``SET NX PX``, renewed every round; a crashed leader's lease lapses after
  :data:`LEASE_S`, a stopping one hands it back at once). One reader keeps the
  relay stream's order, which is every channel's offset order, so Kafka holds each
  stream's events in order (key stream_id).
* **Consumer group.** The leader reads with ``XREADGROUP`` (its own pending entries
  first, then new ones). An entry is ``XACK``\\ ed and deleted only after Kafka
  acknowledged it (``acks=all``); a failed send leaves it, and everything after it,
  pending for the next round. A new leader first takes over what earlier leaders
  read but never acknowledged (``XAUTOCLAIM``).
* **Effectively once.** A leader that crashes after Kafka acknowledged but before
  ``XACK`` gets those entries re-sent by its successor: duplicates, never losses.
  Every event's id is the publication's id (the message id for messages), so
  consumers drop a duplicate by event id (reels.events.IdempotentConsumer).

If Redis loses the relay stream (flush, failover without persistence) the group is
created again; what was lost with it is lost with the history, like the chat itself.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from reels import topics
from reels.cache import key
from reels.events import EVENT_ID_HEADER, EventProducer, OutgoingEvent, ensure_topics
from reels.supervise import report_not_ready, report_ready
from svc_chat.chat.channel import relay_key
from svc_chat.chat.settings import ChatSettings

log = logging.getLogger(__name__)

GROUP = "svc_chat.chat.relay"
LEASE_S = 30.0  # longer than one Kafka send may take (request timeout 10 s + 5)
BLOCK_MS = 1000

_RENEW = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 2 or 0
"""


@dataclass
class RelayStats:
    sent: int = 0
    """Events Kafka acknowledged."""
    claimed: int = 0
    """Entries taken over from an earlier leader."""
    failures: int = 0


class Relay:
    def __init__(
        self,
        redis: aioredis.Redis,
        settings: ChatSettings,
        *,
        bootstrap: str,
        instance: str | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.bootstrap = bootstrap
        self.instance = instance or uuid.uuid4().hex
        self.stats = RelayStats()
        self.leading = False
        self._renew = redis.register_script(_RENEW)

    @property
    def stream(self) -> str:
        return relay_key()

    @property
    def lease_key(self) -> str:
        return key("chat", "relay", "leader")

    async def run(self) -> None:
        """Relay until cancelled (a supervised loop; a Kafka or Redis failure restarts
        it with backoff, entries stay pending meanwhile)."""
        producer = EventProducer(self.bootstrap, client_id="svc_chat-chat-relay")
        await ensure_topics([topics.STREAMS_CHAT], bootstrap=self.bootstrap)
        await producer.start()
        try:
            await self._ensure_group()
            claimed_at = 0.0
            loop = asyncio.get_running_loop()
            idle = self.settings.relay_claim_idle_s
            while True:
                was_leading = self.leading
                if not await self._lead():
                    await asyncio.sleep(LEASE_S / 5)
                    continue
                if not was_leading or loop.time() - claimed_at > idle:
                    # A new leader takes everything over at once (order); later, only
                    # what stayed unacknowledged for `idle` (a zombie ex-leader's).
                    await self._claim(idle if was_leading else 0)
                    claimed_at = loop.time()
                entries = await self._read("0")
                if not entries:
                    entries = await self._read(">", block=BLOCK_MS)
                if entries:
                    await self._send(producer, entries)
        finally:
            if self.leading:
                self.leading = False
                await self._resign()
            await producer.stop()

    # ------------------------------------------------------------------ leadership

    async def _lead(self) -> bool:
        ms = int(LEASE_S * 1000)
        answer = await self._renew(keys=[self.lease_key], args=[self.instance, ms])
        leading = bool(answer)
        if leading and not self.leading:
            log.info("chat relay: %s leads the streams.chat relay", self.instance)
        self.leading = leading
        return leading

    async def _resign(self) -> None:
        try:
            if await self.redis.get(self.lease_key) == self.instance.encode():
                await self.redis.delete(self.lease_key)
        except Exception:  # noqa: BLE001 - the lease lapses by itself
            pass

    # ------------------------------------------------------------------ the stream

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(self, start: str, block: int | None = None) -> list[Any]:
        try:
            reply = await self.redis.xreadgroup(
                GROUP,
                self.instance,
                {self.stream: start},
                count=self.settings.relay_batch,
                block=block,
            )
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._ensure_group()
            return []
        if not reply:
            return []
        entries = reply[0][1]
        return [(i, f) for i, f in entries if f]  # a pending entry deleted meanwhile: f empty

    async def _claim(self, min_idle_s: float) -> None:
        """Take over entries earlier leaders read and never acknowledged."""
        start = "0-0"
        while True:
            try:
                reply = await self.redis.xautoclaim(
                    self.stream,
                    GROUP,
                    self.instance,
                    int(min_idle_s * 1000),
                    start_id=start,
                    count=self.settings.relay_batch,
                )
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._ensure_group()
                return
            start, claimed = reply[0], reply[1]  # (redis-py drops the cursor with JUSTID)
            self.stats.claimed += len(claimed)
            if start in (b"0-0", "0-0") or not claimed:
                return

    async def _done(self, entry_ids: list[Any]) -> None:
        """Acknowledge and delete (the relay stream holds only what is still to send)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, GROUP, *entry_ids)
            pipe.xdel(self.stream, *entry_ids)
            await pipe.execute()

    async def _send(self, producer: EventProducer, entries: list[Any]) -> None:
        events = []
        sendable = []
        for entry_id, fields in entries:
            try:
                payload = fields[b"e"]
                event = topics.STREAMS_CHAT.parse(payload)
                key_ = fields[b"s"].decode()
            except Exception:  # noqa: BLE001 - a poison entry must not wedge the relay
                log.error("chat relay: entry %r is not a ChatMessageEvent; dropped", entry_id)
                await self._done([entry_id])
                continue
            headers = {EVENT_ID_HEADER: event.meta.event_id, **dict(event.meta.trace_context)}
            events.append(OutgoingEvent(topics.STREAMS_CHAT, key_, payload, headers))
            sendable.append((entry_id, fields))
        entries = sendable
        if not events:
            return
        results = await producer.send_many(events)
        done = []
        for (entry_id, _), result in zip(entries, results, strict=False):
            if isinstance(result, Exception):
                break
            done.append(entry_id)
        if done:
            await self._done(done)
            self.stats.sent += len(done)
        if len(done) < len(entries):
            self.stats.failures += 1
            failure = next(r for r in results if isinstance(r, Exception))
            report_not_ready(f"Kafka refused streams.chat events: {failure!r}")
            await asyncio.sleep(min(5.0, 0.2 * 2 ** min(self.stats.failures, 5)))
        else:
            report_ready()
