"""StreamService: playback, events, engagement and analytics (later releases) and
ListTrending, which svc_rank calls to build trending pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import redis.asyncio as aioredis
from reels.v1 import stream_pb2, stream_pb2_grpc

from reels import errors
from reels.cache import redis_client
from reels.server import Registration
from svc_stream import trending

MAX_TRENDING_PAGE = 500


class StreamService(stream_pb2_grpc.StreamServiceServicer):
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def ListTrending(  # noqa: N802 - generated name
        self, request: stream_pb2.ListTrendingRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.ListTrendingResponse:
        violations = []
        if request.limit < 0 or request.limit > MAX_TRENDING_PAGE:
            violations.append(("limit", f"must be between 1 and {MAX_TRENDING_PAGE}"))
        if request.offset < 0:
            violations.append(("offset", "must not be negative"))
        if violations:
            raise errors.InvalidArgument("invalid trending page request", violations)
        limit = request.limit or 20
        try:
            rows = await trending.top(
                self.redis, offset=request.offset, limit=limit, region=request.region
            )
        except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            raise errors.Unavailable("trending store unavailable, retry shortly", 1.0) from exc
        return stream_pb2.ListTrendingResponse(
            entries=[stream_pb2.TrendingEntry(video_id=v, score=s) for v, s in rows]
        )


def registrations(redis: aioredis.Redis) -> list[Registration]:
    return [
        (
            stream_pb2_grpc.add_StreamServiceServicer_to_server,
            StreamService(redis),
            "reels.v1.StreamService",
        )
    ]


async def build() -> tuple[list[Registration], list[Callable[[], Awaitable[None]]]]:
    redis = redis_client()
    return registrations(redis), [redis.aclose]
