"""The ``live_streams`` table: every read and write of it (svc_chat owns it alone).

A state change is one conditional UPDATE (``WHERE state = <expected>``) plus its
``streams.events`` outbox row, in one transaction: of two concurrent EndStreams
exactly one updates a row and enqueues an event; the other updates nothing and the
caller re-reads (svc_chat.streams.part). Timestamps come from the database clock
(``now()``), so a stream's duration does not depend on which instance started or
ended it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, literal, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import errors, topics
from reels.events import new_event_id
from reels.outbox import enqueue_message
from svc_chat.models import LiveStream
from svc_chat.streams.cursor import Position
from svc_chat.streams.events import lifecycle_event
from svc_chat.streams.lifecycle import State
from svc_chat.streams.validation import NewStream
from svc_chat.streams.viewers import ViewerCounts


def is_stream_id(value: str) -> bool:
    """Stream ids are UUIDs (text form); anything else names no stream."""
    try:
        uuid.UUID(value)
    except (ValueError, TypeError):
        return False
    return True


class LiveLimitReached(errors.FailedPrecondition):
    """The creator already has ``REELS_LIVE_MAX_PER_CREATOR`` streams LIVE."""


class StreamStore:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def create(self, creator_id: str, new: NewStream, key_hash: str) -> LiveStream:
        """Insert a CREATED stream with a fresh UUID4 id."""
        stream = LiveStream(
            stream_id=str(uuid.uuid4()),
            creator_id=creator_id,
            title=new.title,
            description=new.description,
            tags=new.tags,
            state=State.CREATED.name,
            stream_key_hash=key_hash,
            peak_viewer_count=0,
            unique_viewer_count=0,
        )
        async with self.sessionmaker() as session, session.begin():
            session.add(stream)
            await session.flush()
            await session.refresh(stream)  # created_at from the database
        return stream

    async def get(self, stream_id: str) -> LiveStream | None:
        if not is_stream_id(stream_id):
            return None
        async with self.sessionmaker() as session:
            return await session.get(LiveStream, stream_id)

    async def by_key_hash(self, key_hash: str) -> LiveStream | None:
        async with self.sessionmaker() as session:
            return await session.scalar(
                select(LiveStream).where(LiveStream.stream_key_hash == key_hash)
            )

    async def replace_key(self, stream_id: str, key_hash: str) -> LiveStream | None:
        """Store a new key hash unless the stream has ended (then None: re-read)."""
        async with self.sessionmaker() as session, session.begin():
            return await session.scalar(
                update(LiveStream)
                .where(LiveStream.stream_id == stream_id, LiveStream.state != State.ENDED.name)
                .values(stream_key_hash=key_hash)
                .returning(LiveStream)
            )

    async def transition(
        self,
        stream_id: str,
        current: State,
        target: State,
        counts: ViewerCounts,
        *,
        ended_ago_s: float = 0.0,
        live_limit: int = 0,
    ) -> LiveStream | None:
        """``current -> target`` (already approved by svc_chat.streams.lifecycle) and its
        event, in one transaction; None when the stream was not in ``current`` any more
        (another call changed it first: nothing is written).

        ``ended_ago_s`` (ENDED only): the stream really ended that many seconds before
        now (the RTMP ingest waits a grace period before it ends a stream whose
        publisher left); ``ended_at`` is the database's ``now()`` minus it, never before
        ``started_at``, so ``stream.ended``'s duration is the time on air.

        ``live_limit`` (LIVE only; 0: none): raise :class:`LiveLimitReached` when the
        creator already has that many other streams LIVE. Checked in the same
        transaction under a per-creator advisory lock, so two publishes at the same
        moment cannot both pass it."""
        values: dict[str, object] = {"state": target.name}
        if target == State.LIVE:
            values["started_at"] = func.now()
        if target == State.ENDED:
            ago = timedelta(seconds=max(0.0, ended_ago_s))
            values["ended_at"] = (
                func.greatest(LiveStream.started_at, func.now() - literal(ago))
                if ago
                else func.now()
            )
            values["peak_viewer_count"] = func.greatest(LiveStream.peak_viewer_count, counts.peak)
            values["unique_viewer_count"] = func.greatest(
                LiveStream.unique_viewer_count, counts.unique
            )
        async with self.sessionmaker() as session, session.begin():
            if live_limit and target == State.LIVE:
                await self._check_live_limit(session, stream_id, live_limit)
            stream = await session.scalar(
                update(LiveStream)
                .where(LiveStream.stream_id == stream_id, LiveStream.state == current.name)
                .values(**values)
                .returning(LiveStream)
                .execution_options(populate_existing=True)
            )
            if stream is None:
                return None
            event_id = new_event_id()
            await enqueue_message(
                session,
                topics.STREAMS_EVENTS,
                lifecycle_event(stream, current, event_id),
                event_id,
            )
        return stream

    @staticmethod
    async def _check_live_limit(session: AsyncSession, stream_id: str, limit: int) -> None:
        creator = await session.scalar(
            select(LiveStream.creator_id).where(LiveStream.stream_id == stream_id)
        )
        if creator is None:
            return
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"live-creator:{creator}"}
        )
        others = await session.scalar(
            select(func.count())
            .select_from(LiveStream)
            .where(
                LiveStream.creator_id == creator,
                LiveStream.state == State.LIVE.name,
                LiveStream.stream_id != stream_id,
            )
        )
        if (others or 0) >= limit:
            raise LiveLimitReached(
                f"creator {creator} already has {others} live stream(s) on air; "
                f"the limit is {limit}: end one first"
            )

    async def live_count(self, creator_id: str, *, excluding: str = "") -> int:
        """How many of ``creator_id``'s streams are LIVE, ``excluding`` one (the RTMP
        ingest's concurrent-stream limit)."""
        async with self.sessionmaker() as session:
            return int(
                await session.scalar(
                    select(func.count())
                    .select_from(LiveStream)
                    .where(
                        LiveStream.creator_id == creator_id,
                        LiveStream.state == State.LIVE.name,
                        LiveStream.stream_id != excluding,
                    )
                )
                or 0
            )

    async def page(
        self, *, state: State | None, creator_id: str, size: int, after: Position | None
    ) -> tuple[list[LiveStream], bool]:
        """Up to ``size`` streams newest first (created_at, then id), after ``after``;
        and whether more follow."""
        query = select(LiveStream)
        if state is not None:
            query = query.where(LiveStream.state == state.name)
        if creator_id:
            query = query.where(LiveStream.creator_id == creator_id)
        if after is not None:
            query = query.where(
                tuple_(LiveStream.created_at, LiveStream.stream_id)
                < (after.created_at, after.stream_id)
            )
        query = query.order_by(LiveStream.created_at.desc(), LiveStream.stream_id.desc())
        async with self.sessionmaker() as session:
            rows = list((await session.scalars(query.limit(size + 1))).all())
        return rows[:size], len(rows) > size
