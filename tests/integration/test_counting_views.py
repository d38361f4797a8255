"""Counting like people count: views, plays and event times (issue 8, section 6).

RecordEvents -> Kafka -> the analytics sink -> ClickHouse + Redis -> analytics, on real
components (the ``stream`` harness). Every input is generated here:

* a *view* is one (user, session) view session, however often the player re-sends
  watch_start within it (stalls); a *play* is a playthrough, and a watch_start after a
  watch_complete of the same session is a replay: one more play, not one more view;
* both hold across batches and under redelivery (client retries, consumer replays);
* an event's time is established by the server: occurred_at corrected by (receive time
  - the batch's sent_at), so skewed clocks and offline queues are counted, at the right
  time. See docs/DECISIONS.md, "Counting views".
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from reels.v1 import common_pb2, events_pb2, stream_pb2

from reels import topics
from reels.events import ReceivedEvent
from svc_stream.analytics import trending
from svc_stream.events.counters import Counters
from svc_stream.events.sink import AnalyticsSink
from svc_stream.events.validation import event_id_for
from tests.fixtures.stream import StreamHarness, player_event, ts
from tests.fixtures.stream import stream as stream  # noqa: F401,PLC0414 - the fixture
from tests.polling import eventually

ET = common_pb2.EventType
START, P25, P50, DONE = (
    ET.EVENT_TYPE_WATCH_START,
    ET.EVENT_TYPE_PROGRESS_25,
    ET.EVENT_TYPE_PROGRESS_50,
    ET.EVENT_TYPE_WATCH_COMPLETE,
)
VIDEO_EVENTS = topics.VIDEO_EVENTS.name
DURATION = 20.0
# Server-side slack for "the corrected time is right": upload latency and test pacing.
SLACK = timedelta(seconds=10)

Step = tuple[int, float]  # (event type, playhead position)
STALL_RESTART: list[Step] = [(START, 0.0), (P25, 5.0), (START, 5.0), (DONE, DURATION)]
REPLAY: list[Step] = [(START, 0.0), (DONE, DURATION), (START, 0.0), (DONE, DURATION)]


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _events(
    video: str,
    steps: Sequence[Step],
    *,
    session: str,
    first_at: datetime,
    prefix: str | None = None,
) -> list[stream_pb2.PlayerEvent]:
    """One session's events, 7 s apart on the client clock from ``first_at``."""
    prefix = prefix or _id("ce")
    out, last = [], 0.0
    for n, (kind, pos) in enumerate(steps):
        watch = max(0.0, pos - last)
        out.append(
            player_event(
                f"{prefix}-{n}",
                video,
                kind,
                position=pos,
                watch=watch,
                at=first_at + timedelta(seconds=7 * n),
                session=session,
            )
        )
        last = pos
    return out


async def _send(
    stream: StreamHarness,
    user: str,
    events: Sequence[stream_pb2.PlayerEvent],
    sent_at: datetime | None = None,
) -> stream_pb2.RecordEventsResponse:
    request = stream_pb2.RecordEventsRequest(events=list(events))
    if sent_at is not None:
        request.sent_at.CopyFrom(ts(sent_at))
    reply = await stream.call("RecordEvents", request, user)
    assert [r.reason for r in reply.results] == [""] * len(events)
    return reply


async def _landed(stream: StreamHarness, user: str, count: int) -> None:
    """Wait until ``count`` distinct events of ``user`` are in ClickHouse."""

    async def check() -> bool:
        n = await stream.scalar(
            "SELECT count() FROM video_events FINAL WHERE user_id = {u:String}", u=user
        )
        return int(n) >= count

    await eventually(check, 30, f"{count} events of {user} did not reach ClickHouse")


async def _numbers(stream: StreamHarness, video: str, creator: str) -> dict[str, int]:
    """Views, plays and completions as GetVideoAnalytics and the Redis counters say."""
    got = await stream.call(
        "GetVideoAnalytics", stream_pb2.GetVideoAnalyticsRequest(video_id=video), creator
    )
    counters = await stream.counters.video(video)
    return {
        "views": got.views,
        "plays": got.plays,
        "counter_views": counters["views"],
        "counter_plays": counters["plays"],
        "counter_completions": counters["completions"],
    }


