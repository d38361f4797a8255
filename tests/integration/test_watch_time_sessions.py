"""Watch time is bounded per view session; a session whose start was lost still counts.

RecordEvents -> Kafka -> the analytics sink -> ClickHouse + Redis -> analytics, on real
components (the ``stream`` harness), inputs generated here (docs/DECISIONS.md,
"Counting views"):

* a view session's watch time is at most duration x max(plays, replay allowance):
  a player that re-sends ``watch_seconds`` on every event (200 progress events of 6 s
  each on a 2 s reel) cannot make the average 1,200 s. Both the analytics
  (averageWatchSeconds) and the Redis ``watch_ms`` counter apply the bound;
* reported replays raise the bound with the plays (each play may watch the reel);
* a session whose watch_start was lost (only watch_complete or progress arrived) is
  a view with an inferred start: someone who finished makes the completion rate 1,
  not 0, and its watch time is averaged over a view that exists.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from reels.v1 import common_pb2, stream_pb2

from svc_stream.events.counters import DEFAULT_REPLAY_ALLOWANCE
from tests.fixtures.stream import StreamHarness, player_event, ts
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


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


Step = tuple[int, float, float]  # (type, position, watch_seconds)


def _events(
    video: str, steps: Sequence[Step], *, session: str, first_at: datetime
) -> list[stream_pb2.PlayerEvent]:
    prefix = _id("ce")
    return [
        player_event(
            f"{prefix}-{n}",
            video,
            kind,
            position=pos,
            watch=watch,
            at=first_at + timedelta(milliseconds=250 * n),
            session=session,
        )
        for n, (kind, pos, watch) in enumerate(steps)
    ]


async def _send(
    stream: StreamHarness, user: str, events: Sequence[stream_pb2.PlayerEvent], batch: int = 500
) -> None:
    for i in range(0, len(events), batch):
        chunk = list(events[i : i + batch])
        request = stream_pb2.RecordEventsRequest(events=chunk)
        request.sent_at.CopyFrom(ts(datetime.now(UTC)))
        reply = await stream.call("RecordEvents", request, user)
        assert [r.reason for r in reply.results] == [""] * len(chunk)


async def _landed(stream: StreamHarness, video: str, count: int) -> None:
    async def check() -> bool:
        n = await stream.scalar(
            "SELECT count() FROM video_events FINAL WHERE video_id = {v:String}", v=video
        )
        return int(n) >= count

    await eventually(check, 30, f"{count} events of {video} did not reach ClickHouse")


async def _settled(
    stream: StreamHarness, video: str, creator: str, expected: dict[str, float]
) -> dict[str, float]:
    """Analytics and counters of ``video`` once they equal ``expected`` (float-tolerant)."""
    last: dict[str, float] = {}

    async def check() -> bool:
        nonlocal last
        got = await stream.call(
            "GetVideoAnalytics", stream_pb2.GetVideoAnalyticsRequest(video_id=video), creator
        )
        counters = await stream.counters.video(video)
        last = {
            "views": got.views,
            "plays": got.plays,
            "completion_rate": round(got.completion_rate, 6),
            "average_watch_seconds": round(got.average_watch_seconds, 3),
            "counter_views": counters["views"],
            "counter_plays": counters["plays"],
            "counter_completions": counters["completions"],
            "counter_watch_s": round(counters["watch_ms"] / 1000, 3),
        }
        return all(last[k] == pytest.approx(v) for k, v in expected.items())

    try:
        await eventually(check, 30, f"analytics of {video} did not reach {expected}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen {last}") from None
    return last


# --------------------------------------------------------------------------- the bound


async def test_one_session_re_sending_watch_seconds_cannot_inflate_watch_time(
    stream: StreamHarness,
) -> None:
    creator, video, user = _id("creator"), _id("vid"), _id("viewer")
    duration = 2.0
    await stream.publish_video(video, creator, duration)
    base = datetime.now(UTC) - timedelta(minutes=5)
    # Each event alone is plausible for a looping reel (6 <= 2 x 3 + 1), 200 of them not.
    steps = [(START, 0.0, 0.0)] + [(P25, 0.5, 6.0)] * 200
    events = _events(video, steps, session="s1", first_at=base)
    await _send(stream, user, events[:101])  # two batches: the bound holds across them
    await _send(stream, user, events[101:])
    await _landed(stream, video, len(events))
    bound = duration * DEFAULT_REPLAY_ALLOWANCE
    await _settled(
        stream,
        video,
        creator,
        {
            "views": 1,
            "plays": 1,
            "average_watch_seconds": bound,
            "counter_views": 1,
            "counter_watch_s": bound,
        },
    )
    mine = await stream.call(
        "GetCreatorAnalytics", stream_pb2.GetCreatorAnalyticsRequest(creator_id=creator), creator
    )
    assert mine.average_watch_seconds == pytest.approx(bound)


async def test_reported_replays_raise_the_bound_with_the_plays(stream: StreamHarness) -> None:
    creator, video, user = _id("creator"), _id("vid"), _id("viewer")
    duration = 2.0
    await stream.publish_video(video, creator, duration)
    base = datetime.now(UTC) - timedelta(minutes=5)
    plays = 7  # more than the allowance: each reported play may watch the reel once
    steps = [
        step
        for _ in range(plays)
        for step in ((START, 0.0, 0.0), (P50, 1.0, 1.0), (DONE, duration, 1.0))
    ]
    # ... and a player that then re-sends an inflated watch time for the last play.
    steps += [(P75, 1.5, 5.0)] * 10
    events = _events(video, steps, session="loop", first_at=base)
    await _send(stream, user, events, batch=4)
    await _landed(stream, video, len(events))
    await _settled(
        stream,
        video,
        creator,
        {
            "views": 1,
            "plays": plays,
            "counter_plays": plays,
            "average_watch_seconds": plays * duration,
            "counter_watch_s": plays * duration,
        },
    )


async def test_honest_sessions_keep_their_watch_time(stream: StreamHarness) -> None:
    """The bound only clips the impossible: generated honest sessions sum exactly."""
    rng = random.Random(8)
    creator, video = _id("creator"), _id("vid")
    duration = 12.0
    await stream.publish_video(video, creator, duration)
    base = datetime.now(UTC) - timedelta(minutes=30)
    total, sessions, count = 0.0, 6, 0
    for s in range(sessions):
        reach = rng.choice([0.25, 0.5, 0.75, 1.0])
        steps: list[Step] = [(START, 0.0, 0.0)]
        for q, kind in ((0.25, P25), (0.5, P50), (0.75, P75)):
            if q <= reach:
                steps.append((kind, q * duration, 0.25 * duration))
        if reach == 1.0:
            steps.append((DONE, duration, 0.25 * duration))
        total += sum(w for _, _, w in steps)
        events = _events(video, steps, session=f"s{s}", first_at=base + timedelta(minutes=s))
        await _send(stream, _id("viewer"), events)
        count += len(events)
    await _landed(stream, video, count)
    await _settled(
        stream,
        video,
        creator,
        {
            "views": sessions,
            "average_watch_seconds": round(total / sessions, 3),
            "counter_watch_s": total,
        },
    )


# --------------------------------------------------------------------------- lost starts


async def test_a_session_with_only_watch_complete_is_a_completed_view(
    stream: StreamHarness,
) -> None:
    creator, video = _id("creator"), _id("vid")
    duration = 10.0
    await stream.publish_video(video, creator, duration)
    base = datetime.now(UTC) - timedelta(minutes=5)
    # Its watch_start was lost: only the complete (with the whole watch time) arrived.
    await _send(
        stream,
        _id("viewer"),
        _events(video, [(DONE, duration, duration)], session="s", first_at=base),
    )
    await _landed(stream, video, 1)
    await _settled(
        stream,
        video,
        creator,
        {
            "views": 1,
            "plays": 1,
            "completion_rate": 1.0,
            "average_watch_seconds": duration,
            "counter_views": 1,
            "counter_plays": 1,
            "counter_completions": 1,
            "counter_watch_s": duration,
        },
    )
    got = await stream.call(
        "GetVideoAnalytics", stream_pb2.GetVideoAnalyticsRequest(video_id=video), creator
    )
    assert got.retention[-1].share_of_viewers == pytest.approx(1.0)  # it reached the end

    # A second viewer whose start was lost too, but who stopped at a quarter.
    await _send(
        stream,
        _id("viewer"),
        _events(video, [(P25, 2.5, 2.5)], session="s", first_at=base + timedelta(minutes=1)),
    )
    await _landed(stream, video, 2)
    await _settled(
        stream,
        video,
        creator,
        {
            "views": 2,
            "plays": 2,
            "completion_rate": 0.5,
            "average_watch_seconds": (duration + 2.5) / 2,
            "counter_views": 2,
            "counter_completions": 1,
            "counter_watch_s": duration + 2.5,
        },
    )


async def test_a_start_delivered_after_its_complete_is_not_a_replay(
    stream: StreamHarness,
) -> None:
    """The start was queued offline and flushed in a later batch than its complete: the
    counters order by established time as the analytics do (one play)."""
    creator, video, user = _id("creator"), _id("vid"), _id("viewer")
    duration = 10.0
    await stream.publish_video(video, creator, duration)
    base = datetime.now(UTC) - timedelta(minutes=5)
    start, done = _events(
        video, [(START, 0.0, 0.0), (DONE, duration, duration)], session="s", first_at=base
    )
    await _send(stream, user, [done])
    await _landed(stream, video, 1)
    await _send(stream, user, [start])
    await _landed(stream, video, 2)
    await _settled(
        stream,
        video,
        creator,
        {
            "views": 1,
            "plays": 1,
            "completion_rate": 1.0,
            "counter_views": 1,
            "counter_plays": 1,
            "counter_completions": 1,
        },
    )
