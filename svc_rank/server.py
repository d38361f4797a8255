"""FeedService. Until the ranked feed lands, GetFeed serves the trending pool so
clients get a real, paginated answer (reason TRENDING with its explanation);
scoring, recall and experiments replace this in the feed release."""

from __future__ import annotations

import uuid

import grpc
from reels.v1 import rank_pb2, rank_pb2_grpc, stream_pb2, stream_pb2_grpc

from reels import errors
from svc_rank import cursor

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def _limit(value: int) -> int:
    if value < 0 or value > MAX_LIMIT:
        raise errors.InvalidArgument(
            f"limit must be between 1 and {MAX_LIMIT}", [("limit", f"got {value}")]
        )
    return value or DEFAULT_LIMIT


class FeedService(rank_pb2_grpc.FeedServiceServicer):
    def __init__(
        self, stream: stream_pb2_grpc.StreamServiceStub, *, timeout_s: float = 2.0
    ) -> None:
        self.stream = stream
        self.timeout_s = timeout_s

    async def _trending_page(
        self, limit: int, cursor_token: str, region: str = ""
    ) -> tuple[list[rank_pb2.FeedItem], str]:
        offset = cursor.decode(cursor_token)
        try:
            reply = await self.stream.ListTrending(
                stream_pb2.ListTrendingRequest(limit=limit + 1, offset=offset, region=region),
                timeout=self.timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise errors.Unavailable("trending source unavailable, retry shortly", 1.0) from exc
            raise
        entries = list(reply.entries)
        more = len(entries) > limit
        items = [
            rank_pb2.FeedItem(
                video_id=e.video_id,
                score=e.score,
                reason=rank_pb2.FEED_REASON_TRENDING,
                explanation="Trending now",
                rank=offset + i,
            )
            for i, e in enumerate(entries[:limit])
        ]
        return items, cursor.encode(offset + limit) if more else ""

    async def GetFeed(  # noqa: N802 - generated name
        self, request: rank_pb2.GetFeedRequest, context: grpc.aio.ServicerContext
    ) -> rank_pb2.GetFeedResponse:
        items, next_cursor = await self._trending_page(_limit(request.limit), request.cursor)
        return rank_pb2.GetFeedResponse(
            items=items,
            next_cursor=next_cursor,
            request_id=uuid.uuid4().hex,
            experiment="trending-fallback",
        )

    async def GetTrending(  # noqa: N802 - generated name
        self, request: rank_pb2.GetTrendingRequest, context: grpc.aio.ServicerContext
    ) -> rank_pb2.GetTrendingResponse:
        items, next_cursor = await self._trending_page(
            _limit(request.limit), request.cursor, request.region
        )
        return rank_pb2.GetTrendingResponse(items=items, next_cursor=next_cursor)
