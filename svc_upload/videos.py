"""Videos as creators and svc_transcode see them: read, watch, delete, status reports.

Visibility rule: a published video is visible to every signed-in user; anything
else (uploading, processing, failed, deleted) only to its creator. What a caller
cannot see answers NOT_FOUND, exactly as for an id that does not exist, so ids of
unpublished videos never leak. What a caller can see but may not change (deleting
someone else's published video) answers PERMISSION_DENIED.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from google.protobuf import duration_pb2, json_format, timestamp_pb2
from reels.v1 import common_pb2, upload_pb2
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import errors
from reels.storage import ObjectStore
from svc_upload.models import Upload, Video, VideoStatus
from svc_upload.review import record_report
from svc_upload.staging import StagingArea
from svc_upload.status import StatusChannel, StatusSnapshot, check_transition

log = logging.getLogger(__name__)

# How often a watcher re-reads the database in case a pub/sub message was lost.
WATCH_RESYNC_SECONDS = 10.0

STATUS_TO_PROTO = {
    VideoStatus.UPLOADING.value: common_pb2.VIDEO_STATUS_UPLOADING,
    VideoStatus.PROCESSING.value: common_pb2.VIDEO_STATUS_PROCESSING,
    VideoStatus.PUBLISHED.value: common_pb2.VIDEO_STATUS_PUBLISHED,
    VideoStatus.FAILED.value: common_pb2.VIDEO_STATUS_FAILED,
    VideoStatus.DELETED.value: common_pb2.VIDEO_STATUS_DELETED,
    VideoStatus.IN_REVIEW.value: common_pb2.VIDEO_STATUS_IN_REVIEW,
}
PROTO_TO_STATUS = {v: VideoStatus(k) for k, v in STATUS_TO_PROTO.items()}
CONTENT_TO_PROTO = {
    "original": common_pb2.CONTENT_TYPE_ORIGINAL,
    "challenge": common_pb2.CONTENT_TYPE_CHALLENGE,
    "duet": common_pb2.CONTENT_TYPE_DUET,
    "reaction": common_pb2.CONTENT_TYPE_REACTION,
}


# Principals (JWT ``sub``) allowed to call UpdateVideoStatus: the transcode worker.
DEFAULT_STATUS_WRITERS = frozenset({"svc_transcode"})


def snapshot_of(video: Video) -> StatusSnapshot:
    return StatusSnapshot(
        video_id=str(video.id),
        status=video.status,
        stage=video.stage or "",
        percent=float(video.percent or 0),
        failure_reason=video.failure_reason or "",
        updated_at=(video.updated_at or datetime.now(UTC)).isoformat(),
    )


def _ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def video_proto(video: Video) -> upload_pb2.Video:
    out = upload_pb2.Video(
        id=str(video.id),
        creator_id=video.creator_id,
        title=video.title,
        description=video.description,
        hashtags=list(video.hashtags),
        content_type=CONTENT_TO_PROTO.get(video.content_type or "", 0),  # type: ignore[arg-type]
        audio_attribution=video.audio_attribution or "",
        status=STATUS_TO_PROTO[video.status],  # type: ignore[arg-type]
        width=video.width or 0,
        height=video.height or 0,
        thumbnail_key=video.thumbnail_key or "",
        preview_key=video.preview_key or "",
        storyboard_key=video.storyboard_key or "",
        master_playlist_key=video.master_playlist_key or "",
        **_reason_fields(video.status, video.failure_reason or ""),
    )
    if video.duration_s is not None:
        out.duration.FromNanoseconds(int(video.duration_s * 1e9))
    for raw in video.renditions or []:
        json_format.ParseDict(raw, out.renditions.add(), ignore_unknown_fields=True)
    if video.created_at is not None:
        out.created_at.CopyFrom(_ts(video.created_at))
    if video.published_at is not None:
        out.published_at.CopyFrom(_ts(video.published_at))
    return out


def held_message(request: upload_pb2.UpdateVideoStatusRequest) -> str:
    """What the creator of a video held for review reads (its status_message)."""
    if request.HasField("moderation"):
        score = request.moderation.score
        return f"held for review: the automatic content check was not sure (score {score:.2f})"
    return "held for review: a moderator will look at it"


def _reason_fields(status: str, stored: str) -> dict[str, str]:
    """The stored reason as failure_reason (FAILED) or status_message (IN_REVIEW)."""
    if status == VideoStatus.IN_REVIEW.value:
        return {"failure_reason": "", "status_message": stored}
    return {"failure_reason": stored, "status_message": ""}


def status_fields(snap: StatusSnapshot) -> dict[str, object]:
    """Keyword arguments shared by GetVideoStatusResponse and WatchVideoStatusResponse."""
    return {
        "video_id": snap.video_id,
        "status": STATUS_TO_PROTO[snap.status],
        **_reason_fields(snap.status, snap.failure_reason),
        "stage": snap.stage,
        "percent": snap.percent,
        "updated_at": _ts(snap.updated()),
    }


def _video_uuid(video_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(video_id)
    except (ValueError, AttributeError, TypeError):
        raise errors.NotFound("video", video_id) from None


class VideoBook:
    """Reads and status changes of the ``videos`` table (svc_upload owns it)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        staging: StagingArea,
        channel: StatusChannel,
        status_writers: frozenset[str] | tuple[str, ...] = DEFAULT_STATUS_WRITERS,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.store = store
        self.staging = staging
        self.channel = channel
        self.status_writers = frozenset(status_writers)

    async def _visible(
        self, session: AsyncSession, user: str | None, video_id: str, *, lock: bool = False
    ) -> Video:
        video = await session.get(Video, _video_uuid(video_id), with_for_update=lock)
        if video is None:
            raise errors.NotFound("video", video_id)
        if video.creator_id != user and video.status != VideoStatus.PUBLISHED.value:
            raise errors.NotFound("video", video_id)
        return video

    async def get(self, user: str | None, video_id: str) -> Video:
        async with self.sessionmaker() as session:
            video = await self._visible(session, user, video_id)
        if video.status == VideoStatus.DELETED.value:
            raise errors.NotFound("video", video_id)
        return video

    async def status(self, user: str | None, video_id: str) -> StatusSnapshot:
        async with self.sessionmaker() as session:
            return snapshot_of(await self._visible(session, user, video_id))

    async def watch(self, user: str | None, video_id: str) -> AsyncIterator[StatusSnapshot]:
        """Snapshot first, then each visible change, until a terminal status.

        Subscribing happens before the snapshot is read, so a change committed in
        between arrives as a message instead of being missed.
        """
        await self.status(user, video_id)  # NOT_FOUND before subscribing
        async with self.channel.subscribe(video_id) as sub:
            last = await self.status(user, video_id)
            yield last
            while not last.terminal:
                snap = await sub.next(WATCH_RESYNC_SECONDS)
                if snap is None:
                    snap = await self.status(user, video_id)
                if snap.updated() < last.updated():
                    continue  # an older message that lost a race
                if snap.visible() != last.visible():
                    yield snap
                last = snap

    async def delete(self, user: str | None, video_id: str) -> Video:
        """Soft delete: the row stays (status deleted); the media goes from the store."""
        async with self.sessionmaker() as session, session.begin():
            video = await self._visible(session, user, video_id, lock=True)
            if video.creator_id != user:
                raise errors.PermissionDenied(f"only the creator may delete video {video_id}")
            changed = check_transition(VideoStatus(video.status), VideoStatus.DELETED, video_id)
            if changed:
                now = datetime.now(UTC)
                video.status = VideoStatus.DELETED.value
                video.deleted_at = video.updated_at = now
            uploads = (
                await session.scalars(select(Upload.id).where(Upload.video_id == video.id))
            ).all()
            await session.execute(
                update(Upload)
                .where(Upload.video_id == video.id, Upload.state == "open")
                .values(state="terminated")
            )
        # After commit: a crash here leaves orphaned media, never a live row without it.
        for prefix in (f"originals/{video.id}", f"videos/{video.id}"):
            await self.store.delete_prefix(prefix)
        for upload_id in uploads:
            await self.staging.discard(str(upload_id))
        if changed:
            await self.channel.publish(snapshot_of(video))
        return video

    async def update_status(
        self, caller: str | None, request: upload_pb2.UpdateVideoStatusRequest
    ) -> Video:
        """svc_transcode's report: progress, publication or failure; idempotent."""
        if caller not in self.status_writers:
            raise errors.PermissionDenied("only the transcode worker may report video status")
        target = PROTO_TO_STATUS.get(request.status)
        reportable = (
            VideoStatus.PROCESSING,
            VideoStatus.PUBLISHED,
            VideoStatus.FAILED,
            VideoStatus.IN_REVIEW,
        )
        if target not in reportable:
            raise errors.InvalidArgument(
                "status must be PROCESSING, PUBLISHED, IN_REVIEW or FAILED",
                [("status", "must be PROCESSING, PUBLISHED, IN_REVIEW or FAILED")],
            )
        if target == VideoStatus.FAILED and not request.failure_reason.strip():
            raise errors.InvalidArgument(
                "a FAILED report needs a failure_reason", [("failure_reason", "required")]
            )
        async with self.sessionmaker() as session, session.begin():
            video = await session.get(Video, _video_uuid(request.video_id), with_for_update=True)
            if video is None:
                raise errors.NotFound("video", request.video_id)
            before = snapshot_of(video)
            changed = check_transition(VideoStatus(video.status), target, request.video_id)
            if target == VideoStatus.PROCESSING:
                video.status = target.value
                video.stage = request.stage or video.stage
                video.percent = max(0, min(100, round(request.percent)))
                video.failure_reason = None
            elif changed and target == VideoStatus.PUBLISHED:
                self._apply_outputs(video, request)
            elif changed and target == VideoStatus.IN_REVIEW:
                # Held by NSFW moderation (svc_upload.review): outputs kept, not published.
                self._apply_outputs(video, request)
                video.status = target.value
                video.stage = request.stage or "in_review"
                video.published_at = None
                # The creator's "why" (status_message); kept in the failure_reason
                # column, which is free while IN_REVIEW (approval clears it, a
                # rejection overwrites it).
                video.failure_reason = held_message(request)
            elif changed and target == VideoStatus.FAILED:
                video.status = target.value
                video.failure_reason = request.failure_reason.strip()
                video.stage = request.stage or video.stage
            if changed and request.HasField("moderation"):
                await record_report(session, video, request)
            after = snapshot_of(video)
            if after.visible() != before.visible() or changed:
                video.updated_at = datetime.now(UTC)
            else:
                return video  # a repeated report: nothing to write or announce
        await self.channel.publish(snapshot_of(video))
        return video

    @staticmethod
    def _apply_outputs(video: Video, request: upload_pb2.UpdateVideoStatusRequest) -> None:
        video.status = VideoStatus.PUBLISHED.value
        video.stage = "published"
        video.percent = 100
        video.failure_reason = None
        if request.HasField("duration"):
            video.duration_s = duration_pb2.Duration.ToNanoseconds(request.duration) / 1e9
        video.width = request.width or video.width
        video.height = request.height or video.height
        video.renditions = [
            json_format.MessageToDict(r, preserving_proto_field_name=True)
            for r in request.renditions
        ]
        video.master_playlist_key = request.master_playlist_key or None
        video.thumbnail_key = request.thumbnail_key or None
        video.preview_key = request.preview_key or None
        video.storyboard_key = request.storyboard_key or None
        video.published_at = datetime.now(UTC)
