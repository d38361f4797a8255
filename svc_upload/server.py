"""UploadService over gRPC (the process around it is assembled in ``app.py``).

The servicer only translates messages; upload rules live in ``uploads.py`` and
video rules in ``videos.py`` so tus and gRPC cannot drift apart.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
from google.protobuf import timestamp_pb2
from reels.v1 import upload_pb2, upload_pb2_grpc

from reels import errors
from reels.auth import current_roles, current_user
from reels.server import Registration
from svc_upload.limits import NewUpload
from svc_upload.review import ReviewQueue
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
    def __init__(self, core: UploadCore, book: VideoBook, reviews: ReviewQueue) -> None:
        self.core = core
        self.book = book
        self.reviews = reviews

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

    async def ListReviewQueue(  # noqa: N802
        self, request: upload_pb2.ListReviewQueueRequest, context: grpc.aio.ServicerContext
    ) -> upload_pb2.ListReviewQueueResponse:
        _user()
        page = await self.reviews.list(current_roles.get(), request.page_size, request.page_token)
        return upload_pb2.ListReviewQueueResponse(
            items=page.items, next_page_token=page.next_page_token
        )

    async def DecideReview(  # noqa: N802
        self, request: upload_pb2.DecideReviewRequest, context: grpc.aio.ServicerContext
    ) -> upload_pb2.DecideReviewResponse:
        video = await self.reviews.decide(
            _user(), current_roles.get(), request.video_id, request.decision, request.reason
        )
        return upload_pb2.DecideReviewResponse(video=video_proto(video))


def status_fields_status(status: str) -> int:
    return STATUS_TO_PROTO[status]


def registrations(service: UploadService) -> list[Registration]:
    return [
        (
            # UploadChunk / UploadVideo parse their chunk without copying it.
            swap_deserializers(upload_pb2_grpc.add_UploadServiceServicer_to_server, UPLOAD_SWAPS),
            service,
            "reels.v1.UploadService",
        )
    ]