async def _settled(stream: StreamHarness, video: str, creator: str, expected: dict) -> None:
    """The numbers reach ``expected`` (Redis and ClickHouse are written concurrently)."""
    last: dict[str, int] = {}

    async def check() -> bool:
        nonlocal last
        last = await _numbers(stream, video, creator)
        return last == expected

    try:
        await eventually(check, 30, f"analytics of {video} did not reach {expected}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen {last}") from None


def _expect(views: int, plays: int, completions: int) -> dict[str, int]:
    return {
        "views": views,
        "plays": plays,
        "counter_views": views,
        "counter_plays": plays,
        "counter_completions": completions,
    }


# --------------------------------------------------------------------------- views vs plays


@pytest.mark.parametrize("split", [1, 2, 4], ids=["one-batch", "two-batches", "each-alone"])
async def test_a_watch_start_resent_after_a_stall_is_one_view_and_one_play(
    stream: StreamHarness, split: int
) -> None:
    creator, video, user = _id("creator"), _id("vid"), _id("viewer")
    await stream.publish_video(video, creator, DURATION)
    events = _events(
        video, STALL_RESTART, session="s1", first_at=datetime.now(UTC) - timedelta(minutes=1)
    )
    per = len(events) // split
    for i in range(0, len(events), per):
        await _send(stream, user, events[i : i + per])
    await _landed(stream, user, 4)
    await _settled(stream, video, creator, _expect(views=1, plays=1, completions=1))
    got = await stream.call(
        "GetVideoAnalytics", stream_pb2.GetVideoAnalyticsRequest(video_id=video), creator
    )
    assert got.completion_rate == pytest.approx(1.0)
    assert got.average_watch_seconds == pytest.approx(DURATION)


async def test_a_replay_after_complete_is_one_view_and_two_plays(stream: StreamHarness) -> None:
    creator, video, user = _id("creator"), _id("vid"), _id("viewer")
    await stream.publish_video(video, creator, DURATION)
    base = datetime.now(UTC) - timedelta(minutes=2)
    # start, complete, start (replay), complete, then a stall restart inside the replay
    # and a player that re-sends its complete: still 2 plays and 2 completions.
    steps = [*REPLAY[:3], (P25, 5.0), (START, 5.0), (DONE, DURATION), (DONE, DURATION)]
    await _send(stream, user, _events(video, steps, session="s1", first_at=base))
    await _landed(stream, user, len(steps))
    await _settled(stream, video, creator, _expect(views=1, plays=2, completions=2))
    got = await stream.call(
        "GetVideoAnalytics", stream_pb2.GetVideoAnalyticsRequest(video_id=video), creator
    )
    assert got.completion_rate == pytest.approx(1.0)  # one view, and it completed
    assert [(k.key, k.count) for k in got.top_devices] == [("web", 1)]

    # The creator's view sums the same definitions.
    mine = await stream.call(
        "GetCreatorAnalytics", stream_pb2.GetCreatorAnalyticsRequest(creator_id=creator), creator
    )
    assert (mine.views, mine.plays, mine.average_completion_rate) == (1, 2, 1.0)
    assert [(k.key, k.count) for k in mine.top_videos] == [(video, 1)]


async def test_a_replay_that_is_abandoned_is_a_play_without_a_completion(
    stream: StreamHarness,
) -> None:
    creator, video, user = _id("creator"), _id("vid"), _id("viewer")
    await stream.publish_video(video, creator, DURATION)
    steps = [(START, 0.0), (DONE, DURATION), (START, 0.0), (P25, 5.0)]
    base = datetime.now(UTC) - timedelta(minutes=1)
    await _send(stream, user, _events(video, steps, session="s1", first_at=base))
    await _landed(stream, user, len(steps))
    await _settled(stream, video, creator, _expect(views=1, plays=2, completions=1))


