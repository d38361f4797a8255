"""UploadService over gRPC, plus the process around it: tus HTTP, outbox relay, Redis.

The servicer only translates messages; upload rules live in ``uploads.py`` and
video rules in ``videos.py`` so tus and gRPC cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from google.protobuf import timestamp_pb2
from reels.v1 import upload_pb2, upload_pb2_grpc

from reels import errors
from reels.auth import current_user
from reels.cache import redis_client
from reels.config import AuthConfig
from reels.db.engine import make_engine, make_sessionmaker
from reels.events import EventProducer
from reels.outbox import OutboxRelay
from reels.server import Registration
from reels.storage import ObjectStore, open_object_store
from svc_upload.limits import NewUpload, UploadLimits
from svc_upload.staging import StagingArea, default_staging_dir
from svc_upload.status import StatusChannel
from svc_upload.tus import TusApp, start_http
from svc_upload.uploads import UploadCore
from svc_upload.videos import STATUS_TO_PROTO, VideoBook, status_fields, video_proto
from svc_upload.wire import UPLOAD_SWAPS, swap_deserializers

log = logging.getLogger(__name__)

UPLOAD_STATES = {
    "open": upload_pb2.UPLOAD_STATE_OPEN,
    "completed": upload_pb2.UPLOAD_STATE_COMPLETED,
    "failed": upload_pb2.UPLOAD_STATE_FAILED,
}


def _user() -> str:
    user = current_user.get()
    if not user:
        raise errors.Unauthenticated("this call needs an authenticated user")
    return user


def _ts(value: object) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)  # type: ignore[arg-type]
    return ts


def _new_upload(m: upload_pb2.CreateUploadRequest | upload_pb2.UploadMetadata) -> NewUpload:
    return NewUpload(
        title=m.title,
        description=m.description,
        hashtags=[t.strip().lstrip("#") for t in m.hashtags],
        content_type=int(m.content_type),
        audio_attribution=m.audio_attribution,
        declared_size=m.declared_size_bytes,
        sha256_hex=m.sha256_hex if m.HasField("sha256_hex") else None,
        filename=m.filename,
        mime_type=m.mime_type,
    )


class UploadService(upload_pb2_grpc.UploadServiceServicer):
    def __init__(self, core: UploadCore, book: VideoBook) -> None:
        self.core = core
        self.book = book

    async def CreateUpload(  # noqa: N802 - generated name
        self, request: upload_pb2.CreateUploadRequest, context: grpc.aio.ServicerContext
    ) -> upload_pb2.CreateUploadResponse:
        view = await self.core.create(_user(), _new_upload(request))
        return upload_pb2.CreateUploadResponse(
            upload_id=view.upload_id,
            video_id=view.video_id,
            chunk_size_bytes=self.core.limits.chunk_bytes,
            expires_at=_ts(view.expires_at),
        )

    async def UploadChunk(  # noqa: N802
        self, request: upload_pb2.UploadChunkRequest, context: grpc.aio.ServicerContext
    ) -> upload_pb2.UploadChunkResponse:
        offset, size = await self.core.write_chunk(
            _user(), request.upload_id, request.offset, request.data
        )
        return upload_pb2.UploadChunkResponse(
            upload_id=request.upload_id, offset=offset, size_bytes=size
        )

    async def GetUploadOffset(  # noqa: N802
        self, request: upload_pb2.GetUploadOffsetRequest, context: grpc.aio.ServicerContext
    ) -> upload_pb2.GetUploadOffsetResponse:
        view = await self.core.get(_user(), request.upload_id)
        return upload_pb2.GetUploadOffsetResponse(
            upload_id=view.upload_id,
            offset=view.offset,
            size_bytes=view.size,
            state=UPLOAD_STATES.get(view.state, upload_pb2.UPLOAD_STATE_UNSPECIFIED),
            video_id=view.video_id,
            expires_at=_ts(view.expires_at),
        )

    async def CompleteUpload(  # noqa: N802
        self, request: upload_pb2.CompleteUploadRequest, context: grpc.aio.ServicerContext
    ) -> upload_pb2.CompleteUploadResponse:
        done = await self.core.complete(_user(), request.upload_id)
        return upload_pb2.CompleteUploadResponse(
            video_id=done.video_id, status=status_fields_status(done.status)
        )

    async def UploadVideo(  # noqa: N802
        self,
        request_iterator: AsyncIterator[upload_pb2.UploadVideoRequest],
        context: grpc.aio.ServicerContext,
    ) -> upload_pb2.UploadVideoResponse:
        """Metadata first, then chunks appended in order: one chunk in memory at a time.

        The chunks go through the same streaming writer as a tus PATCH: the offset
        (and fsync) is committed every 16 MB rather than per message.
        """
        user = _user()
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("payload") != "metadata":
            raise errors.InvalidArgument(
                "the first message must carry metadata", [("metadata", "required first")]
            )
        view = await self.core.create(user, _new_upload(first.metadata))

        async def chunks() -> AsyncIterator[bytes]:
            async for message in request_iterator:
                if message.WhichOneof("payload") != "chunk":
                    raise errors.InvalidArgument(
                        "metadata may only be sent once", [("metadata", "only the first message")]
                    )
                chunk = message.chunk
                del message  # the chunk alone stays referenced, not the message too
                yield chunk

        await self.core.write_stream(user, view.upload_id, 0, chunks())
        done = await self.core.complete(user, view.upload_id)
        return upload_pb2.UploadVideoResponse(
            video_id=done.video_id, status=status_fields_status(done.status)
        )

    async def CreateVideo(  # noqa: N802
        self, request: upload_pb2.CreateVideoRequest, context: grpc.aio.ServicerContext
    ) -> upload_pb2.CreateVideoResponse:
        """The seed API's single shot; the whole body is already in memory (gRPC limit)."""
        user = _user()
        meta = NewUpload(
            title=request.title,
            description=request.description,
            hashtags=[t.strip().lstrip("#") for t in request.hashtags],
            content_type=int(request.content_type),
            audio_attribution=request.audio_attribution,
            declared_size=len(request.video),
            sha256_hex=request.sha256_hex if request.HasField("sha256_hex") else None,
            filename=request.filename,
            mime_type=request.mime_type,
        )
        view = await self.core.create(user, meta)
        await self.core.write_chunk(user, view.upload_id, 0, request.video)  # one chunk: all
        done = await self.core.complete(user, view.upload_id)
        return upload_pb2.CreateVideoResponse(
            video_id=done.video_id,
            status=status_fields_status(done.status),
            status_url=f"/api/v1/reels/{done.video_id}/status",
        )

    async def GetVideoStatus(  # noqa: N802
        self, request: upload_pb2.GetVideoStatusRequest, context: grpc.aio.ServicerContext
    ) -> upload_pb2.GetVideoStatusResponse:
        snap = await self.book.status(_user(), request.video_id)
        return upload_pb2.GetVideoStatusResponse(**status_fields(snap))  # type: ignore[arg-type]

    async def WatchVideoStatus(  # noqa: N802
        self, request: upload_pb2.WatchVideoStatusRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[upload_pb2.WatchVideoStatusResponse]:
        async for snap in self.book.watch(_user(), request.video_id):
            yield upload_pb2.WatchVideoStatusResponse(**status_fields(snap))  # type: ignore[arg-type]

    async def GetVideo(  # noqa: N802
        self, request: upload_pb2.GetVideoRequest, context: grpc.aio.ServicerContext
    ) -> upload_pb2.GetVideoResponse:
        return upload_pb2.GetVideoResponse(
            video=video_proto(await self.book.get(_user(), request.video_id))
        )

    async def DeleteVideo(  # noqa: N802
        self, request: upload_pb2.DeleteVideoRequest, context: grpc.aio.ServicerContext
    ) -> upload_pb2.DeleteVideoResponse:
        video = await self.book.delete(_user(), request.video_id)
        return upload_pb2.DeleteVideoResponse(
            video_id=str(video.id), status=status_fields_status(video.status)
        )

    async def UpdateVideoStatus(  # noqa: N802
        self, request: upload_pb2.UpdateVideoStatusRequest, context: grpc.aio.ServicerContext
    ) -> upload_pb2.UpdateVideoStatusResponse:
        video = await self.book.update_status(current_user.get(), request)
        return upload_pb2.UpdateVideoStatusResponse(video=video_proto(video))


def status_fields_status(status: str) -> int:
    return STATUS_TO_PROTO[status]


@dataclass
class UploadProcess:
    """Everything svc_upload runs besides the gRPC server; ``stop`` undoes ``start``."""

    core: UploadCore
    book: VideoBook
    http_port: int = 0
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def registrations(self) -> list[Registration]:
        return [
            (
                # UploadChunk / UploadVideo parse their chunk without copying it.
                swap_deserializers(
                    upload_pb2_grpc.add_UploadServiceServicer_to_server, UPLOAD_SWAPS
                ),
                UploadService(self.core, self.book),
                "reels.v1.UploadService",
            )
        ]

    async def stop(self) -> None:
        for hook in reversed(self.on_stop):
            with contextlib.suppress(Exception):
                await hook()
        self.on_stop.clear()


async def _relay_forever(relay: OutboxRelay, producer_box: list[EventProducer]) -> None:
    """Start the producer (waiting for a broker that is not up yet), then relay.

    The service serves uploads without a broker: events wait in the outbox.
    """
    delay = 0.5
    while True:
        producer = EventProducer(client_id="svc_upload")
        try:
            await producer.start()
            break
        except Exception as exc:  # noqa: BLE001 - broker not reachable yet
            log.warning("outbox relay: broker not reachable (%s); retrying", exc)
            await producer.stop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    producer_box.append(producer)
    relay.producer = producer
    await relay.run()


async def start_process(
    *,
    http_host: str | None = None,
    http_port: int | None = None,
    database_url: str | None = None,
    store: ObjectStore | None = None,
    limits: UploadLimits | None = None,
    auth: AuthConfig | None = None,
    relay: bool = True,
) -> UploadProcess:
    """Build the core, start the tus HTTP server and the outbox relay."""
    engine = make_engine(database_url)
    sessionmaker = make_sessionmaker(engine)
    store = store or open_object_store()
    staging = StagingArea(default_staging_dir(store))
    redis = redis_client()
    channel = StatusChannel(redis)
    core = UploadCore(sessionmaker, store, staging, channel, limits)
    book = VideoBook(sessionmaker, store, staging, channel)
    proc = UploadProcess(core, book)
    proc.on_stop.append(engine.dispose)
    proc.on_stop.append(redis.aclose)
    if http_port is None:
        http_port = int(os.environ.get("REELS_UPLOAD_HTTP_PORT", "50061"))
    host = http_host or os.environ.get("REELS_UPLOAD_HTTP_HOST", "127.0.0.1")
    runner, bound = await start_http(TusApp(core, auth), host, http_port)
    proc.http_port = bound
    proc.on_stop.append(runner.cleanup)
    if relay:
        # Several relays (service instances) are safe: ordered mode lets one send at a time.
        outbox = OutboxRelay(sessionmaker, EventProducer(client_id="svc_upload"))
        producers: list[EventProducer] = []
        task = asyncio.create_task(_relay_forever(outbox, producers), name="outbox-relay")

        async def stop_relay() -> None:
            outbox.stop()
            try:
                await asyncio.wait_for(asyncio.shield(task), 5)
            except (TimeoutError, Exception):  # noqa: BLE001
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            for producer in producers:
                await producer.stop()

        proc.on_stop.append(stop_relay)
    log.info("tus endpoint", extra={"fields": {"port": bound}})
    return proc


async def build() -> tuple[list[Registration], list[Callable[[], Awaitable[None]]]]:
    """``python -m svc_upload``: gRPC registrations and the hooks that stop the rest."""
    proc = await start_process()
    return proc.registrations(), [proc.stop]
