"""video.uploaded → a queued transcode job, exactly once per video.

The consumer only *queues*: transcoding takes minutes and must survive worker
deaths, so it runs from the Postgres queue (worker.py), not inside the Kafka
handler (which would hold the partition and blow the group's poll deadlines).
The job row commits in the same transaction that records the event id
(``IdempotentConsumer``), and ``video_id`` is unique, so a redelivered event never
makes a second job.

An event we cannot read (not a VideoUploaded, no video id, a key that is not a
safe storage path) would block its partition forever if the handler raised, so it
is parked on the dead-letter topic through the outbox instead, and consumption goes on.
"""

from __future__ import annotations

import logging

from google.protobuf.message import DecodeError
from reels.v1 import events_pb2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import topics
from reels.events import (
    IdempotentConsumer,
    ReceivedEvent,
    SessionHandler,
    inject_trace_headers,
)
from reels.storage import validate_key
from svc_transcode import jobs
from svc_transcode.messages import dead_letter_record
from svc_transcode.publish import final_prefix

log = logging.getLogger(__name__)

GROUP_ID = "svc_transcode"


def _unusable(uploaded: events_pb2.VideoUploaded | None) -> str | None:
    """Why an event cannot become a job, or None when it can."""
    if uploaded is None:
        return "the record is not a reels.v1.VideoUploaded message"
    if not uploaded.video_id:
        return "the event has no video_id"
    if not uploaded.original_key:
        return "the event has no original_key"
    try:
        if "/" in uploaded.video_id:
            raise ValueError(uploaded.video_id)
        validate_key(final_prefix(uploaded.video_id))
        validate_key(uploaded.original_key)
    except ValueError:
        return f"video_id {uploaded.video_id!r} or original_key is not a valid storage key"
    return None


def make_handler(max_attempts: int) -> SessionHandler:
    """The IdempotentConsumer handler, with the attempt budget new jobs get."""

    async def handle(session: AsyncSession, event: ReceivedEvent) -> None:
        try:
            uploaded: events_pb2.VideoUploaded | None = topics.VIDEO_UPLOADED.parse(event.value)
        except DecodeError:
            uploaded = None
        problem = _unusable(uploaded)
        if problem is not None:
            log.error(
                "%s %s parked on %s: %s",
                topics.VIDEO_UPLOADED,
                event.event_id,
                topics.VIDEO_UPLOADED_DLQ,
                problem,
            )
            record = dead_letter_record(
                (event.key or b"").decode(errors="replace") or event.event_id,
                event.value,
                reason=problem,
                permanent=True,
                attempts=0,
                job_id="",
                original_event_id=event.event_id,
            )
            await jobs.write_messages(session, [record])
            return
        assert uploaded is not None
        job_id = await jobs.create_job(
            session,
            video_id=uploaded.video_id,
            source_event_id=event.event_id,
            original_key=uploaded.original_key,
            creator_id=uploaded.creator_id,
            payload=event.value,
            max_attempts=max_attempts,
            # This consumer span's context (its parent: the relay's PRODUCER span).
            trace_context=inject_trace_headers(),
        )
        if job_id is None:
            log.info(
                "video %s already has a transcode job; event %s adds none",
                uploaded.video_id,
                event.event_id,
            )
        else:
            log.info("queued transcode job %s for video %s", job_id, uploaded.video_id)

    return handle


def make_consumer(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    max_attempts: int,
    bootstrap: str,
    session_timeout_ms: int = 6000,
    topic: topics.Topic | str = topics.VIDEO_UPLOADED,
    group_id: str = GROUP_ID,
    **kwargs: object,
) -> IdempotentConsumer:
    """The group member (``session_timeout_ms``: REELS_KAFKA_SESSION_TIMEOUT_MS; a Tansu
    join takes about half of it).

    ``topic`` and ``group_id`` are fixed in production; tests pass their own so that
    runs sharing a broker do not see each other's events.
    """
    return IdempotentConsumer(
        [topic],
        group_id,
        make_handler(max_attempts),
        sessionmaker,
        bootstrap=bootstrap,
        session_timeout_ms=session_timeout_ms,
        **kwargs,  # type: ignore[arg-type]
    )
