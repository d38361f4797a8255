"""Live-stream recordings become videos: ``streams.recordings`` -> a video + ``video.uploaded``.

svc_chat's ingest records every RTMP-published stream (the publisher's own encode,
copied into an MP4) and, once the stream has ended, queues a
:class:`~reels.v1.events_pb2.StreamRecorded` (svc_chat/ingest/recording.py). This
consumer (group ``svc_upload.recordings``) makes it a video of the stream's creator,
exactly as a finished upload is made one (uploads.py): the file is probed with the same
checks, moved to ``originals/{video_id}/original.mp4``, and in ONE transaction the
video row (PROCESSING, title/description/hashtags from the stream) and its
``video.uploaded`` outbox row are written, together with the event id
(``IdempotentConsumer``). svc_transcode then transcodes and publishes it like any
upload, so it reaches the feed.

Idempotent: the video id comes in the event (derived from the stream id by svc_chat),
so a redelivered or repeated event finds the video and does nothing; a retry after a
crash finds the original already moved and uses it.

Decisions (DECISIONS.md, "Live video"):

* a recording does not count against the creator's daily upload quota (the creator
  did not upload it) but does count for later uploads that day, like any video row;
* metadata that the upload rules refuse (a stream tag that is not a valid hashtag)
  is dropped rather than losing the recording; the title falls back as for uploads;
* a recording that fails the probe (no decodable video) or is over the upload size
  limit becomes a FAILED video with the reason, visible to the creator; it is never
  silently dropped. So does a stream of which svc_chat could make no recording (the
  event's ``failure_reason``, e.g. a publish too short to carry a picture: "the live
  recording could not be made: ...");
* ffprobe failing to run (timeout, OS error) raises, so the event is retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path

from reels.v1 import events_pb2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import errors, topics
from reels.events import IdempotentConsumer, ReceivedEvent, new_event_id
from reels.media.probe import ProbeResult, UnusableMedia, probe
from reels.outbox import enqueue_message
from reels.storage import ObjectStore, validate_key
from svc_upload.limits import NewUpload, UploadLimits, validate
from svc_upload.models import Video, VideoStatus
from svc_upload.uploads import original_key, uploaded_event

log = logging.getLogger(__name__)

CONSUMER_GROUP = "svc_upload.recordings"
RECORDINGS_ROOT = "recordings/"
MIME_TYPE = "video/mp4"
NOT_MADE = "the live recording could not be made"
"""The start of a FAILED recording's reason when svc_chat could make no recording."""


def _problem(event: events_pb2.StreamRecorded) -> str | None:
    """Why an event cannot become a video, or None when it can."""
    try:
        uuid.UUID(event.video_id)
    except ValueError:
        return f"video_id {event.video_id!r} is not a UUID"
    if not event.creator_id:
        return "the event has no creator_id"
    if event.failure_reason and not event.recording_key:
        return None  # no recording to check: it becomes a FAILED video
    try:
        validate_key(event.recording_key)
    except ValueError:
        return f"recording_key {event.recording_key!r} is not a valid storage key"
    if not event.recording_key.startswith(RECORDINGS_ROOT):
        return f"recording_key {event.recording_key!r} is not under {RECORDINGS_ROOT}"
    return None


