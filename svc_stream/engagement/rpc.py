"""Likes, comments, shares and follows (engagement release).

Thin RPC layer over ``store.py``: who is calling, does the video exist (the catalog
of published videos), and the responses. The EngagementEvents ``store.py`` writes to
the outbox reach Kafka through the outbox relay the App supervises.
"""

from __future__ import annotations

import grpc
from reels.v1 import stream_pb2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import errors
from svc_stream.caller import require_user
from svc_stream.engagement import store as engagement
from svc_stream.events import validation
from svc_stream.playback.catalog import Catalog, PublishedVideo


class EngagementRpcs:
    """Likes, comments, shares and follows over Postgres (and the catalog for video ids)."""

    def __init__(self, catalog: Catalog, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.catalog = catalog
        self.sessionmaker = sessionmaker

    async def _engagement_video(self, video_id: str) -> PublishedVideo:
        engagement.check_identifier("video_id", video_id, validation.MAX_VIDEO_ID, required=True)
        video = await self.catalog.get(video_id)
        if video is None:
            raise errors.NotFound("video", video_id)
        return video

    async def LikeVideo(  # noqa: N802 - generated name
        self, request: stream_pb2.LikeVideoRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.LikeVideoResponse:
        user = require_user()
        video = await self._engagement_video(request.video_id)
        count = await engagement.like(self.sessionmaker, user, video.video_id, video.creator_id)
        return stream_pb2.LikeVideoResponse(video_id=video.video_id, liked=True, like_count=count)

    async def UnlikeVideo(  # noqa: N802 - generated name
        self, request: stream_pb2.UnlikeVideoRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.UnlikeVideoResponse:
        user = require_user()
        video = await self._engagement_video(request.video_id)
        count = await engagement.unlike(self.sessionmaker, user, video.video_id, video.creator_id)
        return stream_pb2.UnlikeVideoResponse(
            video_id=video.video_id, liked=False, like_count=count
        )

    async def AddComment(  # noqa: N802 - generated name
        self, request: stream_pb2.AddCommentRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.AddCommentResponse:
        user = require_user()
        engagement.check_comment_text(request.text)  # bad input first, before any lookup
        engagement.check_identifier(
            "client_comment_id",
            request.client_comment_id,
            engagement.MAX_CLIENT_COMMENT_ID,
            required=False,
        )
        video = await self._engagement_video(request.video_id)
        row = await engagement.add_comment(
            self.sessionmaker,
            user,
            video.video_id,
            video.creator_id,
            request.text,
            request.client_comment_id,
        )
        return stream_pb2.AddCommentResponse(comment=_comment(row))

    async def ListComments(  # noqa: N802 - generated name
        self, request: stream_pb2.ListCommentsRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.ListCommentsResponse:
        require_user()
        video = await self._engagement_video(request.video_id)
        rows, cursor = await engagement.list_comments(
            self.sessionmaker, video.video_id, request.page_size, request.cursor
        )
        return stream_pb2.ListCommentsResponse(
            comments=[_comment(r) for r in rows], next_cursor=cursor
        )

    async def ShareVideo(  # noqa: N802 - generated name
        self, request: stream_pb2.ShareVideoRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.ShareVideoResponse:
        user = require_user()
        engagement.check_channel(request.channel)
        video = await self._engagement_video(request.video_id)
        count = await engagement.share(
            self.sessionmaker,
            user,
            video.video_id,
            video.creator_id,
            request.channel,
        )
        return stream_pb2.ShareVideoResponse(video_id=video.video_id, share_count=count)

    async def FollowCreator(  # noqa: N802 - generated name
        self, request: stream_pb2.FollowCreatorRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.FollowCreatorResponse:
        user = require_user()
        count = await engagement.follow(self.sessionmaker, user, request.creator_id)
        return stream_pb2.FollowCreatorResponse(
            creator_id=request.creator_id, following=True, follower_count=count
        )

    async def UnfollowCreator(  # noqa: N802 - generated name
        self, request: stream_pb2.UnfollowCreatorRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.UnfollowCreatorResponse:
        user = require_user()
        count = await engagement.unfollow(self.sessionmaker, user, request.creator_id)
        return stream_pb2.UnfollowCreatorResponse(
            creator_id=request.creator_id, following=False, follower_count=count
        )


def _comment(row: engagement.CommentRow) -> stream_pb2.Comment:
    comment = stream_pb2.Comment(
        comment_id=row.comment_id, video_id=row.video_id, user_id=row.user_id, text=row.text
    )
    comment.created_at.FromDatetime(row.created_at)
    return comment
