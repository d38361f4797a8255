"""StreamService: one servicer composed of RPC groups, each in its own module.

Groups: playback (playback_rpc), events + analytics (events_rpc), engagement
(engagement_rpc), and ListTrending here, which svc_rank calls for trending pages.
Each group module may expose `async def start(ctx: StreamContext) -> None` that
starts its background work (consumers, HTTP origin, jobs) and appends stop hooks
to ctx.on_stop; build() calls them in order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import redis.asyncio as aioredis
from reels.v1 import stream_pb2, stream_pb2_grpc

from reels import errors
from reels.cache import redis_client
from reels.server import Registration
from svc_stream.engagement import rpc as engagement_rpc
from svc_stream.events import rpc as events_rpc
from svc_stream.playback import rpc as playback_rpc
from svc_stream.analytics import trending
from svc_stream.context import StreamContext

MAX_TRENDING_PAGE = 500


class StreamService(
    playback_rpc.PlaybackRpcs,
    events_rpc.EventsRpcs,
    engagement_rpc.EngagementRpcs,
    stream_pb2_grpc.StreamServiceServicer,
):
    def __init__(self, ctx: StreamContext) -> None:
        self.ctx = ctx
        self.redis = ctx.redis

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


def registrations(ctx: StreamContext | aioredis.Redis) -> list[Registration]:
    if not isinstance(ctx, StreamContext):
        ctx = StreamContext(redis=ctx)
    return [
        (
            stream_pb2_grpc.add_StreamServiceServicer_to_server,
            StreamService(ctx),
            "reels.v1.StreamService",
        )
    ]


async def build() -> tuple[list[Registration], list[Callable[[], Awaitable[None]]]]:
    ctx = StreamContext(redis=redis_client())
    for group in (playback_rpc, events_rpc, engagement_rpc):
        start = getattr(group, "start", None)
        if start is not None:
            await start(ctx)
    # Stop in reverse start order; the shared Redis client goes last.
    return registrations(ctx), [*reversed(ctx.on_stop), ctx.redis.aclose]