async def test_two_sessions_of_one_viewer_are_two_views(stream: StreamHarness) -> None:
    creator, video, user = _id("creator"), _id("vid"), _id("viewer")
    await stream.publish_video(video, creator, DURATION)
    base = datetime.now(UTC) - timedelta(minutes=5)
    first = _events(video, STALL_RESTART, session="morning", first_at=base)
    second = _events(video, STALL_RESTART, session="evening", first_at=base + timedelta(minutes=2))
    await _send(stream, user, first)
    await _send(stream, user, second)
    # Another viewer reusing the session id "morning" is a view of their own.
    other = _id("viewer")
    await _send(stream, other, _events(video, STALL_RESTART[:1], session="morning", first_at=base))
    await _landed(stream, user, 8)
    await _landed(stream, other, 1)
    await _settled(stream, video, creator, _expect(views=3, plays=3, completions=2))


async def test_events_without_a_session_id_are_one_view_per_half_hour_window(
    stream: StreamHarness,
) -> None:
    """Older clients send no session id: their events of one 30-minute window (of the
    established time) are one view session."""
    creator, video, user = _id("creator"), _id("vid"), _id("viewer")
    await stream.publish_video(video, creator, DURATION)
    window = 30 * 60
    now = datetime.now(UTC).timestamp()
    # A window that closed at least an hour ago, so all of its events are in the past.
    start = datetime.fromtimestamp((now // window - 3) * window + 60, UTC)
    await _send(stream, user, _events(video, STALL_RESTART, session="", first_at=start))
    await _send(  # a replay in the same window: a play
        stream, user, _events(video, REPLAY[2:], session="", first_at=start + timedelta(minutes=5))
    )
    # The next window: another view.
    later = start + timedelta(seconds=window)
    await _send(stream, user, _events(video, REPLAY[:2], session="", first_at=later))
    await _landed(stream, user, 8)
    await _settled(stream, video, creator, _expect(views=2, plays=3, completions=3))


# --------------------------------------------------------------------------- redelivery


def _records(user: str, events: Sequence[stream_pb2.PlayerEvent]) -> list[ReceivedEvent]:
    """The Kafka records RecordEvents produced for ``events`` (same event ids)."""
    out = []
    for n, item in enumerate(events):
        event_id = event_id_for(user, item.client_event_id)
        message = events_pb2.VideoEvent(
            meta=events_pb2.EventMeta(event_id=event_id, occurred_at=item.occurred_at),
            user_id=user,
            client_event_id=item.client_event_id,
            video_id=item.video_id,
            type=item.type,
            occurred_at=item.occurred_at,
            position_seconds=item.position_seconds,
            watch_seconds=item.watch_seconds,
            session_id=item.session_id,
        )
        out.append(
            ReceivedEvent(event_id, VIDEO_EVENTS, 0, n, None, message.SerializeToString(), {})
        )
    return out


async def test_redelivered_batches_change_nothing(stream: StreamHarness) -> None:
    creator, video, user = _id("creator"), _id("vid"), _id("viewer")
    await stream.publish_video(video, creator, DURATION)
    base = datetime.now(UTC) - timedelta(minutes=1)
    events = _events(video, STALL_RESTART, session="s1", first_at=base)
    expected = _expect(views=1, plays=1, completions=1)
    await _send(stream, user, events[:2])
    await _send(stream, user, events[2:])
    await _landed(stream, user, 4)
    await _settled(stream, video, creator, expected)

    # The client retries both batches as one (same client event ids, a new sent_at).
    applied = stream.sink.rows
    await _send(stream, user, events, sent_at=datetime.now(UTC))

    async def reapplied() -> bool:
        return stream.sink.rows >= applied + 4

    await eventually(reapplied, 30, "the retried batch did not reach the sink")
    assert await _numbers(stream, video, creator) == expected

    # The consumer replays the records after a crash: a fresh sink (a restarted
    # process) over the same stores, in other batch splits, twice.
    restarted = AnalyticsSink(stream.analytics, Counters(stream.app.redis))
    records = _records(user, events)
    for batches in ([records], [records[:1], records[1:3], records[3:]]):
        for batch in batches:
            await restarted.apply(batch)
    assert await _numbers(stream, video, creator) == expected
    assert await stream.scalar(
        "SELECT count() FROM video_events FINAL WHERE video_id = {v:String}", v=video
    ) == len(events)


# --------------------------------------------------------------------------- client clocks


async def _occurred(stream: StreamHarness, user: str) -> list[datetime]:
    rows = await stream.analytics.query_rows(
        "SELECT occurred_at FROM video_events FINAL WHERE user_id = {u:String} "
        "ORDER BY client_event_id",
        {"u": user},
    )
    return [r[0].replace(tzinfo=UTC) if r[0].tzinfo is None else r[0] for r in rows]


@pytest.mark.parametrize("skew", [timedelta(hours=3), timedelta(hours=-3)], ids=["fast", "slow"])
async def test_a_skewed_client_clock_is_counted_at_the_corrected_time(
    stream: StreamHarness, skew: timedelta
) -> None:
    creator, video, user = _id("creator"), _id("vid"), _id("viewer")
    await stream.publish_video(video, creator, DURATION)
    real = datetime.now(UTC) - timedelta(seconds=40)  # when it really happened
    events = _events(video, STALL_RESTART, session="s1", first_at=real + skew)
    # The player sends a little after the last event, stamping the batch by its clock.
    await _send(stream, user, events, sent_at=datetime.now(UTC) + skew)
    await _landed(stream, user, 4)
    times = await _occurred(stream, user)
    for n, at in enumerate(times):
        assert abs(at - (real + timedelta(seconds=7 * n))) < SLACK, (n, at, real)
    # Their order and spacing are the client's, untouched.
    assert [round((b - a).total_seconds(), 3) for a, b in zip(times, times[1:], strict=False)] == [
        7.0
    ] * 3
    await _settled(stream, video, creator, _expect(views=1, plays=1, completions=1))


async def test_an_offline_queue_sent_two_days_later_is_counted_at_the_corrected_time(
    stream: StreamHarness,
) -> None:
    """Watched two days ago on a phone whose clock ran 3 h fast, sent today."""
    creator, video, user = _id("creator"), _id("vid"), _id("viewer")
    await stream.publish_video(video, creator, DURATION)
    skew = timedelta(hours=3)
    real = datetime.now(UTC) - timedelta(days=2)
    events = _events(video, REPLAY, session="s1", first_at=real + skew)
    await _send(stream, user, events, sent_at=datetime.now(UTC) + skew)
    await _landed(stream, user, 4)
    for n, at in enumerate(await _occurred(stream, user)):
        assert abs(at - (real + timedelta(seconds=7 * n))) < SLACK, (n, at, real)
    await _settled(stream, video, creator, _expect(views=1, plays=2, completions=2))

    # Trending decays it as two days old (one completion per view session), not as new.
    weights = stream.app.trending_weights
    now = datetime.now(UTC).timestamp()
    scores = dict(await trending.compute_scores(stream.analytics, now, weights))
    assert scores[video] == pytest.approx(
        weights.completion * math.exp(-2 * 86400 / weights.tau_s), rel=0.05
    )


async def test_clock_garbage_is_rejected_with_its_reason_and_honest_skew_is_not(
    stream: StreamHarness,
) -> None:
    creator, video, user = _id("creator"), _id("vid"), _id("viewer")
    await stream.publish_video(video, creator, DURATION)
    now = datetime.now(UTC)
    y1970 = datetime(1970, 1, 2, tzinfo=UTC)
    y2100 = datetime(2100, 1, 1, tzinfo=UTC)

    async def verdicts(events: list[stream_pb2.PlayerEvent], sent_at: datetime | None) -> list[str]:
        request = stream_pb2.RecordEventsRequest(events=events)
        if sent_at is not None:
            request.sent_at.CopyFrom(ts(sent_at))
        reply = await stream.call("RecordEvents", request, user)
        return [r.reason for r in reply.results]

    # No sent_at (older clients): 1970 and 2100 are garbage; a clock 3 h fast is counted.
    legacy = await verdicts(
        [
            player_event("l-1970", video, START, at=y1970, session="a"),
            player_event("l-2100", video, START, at=y2100, session="b"),
            player_event("l-fast", video, START, at=now + timedelta(hours=3), session="c"),
        ],
        None,
    )
    assert "too old" in legacy[0] and "sent_at" in legacy[0]
    assert "in the future" in legacy[1] and "sent_at" in legacy[1]
    assert legacy[2] == ""
    # With sent_at: a phone whose clock reset to 1970 is honest, and counted now; an event
    # stamped after its own batch was sent is a client bug.
    reset = await verdicts(
        [
            player_event("r-ok", video, START, at=y1970, session="d"),
            player_event("r-bad", video, START, at=y1970 + timedelta(hours=1), session="e"),
        ],
        y1970 + timedelta(seconds=30),
    )
    assert reset[0] == ""
    assert "after the batch's sent_at" in reset[1]
    await _landed(stream, user, 2)
    await _settled(stream, video, creator, _expect(views=2, plays=2, completions=0))
    times = dict(
        await stream.analytics.query_rows(
            "SELECT client_event_id, occurred_at FROM video_events FINAL "
            "WHERE user_id = {u:String}",
            {"u": user},
        )
    )

    def utc(at: datetime) -> datetime:
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at

    # The fast legacy clock is counted at the receive time, not 3 h ahead.
    assert abs(utc(times["l-fast"]) - now) < SLACK
    assert abs(utc(times["r-ok"]) - (now - timedelta(seconds=30))) < SLACK


# --------------------------------------------------------------------------- generated sessions


def _reference(kinds: Sequence[int]) -> tuple[int, int, int]:
    """(views, plays, completions) of one session by the definition, in plain Python.

    A session whose first watch event is not a watch_start (the start was lost) has
    one inferred before it."""
    started = done = False
    plays = completions = 0
    if kinds and kinds[0] != START:
        started, plays = True, 1
    for kind in kinds:
        if kind == START:
            if not started or done:
                plays += 1
            started, done = True, False
        elif kind == DONE:
            if not done:
                completions += 1
            done = True
    return int(started), plays, completions


async def test_generated_sessions_in_random_batches_with_retries_match_the_definition(
    stream: StreamHarness,
) -> None:
    """Random players (stalls, replays, abandons, repeated completes), their events sent
    in random batch splits with random retries of whole batches: the analytics and the
    Redis counters both equal the definition computed here."""
    rng = random.Random(86)
    creator, video = _id("creator"), _id("vid")
    await stream.publish_video(video, creator, DURATION)
    base = datetime.now(UTC) - timedelta(hours=1)
    expected = [0, 0, 0]
    users: dict[str, int] = {}
    for s in range(14):
        user = _id("viewer")
        # Most sessions open with their watch_start; some lost it (start inferred).
        kinds = ([START] if rng.random() < 0.8 else [rng.choice([P25, DONE])]) + [
            rng.choice([START, P25, P50, DONE, DONE]) for _ in range(rng.randint(0, 7))
        ]
        steps = [(k, DURATION if k == DONE else 5.0 * (k - 1)) for k in kinds]
        for i, n in enumerate(_reference(kinds)):
            expected[i] += n
        events = _events(video, steps, session=f"s{s}", first_at=base + timedelta(minutes=2 * s))
        users[user] = len(events)
        cut = 0
        while cut < len(events):
            size = rng.randint(1, 3)
            batch = events[cut : cut + size]
            sent = datetime.now(UTC) if rng.random() < 0.5 else None
            await _send(stream, user, batch, sent_at=sent)
            if rng.random() < 0.3:  # the client did not see the answer: it retries
                await _send(stream, user, batch, sent_at=datetime.now(UTC))
            cut += size
    for user, count in users.items():
        await _landed(stream, user, count)
    views, plays, completions = expected
    assert plays >= views == 14
    await _settled(stream, video, creator, _expect(views, plays, completions))
