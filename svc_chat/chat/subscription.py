"""One chat subscription: join (with recovery), then a bounded queue of live publications.

Recovery follows Centrifugo's contract. On entering, the subscription first registers
with the hub (live publications start queueing), then reads, in one atomic Redis step
(svc_chat.chat.channel ``join``), the channel's epoch and offset and, when asked, the
history after ``since_offset``. The client gets:

1. ``joined`` {epoch, offset, recovered, missed};
2. when ``recovered``: the ``missed`` publications (offsets since_offset+1..offset,
   deleted messages as tombstones);
3. the live publications after ``offset``, from the queue; those the queue holds twice
   (queued while the history was read) are skipped by offset, so nothing is delivered
   twice and nothing is skipped.

``recovered`` is false, explicitly, when the epoch differs (Redis lost the channel) or
the history no longer holds since_offset+1 (trimmed past ``history_size`` or expired).

The queue holds at most ``queue_size`` publications (Owncast: 256). When a publication
finds it full, the queue is dropped and replaced by one SLOW_CONSUMER notice, the last
frame this subscription yields: the client resubscribes with its last offset and
recovers from the history. Other terminal frames: STREAM_ENDED (after every earlier
publication), YOU_ARE_BANNED (at once: the rest is not for a banned user), and a reset
notice when the offsets this subscription receives stop being contiguous (a new epoch,
or a gap the history could not fill).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from reels.v1 import chat_pb2

from svc_chat.chat import notices
from svc_chat.chat.channel import ChannelKeys
from svc_chat.chat.moderation import ChatForbidden
from svc_chat.chat.publication import Publication, chat_frame_of

if TYPE_CHECKING:
    from svc_chat.chat import ChatPart

Frame = chat_pb2.SubscribeChatResponse


class Subscription:
    """An async context manager and an async iterator of ``SubscribeChatResponse``.

    Entering raises NOT_FOUND (unknown stream), PERMISSION_DENIED (the user is banned)
    or UNAVAILABLE (the hub cannot reach Redis). Iteration stops after a terminal
    notice (STREAM_ENDED, YOU_ARE_BANNED, SLOW_CONSUMER).
    """

    __slots__ = (
        "part",
        "stream_id",
        "user_id",
        "keys",
        "recover",
        "since_offset",
        "requested_epoch",
        "max_queue",
        "epoch",
        "last",
        "joined",
        "acked",
        "creator_id",
        "_backlog",
        "_queue",
        "_terminal",
        "_error",
        "_stopped",
        "_finished",
        "_wakeup",
        "_entered",
    )

    def __init__(
        self,
        part: ChatPart,
        stream_id: str,
        user_id: str,
        *,
        recover: bool = False,
        since_offset: int = 0,
        epoch: str = "",
    ) -> None:
        self.part = part
        self.stream_id = stream_id
        self.user_id = user_id
        self.keys = ChannelKeys(stream_id)
        self.recover = recover
        self.since_offset = since_offset
        self.requested_epoch = epoch
        self.max_queue = part.settings.chat.queue_size
        self.epoch = ""
        self.last = 0
        """The offset of the last live publication yielded (or of the join)."""
        self.joined: chat_pb2.ChatJoined | None = None
        self.acked = 0
        """The offset the client acknowledged last (Chat's ack frames)."""
        self._backlog: deque[Publication | Frame] = deque()
        self._queue: deque[Publication] = deque()
        self._terminal: Frame | None = None
        self._error: BaseException | None = None
        self._stopped = False
        """No more publications are accepted (a terminal frame may still be pending)."""
        self._finished = False
        """Nothing more will be yielded."""
        self._wakeup = asyncio.Event()
        self._entered = False
        self.creator_id = ""

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Subscription:
        part = self.part
        info = await part.stream_info(self.stream_id)
        self.creator_id = info.creator_id
        await part.hub.attach(self)
        try:
            since = self.since_offset if self.recover else None
            state = await part.channel.join(self.keys, self.user_id, since, self.requested_epoch)
            if state.banned and self.user_id != info.creator_id:
                raise ChatForbidden("you are banned from this chat", "CHAT_BANNED")
            self.epoch = state.epoch
            self.last = state.offset
            recovered = state.missed is not None  # asked for, same epoch, all still there
            missed = state.missed or []
            self.joined = chat_pb2.ChatJoined(
                stream_id=self.stream_id,
                epoch=state.epoch,
                offset=state.offset,
                recovered=recovered,
                missed=len(missed),
            )
            self._backlog.append(Frame(joined=self.joined))
            for pub in missed:
                self._backlog.append(pub)
                if pub.ends_stream:
                    self._stop()
                    break
            if info.ended and not self._stopped:
                self._backlog.append(Frame(notice=notices.stream_ended(self.stream_id, self.epoch)))
                self._stop()
        except BaseException:
            part.hub.detach(self)
            raise
        self._entered = True
        await part.viewer_joined(self.stream_id, self.user_id)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop()
        if self._entered:
            self._entered = False
            await self.part.viewer_left(self.stream_id, self.user_id)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Frame:
        item = await self._next()
        return item.frame if isinstance(item, Publication) else item

    async def next_chat(self) -> chat_pb2.ChatResponse:
        """The next frame as a ``Chat`` (bidi) frame; StopAsyncIteration at the end."""
        item = await self._next()
        return item.chat_frame() if isinstance(item, Publication) else chat_frame_of(item)

    # ------------------------------------------------------------------ the hub's side

    def offer(self, pub: Publication) -> None:
        """A live publication (called by the hub; never blocks)."""
        if self._stopped:
            return
        banned = pub.banned_user
        if banned and banned == self.user_id and banned != self.creator_id:
            # Nothing more for a banned user, not even recovered history still unread.
            self._backlog = deque(
                f for f in self._backlog if isinstance(f, Frame) and f.HasField("joined")
            )
            self._end(Frame(notice=notices.you_are_banned(self.stream_id, self.user_id)))
            return
        if len(self._queue) >= self.max_queue:
            self.part.hub.stats.slow_consumers += 1
            self._end(
                Frame(notice=notices.slow_consumer(self.stream_id, self.max_queue, self.last))
            )
            return
        self._queue.append(pub)
        self._wakeup.set()

    def stream_over(self) -> None:
        """The stream ended but its STREAM_ENDED publication never came (the hook that
        publishes it failed): end after what is queued, with a STREAM_ENDED notice."""
        if self._stopped:
            return
        self._terminal = Frame(notice=notices.stream_ended(self.stream_id, self.epoch))
        self._stop()

    def fail(self, error: BaseException) -> None:
        """End with ``error`` raised from the iteration (the instance is stopping)."""
        if self._stopped:
            return
        self._queue.clear()
        self._error = error
        self._stop()

    # ------------------------------------------------------------------ internals

    def _end(self, terminal: Frame) -> None:
        """Drop what is queued: ``terminal`` is the last frame."""
        self._queue.clear()
        self._terminal = terminal
        self._stop()

    def _stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.part.hub.detach(self)
        self._wakeup.set()

    async def _next(self) -> Publication | Frame:
        while True:
            if self._finished:
                raise StopAsyncIteration
            if self._backlog:
                item = self._backlog.popleft()
                if isinstance(item, Publication) and item.ends_stream:
                    self._finish_after()
                elif isinstance(item, Frame) and item.HasField("notice"):
                    if item.notice.kind == chat_pb2.CHAT_NOTICE_KIND_STREAM_ENDED:
                        self._finish_after()
                return item
            if self._queue:
                pub = self._queue.popleft()
                if pub.offset <= self.last and pub.epoch == self.epoch:
                    continue  # also in the recovered history
                if pub.epoch != self.epoch or pub.offset != self.last + 1:
                    self._end(Frame(notice=notices.reset(self.stream_id, self.last)))
                    continue
                self.last = pub.offset
                if pub.ends_stream:
                    self._finish_after()
                return pub
            if self._terminal is not None:
                terminal, self._terminal = self._terminal, None
                self._finished = True
                return terminal
            if self._error is not None:
                self._finished = True
                raise self._error
            if self._stopped:
                self._finished = True
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()

    def _finish_after(self) -> None:
        """The frame being returned is the last one."""
        self._queue.clear()
        self._backlog.clear()
        self._terminal = None
        self._stop()
