"""Likes, comments, shares and follows (engagement release).

Thin RPC layer over ``engagement.py``: who is calling, does the video exist (the
catalog of published videos), and the responses. ``start`` runs an outbox relay so
the EngagementEvents this service writes reach Kafka even when no other relay runs.
"""

from __future__ import annotations

import grpc
from reels.v1 import stream_pb2, stream_pb2_grpc

from reels import errors
from reels.outbox import OutboxRelay
from svc_stream.engagement import store as engagement
from svc_stream import resources
from svc_stream.playback.catalog import PublishedVideo
from svc_stream.context import StreamContext


class EngagementRpcs(stream_pb2_grpc.StreamServiceServicer):
    ctx: StreamContext

    async def _engagement_video(self, video_id: str) -> PublishedVideo:
        if not video_id:
            raise errors.InvalidArgument("video_id is required", [("video_id", "is required")])
        video = await resources.catalog(self.ctx).get(video_id)
        if video is None:
            raise errors.NotFound("video", video_id)
        return video

    async def LikeVideo(  # noqa: N802 - generated name
        self, request: stream_pb2.LikeVideoRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.LikeVideoResponse:
        user = resources.require_user()
        video = await self._engagement_video(request.video_id)
        count = await engagement.like(
            resources.sessionmaker(self.ctx), user, video.video_id, video.creator_id
        )
        return stream_pb2.LikeVideoResponse(video_id=video.video_id, liked=True, like_count=count)

    async def UnlikeVideo(  # noqa: N802 - generated name
        self, request: stream_pb2.UnlikeVideoRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.UnlikeVideoResponse:
        user = resources.require_user()
        video = await self._engagement_video(request.video_id)
        count = await engagement.unlike(
            resources.sessionmaker(self.ctx), user, video.video_id, video.creator_id
        )
        return stream_pb2.UnlikeVideoResponse(
            video_id=video.video_id, liked=False, like_count=count
        )

    async def AddComment(  # noqa: N802 - generated name
        self, request: stream_pb2.AddCommentRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.AddCommentResponse:
        user = resources.require_user()
        engagement.check_comment_text(request.text)  # bad input first, before any lookup
        video = await self._engagement_video(request.video_id)
        row = await engagement.add_comment(
            resources.sessionmaker(self.ctx), user, video.video_id, video.creator_id,
            request.text, request.client_comment_id,
        )
        return stream_pb2.AddCommentResponse(comment=_comment(row))

    async def ListComments(  # noqa: N802 - generated name
        self, request: stream_pb2.ListCommentsRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.ListCommentsResponse:
        resources.require_user()
        video = await self._engagement_video(request.video_id)
        rows, cursor = await engagement.list_comments(
            resources.sessionmaker(self.ctx), video.video_id, request.page_size, request.cursor
        )
        return stream_pb2.ListCommentsResponse(
            comments=[_comment(r) for r in rows], next_cursor=cursor
        )

    async def ShareVideo(  # noqa: N802 - generated name
        self, request: stream_pb2.ShareVideoRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.ShareVideoResponse:
        user = resources.require_user()
        engagement.check_channel(request.channel)
        video = await self._engagement_video(request.video_id)
        count = await engagement.share(
            resources.sessionmaker(self.ctx), user, video.video_id, video.creator_id,
            request.channel,
        )
        return stream_pb2.ShareVideoResponse(video_id=video.video_id, share_count=count)

    async def FollowCreator(  # noqa: N802 - generated name
        self, request: stream_pb2.FollowCreatorRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.FollowCreatorResponse:
        user = resources.require_user()
        count = await engagement.follow(resources.sessionmaker(self.ctx), user, request.creator_id)
        return stream_pb2.FollowCreatorResponse(
            creator_id=request.creator_id, following=True, follower_count=count
        )

    async def UnfollowCreator(  # noqa: N802 - generated name
        self, request: stream_pb2.UnfollowCreatorRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.UnfollowCreatorResponse:
        user = resources.require_user()
        count = await engagement.unfollow(
            resources.sessionmaker(self.ctx), user, request.creator_id
        )
        return stream_pb2.UnfollowCreatorResponse(
            creator_id=request.creator_id, following=False, follower_count=count
        )


def _comment(row: engagement.CommentRow) -> stream_pb2.Comment:
    comment = stream_pb2.Comment(
        comment_id=row.comment_id, video_id=row.video_id, user_id=row.user_id, text=row.text
    )
    comment.created_at.FromDatetime(row.created_at)
    return comment


async def start(ctx: StreamContext) -> None:
    """Run an outbox relay (a hot standby when another service's relay holds the lock)."""
    sm = resources.sessionmaker(ctx)
    producer = resources.producer(ctx)

    async def relay() -> None:
        raw = await resources.retry_forever("outbox relay producer", producer.raw)
        runner = OutboxRelay(sm, raw)
        ctx.extras["outbox_relay"] = runner
        try:
            await runner.run()
        finally:
            runner.stop()

    resources.spawn(ctx, "outbox-relay", relay())
