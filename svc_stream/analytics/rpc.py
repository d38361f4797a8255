"""Analytics RPCs: a video's and a creator's numbers, and the trending page.

Analytics are owner-only: a video's numbers (audience, retention) are the creator's
business, so GetVideoAnalytics / GetCreatorAnalytics answer PERMISSION_DENIED to
anyone but the creator. ListTrending is what svc_rank pages through. Outages of the
stores behind them (ClickHouse, Postgres, Redis) are the interceptor's business
(UNAVAILABLE with RetryInfo); only domain answers are decided here.
"""

from __future__ import annotations

import grpc
import redis.asyncio as aioredis
from reels.v1 import stream_pb2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import errors
from svc_stream.analytics import queries, trending
from svc_stream.analytics.experiments import experiment_data
from svc_stream.analytics.store import AnalyticsHandle
from svc_stream.caller import require_user
from svc_stream.engagement import store as engagement
from svc_stream.playback.catalog import Catalog

MAX_TRENDING_PAGE = 500


class AnalyticsRpcs:
    """Owner-only analytics and the trending page."""

    def __init__(
        self,
        catalog: Catalog,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: aioredis.Redis,
        analytics: AnalyticsHandle,
        replay_allowance: float = queries.DEFAULT_REPLAY_ALLOWANCE,
    ) -> None:
        self.catalog = catalog
        self.sessionmaker = sessionmaker
        self.redis = redis
        self.analytics = analytics
        # The same allowance the per-event check uses (Settings.events_replay_allowance).
        self.replay_allowance = replay_allowance

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
        rows = await trending.top(
            self.redis, offset=request.offset, limit=request.limit or 20, region=request.region
        )
        return stream_pb2.ListTrendingResponse(
            entries=[stream_pb2.TrendingEntry(video_id=v, score=s) for v, s in rows]
        )

    async def GetExperimentData(  # noqa: N802 - generated name
        self, request: stream_pb2.GetExperimentDataRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.GetExperimentDataResponse:
        """Internal (svc_rank's GetExperimentResults): one phase's per-user outcomes."""
        if not request.experiment_id:
            raise errors.InvalidArgument(
                "experiment_id is required", [("experiment_id", "is required")]
            )
        return await experiment_data(self.analytics.get(), request.experiment_id, request.phase)

    async def GetVideoAnalytics(  # noqa: N802 - generated name
        self, request: stream_pb2.GetVideoAnalyticsRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.GetVideoAnalyticsResponse:
        user = require_user()
        if not request.video_id:
            raise errors.InvalidArgument("video_id is required", [("video_id", "is required")])
        video = await self.catalog.get(request.video_id)
        if video is None:
            raise errors.NotFound("video", request.video_id)
        if video.creator_id != user:
            raise errors.PermissionDenied("only the video's creator may see its analytics")
        store = self.analytics.get()
        stats = await queries.video_stats(
            store, video.video_id, video.duration_s, replay_allowance=self.replay_allowance
        )
        counts = await engagement.video_counts(self.sessionmaker, [video.video_id])
        score = await self.redis.zscore(trending.trending_key(), video.video_id)
        likes, shares, comments = counts.get(video.video_id, (0, 0, 0))
        return stream_pb2.GetVideoAnalyticsResponse(
            video_id=video.video_id,
            views=stats.views,
            plays=stats.plays,
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
        user = require_user()
        if not request.creator_id:
            raise errors.InvalidArgument("creator_id is required", [("creator_id", "is required")])
        if request.creator_id != user:
            raise errors.PermissionDenied("only the creator may see their analytics")
        store = self.analytics.get()
        sm = self.sessionmaker
        video_ids = await queries.creator_videos(store, request.creator_id)
        stats = await queries.creator_stats(
            store, video_ids, replay_allowance=self.replay_allowance
        )
        counts = await engagement.video_counts(sm, video_ids)
        followers = await engagement.follower_count(sm, request.creator_id)
        views = stats.views
        return stream_pb2.GetCreatorAnalyticsResponse(
            creator_id=request.creator_id,
            followers=followers,
            video_count=len(video_ids),
            views=views,
            plays=stats.plays,
            likes=sum(c[0] for c in counts.values()),
            shares=sum(c[1] for c in counts.values()),
            comments=sum(c[2] for c in counts.values()),
            average_completion_rate=min(1.0, stats.completed_views / views) if views else 0.0,
            average_watch_seconds=stats.watch_seconds / views if views else 0.0,
            top_videos=[stream_pb2.KeyCount(key=k, count=n) for k, n in stats.top_videos],
            top_countries=[stream_pb2.KeyCount(key=k, count=n) for k, n in stats.top_countries],
        )