def _metadata(event: events_pb2.StreamRecorded, size: int, limits: UploadLimits) -> NewUpload:
    """The stream's title, description and tags under the upload rules; what the rules
    refuse is dropped (tags first, then the description), never the recording."""
    base = NewUpload(
        title=event.title,
        description=event.description,
        hashtags=list(event.tags),
        content_type=0,
        audio_attribution="",
        declared_size=1,  # the size limit is checked by the caller, with its own reason
        sha256_hex=None,
        filename="live-recording.mp4",
        mime_type=MIME_TYPE,
    )
    for attempt in (
        base,
        NewUpload(**{**base.__dict__, "hashtags": []}),
        NewUpload(**{**base.__dict__, "hashtags": [], "description": ""}),
        NewUpload(**{**base.__dict__, "hashtags": [], "description": "", "title": ""}),
    ):
        try:
            return validate(attempt, limits)
        except errors.InvalidArgument:
            continue
    raise errors.InvalidArgument("the recording's metadata is unusable")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class Recordings:
    """See the module docstring."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        scratch: Path,
        limits: UploadLimits,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.store = store
        self.scratch = scratch
        self.limits = limits
        self.active_consumer: IdempotentConsumer | None = None

    def consumer(self, **kwargs: object) -> IdempotentConsumer:
        return IdempotentConsumer(
            [topics.STREAMS_RECORDINGS], CONSUMER_GROUP, self.handle, self.sessionmaker, **kwargs
        )

    async def handle(self, session: AsyncSession, event: ReceivedEvent) -> None:
        try:
            recorded: events_pb2.StreamRecorded = topics.STREAMS_RECORDINGS.parse(event.value)
        except Exception:  # noqa: BLE001 - a poison record must not wedge the partition
            log.error("recordings: undecodable record %s skipped", event.event_id)
            return
        problem = _problem(recorded)
        if problem is not None:
            log.error("recordings: event %s skipped: %s", event.event_id, problem)
            return
        video_id = uuid.UUID(recorded.video_id)
        if await session.get(Video, video_id) is not None:
            return  # already made (a repeated event)
        if recorded.failure_reason:
            failed = f"{NOT_MADE}: {recorded.failure_reason}"
            await self._add(session, recorded, video_id, failed=failed)
            return
        await self._import(session, recorded, video_id)

    async def _import(
        self, session: AsyncSession, recorded: events_pb2.StreamRecorded, video_id: uuid.UUID
    ) -> None:
        key = original_key(str(video_id), "recording.mp4", MIME_TYPE)
        self.scratch.mkdir(parents=True, exist_ok=True)
        local = self.scratch / f"recording-{video_id}.mp4"
        try:
            if await self.store.exists(recorded.recording_key):
                await self.store.get_file(recorded.recording_key, local)
            elif await self.store.exists(key):  # moved by an attempt that rolled back
                await self.store.get_file(key, local)
            else:
                await self._add(session, recorded, video_id, failed="the recording is missing")
                return
            size = local.stat().st_size
            try:
                info: ProbeResult | None = await probe(local)
                failure = ""
            except UnusableMedia as exc:
                info, failure = None, f"the recording is not a usable video: {exc}"
            if info is not None and size > self.limits.max_bytes:
                info, failure = (
                    None,
                    (
                        f"the recording is {size} bytes; the upload limit is "
                        f"{self.limits.max_bytes} bytes"
                    ),
                )
            if info is None:
                await self._add(session, recorded, video_id, failed=failure, size=size)
                return
            sha = await asyncio.to_thread(_sha256, local)
            await self.store.put_file(key, local, move=True)
            await self._add(session, recorded, video_id, size=size, sha=sha, key=key, info=info)
        finally:
            local.unlink(missing_ok=True)
        if await self.store.exists(recorded.recording_key):
            await self.store.delete(recorded.recording_key)

    async def _add(
        self,
        session: AsyncSession,
        recorded: events_pb2.StreamRecorded,
        video_id: uuid.UUID,
        *,
        failed: str = "",
        size: int = 0,
        sha: str = "",
        key: str = "",
        info: ProbeResult | None = None,
    ) -> None:
        meta = _metadata(recorded, size, self.limits)
        now = datetime.now(UTC)
        video = Video(
            id=video_id,
            creator_id=recorded.creator_id,
            title=meta.title,
            description=meta.description,
            hashtags=meta.hashtags,
            content_type="original",
            status=(VideoStatus.FAILED if failed else VideoStatus.PROCESSING).value,
            failure_reason=failed or None,
            stage="validate" if failed else "queued",
            percent=0,
            size_bytes=size or None,
            sha256=sha or None,
            original_key=key or None,
            duration_s=info.duration_s if info else None,
            width=info.width if info else None,
            height=info.height if info else None,
            filename=meta.filename or None,
            mime_type=MIME_TYPE,
            created_at=now,
            updated_at=now,
        )
        session.add(video)
        await session.flush()
        log_fields = {
            "video_id": str(video_id),
            "stream_id": recorded.stream_id,
            "status": video.status,
        }
        if failed:
            log.warning("live recording refused: %s", failed, extra={"fields": log_fields})
            return
        assert info is not None
        event_id = new_event_id()
        await enqueue_message(
            session, topics.VIDEO_UPLOADED, uploaded_event(video, event_id, now, info), event_id
        )
        log.info("live recording became a video", extra={"fields": log_fields})
