"""Player events end to end: RecordEvents -> Kafka -> ClickHouse + Redis -> analytics.

Real Postgres, Redis, Tansu and chDB; the service is served over gRPC with JWT auth.
The broker-down test kills and restarts the module's broker, so it runs last.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.rpc import error_details_pb2
from reels.v1 import common_pb2, stream_pb2

from reels import errors
from svc_stream.analytics import trending
from tests.fixtures.stream import StreamHarness, player_event
from tests.fixtures.stream import stream as stream  # noqa: F401,PLC0414 - the fixture
from tests.polling import eventually

ET = common_pb2.EventType
START, P25, P50, P75, DONE = (
    ET.EVENT_TYPE_WATCH_START,
    ET.EVENT_TYPE_PROGRESS_25,
    ET.EVENT_TYPE_PROGRESS_50,
    ET.EVENT_TYPE_PROGRESS_75,
    ET.EVENT_TYPE_WATCH_COMPLETE,
)
IOS, ANDROID = common_pb2.Device.DEVICE_IOS, common_pb2.Device.DEVICE_ANDROID


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _session(
    user: str,
    video: str,
    path: list[tuple[int, float]],
    country: str,
    device: int,
    at: datetime | None = None,
) -> list[stream_pb2.PlayerEvent]:
    """One viewer's session: (type, position) steps; watch_seconds = distance moved."""
    out, last = [], 0.0
    for n, (kind, pos) in enumerate(path):
        out.append(
            player_event(
                f"{user}-{n}",
                video,
                kind,
                position=pos,
                watch=pos - last,
                session=f"{user}-s",
                country=country,
                device=device,
                at=at,
            )
        )
        last = pos
    return out


async def _views(stream: StreamHarness, video: str) -> int:
    return int(
        await stream.scalar(
            "SELECT countIf(type = 1) FROM video_events FINAL WHERE video_id = {v:String}", v=video
        )
    )


async def test_scripted_viewers_give_exact_views_completion_distribution_and_retention(
    stream: StreamHarness,
) -> None:
    creator, video, other = _id("creator"), _id("vid"), _id("vid")
    await stream.publish_video(video, creator, 20.0)
    await stream.publish_video(other, creator, 20.0)
    full = [(START, 0.0), (P25, 5.0), (P50, 10.0), (P75, 15.0), (DONE, 20.0)]
    # user -> (steps, country, device); reach = furthest position / 20 s.
    script = {
        "u0": ([(START, 0.0)], "US", IOS),  # 0
        "u1": ([(START, 0.0), (P25, 5.0)], "US", ANDROID),  # .25
        "u2": ([(START, 0.0), (P25, 5.0), (P50, 10.0)], "US", IOS),  # .50
        "u3": (full[:4], "US", ANDROID),  # .75
        "u4": ([*full[:3], (P75, 16.0)], "US", IOS),  # .80
        "u5": (full, "US", ANDROID),  # 1
        "u6": (full, "BR", IOS),  # 1
        "u7": (full, "BR", ANDROID),  # 1
        "u8": ([(START, 0.0), (P25, 6.0)], "BR", IOS),  # .30
        "u9": ([(START, 0.0), (P50, 11.0)], "", ANDROID),  # .55
    }
    for user, (steps, country, device) in script.items():
        reply = await stream.call(
            "RecordEvents",
            stream_pb2.RecordEventsRequest(
                events=[
                    *_session(user, video, steps, country, device),
                    player_event(f"{user}-other", other, START, session=f"{user}-o"),
                ]
            ),
            user,
        )
        assert reply.accepted_count == len(steps) + 1
        assert all(r.accepted for r in reply.results)

    async def all_in() -> bool:
        return await _views(stream, video) == 10 and await _views(stream, other) == 10

    await eventually(all_in, 30, "events did not reach ClickHouse")

    # 123 s watched in total (the sum of the furthest positions).
    async def counted() -> bool:
        return (await stream.counters.video(video))["views"] == 10

    await eventually(counted, 10, "counters did not reach 10 views")
    assert await stream.counters.video(video) == {
        "views": 10,
        "plays": 10,
        "completions": 3,
        "watch_ms": 123_000,
        "likes": 0,
        "shares": 0,
        "comments": 0,
    }

    got = await stream.call(
        "GetVideoAnalytics", stream_pb2.GetVideoAnalyticsRequest(video_id=video), creator
    )
    assert (got.views, got.plays) == (10, 10)
    assert got.completion_rate == pytest.approx(0.3)
    assert got.average_watch_seconds == pytest.approx(12.3)
    assert [(b.lower_percent, b.upper_percent, b.count) for b in got.completion_distribution] == [
        (0, 10, 1),
        (10, 20, 0),
        (20, 30, 1),
        (30, 40, 1),
        (40, 50, 0),
        (50, 60, 2),
        (60, 70, 0),
        (70, 80, 1),
        (80, 90, 1),
        (90, 100, 3),
    ]
    viewers_still_watching = {
        0: 10,
        5: 9,
        10: 9,
        15: 9,
        20: 9,
        25: 9,
        30: 8,
        35: 7,
        40: 7,
        45: 7,
        50: 7,
        55: 6,
        60: 5,
        65: 5,
        70: 5,
        75: 5,
        80: 4,
        85: 3,
        90: 3,
        95: 3,
        100: 3,
    }
    assert [(p.percent_of_duration, p.share_of_viewers) for p in got.retention] == [
        (p, pytest.approx(n / 10)) for p, n in viewers_still_watching.items()
    ]
    assert [(k.key, k.count) for k in got.top_countries] == [("US", 6), ("BR", 3)]
    assert [(k.key, k.count) for k in got.top_devices] == [("android", 5), ("ios", 5)]
    history = await stream.analytics.query_rows(
        "SELECT user_id, position_s, completed FROM watch_history FINAL "
        "WHERE video_id = {v:String} ORDER BY user_id",
        {"v": video},
    )
    assert [(u, p, c) for u, p, c in history] == [
        (u, max(pos for _, pos in steps), int(steps[-1][0] == DONE))
        for u, (steps, _, _) in sorted(script.items())
    ]

    creator_view = await stream.call(
        "GetCreatorAnalytics", stream_pb2.GetCreatorAnalyticsRequest(creator_id=creator), creator
    )
    assert creator_view.video_count == 2
    assert (creator_view.views, creator_view.plays) == (20, 20)
    assert creator_view.average_completion_rate == pytest.approx(3 / 20)
    assert sorted((k.key, k.count) for k in creator_view.top_videos) == sorted(
        [(video, 10), (other, 10)]
    )


