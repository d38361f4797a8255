"""The upload core: create, write at an offset, complete, terminate.

gRPC (server.py) and tus (tus.py) are two thin front ends over this module, so
limits, ownership, offsets, checksums and the probe mean the same thing whichever
protocol a client speaks.

Completion is the one place a video becomes real: the staged file is verified
(size, sha256, ffprobe), moved to ``originals/<video_id>/original<ext>``, and one
Postgres transaction sets the video to ``processing`` and writes the
``video.uploaded`` outbox row; the relay publishes it after commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NoReturn

import grpc
from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from reels.v1 import events_pb2
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import errors, topics
from reels.events import inject_trace_headers, new_event_id
from reels.media.probe import ProbeResult, UnusableMedia, probe
from reels.metrics import upload_duration
from reels.outbox import enqueue_message
from reels.storage import ObjectStore
from svc_upload import scan_jobs
from svc_upload.limits import (
    NewUpload,
    UploadLimits,
    review,
    seconds_until_utc_midnight,
    utc_day_start,
    validate,
)
from svc_upload.locks import KeyedLocks
from svc_upload.models import ScanJob, Upload, Video, VideoStatus
from svc_upload.scan import STAGE as SCAN_STAGE
from svc_upload.scan import MalwareScanner, Verdict
from svc_upload.scan_jobs import ScanRetrier
from svc_upload.staging import RunningHash, StagedBytesMissing, StagingArea
from svc_upload.status import StatusChannel, check_transition
from svc_upload.videos import snapshot_of

log = logging.getLogger(__name__)

PRODUCER = "svc_upload"
# A long tus PATCH commits its offset this often, so a dropped connection loses little.
COMMIT_EVERY_BYTES = 16 * 1024 * 1024
# A body up to this size (tus.WRITE_PIECE) is read whole and stored in one thread call.
SMALL_BODY = 1024 * 1024

CONTENT_TYPES = {
    1: "original",
    2: "challenge",
    3: "duet",
    4: "reaction",
}
EXT_BY_MIME = {
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "video/x-matroska": ".mkv",
    "video/3gpp": ".3gp",
}


class UploadState:
    OPEN = "open"
    COMPLETED = "completed"
    FAILED = "failed"
    TERMINATED = "terminated"


class OffsetMismatch(errors.FailedPrecondition):
    """The chunk is not at the current offset; the client resumes at ``expected``."""

    def __init__(self, expected: int, got: int, why: str = "") -> None:
        super().__init__(
            f"offset {got} does not match the upload's current offset {expected}"
            f"{': ' + why if why else ''}; resume at offset {expected}"
        )
        self.expected = expected

    def details(self) -> list[object]:
        return [
            error_details_pb2.ErrorInfo(
                reason="UPLOAD_OFFSET_MISMATCH",
                domain="reels.v1.UploadService",
                metadata={"expected_offset": str(self.expected)},
            )
        ]


class OutOfRange(errors.ReelsError):
    """Bytes past the declared size."""

    code = grpc.StatusCode.OUT_OF_RANGE


class ChecksumMismatch(errors.InvalidArgument):
    """A tus Upload-Checksum did not match the PATCH body; nothing of it was kept."""


@dataclass(frozen=True)
class UploadView:
    """What front ends report about an upload."""

    upload_id: str
    video_id: str
    offset: int
    size: int
    state: str
    expires_at: datetime


@dataclass(frozen=True)
class Completed:
    video_id: str
    status: str


def parse_uuid(value: str, kind: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise errors.NotFound(kind, value) from None


def _view(upload: Upload) -> UploadView:
    return UploadView(
        str(upload.id),
        str(upload.video_id),
        upload.received_bytes,
        upload.declared_size,
        upload.state,
        upload.expires_at,
    )


def autocommit_sessions(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> async_sessionmaker[AsyncSession]:
    """Sessions on the same engine (and pool) in autocommit: one statement costs one
    round trip instead of three (BEGIN, the statement, COMMIT or ROLLBACK). Under a
    burst, a pooled connection is held for an event-loop turn per round trip, so round
    trips bound the requests a second (docs/DECISIONS.md, "Uploads under load")."""
    engine = sessionmaker.kw["bind"]
    return async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
    )


def original_key(video_id: str, filename: str, mime_type: str) -> str:
    """``originals/<id>/original<ext>``: the extension from the name, else the mime type."""
    match = re.search(r"(\.[A-Za-z0-9]{1,8})$", filename or "")
    ext = match.group(1).lower() if match else EXT_BY_MIME.get((mime_type or "").lower(), ".bin")
    return f"originals/{video_id}/original{ext}"


def uploaded_event(
    video: Video, event_id: uuid.UUID, now: datetime, info: ProbeResult
) -> events_pb2.VideoUploaded:
    """The ``video.uploaded`` event of ``video`` (status PROCESSING, original stored)."""
    occurred = timestamp_pb2.Timestamp()
    occurred.FromDatetime(now)
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(int(info.duration_s * 1e9))
    content = {v: k for k, v in CONTENT_TYPES.items()}.get(video.content_type or "", 0)
    return events_pb2.VideoUploaded(
        meta=events_pb2.EventMeta(
            event_id=str(event_id),
            occurred_at=occurred,
            trace_context=inject_trace_headers({}),
            producer=PRODUCER,
        ),
        video_id=str(video.id),
        creator_id=video.creator_id,
        original_key=video.original_key or "",
        size_bytes=video.size_bytes or 0,
        sha256_hex=video.sha256 or "",
        content_type=content,  # type: ignore[arg-type]
        mime_type=video.mime_type or "",
        title=video.title,
        description=video.description,
        hashtags=list(video.hashtags),
        audio_attribution=video.audio_attribution or "",
        probe=events_pb2.ProbeInfo(
            duration=duration,
            width=info.width,
            height=info.height,
            container=info.format_name,
            video_codec=info.video_codec,
            audio_codec=info.audio_codec or "",
            frame_rate=info.fps,
            bit_rate=info.bit_rate or 0,
            rotation=info.rotation,
        ),
    )


class UploadCore:
    """Everything about an upload that does not depend on the wire protocol."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        staging: StagingArea,
        channel: StatusChannel,
        limits: UploadLimits | None = None,
        *,
        probe_fn: Callable[..., object] = probe,
        scanner: MalwareScanner | None = None,
        retrier: ScanRetrier | None = None,
        verify_concurrency: int = 0,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.autocommit = autocommit_sessions(sessionmaker)
        """Sessions for work that is one statement (a read of a row, the offset's
        compare-and-set): no BEGIN and COMMIT/ROLLBACK round trips. Work of several
        statements goes through :attr:`sessionmaker`, in a transaction."""
        self.store = store
        self.staging = staging
        self.channel = channel
        self.limits = limits or UploadLimits()
        self.locks = KeyedLocks()
        self._probe = probe_fn
        self.scanner = scanner
        """clamd (svc_upload.scan); None only where no upload completes (unit tests)."""
        self.retrier = retrier
        # The checks of a completed upload (clamd scan, ffprobe + two decode runs: three
        # processes) are CPU work; run at once for every upload of a burst, they thrash
        # the cores (the event loop, Postgres and Envoy starve with them). A bounded
        # number run, the rest wait here (no database connection held) in FIFO order.
        self.verify_concurrency = verify_concurrency or os.cpu_count() or 1
        self.verify_slots = asyncio.Semaphore(self.verify_concurrency)
        # complete() runs started by complete_within, by upload id (one per upload).
        self._completing: dict[str, asyncio.Task[Completed]] = {}

    # -- create ---------------------------------------------------------------------

    async def create(self, user: str, meta: NewUpload) -> UploadView:
        """Validate, check the daily quota, and create the video and its upload session.

        The quota counts videos created since UTC midnight, from Postgres, under a
        per-user advisory lock so two concurrent creates cannot both take the last slot.
        """
        meta = validate(meta, self.limits)
        await review(meta)  # the pluggable text classifier (REELS_TEXT_CLASSIFIER), if any
        video_id, upload_id = uuid.uuid4(), uuid.uuid4()
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"upload-quota:{user}"}
            )
            used = await session.scalar(
                select(func.count())
                .select_from(Video)
                .where(Video.creator_id == user, Video.created_at >= utc_day_start())
            )
            if (used or 0) >= self.limits.daily_quota:
                raise errors.ResourceExhausted(
                    f"daily upload quota reached ({self.limits.daily_quota} uploads per UTC day); "
                    "try again after midnight UTC",
                    retry_after_seconds=seconds_until_utc_midnight(),
                )
            # Both rows in one statement (the video in a data-modifying CTE; the
            # foreign key is checked at the statement's end): one round trip, and no
            # ORM flush, on the path every upload takes.
            expires_at = self.limits.expires_at()
            new_video = (
                insert(Video.__table__)
                .values(
                    id=video_id,
                    creator_id=user,
                    title=meta.title,
                    description=meta.description,
                    hashtags=meta.hashtags,
                    content_type=CONTENT_TYPES.get(meta.content_type, "original"),
                    audio_attribution=meta.audio_attribution or None,
                    status=VideoStatus.UPLOADING.value,
                    stage="upload",
                    size_bytes=meta.declared_size,
                    filename=meta.filename or None,
                    mime_type=meta.mime_type or None,
                )
                .cte("new_video")
            )
            await session.execute(
                insert(Upload.__table__)
                .values(
                    id=upload_id,
                    video_id=video_id,
                    creator_id=user,
                    declared_size=meta.declared_size,
                    received_bytes=0,
                    state=UploadState.OPEN,
                    expires_at=expires_at,
                    expected_sha256=meta.sha256_hex,
                    filename=meta.filename or None,
                    mime_type=meta.mime_type or None,
                )
                .add_cte(new_video)
            )
        return UploadView(
            str(upload_id), str(video_id), 0, meta.declared_size, UploadState.OPEN, expires_at
        )

    # -- read -----------------------------------------------------------------------

    async def _load(self, session: AsyncSession, user: str, upload_id: str) -> Upload:
        """The caller's upload. Someone else's is NOT_FOUND: ids never leak existence."""
        uid = parse_uuid(upload_id, "upload")
        upload = await session.get(Upload, uid)
        if upload is None or upload.creator_id != user or upload.state == UploadState.TERMINATED:
            raise errors.NotFound("upload", upload_id)
        return upload

    async def _load_with_video(
        self, session: AsyncSession, user: str, upload_id: str
    ) -> tuple[Upload, Video]:
        """The caller's upload and its video, in one query (as :meth:`_load`)."""
        uid = parse_uuid(upload_id, "upload")
        row = (
            await session.execute(
                select(Upload, Video)
                .join(Video, Video.id == Upload.video_id)
                .where(Upload.id == uid)
            )
        ).first()
        if row is None:
            raise errors.NotFound("upload", upload_id)
        upload, video = row
        if upload.creator_id != user or upload.state == UploadState.TERMINATED:
            raise errors.NotFound("upload", upload_id)
        return upload, video

    async def get(self, user: str, upload_id: str) -> UploadView:
        async with self.autocommit() as session:
            return _view(await self._load(session, user, upload_id))

    def _require_open(self, upload: Upload) -> None:
        if upload.state == UploadState.OPEN:
            if upload.expires_at < datetime.now(UTC):
                raise errors.NotFound("upload", str(upload.id), f"upload {upload.id} expired")
            return
        if upload.state == UploadState.COMPLETED:
            raise errors.FailedPrecondition(f"upload {upload.id} is already complete")
        raise errors.FailedPrecondition(
            f"upload {upload.id} failed: {upload.failure_reason or 'unknown reason'}"
        )

    # -- write ----------------------------------------------------------------------

    async def write_chunk(
        self, user: str, upload_id: str, offset: int, data: bytes | memoryview
    ) -> tuple[int, int]:
        """Append ``data`` at ``offset``; a repeat of stored bytes is a no-op.

        Returns the offset after the write (the current offset for a repeat) and the
        declared size.
        """
        async with self.locks.hold(upload_id):
            async with self.autocommit() as session:
                upload = await self._load(session, user, upload_id)
            self._require_open(upload)
            current, size = upload.received_bytes, upload.declared_size
            if offset < 0:
                raise errors.InvalidArgument("offset must be >= 0", [("offset", "must be >= 0")])
            if offset < current:
                if offset + len(data) <= current:
                    stored = await self.staging.read_range(upload_id, offset, len(data))
                    if stored == data:
                        return current, size
                    raise OffsetMismatch(current, offset, "the bytes differ from the stored ones")
                raise OffsetMismatch(current, offset, "the chunk overlaps stored bytes")
            if offset > current:
                raise OffsetMismatch(current, offset, "the chunk would leave a gap")
            if offset + len(data) > size:
                raise OutOfRange(
                    f"chunk ends at {offset + len(data)}, past the declared size {size}"
                )
            if not data:
                return current, size
            # Write, hash and fdatasync in one worker-thread call; then the offset.
            try:
                writer = await self.staging.append_durably(upload_id, current, data)
            except StagedBytesMissing:
                await self._lost(upload)
            await self._commit_offset(upload.id, current, writer.snapshot())
            return writer.offset, size

    async def write_stream(
        self,
        user: str,
        upload_id: str,
        offset: int,
        pieces: AsyncIterator[bytes | bytearray | memoryview],
        *,
        length: int | None = None,
        checksum: tuple[str, bytes] | None = None,
    ) -> int:
        """:meth:`receive_stream`'s new offset."""
        view = await self.receive_stream(
            user, upload_id, offset, pieces, length=length, checksum=checksum
        )
        return view.offset

    async def receive_stream(
        self,
        user: str,
        upload_id: str,
        offset: int,
        pieces: AsyncIterator[bytes | bytearray | memoryview],
        *,
        length: int | None = None,
        checksum: tuple[str, bytes] | None = None,
        admit: Callable[[UploadView], None] | None = None,
    ) -> UploadView:
        """Append a body streamed in pieces (tus PATCH) at exactly the current offset;
        returns the upload as it is after the body (the new offset committed), so the
        caller needs no second read. ``admit`` is called with the upload as loaded,
        under its lock and before anything else is checked or written; what it raises
        is the answer (tus: 410 for an expired upload, the completed-upload rules).

        A body of at most one piece (:data:`SMALL_BODY`, its length known) is read
        whole, then written, hashed and fdatasynced in one worker-thread call
        (:meth:`StagingArea.append_durably`) instead of four.

        Without a checksum the offset is committed every 16 MB and when the body
        ends or breaks, so a dropped connection keeps what arrived (tus core). With
        a checksum the whole body is one unit: kept only when it matches.
        """
        async with self.locks.hold(upload_id):
            async with self.autocommit() as session:
                upload = await self._load(session, user, upload_id)
            if admit is not None:
                admit(_view(upload))
            self._require_open(upload)
            current, size = upload.received_bytes, upload.declared_size
            if offset != current:
                raise OffsetMismatch(current, offset)
            if length is not None and offset + length > size:
                raise OutOfRange(f"body ends at {offset + length}, past the declared size {size}")
            if length is not None and length <= SMALL_BODY:
                written = await self._receive_small(upload, pieces, checksum)
                return dataclasses.replace(_view(upload), offset=written)
            piece_hash = hashlib.new(checksum[0]) if checksum else None
            try:
                writer = await self.staging.open_at(upload_id, current).open()
            except StagedBytesMissing:
                await self._lost(upload)
            committed = current
            # One piece is written and hashed in a worker thread while the next one is
            # read from the network; a piece counts (moves writer.offset) once written.
            pending: tuple[asyncio.Future[None], int] | None = None
            # A group commit (fdatasync, then the offset) runs while later pieces are
            # written; the next one starts only after it, so offsets move in order.
            committing: asyncio.Task[None] | None = None

            async def finish() -> None:
                nonlocal pending
                if pending is not None:
                    future, length = pending
                    try:
                        await writer.finish_write(future, length)
                    finally:
                        if future.done():  # else cancelled: the cleanup below waits
                            pending = None

            async def settle() -> None:
                nonlocal committing
                if committing is not None:
                    task = committing
                    try:
                        await asyncio.shield(task)
                    finally:
                        if task.done():
                            committing = None

            async def commit_upto(old: int, running: RunningHash) -> None:
                await writer.sync_data()
                await self._commit_offset(upload.id, old, running)

            def start_commit() -> None:
                # Called with no write in flight: the snapshot is exactly what was written.
                nonlocal committing, committed
                writer.flush_buffer()
                running = writer.snapshot()
                committing = asyncio.create_task(commit_upto(committed, running))
                committed = running.offset

            async def commit_now() -> None:
                await settle()
                if writer.offset > committed:
                    start_commit()
                    await settle()

            try:
                try:
                    async for piece in pieces:
                        queued = writer.offset + (pending[1] if pending else 0)
                        if queued + len(piece) > size:
                            raise OutOfRange(f"the body runs past the declared size {size}")
                        await finish()
                        if piece_hash is None and writer.offset - committed >= COMMIT_EVERY_BYTES:
                            await settle()
                            start_commit()
                        if piece:
                            pending = (writer.start_write(piece, piece_hash), len(piece))
                        del piece
                    await finish()
                except Exception:
                    # The connection broke (or the body was too long): keep what arrived.
                    await finish()
                    if piece_hash is None:
                        await commit_now()
                    raise
                if piece_hash is not None and checksum is not None:
                    if piece_hash.digest() != checksum[1]:
                        raise ChecksumMismatch(
                            f"Upload-Checksum ({checksum[0]}) does not match the body; "
                            f"resend from offset {committed}"
                        )
                await commit_now()
            finally:
                # Cancelled mid-write or mid-commit: let the threads finish before closing.
                for leftover in (pending[0] if pending else None, committing):
                    if leftover is not None:
                        with contextlib.suppress(BaseException):
                            await asyncio.shield(leftover)
                await writer.close()
            return dataclasses.replace(_view(upload), offset=writer.offset)

    async def _receive_small(
        self,
        upload: Upload,
        pieces: AsyncIterator[bytes | bytearray | memoryview],
        checksum: tuple[str, bytes] | None,
    ) -> int:
        """A body of at most :data:`SMALL_BODY` bytes: read whole, then one durable
        append and the offset. Same rules as the streamed path: without a checksum what
        arrived before a break is kept; with one, the body is kept only when it matches.
        Returns the new offset."""
        current, size = upload.received_bytes, upload.declared_size
        data = bytearray()
        failure: Exception | None = None
        try:
            async for piece in pieces:
                if current + len(data) + len(piece) > size:
                    raise OutOfRange(f"the body runs past the declared size {size}")
                data += piece
        except Exception as exc:  # noqa: BLE001 - re-raised below, after keeping what arrived
            failure = exc
        if checksum is not None:
            if failure is not None:
                raise failure
            if hashlib.new(checksum[0], data).digest() != checksum[1]:
                raise ChecksumMismatch(
                    f"Upload-Checksum ({checksum[0]}) does not match the body; "
                    f"resend from offset {current}"
                )
        if data:
            try:
                writer = await self.staging.append_durably(str(upload.id), current, data)
            except StagedBytesMissing:
                await self._lost(upload)
            await self._commit_offset(upload.id, current, writer.snapshot())
        if failure is not None:
            raise failure
        return current + len(data)

    async def _commit_offset(self, upload_id: uuid.UUID, old: int, running: RunningHash) -> None:
        """Compare-and-set the offset: only the writer that started at ``old`` may move it.

        ``running`` is the hash at the new offset; the bytes up to it are durable.
        """
        async with self.autocommit() as session:  # one UPDATE: atomic on its own
            result = await session.execute(
                update(Upload)
                .where(
                    Upload.id == upload_id,
                    Upload.received_bytes == old,
                    Upload.state == UploadState.OPEN,
                )
                .values(received_bytes=running.offset, updated_at=func.now())
                .execution_options(synchronize_session=False)
            )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            self.staging.forget_hash(str(upload_id))
            raise errors.FailedPrecondition(
                f"upload {upload_id} changed while writing; ask for the offset and resume"
            )
        self.staging.adopt(str(upload_id), running)

    # -- complete -------------------------------------------------------------------

    async def complete(self, user: str, upload_id: str) -> Completed:
        """Verify and hand over to transcoding; a second call returns the first result."""
        async with self.locks.hold(upload_id, wait_s=120):
            async with self.autocommit() as session:
                upload, video = await self._load_with_video(session, user, upload_id)
            if upload.state == UploadState.COMPLETED:
                return Completed(str(video.id), video.status)
            self._require_open(upload)
            if upload.received_bytes != upload.declared_size:
                raise errors.FailedPrecondition(
                    f"upload incomplete: {upload.received_bytes} of {upload.declared_size} "
                    f"bytes received; resume at offset {upload.received_bytes}"
                )
            try:
                running = await self.staging.running_hash(upload_id, upload.received_bytes)
            except StagedBytesMissing:
                # Every byte was received, but the staged file is gone: a crash between
                # publishing it to the store and the hand-over commit. Stage it again.
                await self._restage(upload, video)
                running = await self.staging.running_hash(upload_id, upload.received_bytes)
            sha = running.hasher.hexdigest()
            if upload.expected_sha256 and upload.expected_sha256 != sha:
                reason = f"sha256 mismatch: declared {upload.expected_sha256}, received {sha}"
                await self._fail(upload, reason)
                raise errors.InvalidArgument(reason, [("sha256_hex", "does not match the file")])
            try:
                verdict, info = await self._verify(upload_id)
            except UnusableMedia as exc:
                reason = str(exc)
                await self._fail(upload, reason)
                raise errors.InvalidArgument(
                    f"not a usable video: {reason}", [("file", reason)]
                ) from exc
            except (TimeoutError, OSError) as exc:
                # ffprobe hung or could not run: our problem, not the file's; the upload
                # stays complete-able.
                raise errors.Unavailable(
                    f"could not check the video right now ({exc!r}); retry complete", 5.0
                ) from exc
            if info is None:  # infected: refused before the probe looked at it
                await self._reject(upload, video, verdict)
                raise errors.InvalidArgument(verdict.reason, [("file", verdict.reason)])
            key, _ = self._stored_keys(upload, video)
            await self.staging.publish(upload_id, self.store, key)
            try:
                return await self._hand_over(upload, sha, key, info, held=verdict)
            except BaseException:
                await asyncio.shield(self.staging.restore(upload_id, self.store, key))
                raise

    async def _lost(self, upload: Upload) -> NoReturn:
        """The staged bytes of an open, unfinished upload are gone (the staging directory
        was emptied): nothing can be appended to what is not there. The upload fails
        with a reason that says to upload again (FAILED_PRECONDITION: tus 409), instead
        of an internal error on every retry."""
        reason = "the server lost this upload's received bytes; upload the file again"
        await self._fail(upload, reason)
        raise errors.FailedPrecondition(reason)

    def _stored_keys(self, upload: Upload, video: Video) -> tuple[str, str]:
        """Where ``complete`` puts an upload's bytes: its original's key, and the
        quarantine key an infected one goes to."""
        key = original_key(str(video.id), upload.filename or "", upload.mime_type or "")
        return key, scan_jobs.quarantine_key(key)

    async def _restage(self, upload: Upload, video: Video) -> None:
        """Put back the staged file of an open upload whose every byte was received but
        whose staged file is gone (the caller holds the upload's lock).

        ``complete`` moves the staged file into the store (``originals/`` or, infected,
        the quarantine) and then commits; a process killed in between (kill -9, power
        loss) leaves the upload open, its bytes in the store and nothing staged. Found
        there, the file is staged again and ``complete`` runs as it would have (checks,
        hand-over), so the accepted upload is published. Found nowhere (the staging
        directory was emptied), the upload cannot be finished: it fails with a reason
        that tells the creator to upload again (FAILED_PRECONDITION: tus 409), rather
        than an internal error on every retry.
        """
        for key in self._stored_keys(upload, video):
            if await self.store.exists(key):
                log.warning(
                    "upload %s: staged file missing, its bytes are in the store at %s "
                    "(a stop between publish and hand-over); staging them again",
                    upload.id,
                    key,
                )
                await self.staging.restore(str(upload.id), self.store, key)
                return
        reason = (
            "the server lost this upload's bytes before it could check them; upload the file again"
        )
        await self._fail(upload, reason)
        raise errors.FailedPrecondition(reason)

    async def complete_within(self, user: str, upload_id: str, wait_s: float) -> Completed | None:
        """``complete`` in a task of its own, waited for at most ``wait_s`` seconds, and
        not at all while completions queue for the check slots (:meth:`checks_queued`):
        in a burst the answer does not wait for checks that can.

        Returns its result (or raises its error, e.g. INVALID_ARGUMENT for an unusable
        video) when it ends in time; None when it is still queued or checking. The
        run goes on after the caller stops waiting (or goes away): an unusable or
        infected upload then ends ``failed`` with its reason in the video's status,
        a good one goes on to transcoding. A run that cannot end (clamd, ffprobe or
        the database unavailable) leaves the upload open with every byte in, and
        :meth:`sweep_stranded` completes it later.
        """
        task = self._completing.get(upload_id)
        if task is None:
            task = asyncio.create_task(self.complete(user, upload_id), name=f"complete:{upload_id}")
            self._completing[upload_id] = task
            task.add_done_callback(lambda t: self._completed(upload_id, t))
        if self.checks_queued():
            wait_s = 0.0  # a burst: the checks would queue behind others'; answer now
        done, _ = await asyncio.wait({task}, timeout=max(0.0, wait_s))
        return task.result() if done else None

    def checks_queued(self) -> bool:
        """True when more completions are in flight than there are check slots, so a
        new one's checks would wait behind others' (a burst of completing uploads)."""
        return len(self._completing) > self.verify_concurrency

    def _completed(self, upload_id: str, task: asyncio.Task[Completed]) -> None:
        self._completing.pop(upload_id, None)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved: a refusal nobody waited for is no error
        if exc is not None and not isinstance(exc, errors.InvalidArgument):
            log.warning("completing upload %s did not finish: %r", upload_id, exc)

    async def sweep_stranded(self, older_than_s: float = 60.0, limit: int = 100) -> int:
        """Complete uploads whose every byte is in but that are still open (the process
        stopped, or a dependency failed, after the last PATCH was answered). Returns how
        many were started."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        async with self.autocommit() as session:
            rows = (
                await session.execute(
                    select(Upload.id, Upload.creator_id)
                    .where(
                        Upload.state == UploadState.OPEN,
                        Upload.received_bytes == Upload.declared_size,
                        Upload.updated_at < cutoff,
                        Upload.expires_at > func.now(),
                    )
                    .order_by(Upload.updated_at)
                    .limit(limit)
                )
            ).all()
        started = 0
        for upload_id, creator in rows:
            # The instance that staged the bytes (a local staging dir) finishes it; so
            # does any instance when they are already in the store (a stop between
            # publish and hand-over: ``complete`` stages them again, see _restage).
            staged = await self.staging.offload(self.staging.path(str(upload_id)).exists)
            if not staged:
                staged = await self._published_but_open(upload_id)
            if staged and str(upload_id) not in self._completing:
                await self.complete_within(creator, str(upload_id), 0.0)
                started += 1
        return started

    async def _published_but_open(self, upload_id: uuid.UUID) -> bool:
        """True when an open upload's bytes are in the store (original or quarantine)."""
        async with self.autocommit() as session:
            upload = await session.get(Upload, upload_id)
            video = await session.get(Video, upload.video_id) if upload else None
        if upload is None or video is None:
            return False
        for key in self._stored_keys(upload, video):
            if await self.store.exists(key):
                return True
        return False

    async def run_sweeper(self, interval_s: float = 30.0) -> None:
        """:meth:`sweep_stranded` every ``interval_s`` seconds (a supervised task)."""
        while True:
            try:
                await self.sweep_stranded()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("sweeping stranded uploads failed: %r", exc)
            await asyncio.sleep(interval_s)

    async def stop_completing(self) -> None:
        """Cancel the complete() runs still going (service stop); the sweeper of the
        next start finishes them."""
        tasks = list(self._completing.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _verify(self, upload_id: str) -> tuple[Verdict, ProbeResult | None]:
        """Scan, then (when not infected) probe the staged file, in one of the
        ``verify_slots``. Returns the verdict and the probe (None when infected); raises
        UnusableMedia for a file that is no usable video."""
        async with self.verify_slots:
            verdict = await self._scan(upload_id)
            if verdict.infected:
                return verdict, None
            info: ProbeResult = await self._probe(self.staging.path(upload_id))  # type: ignore[misc]
            return verdict, info

    async def _scan(self, upload_id: str) -> Verdict:
        if self.scanner is None:
            raise errors.Unavailable("the malware scanner is not configured; retry later", 5.0)
        return await self.scanner.scan(self.staging.path(upload_id))

    async def _reject(self, upload: Upload, video: Video, verdict: Verdict) -> None:
        """An infected upload: its bytes quarantined (never in ``originals/``), the video
        failed with the scan's reason, ``video.rejected`` in the outbox."""
        key = scan_jobs.quarantine_key(
            original_key(str(video.id), upload.filename or "", upload.mime_type or "")
        )
        await self.staging.publish(str(upload.id), self.store, key)
        try:
            async with self.sessionmaker() as session, session.begin():
                row = await session.get(Video, upload.video_id, with_for_update=True)
                assert row is not None
                row.original_key = key
                row.size_bytes = upload.declared_size
                await scan_jobs.mark_rejected(session, row, verdict, key, upload.id)
        except BaseException:
            await asyncio.shield(self.staging.restore(str(upload.id), self.store, key))
            raise
        await self.channel.publish(snapshot_of(row))

    async def _hand_over(
        self, upload: Upload, sha: str, key: str, info: ProbeResult, held: Verdict
    ) -> Completed:
        """One transaction: video -> processing, upload -> completed, outbox row; or,
        when the scan could not run (``held.error``), a held scan job instead of the
        outbox row (svc_upload.scan)."""
        async with self.sessionmaker() as session, session.begin():
            video = await session.get(Video, upload.video_id, with_for_update=True)
            assert video is not None
            current = VideoStatus(video.status)
            if current == VideoStatus.DELETED:
                raise errors.FailedPrecondition(f"video {video.id} was deleted during the upload")
            check_transition(current, VideoStatus.PROCESSING, str(video.id))
            now = datetime.now(UTC)
            video.status = VideoStatus.PROCESSING.value
            video.stage = "queued"
            video.percent = 0
            video.failure_reason = None
            video.size_bytes = upload.declared_size
            video.sha256 = sha
            video.original_key = key
            video.duration_s = info.duration_s
            video.width = info.width
            video.height = info.height
            video.updated_at = now
            await session.execute(
                update(Upload)
                .where(Upload.id == upload.id)
                .values(state=UploadState.COMPLETED, updated_at=func.now())
            )
            event_id = new_event_id()
            event = uploaded_event(video, event_id, now, info)
            if held.error:
                video.stage = SCAN_STAGE
                session.add(
                    ScanJob(
                        video_id=video.id,
                        original_key=key,
                        event=event.SerializeToString(),
                        attempts=1,
                        last_error=held.error[:500],
                        next_attempt_at=now + timedelta(seconds=1),
                    )
                )
            else:
                await enqueue_message(session, topics.VIDEO_UPLOADED, event, event_id)
        if held.error and self.retrier is not None:
            self.retrier.wake.set()
        upload_duration.record(max(0.0, (now - upload.created_at).total_seconds()))
        await self.channel.publish(snapshot_of(video))
        log.info("upload complete", extra={"fields": {"video_id": str(video.id), "key": key}})
        return Completed(str(video.id), video.status)

    async def _fail(self, upload: Upload, reason: str) -> None:
        """Video -> failed(reason), upload -> failed, staged bytes dropped; nothing queued."""
        async with self.sessionmaker() as session, session.begin():
            video = await session.get(Video, upload.video_id, with_for_update=True)
            assert video is not None
            if check_transition(VideoStatus(video.status), VideoStatus.FAILED, str(video.id)):
                video.status = VideoStatus.FAILED.value
                video.failure_reason = reason
                video.stage = "validate"
                video.updated_at = datetime.now(UTC)
            await session.execute(
                update(Upload)
                .where(Upload.id == upload.id)
                .values(state=UploadState.FAILED, failure_reason=reason, updated_at=func.now())
            )
        await self.staging.discard(str(upload.id))
        await self.channel.publish(snapshot_of(video))

    # -- terminate ------------------------------------------------------------------

    async def terminate(self, user: str, upload_id: str) -> None:
        """tus termination: drop the staged bytes; an unfinished video is deleted."""
        async with self.locks.hold(upload_id):
            async with self.sessionmaker() as session, session.begin():
                upload = await self._load(session, user, upload_id)
                video = await session.get(Video, upload.video_id, with_for_update=True)
                upload.state = UploadState.TERMINATED
                upload.updated_at = datetime.now(UTC)
                changed = False
                if video is not None and video.status == VideoStatus.UPLOADING.value:
                    video.status = VideoStatus.DELETED.value
                    video.deleted_at = video.updated_at = datetime.now(UTC)
                    changed = True
            await self.staging.discard(upload_id)
        if changed and video is not None:
            await self.channel.publish(snapshot_of(video))
