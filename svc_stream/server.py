"""StreamService: one gRPC servicer over svc_stream's four domains.

Each domain's RPCs live in their own class, built with exactly what they need
(svc_stream/app.py wires them): playback (``playback/rpc.py``), player events
(``events/rpc.py``), engagement (``engagement/rpc.py``) and analytics with the
trending page svc_rank reads (``analytics/rpc.py``). This class only routes.
"""

from __future__ import annotations

import grpc
from google.api import httpbody_pb2
from reels.v1 import stream_pb2, stream_pb2_grpc

from svc_stream.analytics.rpc import AnalyticsRpcs
from svc_stream.engagement.rpc import EngagementRpcs
from svc_stream.events.rpc import EventsRpcs
from svc_stream.playback.rpc import PlaybackRpcs

Ctx = grpc.aio.ServicerContext


class StreamService(stream_pb2_grpc.StreamServiceServicer):
    def __init__(
        self,
        playback: PlaybackRpcs,
        events: EventsRpcs,
        engagement: EngagementRpcs,
        analytics: AnalyticsRpcs,
    ) -> None:
        self.playback = playback
        self.events = events
        self.engagement = engagement
        self.analytics = analytics

    # playback
    async def GetPlayback(  # noqa: N802 - generated name
        self, request: stream_pb2.GetPlaybackRequest, context: Ctx
    ) -> stream_pb2.GetPlaybackResponse:
        return await self.playback.GetPlayback(request, context)

    async def GetManifest(  # noqa: N802 - generated name
        self, request: stream_pb2.GetManifestRequest, context: Ctx
    ) -> httpbody_pb2.HttpBody:
        return await self.playback.GetManifest(request, context)

    # events
    async def RecordEvents(  # noqa: N802 - generated name
        self, request: stream_pb2.RecordEventsRequest, context: Ctx
    ) -> stream_pb2.RecordEventsResponse:
        return await self.events.RecordEvents(request, context)

    # engagement
    async def LikeVideo(  # noqa: N802 - generated name
        self, request: stream_pb2.LikeVideoRequest, context: Ctx
    ) -> stream_pb2.LikeVideoResponse:
        return await self.engagement.LikeVideo(request, context)

    async def UnlikeVideo(  # noqa: N802 - generated name
        self, request: stream_pb2.UnlikeVideoRequest, context: Ctx
    ) -> stream_pb2.UnlikeVideoResponse:
        return await self.engagement.UnlikeVideo(request, context)

    async def AddComment(  # noqa: N802 - generated name
        self, request: stream_pb2.AddCommentRequest, context: Ctx
    ) -> stream_pb2.AddCommentResponse:
        return await self.engagement.AddComment(request, context)

    async def ListComments(  # noqa: N802 - generated name
        self, request: stream_pb2.ListCommentsRequest, context: Ctx
    ) -> stream_pb2.ListCommentsResponse:
        return await self.engagement.ListComments(request, context)

    async def ShareVideo(  # noqa: N802 - generated name
        self, request: stream_pb2.ShareVideoRequest, context: Ctx
    ) -> stream_pb2.ShareVideoResponse:
        return await self.engagement.ShareVideo(request, context)

    async def FollowCreator(  # noqa: N802 - generated name
        self, request: stream_pb2.FollowCreatorRequest, context: Ctx
    ) -> stream_pb2.FollowCreatorResponse:
        return await self.engagement.FollowCreator(request, context)

    async def UnfollowCreator(  # noqa: N802 - generated name
        self, request: stream_pb2.UnfollowCreatorRequest, context: Ctx
    ) -> stream_pb2.UnfollowCreatorResponse:
        return await self.engagement.UnfollowCreator(request, context)

    # analytics
    async def GetVideoAnalytics(  # noqa: N802 - generated name
        self, request: stream_pb2.GetVideoAnalyticsRequest, context: Ctx
    ) -> stream_pb2.GetVideoAnalyticsResponse:
        return await self.analytics.GetVideoAnalytics(request, context)

    async def GetCreatorAnalytics(  # noqa: N802 - generated name
        self, request: stream_pb2.GetCreatorAnalyticsRequest, context: Ctx
    ) -> stream_pb2.GetCreatorAnalyticsResponse:
        return await self.analytics.GetCreatorAnalytics(request, context)

    async def ListTrending(  # noqa: N802 - generated name
        self, request: stream_pb2.ListTrendingRequest, context: Ctx
    ) -> stream_pb2.ListTrendingResponse:
        return await self.analytics.ListTrending(request, context)

    async def GetExperimentData(  # noqa: N802 - generated name
        self, request: stream_pb2.GetExperimentDataRequest, context: Ctx
    ) -> stream_pb2.GetExperimentDataResponse:
        return await self.analytics.GetExperimentData(request, context)

    async def GetPlaybackUrls(  # noqa: N802 - generated name
        self, request: stream_pb2.GetPlaybackUrlsRequest, context: Ctx
    ) -> stream_pb2.GetPlaybackUrlsResponse:
        return await self.playback.GetPlaybackUrls(request, context)
