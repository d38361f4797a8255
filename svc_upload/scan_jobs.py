"""What a scan verdict does to a video, and the retrier for held uploads.

See :mod:`svc_upload.scan` for where the scan sits. Everything here writes the video,
the held job and the outbox row in one transaction, so a verdict is applied once
(several svc_upload instances may scan the same held upload; the row lock on the job
decides which applies it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from google.protobuf import timestamp_pb2
from reels.v1 import events_pb2
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import topics
from reels.events import inject_trace_headers, new_event_id
from reels.outbox import enqueue_message
from reels.storage import LocalObjectStore, ObjectStore
from svc_upload.models import ScanJob, Upload, Video, VideoStatus
from svc_upload.scan import QUARANTINE_PREFIX, STAGE, MalwareScanner, Verdict, backoff_s
from svc_upload.status import StatusChannel, check_transition
from svc_upload.videos import snapshot_of

log = logging.getLogger(__name__)

PRODUCER = "svc_upload"


def quarantine_key(original_key: str) -> str:
    """``originals/<id>/original.mp4`` -> ``quarantine/<id>/original.mp4``."""
    return QUARANTINE_PREFIX + original_key.split("/", 1)[-1]


def rejected_event(video: Video, verdict: Verdict, key: str) -> events_pb2.VideoRejected:
    occurred = timestamp_pb2.Timestamp()
    occurred.FromDatetime(datetime.now(UTC))
    return events_pb2.VideoRejected(
        meta=events_pb2.EventMeta(
            event_id=str(new_event_id()),
            occurred_at=occurred,
            trace_context=inject_trace_headers({}),
            producer=PRODUCER,
        ),
        video_id=str(video.id),
        creator_id=video.creator_id,
        reason=verdict.reason,
        stage=STAGE,
        signature=verdict.signature,
        quarantine_key=key,
        decided_by=PRODUCER,
    )


async def mark_rejected(
    session: AsyncSession, video: Video, verdict: Verdict, key: str, upload_id: uuid.UUID | None
) -> None:
    """In ``session``'s transaction: video -> failed (reason), the upload failed, the
    held job (if any) gone, and ``video.rejected`` in the outbox."""
    check_transition(VideoStatus(video.status), VideoStatus.FAILED, str(video.id))
    video.status = VideoStatus.FAILED.value
    video.stage = STAGE
    video.failure_reason = verdict.reason
    video.percent = 0
    video.updated_at = datetime.now(UTC)
    if upload_id is not None:
        await session.execute(
            update(Upload)
            .where(Upload.id == upload_id)
            .values(state="failed", failure_reason=verdict.reason, updated_at=video.updated_at)
        )
    await session.execute(delete(ScanJob).where(ScanJob.video_id == video.id))
    event = rejected_event(video, verdict, key)
    await enqueue_message(session, topics.VIDEO_REJECTED, event, event.meta.event_id)
    log.warning(
        "upload rejected by the malware scan",
        extra={"fields": {"video_id": str(video.id), "signature": verdict.signature}},
    )


async def move_in_store(store: ObjectStore, src: str, dst: str) -> None:
    """Move an object (a rename on a local store; copy + delete elsewhere)."""
    if isinstance(store, LocalObjectStore):
        await store.put_file(dst, store.path(src), move=True)
        return
    with tempfile.TemporaryDirectory(prefix="reels-quarantine-") as tmp:
        local = Path(tmp) / "object"
        await store.get_file(src, local)
        await store.put_file(dst, local, move=True)
    await store.delete(src)


class ScanRetrier:
    """Scans held uploads again until clamd answers (svc_upload.scan).

    Every ``poll_s`` it takes the jobs that are due, scans each original where the
    object store keeps it, and applies the verdict: clean releases the held
    ``video.uploaded`` to the outbox (stage ``queued``); infected quarantines the
    original and rejects the video; unavailable again counts an attempt and waits
    1, 2, 4... s (at most ``max_backoff_s``).
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        scanner: MalwareScanner,
        channel: StatusChannel,
        *,
        poll_s: float = 1.0,
        max_backoff_s: float = 60.0,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.store = store
        self.scanner = scanner
        self.channel = channel
        self.poll_s = poll_s
        self.max_backoff_s = max_backoff_s
        self.wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("malware scan retry round failed")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.poll_s)

    async def round(self, limit: int = 16) -> int:
        """One pass over the due jobs; returns how many verdicts were applied."""
        async with self.sessionmaker() as session:
            due = (
                await session.scalars(
                    select(ScanJob)
                    .where(ScanJob.next_attempt_at <= datetime.now(UTC))
                    .order_by(ScanJob.next_attempt_at)
                    .limit(limit)
                )
            ).all()
        applied = 0
        for job in due:
            verdict = await self._scan(job.original_key)
            if await self._apply(job.video_id, verdict):
                applied += 1
        return applied

    async def _scan(self, key: str) -> Verdict:
        if isinstance(self.store, LocalObjectStore):
            return await self.scanner.scan(self.store.path(key))
        with tempfile.TemporaryDirectory(prefix="reels-scan-") as tmp:
            local = Path(tmp) / "original"
            await self.store.get_file(key, local)
            return await self.scanner.scan(local)

    async def _apply(self, video_id: uuid.UUID, verdict: Verdict) -> bool:
        async with self.sessionmaker() as session, session.begin():
            job = await session.scalar(
                select(ScanJob)
                .where(ScanJob.video_id == video_id)
                .with_for_update(skip_locked=True)
            )
            if job is None:
                return False  # another instance applied it
            video = await session.get(Video, video_id, with_for_update=True)
            if video is None or video.status != VideoStatus.PROCESSING.value:
                await session.delete(job)  # deleted meanwhile: nothing to release
                return False
            if verdict.error:
                job.attempts += 1
                job.last_error = verdict.error[:500]
                job.next_attempt_at = datetime.now(UTC) + timedelta(
                    seconds=backoff_s(job.attempts, self.max_backoff_s)
                )
                return False
            if verdict.infected:
                key = quarantine_key(job.original_key)
                await move_in_store(self.store, job.original_key, key)
                video.original_key = key
                await mark_rejected(session, video, verdict, key, None)
            else:
                event = topics.VIDEO_UPLOADED.parse(job.event)
                await enqueue_message(session, topics.VIDEO_UPLOADED, event, event.meta.event_id)
                await session.delete(job)
                video.stage = "queued"
                video.updated_at = datetime.now(UTC)
                log.info(
                    "held upload released by a clean scan",
                    extra={"fields": {"video_id": str(video_id), "attempts": job.attempts}},
                )
            snapshot = snapshot_of(video)
        await self.channel.publish(snapshot)
        return True
