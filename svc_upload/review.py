"""NSFW moderation in svc_upload: the held-video state, the review queue, the decisions.

svc_upload owns video status, so it owns what moderation decides about a video:

* svc_transcode reports the classifier's finding with its final status report
  (``UpdateVideoStatusRequest.moderation``): PUBLISHED (score under the review
  threshold), IN_REVIEW (held; the outputs are stored but nothing is published) or
  FAILED (rejected, "rejected by moderation (nsfw score 0.93)"). ``record_report``
  runs in that report's transaction: a held video gets a ``video_reviews`` row, and
  every automatic decision becomes a ``video.moderated`` event (decided_by "auto").
* Moderators (JWT ``roles`` claim with "moderator", reels.auth) list held videos,
  oldest first, with their top frames (``ListReviewQueue``: each frame's object key
  and a short-lived signed ``/media/`` URL a moderator's client opens, signed by the
  platform's media URL signer, reels.media_urls) and decide
  (``DecideReview``). Approve: the video is PUBLISHED here and ``video.moderated``
  (PUBLISH, decided_by the moderator) tells svc_transcode, which owns
  ``video.published`` and kept the held video's event, to publish it into feeds
  (svc_transcode/review_consumer.py). Reject: FAILED with "rejected by moderation:
  <reason>", the event, and the video's media removed from the store.

The frames stay under ``moderation/{video_id}/`` after a decision (what was decided
on is kept for audit).
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from google.protobuf import timestamp_pb2
from reels.v1 import common_pb2, events_pb2, upload_pb2
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import errors, text, topics
from reels.auth import MODERATOR_ROLE
from reels.events import inject_trace_headers, new_event_id
from reels.outbox import enqueue_message
from reels.storage import ObjectStore
from svc_upload.models import Video, VideoReview, VideoStatus
from svc_upload.status import StatusChannel, check_transition

log = logging.getLogger(__name__)

PRODUCER = "svc_upload"
AUTO = "auto"
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_REASON_CHARS = 1000
REJECTED_PREFIX = "rejected by moderation"


def _meta() -> events_pb2.EventMeta:
    occurred = timestamp_pb2.Timestamp()
    occurred.GetCurrentTime()
    return events_pb2.EventMeta(
        event_id=str(new_event_id()),
        occurred_at=occurred,
        trace_context=inject_trace_headers({}),
        producer=PRODUCER,
    )


async def _emit(
    session: AsyncSession,
    video: Video,
    decision: int,
    *,
    decided_by: str,
    reason: str,
    score: float,
    model_name: str,
    model_version: str,
    review_threshold: float,
    reject_threshold: float,
) -> None:
    event = events_pb2.VideoModerated(
        meta=_meta(),
        video_id=str(video.id),
        creator_id=video.creator_id,
        decision=decision,  # type: ignore[arg-type]
        decided_by=decided_by,
        reason=reason,
        score=score,
        model_name=model_name,
        model_version=model_version,
        review_threshold=review_threshold,
        reject_threshold=reject_threshold,
    )
    await enqueue_message(session, topics.VIDEO_MODERATED, event, event.meta.event_id)


async def record_report(
    session: AsyncSession, video: Video, request: upload_pb2.UpdateVideoStatusRequest
) -> None:
    """In the status report's transaction: the automatic decision's event and, for a
    held video, its queue row. Called once per status change (repeats are no-ops)."""
    m = request.moderation
    if m.decision == common_pb2.VIDEO_MODERATION_DECISION_UNSPECIFIED:
        return
    if m.decision == common_pb2.VIDEO_MODERATION_DECISION_HOLD:
        row = await session.get(VideoReview, video.id, with_for_update=True)
        frames = [
            {"key": f.key, "score": float(f.score), "time_seconds": float(f.time_seconds)}
            for f in m.top_frames
        ]
        fields = {
            "score": float(m.score),
            "model_name": m.model_name,
            "model_version": m.model_version,
            "review_threshold": float(m.review_threshold),
            "reject_threshold": float(m.reject_threshold),
            "frames_scored": m.frames_scored,
            "top_frames": frames,
            "held_at": datetime.now(UTC),
            "decision": None,
            "decided_by": None,
            "reason": None,
            "decided_at": None,
        }
        if row is None:
            session.add(VideoReview(video_id=video.id, **fields))
        else:  # held again after a re-queued transcode
            for name, value in fields.items():
                setattr(row, name, value)
    reason = (
        request.failure_reason if m.decision == common_pb2.VIDEO_MODERATION_DECISION_REJECT else ""
    )
    await _emit(
        session,
        video,
        m.decision,
        decided_by=AUTO,
        reason=reason,
        score=m.score,
        model_name=m.model_name,
        model_version=m.model_version,
        review_threshold=m.review_threshold,
        reject_threshold=m.reject_threshold,
    )


def _require_moderator(roles: frozenset[str]) -> None:
    if MODERATOR_ROLE not in roles:
        raise errors.PermissionDenied("only moderators may use the review queue")


def _ts(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def _encode_cursor(held_at: datetime, video_id: uuid.UUID) -> str:
    raw = f"{held_at.isoformat()}|{video_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(token: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        at, _, vid = raw.partition("|")
        return datetime.fromisoformat(at), uuid.UUID(vid)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise errors.InvalidArgument(
            "page_token is not one this service issued", [("page_token", "invalid")]
        ) from None


@dataclass(frozen=True)
class QueuePage:
    items: list[upload_pb2.ReviewItem]
    next_page_token: str


class FrameUrls(Protocol):
    """Issues signed media URLs (reels.media_urls.UrlSigner): one expiry per page."""

    def expiry(self) -> int: ...

    def url(self, key: str, exp: int | None = None) -> str: ...


def moderation_proto(
    row: VideoReview, urls: FrameUrls | None = None, exp: int | None = None
) -> common_pb2.VideoModeration:
    """The held video's finding; with ``urls``, each frame with a key gets its signed URL
    (expiring at ``exp``, unix seconds)."""

    def url(key: str) -> str:
        return urls.url(key, exp) if urls is not None and key else ""

    return common_pb2.VideoModeration(
        decision=common_pb2.VIDEO_MODERATION_DECISION_HOLD,
        score=row.score,
        model_name=row.model_name,
        model_version=row.model_version,
        review_threshold=row.review_threshold,
        reject_threshold=row.reject_threshold,
        frames_scored=row.frames_scored,
        top_frames=[
            common_pb2.VideoModerationFrame(
                key=str(f.get("key", "")),
                score=float(f.get("score", 0.0)),
                time_seconds=float(f.get("time_seconds", 0.0)),
                url=url(str(f.get("key", ""))),
            )
            for f in row.top_frames or []
        ],
    )


class ReviewQueue:
    """ListReviewQueue and DecideReview (moderators only).

    ``frame_urls`` signs the top frames' keys for the moderator's client (svc_upload's
    App passes the platform's media URL signer with a short TTL,
    ``REELS_REVIEW_FRAME_URL_TTL_S``); None leaves ``url`` empty (keys only).
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        channel: StatusChannel,
        frame_urls: FrameUrls | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.store = store
        self.channel = channel
        self.frame_urls = frame_urls

    async def list(
        self, roles: frozenset[str], page_size: int = 0, page_token: str = ""
    ) -> QueuePage:
        """Held, undecided videos, oldest first (keyset pagination on held_at, id).

        Each item's top frames carry their object key and, with ``frame_urls``, a signed
        URL (``<REELS_MEDIA_BASE_URL>/moderation/<video>/frame-NN.png?exp=..&sp=exp&sig=..``,
        one expiry for the page). PERMISSION_DENIED for a non-moderator, INVALID_ARGUMENT
        for a page size outside 0..100 or a page token this service did not issue.
        """
        from svc_upload.videos import video_proto  # noqa: PLC0415 - videos imports this module

        _require_moderator(roles)
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            raise errors.InvalidArgument(
                f"page_size must be 0..{MAX_PAGE_SIZE}", [("page_size", "out of range")]
            )
        size = page_size or DEFAULT_PAGE_SIZE
        query = (
            select(VideoReview, Video)
            .join(Video, Video.id == VideoReview.video_id)
            .where(
                VideoReview.decided_at.is_(None),
                Video.status == VideoStatus.IN_REVIEW.value,
            )
            .order_by(VideoReview.held_at, VideoReview.video_id)
            .limit(size + 1)
        )
        if page_token:
            at, vid = _decode_cursor(page_token)
            query = query.where(
                or_(
                    VideoReview.held_at > at,
                    and_(VideoReview.held_at == at, VideoReview.video_id > vid),
                )
            )
        async with self.sessionmaker() as session:
            rows = (await session.execute(query)).all()
        exp = self.frame_urls.expiry() if self.frame_urls is not None else None
        items = [
            upload_pb2.ReviewItem(
                video=video_proto(video),
                moderation=moderation_proto(row, self.frame_urls, exp),
                held_at=_ts(row.held_at),
            )
            for row, video in rows[:size]
        ]
        token = ""
        if len(rows) > size:
            last = rows[size - 1][0]
            token = _encode_cursor(last.held_at, last.video_id)
        return QueuePage(items, token)

    async def decide(
        self,
        user: str,
        roles: frozenset[str],
        video_id: str,
        decision: int,
        reason: str,
    ) -> Video:
        """Approve -> PUBLISHED, reject -> FAILED (reason required); one event each."""
        from svc_upload.videos import snapshot_of  # noqa: PLC0415 - videos imports this module

        _require_moderator(roles)
        if decision not in (upload_pb2.REVIEW_DECISION_APPROVE, upload_pb2.REVIEW_DECISION_REJECT):
            # Sent but not one we know (UNSPECIFIED, or a number like 7 over JSON).
            shown = upload_pb2.ReviewDecision.Name(decision) if decision == 0 else str(decision)
            raise errors.InvalidArgument(
                f"decision {shown} is not a known decision: use REVIEW_DECISION_APPROVE or "
                "REVIEW_DECISION_REJECT",
                [("decision", f"{shown} is not a known decision (APPROVE or REJECT)")],
            )
        approve = decision == upload_pb2.REVIEW_DECISION_APPROVE
        # The same rules as every stored text (reels.text): invisible-only (spaces,
        # zero-width, soft hyphen, BOM) is empty; too long is refused, never cut.
        reason = " ".join(
            text.normalise_text(
                reason,
                field="reason",
                max_chars=MAX_REASON_CHARS,
                required=not approve,
                empty_message="is empty: a rejection needs a reason (the creator sees it)",
            ).split()
        )
        try:
            vid = uuid.UUID(video_id)
        except (ValueError, AttributeError, TypeError):
            raise errors.NotFound("video", video_id) from None
        async with self.sessionmaker() as session, session.begin():
            video = await session.get(Video, vid, with_for_update=True)
            if video is None or video.status == VideoStatus.DELETED.value:
                raise errors.NotFound("video", video_id)
            row = await session.get(VideoReview, vid, with_for_update=True)
            if video.status != VideoStatus.IN_REVIEW.value or row is None:
                raise errors.FailedPrecondition(
                    f"video {video_id} is {video.status}, not in review"
                )
            now = datetime.now(UTC)
            target = VideoStatus.PUBLISHED if approve else VideoStatus.FAILED
            check_transition(VideoStatus(video.status), target, video_id)
            video.status = target.value
            video.updated_at = now
            if approve:
                video.stage = "published"
                video.failure_reason = None
                video.published_at = now
            else:
                video.stage = "moderation"
                video.failure_reason = f"{REJECTED_PREFIX}: {reason}"
            await session.execute(
                update(VideoReview)
                .where(VideoReview.video_id == vid)
                .values(
                    decision="approve" if approve else "reject",
                    decided_by=user,
                    reason=reason or None,
                    decided_at=now,
                )
            )
            await _emit(
                session,
                video,
                common_pb2.VIDEO_MODERATION_DECISION_PUBLISH
                if approve
                else common_pb2.VIDEO_MODERATION_DECISION_REJECT,
                decided_by=user,
                reason=video.failure_reason or reason,
                score=row.score,
                model_name=row.model_name,
                model_version=row.model_version,
                review_threshold=row.review_threshold,
                reject_threshold=row.reject_threshold,
            )
        log.info(
            "review decided",
            extra={"fields": {"video_id": video_id, "decision": target.value, "by": user}},
        )
        if not approve:
            # After commit, as a delete does: never a live row without its media.
            await self.store.delete_prefix(f"videos/{vid}")
        await self.channel.publish(snapshot_of(video))
        return video
