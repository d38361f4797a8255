"""video.moderated -> publish or drop a video the NSFW classifier held for review.

svc_upload owns video status and the review queue; a moderator's decision there
becomes a ``video.moderated`` event (producer svc_upload). svc_transcode owns
``video.published`` and keeps the held video's event in its job row (jobs.mark_held),
so it is this consumer that, in one transaction with the processed-events ledger
(``IdempotentConsumer``):

* approve (decision PUBLISH by a moderator): writes the kept ``video.published``
  with a new event id and ``published_at`` = now (the moment it went public), job
  stage ``done`` — or ``embeddings_pending`` when it was held without vectors, so the
  backfill republishes it with them;
* reject: job ``failed`` (stage ``moderation_rejected``) and ``video.failed`` with
  the moderator's reason.

Automatic decisions (decided_by "auto") need nothing here: the worker already acted.
A decision for a video with no held job (a redelivery, or one released already) is
logged and skipped.
"""

from __future__ import annotations

import logging

from google.protobuf.message import DecodeError
from reels.v1 import common_pb2, events_pb2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import topics
from reels.events import IdempotentConsumer, ReceivedEvent, SessionHandler, new_event_id
from svc_transcode import jobs, messages

log = logging.getLogger(__name__)

GROUP_ID = "svc_transcode-review"
AUTO = "auto"


def released_event(kept: bytes) -> jobs.OutgoingMessage:
    """The kept video.published, as of now: new event id, occurred_at, published_at."""
    event = events_pb2.VideoPublished.FromString(kept)
    event_id = new_event_id()
    event.meta.CopyFrom(messages._meta(event_id))  # noqa: SLF001 - the one envelope builder
    event.published_at.GetCurrentTime()
    return jobs.OutgoingMessage(
        topics.VIDEO_PUBLISHED, event.video_id, event.SerializeToString(), event_id
    )


def make_handler(embeddings_retry_in_s: float | None = 0.0) -> SessionHandler:
    """``embeddings_retry_in_s``: when the backfill first tries a video approved
    without vectors (None: embeddings are off, never)."""

    async def handle(session: AsyncSession, event: ReceivedEvent) -> None:
        try:
            moderated: events_pb2.VideoModerated = topics.VIDEO_MODERATED.parse(event.value)
        except DecodeError:
            log.error(
                "%s %s is not a VideoModerated; skipped", topics.VIDEO_MODERATED, event.event_id
            )
            return
        if moderated.decided_by in ("", AUTO):
            return
        if moderated.decision not in (
            common_pb2.VIDEO_MODERATION_DECISION_PUBLISH,
            common_pb2.VIDEO_MODERATION_DECISION_REJECT,
        ):
            return
        held = await jobs.lock_held(session, moderated.video_id)
        if held is None:
            log.info(
                "video %s has no held job; decision %s skipped", moderated.video_id, event.event_id
            )
            return
        if moderated.decision == common_pb2.VIDEO_MODERATION_DECISION_PUBLISH:
            await jobs.release_held(
                session,
                held,
                [released_event(held.event)],
                embeddings_retry_in_s=embeddings_retry_in_s,
            )
            log.info("video %s approved by %s: published", moderated.video_id, moderated.decided_by)
            return
        reason = moderated.reason or "rejected by a moderator"
        failed = messages.video_failed(held.job, reason=reason, stage=jobs.MODERATION_REJECTED)
        await jobs.reject_held(session, held, [failed], reason=reason)
        log.info("video %s rejected by %s: %s", moderated.video_id, moderated.decided_by, reason)

    return handle


def make_consumer(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    bootstrap: str,
    embeddings_retry_in_s: float | None,
    session_timeout_ms: int = 6000,
    group_id: str = GROUP_ID,
    **kwargs: object,
) -> IdempotentConsumer:
    return IdempotentConsumer(
        [topics.VIDEO_MODERATED],
        group_id,
        make_handler(embeddings_retry_in_s),
        sessionmaker,
        bootstrap=bootstrap,
        session_timeout_ms=session_timeout_ms,
        **kwargs,  # type: ignore[arg-type]
    )
