"""svc_rank's calls to svc_stream: the trending page and signed media URLs.

Each call has a short deadline (``stream_timeout_s``, 250 ms by default: the feed
must answer within its own budget) and maps any failure to
:class:`~svc_rank.candidate.SourceUnavailable`, which the pipeline turns into a
fallback, never into an error for the client.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from reels.v1 import stream_pb2, stream_pb2_grpc

from reels import faults
from svc_rank.candidate import SourceUnavailable


@dataclass(frozen=True, slots=True)
class MediaUrls:
    streaming_url: str
    thumbnail_url: str


class StreamClient:
    def __init__(self, stub: stream_pb2_grpc.StreamServiceStub, *, timeout_s: float) -> None:
        self.stub = stub
        self.timeout_s = timeout_s

    async def trending(
        self, *, limit: int, offset: int = 0, region: str = "", timeout_s: float | None = None
    ) -> list[tuple[str, float]]:
        # Fault injection (reels.faults, target stream): the feed's fallback path.
        await faults.inject("stream", SourceUnavailable)
        try:
            reply = await self.stub.ListTrending(
                stream_pb2.ListTrendingRequest(limit=limit, offset=offset, region=region),
                timeout=timeout_s or self.timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise SourceUnavailable(f"svc_stream ListTrending: {exc.code().name}") from exc
        return [(e.video_id, e.score) for e in reply.entries]

    async def media_urls(
        self, video_ids: Sequence[str], *, timeout_s: float | None = None
    ) -> dict[str, MediaUrls]:
        """Signed URLs of the videos svc_stream can play (unknown ids are absent).
        ``timeout_s``: the deadline (s), default the feed's ``stream_timeout_s``."""
        if not video_ids:
            return {}
        await faults.inject("stream", SourceUnavailable)
        try:
            reply = await self.stub.GetPlaybackUrls(
                stream_pb2.GetPlaybackUrlsRequest(video_ids=list(video_ids)),
                timeout=timeout_s or self.timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise SourceUnavailable(f"svc_stream GetPlaybackUrls: {exc.code().name}") from exc
        return {v.video_id: MediaUrls(v.master_manifest_url, v.thumbnail_url) for v in reply.videos}
