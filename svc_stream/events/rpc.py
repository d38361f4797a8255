"""RecordEvents and the analytics RPCs (events release).

RecordEvents answers OK only after Kafka acknowledged every accepted event of the
batch. On any broker failure it answers UNAVAILABLE with RetryInfo and the client
sends the same batch again: each event's id is derived from (user, client_event_id),
so whatever part of the failed attempt did reach the log is the *same* event as its
retry, and the sink (ReplacingMergeTree read with FINAL, Redis ledger in one Lua
script) counts it once. An accepted event is therefore never dropped (OK means
acked by all in-sync replicas) and never counted twice. With the broker down, no
record of the batch reaches the log, so nothing of it is recorded at all. (A broker
that fails half-way through a batch can leave part of it recorded until the client's
retry completes it; Kafka transactions would close that window but Tansu does not
support them, and the retry contract makes the end state exact either way.)

Analytics are owner-only: a video's numbers (audience, retention) are the creator's
business, so GetVideoAnalytics / GetCreatorAnalytics answer PERMISSION_DENIED to
anyone but the creator.
"""

from __future__ import annotations

import asyncio
import logging
import os

import grpc
import redis.asyncio as aioredis
from google.protobuf import timestamp_pb2
from reels.v1 import events_pb2, stream_pb2, stream_pb2_grpc

from reels import errors
from reels.analytics import Analytics
from reels.events import EVENT_ID_HEADER, OutgoingEvent, inject_trace_headers
from svc_stream.analytics import queries as analytics_queries
from svc_stream.engagement import store as engagement
from svc_stream import resources
from svc_stream.analytics import trending
from svc_stream.context import StreamContext
from svc_stream.events.counters import Counters
from svc_stream.events.sink import (
    SINK_GROUP,
    TOPIC_ENGAGEMENT,
    TOPIC_PUBLISHED,
    TOPIC_VIDEO_EVENTS,
    AnalyticsSink,
    BatchConsumer,
    ensure_schema,
)
from svc_stream.events.validation import MAX_BATCH, event_id_for, validate_batch

log = logging.getLogger(__name__)


