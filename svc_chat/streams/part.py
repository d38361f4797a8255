"""The streams part of svc_chat: live-stream lifecycle, stream keys, viewer counts.

RPCs (ChatService, delegated here by svc_chat.server): CreateStream, RotateStreamKey,
StartStream, EndStream, GetStream, ListStreams, ReportViewing. Every RPC but GetStream
and ListStreams needs an authenticated caller (UNAUTHENTICATED otherwise); only the
creator may start, end or rotate the key of a stream (PERMISSION_DENIED).

API for the other parts (chat, ws) and the RTMP ingest, on this object:

* :meth:`StreamsPart.info` — a stream's owner, title and state, cached per instance for
  at most ``REELS_LIVE_INFO_CACHE_TTL_S`` (1 s): a state change is seen by every
  instance within 1 s, and at once by the instance that made it;
* :meth:`StreamsPart.touch_viewers` / :meth:`StreamsPart.drop_viewers` — the live viewer
  count (svc_chat.streams.viewers);
* :meth:`StreamsPart.verify_key` — which stream an encoder's key belongs to.

After a transition commits, the chat part is told (``ctx.chat.stream_started`` /
``ctx.chat.stream_ended``, when it has them) so it can announce it to subscribers on
this instance; other instances see the new state through :meth:`info` within 1 s.
Events (``streams.events``) go through the outbox; this part runs svc_chat's outbox
relay (every topic svc_chat produces) under the service's supervisor.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import duration_pb2
from redis.exceptions import RedisError
from reels.v1 import chat_pb2

from reels import errors, topics
from reels.auth import current_user
from reels.outbox import OutboxRelay
from svc_chat.models import LiveStream
from svc_chat.parts import Context
from svc_chat.streams import cursor, keys
from svc_chat.streams.info_cache import InfoCache
from svc_chat.streams.lifecycle import (
    State,
    check_key_rotation,
    check_transition,
    key_rotation_refused,
)
from svc_chat.streams.model import StreamInfo
from svc_chat.streams.replies import stream_proto
from svc_chat.streams.store import StreamStore, is_stream_id
from svc_chat.streams.validation import new_stream, review
from svc_chat.streams.viewers import ViewerCounts, Viewers

log = logging.getLogger(__name__)

Ctx = grpc.aio.ServicerContext


def _user() -> str:
    user = current_user.get()
    if not user:
        raise errors.Unauthenticated("this call needs an authenticated user")
    return user


def _stream_id(value: str) -> str:
    if not value:
        raise errors.InvalidArgument(
            "stream_id is required", [("stream_id", "the id CreateStream returned")]
        )
    return value


def _info(stream: LiveStream) -> StreamInfo:
    return StreamInfo(
        stream_id=stream.stream_id,
        creator_id=stream.creator_id,
        title=stream.title,
        state=State[stream.state].value,
    )


class StreamsPart:
    """See the module docstring."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.settings = ctx.settings.streams
        self.store = StreamStore(ctx.sessionmaker)
        self.viewers = Viewers(ctx.redis, state_ttl_s=self.settings.viewer_state_ttl_s)
        self.cache = InfoCache(
            self._load_info,
            ttl_s=self.settings.info_cache_ttl_s,
            max_entries=self.settings.info_cache_size,
        )
        self.relay: OutboxRelay | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.ctx.supervisor.add("outbox-relay", self._run_relay)

    async def stop(self) -> None:
        """Nothing to do: the App's supervisor cancels the relay after the parts stop
        (a row it was sending stays unsent and goes out at the next start; stopping
        the relay here would make the supervisor restart it in the meantime)."""

    async def _run_relay(self) -> None:
        platform = self.ctx.settings.platform
        relay = OutboxRelay(
            self.ctx.sessionmaker,
            bootstrap=platform.kafka_bootstrap,
            client_id="svc_chat-outbox",
            batch_size=platform.outbox_batch,
            topics=topics.produced_by("svc_chat"),
        )
        self.relay = relay
        try:
            await relay.run()
        finally:
            relay.stop()

    # ------------------------------------------------------------------ API for parts

    async def info(self, stream_id: str) -> StreamInfo | None:
        """Owner, title and state of a stream; None when there is no such stream.

        At most ``REELS_LIVE_INFO_CACHE_TTL_S`` (default 1 s) old: a state change made
        on another instance is seen within that, one made here at once."""
        if not is_stream_id(stream_id):
            return None
        return await self.cache.get(stream_id)

    async def touch_viewers(self, stream_id: str, viewer_ids: Sequence[str]) -> None:
        """``viewer_ids`` (user ids) count as watching for ``REELS_LIVE_VIEWER_TTL_S``
        (default 30 s) more; the chat part calls this for its subscribers every ~10 s."""
        await self.viewers.touch(stream_id, viewer_ids, self.settings.viewer_ttl_s)

    async def drop_viewers(self, stream_id: str, viewer_ids: Sequence[str]) -> None:
        """``viewer_ids`` stop counting now (their subscription closed)."""
        await self.viewers.drop(stream_id, viewer_ids)

    async def verify_key(self, stream_key: str) -> StreamInfo | None:
        """The stream ``stream_key`` belongs to, whatever its state (the ingest refuses
        what is not CREATED or LIVE, and says why); None for a wrong, malformed or
        rotated-away key. The lookup is by the key's SHA-256, so its time says nothing
        about how much of a guess was right; the match is rechecked in constant time."""
        if not keys.looks_like_key(stream_key):
            return None
        digest = keys.hash_key(stream_key)
        stream = await self.store.by_key_hash(digest)
        if stream is None or not keys.matches(stream_key, stream.stream_key_hash):
            return None
        return _info(stream)

    async def _load_info(self, stream_id: str) -> StreamInfo | None:
        stream = await self.store.get(stream_id)
        return None if stream is None else _info(stream)

    # ------------------------------------------------------------------ RPCs

    async def CreateStream(  # noqa: N802
        self, request: chat_pb2.CreateStreamRequest, context: Ctx
    ) -> chat_pb2.CreateStreamResponse:
        user = _user()
        fields = new_stream(request.title, request.description, request.tags)
        await review(fields)  # the text classifier, if one is configured
        key = keys.new_key()
        stream = await self.store.create(user, fields, keys.hash_key(key))
        self.cache.put(stream.stream_id, _info(stream))
        log.info(
            "stream created", extra={"fields": {"stream_id": stream.stream_id, "creator": user}}
        )
        return chat_pb2.CreateStreamResponse(
            stream=stream_proto(stream, self.settings, stream_key=key)
        )

    async def RotateStreamKey(  # noqa: N802
        self, request: chat_pb2.RotateStreamKeyRequest, context: Ctx
    ) -> chat_pb2.RotateStreamKeyResponse:
        user = _user()
        stream_id = _stream_id(request.stream_id)
        stream = await self._owned(stream_id, user, "rotate the key of")
        check_key_rotation(stream_id, State[stream.state])
        key = keys.new_key()
        updated = await self.store.replace_key(stream_id, keys.hash_key(key))
        if updated is None:  # it ended meanwhile
            raise key_rotation_refused(stream_id)
        log.info("stream key rotated", extra={"fields": {"stream_id": stream_id}})
        counts = await self._counts(updated)
        return chat_pb2.RotateStreamKeyResponse(
            stream=stream_proto(updated, self.settings, counts, stream_key=key)
        )

    async def StartStream(  # noqa: N802
        self, request: chat_pb2.StartStreamRequest, context: Ctx
    ) -> chat_pb2.StartStreamResponse:
        stream = await self._transition(_stream_id(request.stream_id), _user(), State.LIVE)
        return chat_pb2.StartStreamResponse(stream=stream_proto(stream, self.settings))

    async def EndStream(  # noqa: N802
        self, request: chat_pb2.EndStreamRequest, context: Ctx
    ) -> chat_pb2.EndStreamResponse:
        stream = await self._transition(_stream_id(request.stream_id), _user(), State.ENDED)
        return chat_pb2.EndStreamResponse(stream=stream_proto(stream, self.settings))

    async def GetStream(  # noqa: N802
        self, request: chat_pb2.GetStreamRequest, context: Ctx
    ) -> chat_pb2.GetStreamResponse:
        stream = await self._get(_stream_id(request.stream_id))
        counts = await self._counts(stream)
        out = stream_proto(stream, self.settings, counts)
        modes = getattr(self.ctx.chat, "modes", None)  # the chat part's, in Redis
        if modes is not None:
            try:
                slow_s, followers_only = await modes(stream.stream_id)
            except Exception as exc:  # noqa: BLE001 - chat modes are extra, not the stream
                log.warning("chat modes of %s unavailable: %r", stream.stream_id, exc)
            else:
                out.slow_mode.FromNanoseconds(int(round(slow_s * 1e9)))
                out.followers_only = followers_only
        return chat_pb2.GetStreamResponse(stream=out)

    async def ListStreams(  # noqa: N802
        self, request: chat_pb2.ListStreamsRequest, context: Ctx
    ) -> chat_pb2.ListStreamsResponse:
        """Newest first (created_at); ``state`` UNSPECIFIED lists every state."""
        state: State | None = None
        if request.state:
            try:
                state = State(request.state)
            except ValueError:
                raise errors.InvalidArgument(
                    f"state {request.state} is not a LiveStreamState",
                    [("state", "CREATED, LIVE, ENDED or UNSPECIFIED (every state)")],
                ) from None
        size = cursor.page_size(request.page_size)
        filters = cursor.filter_key(request.state, request.creator_id)
        after = cursor.decode(request.page_token, filters) if request.page_token else None
        rows, more = await self.store.page(
            state=state, creator_id=request.creator_id, size=size, after=after
        )
        live = [s.stream_id for s in rows if s.state == State.LIVE.name]
        counts: dict[str, ViewerCounts] = {}
        try:
            counts = await self.viewers.counts_many(live)
        except RedisError:  # list the streams without live counts
            log.warning("viewer counts unavailable for %d streams", len(live), exc_info=True)
        token = ""
        if more and rows:
            last = rows[-1]
            token = cursor.encode(cursor.Position(last.created_at, last.stream_id), filters)
        return chat_pb2.ListStreamsResponse(
            streams=[stream_proto(s, self.settings, counts.get(s.stream_id)) for s in rows],
            next_page_token=token,
        )

    async def ReportViewing(  # noqa: N802
        self, request: chat_pb2.ReportViewingRequest, context: Ctx
    ) -> chat_pb2.ReportViewingResponse:
        """The caller watches the stream for ``REELS_LIVE_VIEWER_TTL_S`` more seconds;
        replies with the viewers counting now and when to send the next heartbeat.

        Errors: NOT_FOUND, FAILED_PRECONDITION (not LIVE), UNAVAILABLE (Redis down;
        RetryInfo = the heartbeat interval). The stream's state comes from :meth:`info`
        (at most 1 s old), so a heartbeat that races an end on another instance may
        still count once."""
        user = _user()
        stream_id = _stream_id(request.stream_id)
        info = await self.info(stream_id)
        if info is None:
            raise errors.NotFound("live stream", stream_id)
        if not info.live:
            raise errors.FailedPrecondition(
                f"stream {stream_id} is {State(info.state).name}, not LIVE; "
                "only a live stream has viewers"
            )
        try:
            count = await self.viewers.touch(stream_id, [user], self.settings.viewer_ttl_s)
        except RedisError as exc:
            raise errors.Unavailable(
                "viewer counting is unavailable; send the next heartbeat as usual",
                retry_after_seconds=self.settings.heartbeat_interval_s,
            ) from exc
        interval = duration_pb2.Duration()
        interval.FromNanoseconds(int(self.settings.heartbeat_interval_s * 1e9))
        return chat_pb2.ReportViewingResponse(viewer_count=count, heartbeat_interval=interval)

    # ------------------------------------------------------------------ helpers

    async def _get(self, stream_id: str) -> LiveStream:
        stream = await self.store.get(stream_id)
        if stream is None:
            raise errors.NotFound("live stream", stream_id)
        return stream

    async def _owned(self, stream_id: str, user: str, action: str) -> LiveStream:
        """The stream, if ``user`` created it: NOT_FOUND / PERMISSION_DENIED."""
        stream = await self._get(stream_id)
        if stream.creator_id != user:
            raise errors.PermissionDenied(f"only the creator of stream {stream_id} may {action} it")
        return stream

    async def _counts(self, stream: LiveStream) -> ViewerCounts | None:
        """Live counts of a LIVE stream; None otherwise, or when Redis cannot answer
        (a read shows the stream without live counts rather than failing)."""
        if stream.state != State.LIVE.name:
            return None
        try:
            return await self.viewers.counts(stream.stream_id)
        except RedisError:
            log.warning("viewer counts unavailable for %s", stream.stream_id, exc_info=True)
            return None

    async def _transition(self, stream_id: str, user: str, target: State) -> LiveStream:
        """Owner-only ``-> target``. The UPDATE is conditional on the state read, so a
        concurrent change makes it miss; then the stream is read again and checked
        again. A stream changes state at most twice, so three rounds always decide."""
        verb = "start" if target == State.LIVE else "end"
        for _ in range(3):
            stream = await self._owned(stream_id, user, verb)
            current = State[stream.state]
            check_transition(stream_id, current, target)
            counts = ViewerCounts()
            ended_ago_s = 0.0
            if target == State.ENDED and current == State.LIVE:
                counts = await self._final_counts(stream_id)
                if self.ctx.ingest is not None:  # its publisher left already (grace)
                    ended_ago_s = self.ctx.ingest.left_ago_s(stream_id)
            changed = await self.store.transition(
                stream_id, current, target, counts, ended_ago_s=ended_ago_s
            )
            if changed is not None:
                await self._after(changed, current)
                return changed
        raise errors.FailedPrecondition(f"stream {stream_id} changed state meanwhile; retry")

    async def _final_counts(self, stream_id: str) -> ViewerCounts:
        """Peak and unique viewers to freeze at the end; zeros if Redis cannot say (a
        Redis outage must not keep a stream from ending)."""
        try:
            return await self.viewers.counts(stream_id)
        except RedisError:  # end the stream anyway
            log.warning("viewer counts unavailable at end of %s", stream_id, exc_info=True)
            return ViewerCounts()

    async def _after(self, stream: LiveStream, previous: State) -> None:
        """Once a transition committed: the local cache, Redis, the chat part."""
        self.cache.put(stream.stream_id, _info(stream))
        log.info(
            "stream state changed",
            extra={
                "fields": {
                    "stream_id": stream.stream_id,
                    "from": previous.name,
                    "to": stream.state,
                }
            },
        )
        hook_name = "stream_started" if stream.state == State.LIVE.name else "stream_ended"
        if stream.state == State.ENDED.name:
            try:  # the counts are stored in the row; the live set is no longer needed
                await self.viewers.forget(stream.stream_id)
            except RedisError:  # the keys expire anyway
                log.warning("could not delete viewer keys", exc_info=True)
        if stream.state == State.ENDED.name and self.ctx.ingest is not None:
            self.ctx.ingest.stream_ended(stream.stream_id)  # drops its publisher, if any
        hook: Any = getattr(self.ctx.chat, hook_name, None)
        if hook is not None:
            try:
                await hook(stream.stream_id)
            except Exception:  # noqa: BLE001 - the transition stands; chat sees it via info()
                log.exception("chat %s hook failed", hook_name)

    # ------------------------------------------------------------------ RTMP ingest

    async def ingest_started(self, stream_id: str, *, live_limit: int = 0) -> LiveStream:
        """CREATED -> LIVE on behalf of the RTMP ingest (svc_chat.ingest), which has
        checked the stream key: the key stands for the creator, so there is no owner
        check here. A stream already LIVE (StartStream, or a publisher that came back)
        is returned as it is; an ENDED one is FAILED_PRECONDITION. Same conditional
        UPDATE + outbox row (``stream.started``) as StartStream. ``live_limit``: the
        creator's concurrent-stream limit, checked atomically (StreamStore.transition;
        LiveLimitReached, a FAILED_PRECONDITION)."""
        for _ in range(3):
            stream = await self._get(stream_id)
            current = State[stream.state]
            if current == State.LIVE:
                return stream
            check_transition(stream_id, current, State.LIVE)
            changed = await self.store.transition(
                stream_id, current, State.LIVE, ViewerCounts(), live_limit=live_limit
            )
            if changed is not None:
                await self._after(changed, current)
                return changed
        raise errors.FailedPrecondition(f"stream {stream_id} changed state meanwhile; retry")

    async def ingest_ended(self, stream_id: str, *, ended_ago_s: float = 0.0) -> LiveStream | None:
        """LIVE -> ENDED on behalf of the RTMP ingest once its publisher is gone for good
        (no owner check, as for :meth:`ingest_started`); None when the stream had
        already ended (EndStream won).

        ``ended_ago_s``: how long ago the publisher left (the ingest waited its grace
        period since). ``ended_at`` is the database's ``now()`` minus that, so
        ``stream.ended``'s ``duration_seconds`` is the time the stream was really on
        air, not on air plus the grace period."""
        for _ in range(3):
            stream = await self.store.get(stream_id)
            if stream is None or stream.state == State.ENDED.name:
                return None
            current = State[stream.state]
            counts = await self._final_counts(stream_id) if current == State.LIVE else None
            changed = await self.store.transition(
                stream_id, current, State.ENDED, counts or ViewerCounts(), ended_ago_s=ended_ago_s
            )
            if changed is not None:
                await self._after(changed, current)
                return changed
        raise errors.FailedPrecondition(f"stream {stream_id} changed state meanwhile; retry")

    async def live_count(self, creator_id: str, *, excluding: str = "") -> int:
        """The creator's streams on air now, but ``excluding`` (svc_chat.ingest's
        concurrent-stream limit, ``REELS_LIVE_MAX_PER_CREATOR``)."""
        return await self.store.live_count(creator_id, excluding=excluding)