async def test_analytics_are_for_the_creator_only(stream: StreamHarness) -> None:
    creator, video = _id("creator"), _id("vid")
    await stream.publish_video(video, creator, 10.0)
    for method, request in (
        ("GetVideoAnalytics", stream_pb2.GetVideoAnalyticsRequest(video_id=video)),
        ("GetCreatorAnalytics", stream_pb2.GetCreatorAnalyticsRequest(creator_id=creator)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stream.call(method, request, "someone-else")
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stream.call(
            "GetVideoAnalytics",
            stream_pb2.GetVideoAnalyticsRequest(video_id="no-such-video"),
            creator,
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_duplicate_client_event_is_counted_once_within_and_across_batches(
    stream: StreamHarness,
) -> None:
    creator, video, user = _id("creator"), _id("vid"), _id("viewer")
    await stream.publish_video(video, creator, 10.0)
    start = player_event("dup-1", video, START, session="s")
    done = player_event("dup-2", video, DONE, position=10.0, watch=10.0, session="s")
    sink = stream.sink
    applied_before = sink.rows
    first = await stream.call(
        "RecordEvents", stream_pb2.RecordEventsRequest(events=[start, start, done]), user
    )
    assert first.accepted_count == 3 and all(r.accepted for r in first.results)
    again = await stream.call(
        "RecordEvents", stream_pb2.RecordEventsRequest(events=[start, done]), user
    )
    assert again.accepted_count == 2

    async def both_batches_applied() -> bool:
        # 2 distinct events from the first batch (its in-batch repeat is never sent) and
        # the same 2 again from the second: the sink has written 4 rows before we look.
        return sink.rows >= applied_before + 4

    await eventually(both_batches_applied, 30, "both batches did not reach ClickHouse")
    assert await _views(stream, video) == 1
    got = await stream.call(
        "GetVideoAnalytics", stream_pb2.GetVideoAnalyticsRequest(video_id=video), creator
    )
    assert (got.views, got.completion_rate, got.average_watch_seconds) == (1, 1.0, 10.0)
    counters = await stream.counters.video(video)
    assert (counters["views"], counters["completions"], counters["watch_ms"]) == (1, 1, 10_000)


async def test_bad_items_are_rejected_alone_with_their_reason(stream: StreamHarness) -> None:
    creator, video, user = _id("creator"), _id("vid"), _id("viewer")
    await stream.publish_video(video, creator, 10.0)
    now = datetime.now(UTC)
    good = player_event("ok", video, START, session="s")
    items = [
        (good, ""),
        (player_event("e1", "no-such-video", START), "unknown video"),
        # No sent_at: a clock hours off is counted (see test_counting_views.py), but a
        # time beyond any skew (year 2100) or older than the 7-day window is rejected.
        (player_event("e2", video, START, at=datetime(2100, 1, 1, tzinfo=UTC)), "in the future"),
        (player_event("e3", video, START, at=now - timedelta(days=8)), "too old"),
        (player_event("e4", video, P25, watch=-1.0), "non-negative"),
        (player_event("e5", video, P50, position=30.0), "beyond the video's duration"),
        (player_event("e6", video, P75, position=5.0, watch=500.0), "impossible"),
        (player_event("", video, START), "client_event_id is required"),
        (player_event("e8", video, 0), "type"),
    ]
    reply = await stream.call(
        "RecordEvents", stream_pb2.RecordEventsRequest(events=[e for e, _ in items]), user
    )
    assert reply.accepted_count == 1
    assert [r.index for r in reply.results] == list(range(len(items)))
    for result, (_, why) in zip(reply.results, items, strict=True):
        if why:
            assert not result.accepted and why in result.reason, (result, why)
        else:
            assert result.accepted and result.reason == ""

    async def in_ch() -> bool:
        return (
            await stream.scalar(
                "SELECT count() FROM video_events WHERE user_id = {u:String}", u=user
            )
            >= 1
        )

    await eventually(in_ch, 30, "the good event did not reach ClickHouse")
    await asyncio.sleep(0.5)
    rows = await stream.analytics.query_rows(
        "SELECT client_event_id FROM video_events FINAL WHERE user_id = {u:String}", {"u": user}
    )
    assert rows == [("ok",)]


@pytest.mark.parametrize("size", [0, 501])
async def test_empty_or_oversized_batch_is_invalid_argument(
    stream: StreamHarness, size: int
) -> None:
    events = [player_event(f"e{i}", "v", START) for i in range(size)]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stream.call("RecordEvents", stream_pb2.RecordEventsRequest(events=events), "u")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = errors.from_rpc_error(info.value)
    assert details and details[0].field_violations[0].field == "events"


async def test_trending_follows_the_time_decayed_score(stream: StreamHarness) -> None:
    creator = _id("creator")
    old, fresh, liked = _id("old"), _id("fresh"), _id("liked")
    for video in (old, fresh, liked):
        await stream.publish_video(video, creator, 10.0)
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    batches = {
        old: [(f"old-{i}", two_days_ago) for i in range(3)],  # 3 completions, long ago
        fresh: [("fresh-0", None)],
        liked: [("liked-0", None)],
    }
    for video, items in batches.items():
        for user, at in items:
            await stream.call(
                "RecordEvents",
                stream_pb2.RecordEventsRequest(
                    events=_session(user, video, [(START, 0.0), (DONE, 10.0)], "DE", IOS, at=at)
                ),
                user,
            )
    await stream.call("LikeVideo", stream_pb2.LikeVideoRequest(video_id=liked), "fan-1")

    async def all_in() -> bool:
        completions = await stream.scalar(
            "SELECT count() FROM video_events FINAL WHERE type = 5 AND video_id IN "
            "{ids:Array(String)}",
            ids=[old, fresh, liked],
        )
        likes = await stream.scalar(
            "SELECT count() FROM engagement_events FINAL WHERE video_id = {v:String}", v=liked
        )
        return completions == 5 and likes == 1

    await eventually(all_in, 30, "completions and the like did not reach ClickHouse")
    now = time.time()
    weights = stream.app.trending_weights
    scores = dict(await trending.recompute(stream.analytics, stream.app.redis, now, weights))
    tau = weights.tau_s
    assert scores[old] == pytest.approx(3 * math.exp(-2 * 86400 / tau), rel=1e-2)
    assert scores[fresh] == pytest.approx(1.0, rel=1e-2)
    assert scores[liked] == pytest.approx(1.0 + weights.like, rel=1e-2)

    page = await stream.call("ListTrending", stream_pb2.ListTrendingRequest(limit=500), creator)
    order = [e.video_id for e in page.entries if e.video_id in (old, fresh, liked)]
    assert order == [liked, fresh, old]
    got = await stream.call(
        "GetVideoAnalytics", stream_pb2.GetVideoAnalyticsRequest(video_id=liked), creator
    )
    assert got.trending_score == pytest.approx(scores[liked])
    assert got.likes == 1


async def test_a_call_is_one_batch_record_holding_its_accepted_events(
    stream: StreamHarness,
) -> None:
    """RecordEvents writes one ``video.event-batches`` record per call (issue 14): keyed by
    the user, its ``event-count`` header = the accepted events sent, each item with its
    own deterministic event id; rejected items and in-batch repeats are not in it."""
    from aiokafka import AIOKafkaConsumer

    from reels import topics
    from svc_stream.events.validation import event_id_for

    creator, video, user = _id("creator"), _id("vid"), _id("viewer")
    await stream.publish_video(video, creator, 10.0)
    good = player_event("one-1", video, START, session="s")
    repeat = player_event("one-1", video, START, session="s")
    unknown = player_event("one-2", _id("no-such-video"), START, session="s")
    done = player_event("one-3", video, DONE, position=10.0, watch=10.0, session="s")
    reply = await stream.call(
        "RecordEvents", stream_pb2.RecordEventsRequest(events=[good, repeat, unknown, done]), user
    )
    assert [r.accepted for r in reply.results] == [True, True, False, True]
    consumer = AIOKafkaConsumer(
        topics.VIDEO_EVENT_BATCHES.name,
        bootstrap_servers=stream.kafka.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        mine = []
        deadline = time.monotonic() + 20
        while not mine and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=500)
            for records in fetched.values():
                mine += [r for r in records if r.key == user.encode()]
    finally:
        await consumer.stop()
    assert len(mine) == 1, "one call must be one record"
    record = mine[0]
    headers = {k: v.decode() for k, v in record.headers}
    assert headers["event-count"] == "2"
    batch = topics.VIDEO_EVENT_BATCHES.parse(record.value)
    assert batch.user_id == user
    assert [e.client_event_id for e in batch.events] == ["one-1", "one-3"]
    assert [e.meta.event_id for e in batch.events] == [
        event_id_for(user, "one-1"),
        event_id_for(user, "one-3"),
    ]
    assert headers["event-id"] == batch.meta.event_id


async def test_broker_down_is_unavailable_and_a_retry_records_the_batch_exactly_once(
    stream: StreamHarness,
) -> None:
    creator, video, user = _id("creator"), _id("vid"), _id("viewer")
    await stream.publish_video(video, creator, 10.0)
    batch = stream_pb2.RecordEventsRequest(
        events=_session(user, video, [(START, 0.0), (P50, 5.0), (DONE, 10.0)], "FR", IOS)
    )
    generation = stream.sink_consumer.generation

    await stream.kafka.kill()
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stream.call("RecordEvents", batch, user)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        retry = [
            d
            for d in errors.from_rpc_error(info.value)
            if isinstance(d, error_details_pb2.RetryInfo)
        ]
        assert retry and retry[0].retry_delay.ToNanoseconds() > 0
        await asyncio.sleep(1.0)
        assert (
            await stream.scalar(
                "SELECT count() FROM video_events WHERE video_id = {v:String}", v=video
            )
            == 0
        )
        assert (await stream.counters.video(video))["views"] == 0
    finally:
        await stream.kafka.start()

    # Tansu forgot the group: let the sink rejoin before the retry (see reels/events.py).
    async def rejoined() -> bool:
        consumer = stream.sink_consumer
        return consumer.generation > generation and consumer.assigned.is_set()

    await eventually(rejoined, 40, "analytics consumer did not rejoin the restarted broker")
    for _ in range(20):  # the client's retry loop, honouring UNAVAILABLE
        try:
            reply = await stream.call("RecordEvents", batch, user)
            break
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE
            await asyncio.sleep(1.0)
    else:
        raise AssertionError("RecordEvents never succeeded after the broker came back")
    assert reply.accepted_count == 3

    async def recorded() -> bool:
        return await _views(stream, video) == 1

    await eventually(recorded, 30, "retried batch did not reach ClickHouse")
    await asyncio.sleep(1.0)
    assert (
        await stream.scalar(
            "SELECT count() FROM video_events FINAL WHERE video_id = {v:String}", v=video
        )
        == 3
    )
    counters = await stream.counters.video(video)
    assert (counters["views"], counters["completions"], counters["watch_ms"]) == (1, 1, 10_000)