class EventsRpcs(stream_pb2_grpc.StreamServiceServicer):
    ctx: StreamContext

    async def RecordEvents(  # noqa: N802 - generated name
        self, request: stream_pb2.RecordEventsRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.RecordEventsResponse:
        user = resources.require_user()
        if not 0 < len(request.events) <= MAX_BATCH:
            raise errors.InvalidArgument(
                "a batch holds 1 to 500 events",
                [("events", f"must hold between 1 and {MAX_BATCH} events")],
            )
        catalog = resources.catalog(self.ctx)
        producer = resources.producer(self.ctx)
        # A catalog (database) outage surfaces as UNAVAILABLE through the interceptor.
        verdicts = await validate_batch(request.events, catalog.get)
        received = timestamp_pb2.Timestamp()
        received.GetCurrentTime()
        headers = inject_trace_headers()
        outgoing = []
        # Built once per request and copied into each event (copying the trace-context
        # map in C is much cheaper than filling it from Python for every event).
        meta = events_pb2.EventMeta(
            occurred_at=received, trace_context=headers, producer="svc_stream"
        )
        for verdict in verdicts:
            if not verdict.accepted or verdict.duplicate:
                continue
            item = request.events[verdict.index]
            event_id = event_id_for(user, item.client_event_id)
            message = events_pb2.VideoEvent(
                meta=meta,
                user_id=user,
                client_event_id=item.client_event_id,
                video_id=item.video_id,
                type=item.type,
                occurred_at=item.occurred_at,
                position_seconds=item.position_seconds,
                watch_seconds=item.watch_seconds,
                rendition=item.rendition,
                device=item.device,
                country=item.country.upper(),
                session_id=item.session_id,
            )
            message.meta.event_id = event_id
            outgoing.append(
                OutgoingEvent(
                    TOPIC_VIDEO_EVENTS,
                    item.video_id,
                    message.SerializeToString(),
                    {**headers, EVENT_ID_HEADER: event_id},
                )
            )
        await producer.publish(outgoing)
        return stream_pb2.RecordEventsResponse(
            accepted_count=sum(1 for v in verdicts if v.accepted),
            results=[
                stream_pb2.ItemResult(
                    index=v.index,
                    client_event_id=v.client_event_id,
                    accepted=v.accepted,
                    reason=v.reason,
                )
                for v in verdicts
            ],
        )

    async def GetVideoAnalytics(  # noqa: N802 - generated name
        self, request: stream_pb2.GetVideoAnalyticsRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.GetVideoAnalyticsResponse:
        user = resources.require_user()
        if not request.video_id:
            raise errors.InvalidArgument("video_id is required", [("video_id", "is required")])
        video = await resources.catalog(self.ctx).get(request.video_id)
        if video is None:
            raise errors.NotFound("video", request.video_id)
        if video.creator_id != user:
            raise errors.PermissionDenied("only the video's creator may see its analytics")
        store = resources.analytics(self.ctx)
        try:
            stats = await analytics_queries.video_stats(store, video.video_id, video.duration_s)
            counts = await engagement.video_counts(
                resources.sessionmaker(self.ctx), [video.video_id]
            )
            score = await self.ctx.redis.zscore(trending.trending_key(), video.video_id)
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
            raise errors.Unavailable("analytics backends unavailable, retry shortly", 1.0) from exc
        likes, shares, comments = counts.get(video.video_id, (0, 0, 0))
        return stream_pb2.GetVideoAnalyticsResponse(
            video_id=video.video_id,
            views=stats.views,
            likes=likes,
            shares=shares,
            comments=comments,
            completion_rate=stats.completion_rate,
            average_watch_seconds=stats.average_watch_seconds,
            completion_distribution=[
                stream_pb2.CompletionBucket(lower_percent=lo, upper_percent=hi, count=n)
                for lo, hi, n in stats.distribution
            ],
            retention=[
                stream_pb2.RetentionPoint(percent_of_duration=p, share_of_viewers=s)
                for p, s in stats.retention
            ],
            trending_score=float(score or 0.0),
            top_countries=[stream_pb2.KeyCount(key=k, count=n) for k, n in stats.top_countries],
            top_devices=[stream_pb2.KeyCount(key=k, count=n) for k, n in stats.top_devices],
        )

    async def GetCreatorAnalytics(  # noqa: N802 - generated name
        self, request: stream_pb2.GetCreatorAnalyticsRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.GetCreatorAnalyticsResponse:
        user = resources.require_user()
        if not request.creator_id:
            raise errors.InvalidArgument("creator_id is required", [("creator_id", "is required")])
        if request.creator_id != user:
            raise errors.PermissionDenied("only the creator may see their analytics")
        store = resources.analytics(self.ctx)
        sm = resources.sessionmaker(self.ctx)
        video_ids = await analytics_queries.creator_videos(store, request.creator_id)
        stats = await analytics_queries.creator_stats(store, video_ids)
        counts = await engagement.video_counts(sm, video_ids)
        followers = await engagement.follower_count(sm, request.creator_id)
        views = stats.views
        return stream_pb2.GetCreatorAnalyticsResponse(
            creator_id=request.creator_id,
            followers=followers,
            video_count=len(video_ids),
            views=views,
            likes=sum(c[0] for c in counts.values()),
            shares=sum(c[1] for c in counts.values()),
            comments=sum(c[2] for c in counts.values()),
            average_completion_rate=min(1.0, stats.completions / views) if views else 0.0,
            average_watch_seconds=stats.watch_seconds / views if views else 0.0,
            top_videos=[stream_pb2.KeyCount(key=k, count=n) for k, n in stats.top_videos],
            top_countries=[stream_pb2.KeyCount(key=k, count=n) for k, n in stats.top_countries],
        )


def _open_analytics(ctx: StreamContext) -> Analytics:
    return Analytics()


async def start(ctx: StreamContext) -> None:
    """Open the analytics store, then run the sink consumer and the trending job.

    The store opens in the background with retries: another process holding the
    chDB path (or a ClickHouse server that is down) must not keep svc_stream from
    serving playback; analytics RPCs answer UNAVAILABLE until it is open.
    """
    resources.producer(ctx)
    resources.catalog(ctx)
    counters = ctx.extras.setdefault("counters", Counters(ctx.redis))
    interval = float(os.environ.get("REELS_TRENDING_INTERVAL_S", "60"))
    consumer_options = ctx.extras.get("consumer_options", {})

    opened: list[Analytics] = []

    async def close_opened() -> None:
        for store in opened:
            await store.aclose()

    # Registered before the task's own stop hook, so (hooks run reversed) it runs after.
    ctx.on_stop.append(close_opened)

    async def run() -> None:
        store = ctx.extras.get("analytics")
        if store is None:
            store = await resources.retry_forever(
                "open analytics store", lambda: asyncio.to_thread(_open_analytics, ctx), 5.0
            )
            opened.append(store)
            ctx.extras["analytics"] = store
        await resources.retry_forever("analytics schema", lambda: ensure_schema(store))
        sink = AnalyticsSink(store, counters)
        ctx.extras["analytics_sink"] = sink
        consumer = BatchConsumer(
            [TOPIC_VIDEO_EVENTS, TOPIC_ENGAGEMENT, TOPIC_PUBLISHED],
            SINK_GROUP,
            sink.apply,
            bootstrap=resources.bootstrap(ctx),
            **consumer_options,
        )
        ctx.extras["analytics_consumer"] = consumer
        job = trending.TrendingJob(store, ctx.redis, interval)
        ctx.extras["trending_job"] = job
        job_task = asyncio.create_task(job.run(), name="trending-job")
        try:
            await resources.retry_forever("analytics consumer", consumer.run)
        finally:
            job.stop()
            await consumer.stop()
            job_task.cancel()
            await asyncio.gather(job_task, return_exceptions=True)

    resources.spawn(ctx, "analytics", run())
