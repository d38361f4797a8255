"""Likes, comments, shares and follows: Postgres rules, their outbox events, and the
counters those events feed (through the relay, Kafka and the analytics sink)."""

from __future__ import annotations

import uuid

import grpc
import pytest
from reels.v1 import events_pb2, stream_pb2
from sqlalchemy import text

from reels import errors, topics
from tests.fixtures.stream import StreamHarness
from tests.fixtures.stream import stream as stream  # noqa: F401,PLC0414 - the fixture
from tests.polling import eventually

GT = events_pb2.EngagementType


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _events(stream: StreamHarness, subject: str) -> list[events_pb2.EngagementEvent]:
    """EngagementEvents written to the outbox for ``subject`` (video or creator), in order."""
    async with stream.sessionmaker() as session:
        rows = (
            (
                await session.execute(
                    text("SELECT payload FROM outbox WHERE topic = :t AND key = :k ORDER BY id"),
                    {"t": topics.ENGAGEMENT_EVENTS.name, "k": subject.encode()},
                )
            )
            .scalars()
            .all()
        )
    return [events_pb2.EngagementEvent.FromString(p) for p in rows]


async def _expect_error(
    stream: StreamHarness, method: str, request: object, user: str, code: grpc.StatusCode
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stream.call(method, request, user)
    assert info.value.code() == code, info.value.details()
    return info.value


async def test_like_and_unlike_are_idempotent_and_each_change_is_one_event(
    stream: StreamHarness,
) -> None:
    creator, video = _id("creator"), _id("vid")
    await stream.publish_video(video, creator, 10.0)
    like = stream_pb2.LikeVideoRequest(video_id=video)
    first = await stream.call("LikeVideo", like, "ana")
    second = await stream.call("LikeVideo", like, "ana")
    other = await stream.call("LikeVideo", like, "bo")
    assert (first.liked, first.like_count, second.like_count, other.like_count) == (True, 1, 1, 2)
    unlike = stream_pb2.UnlikeVideoRequest(video_id=video)
    assert (await stream.call("UnlikeVideo", unlike, "ana")).like_count == 1
    again = await stream.call("UnlikeVideo", unlike, "ana")
    assert (again.liked, again.like_count) == (False, 1)

    events = await _events(stream, video)
    assert [(e.type, e.user_id, e.creator_id) for e in events] == [
        (GT.ENGAGEMENT_TYPE_LIKE, "ana", creator),
        (GT.ENGAGEMENT_TYPE_LIKE, "bo", creator),
        (GT.ENGAGEMENT_TYPE_UNLIKE, "ana", creator),
    ]
    assert all(e.meta.event_id for e in events)

    async def counted() -> bool:
        return (await stream.counters.video(video))["likes"] == 1 and await stream.scalar(
            "SELECT count() FROM engagement_events FINAL WHERE video_id = {v:String}", v=video
        ) == 3

    await eventually(counted, 30, "like events did not reach the counters and ClickHouse")
    await _expect_error(
        stream,
        "LikeVideo",
        stream_pb2.LikeVideoRequest(video_id="nope"),
        "ana",
        grpc.StatusCode.NOT_FOUND,
    )


async def test_comment_rules_retries_and_newest_first_pages(stream: StreamHarness) -> None:
    creator, video = _id("creator"), _id("vid")
    await stream.publish_video(video, creator, 10.0)
    for body in ("", "   ", "x" * 501):
        err = await _expect_error(
            stream,
            "AddComment",
            stream_pb2.AddCommentRequest(video_id=video, text=body),
            "ana",
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert errors.from_rpc_error(err)[0].field_violations[0].field == "text"
    await _expect_error(
        stream,
        "AddComment",
        stream_pb2.AddCommentRequest(video_id="nope", text="hi"),
        "ana",
        grpc.StatusCode.NOT_FOUND,
    )

    ok = await stream.call(
        "AddComment",
        stream_pb2.AddCommentRequest(video_id=video, text="x" * 500, client_comment_id="c-1"),
        "ana",
    )
    retry = await stream.call(
        "AddComment",
        stream_pb2.AddCommentRequest(video_id=video, text="x" * 500, client_comment_id="c-1"),
        "ana",
    )
    assert ok.comment.comment_id == retry.comment.comment_id
    posted = [ok.comment.comment_id]
    for n in range(4):
        reply = await stream.call(
            "AddComment",
            stream_pb2.AddCommentRequest(video_id=video, text=f"  comment {n}  "),
            f"user-{n}",
        )
        assert reply.comment.text == f"comment {n}"
        posted.append(reply.comment.comment_id)

    seen, cursor, pages = [], "", 0
    while True:
        page = await stream.call(
            "ListComments",
            stream_pb2.ListCommentsRequest(video_id=video, page_size=2, cursor=cursor),
            "viewer",
        )
        seen += [c.comment_id for c in page.comments]
        pages += 1
        cursor = page.next_cursor
        if not cursor:
            break
    assert seen == list(reversed(posted)) and pages == 3
    await _expect_error(
        stream,
        "ListComments",
        stream_pb2.ListCommentsRequest(video_id=video, cursor="garbage!"),
        "viewer",
        grpc.StatusCode.INVALID_ARGUMENT,
    )

    events = await _events(stream, video)
    assert [e.type for e in events] == [GT.ENGAGEMENT_TYPE_COMMENT] * 5
    assert [e.comment_id for e in events] == posted

    async def counted() -> bool:
        return (await stream.counters.video(video))["comments"] == 5

    await eventually(counted, 30, "comment events did not reach the counters")


async def test_every_share_counts_with_its_channel(stream: StreamHarness) -> None:
    creator, video = _id("creator"), _id("vid")
    await stream.publish_video(video, creator, 10.0)
    first = await stream.call(
        "ShareVideo", stream_pb2.ShareVideoRequest(video_id=video, channel="whatsapp"), "ana"
    )
    second = await stream.call(
        "ShareVideo", stream_pb2.ShareVideoRequest(video_id=video, channel="copy_link"), "ana"
    )
    assert (first.share_count, second.share_count) == (1, 2)
    await _expect_error(
        stream,
        "ShareVideo",
        stream_pb2.ShareVideoRequest(video_id=video, channel="no spaces please"),
        "ana",
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [(e.type, e.channel) for e in await _events(stream, video)] == [
        (GT.ENGAGEMENT_TYPE_SHARE, "whatsapp"),
        (GT.ENGAGEMENT_TYPE_SHARE, "copy_link"),
    ]

    async def counted() -> bool:
        return (await stream.counters.video(video))["shares"] == 2

    await eventually(counted, 30, "share events did not reach the counters")


async def test_follow_rules_and_creator_analytics(stream: StreamHarness) -> None:
    creator = _id("creator")
    err = await _expect_error(
        stream,
        "FollowCreator",
        stream_pb2.FollowCreatorRequest(creator_id=creator),
        creator,
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert errors.from_rpc_error(err)[0].field_violations[0].field == "creator_id"
    follow = stream_pb2.FollowCreatorRequest(creator_id=creator)
    assert (await stream.call("FollowCreator", follow, "ana")).follower_count == 1
    twice = await stream.call("FollowCreator", follow, "ana")
    assert (twice.following, twice.follower_count) == (True, 1)
    assert (await stream.call("FollowCreator", follow, "bo")).follower_count == 2
    gone = await stream.call(
        "UnfollowCreator", stream_pb2.UnfollowCreatorRequest(creator_id=creator), "bo"
    )
    assert (gone.following, gone.follower_count) == (False, 1)
    assert [(e.type, e.user_id) for e in await _events(stream, creator)] == [
        (GT.ENGAGEMENT_TYPE_FOLLOW, "ana"),
        (GT.ENGAGEMENT_TYPE_FOLLOW, "bo"),
        (GT.ENGAGEMENT_TYPE_UNFOLLOW, "bo"),
    ]

    async def counted() -> bool:
        return (await stream.counters.creator(creator))["followers"] == 1

    await eventually(counted, 30, "follow events did not reach the counters")

    video = _id("vid")
    await stream.publish_video(video, creator, 10.0)
    await stream.call("LikeVideo", stream_pb2.LikeVideoRequest(video_id=video), "ana")
    await stream.call("ShareVideo", stream_pb2.ShareVideoRequest(video_id=video), "ana")
    await stream.call("AddComment", stream_pb2.AddCommentRequest(video_id=video, text="hi"), "bo")
    got = await stream.call(
        "GetCreatorAnalytics", stream_pb2.GetCreatorAnalyticsRequest(creator_id=creator), creator
    )
    assert (got.followers, got.video_count, got.likes, got.shares, got.comments) == (1, 1, 1, 1, 1)


async def test_malformed_ids_are_400_naming_the_field_not_a_database_refusal(
    stream: StreamHarness,
) -> None:
    """A NUL or a 100,000-character id reaches no database: INVALID_ARGUMENT naming it."""
    creator, video = _id("creator"), _id("vid")
    await stream.publish_video(video, creator, 10.0)
    comment = stream_pb2.AddCommentRequest
    cases = [
        ("AddComment", comment(video_id=video, text="hi", client_comment_id="c\x00"),
         "client_comment_id"),
        ("AddComment", comment(video_id=video, text="hi", client_comment_id="x" * 100_000),
         "client_comment_id"),
        ("AddComment", stream_pb2.AddCommentRequest(video_id="v\x00", text="hi"), "video_id"),
        ("LikeVideo", stream_pb2.LikeVideoRequest(video_id="v" * 1000), "video_id"),
        ("FollowCreator", stream_pb2.FollowCreatorRequest(creator_id="\x00"), "creator_id"),
        ("UnfollowCreator", stream_pb2.UnfollowCreatorRequest(creator_id="a b"), "creator_id"),
    ]  # fmt: skip
    for method, request, field in cases:
        err = await _expect_error(stream, method, request, "ana", grpc.StatusCode.INVALID_ARGUMENT)
        assert errors.from_rpc_error(err)[0].field_violations[0].field == field, (method, field)
        assert "database" not in err.details()
