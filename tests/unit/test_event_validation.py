"""Per-item validation of player event batches (svc_stream/events/validation.py).

Each item is judged alone (fields, clock, catalog); one bad item never sinks its batch,
and the reason tells a client developer what to fix.
"""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import timestamp_pb2
from reels.v1 import common_pb2, events_pb2, stream_pb2

from svc_stream.events import validation
from svc_stream.playback.catalog import MediaKeys, PublishedVideo

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
REEL = "11111111-1111-1111-1111-111111111111"
OTHER = "22222222-2222-2222-2222-222222222222"


def video(video_id: str = REEL, duration_s: float = 30.0) -> PublishedVideo:
    return PublishedVideo(
        video_id=video_id,
        creator_id="creator",
        duration_s=duration_s,
        width=1080,
        height=1920,
        renditions=(),
        keys=MediaKeys("m", "t", "p", "s"),
        hashtags=(),
        published_at=NOW - timedelta(days=1),
    )


class Catalog:
    """An in-memory catalog that counts lookups."""

    def __init__(self, *videos: PublishedVideo) -> None:
        self.videos = {v.video_id: v for v in videos}
        self.lookups: list[str] = []

    async def get(self, video_id: str) -> PublishedVideo | None:
        self.lookups.append(video_id)
        return self.videos.get(video_id)


def event(**overrides: object) -> stream_pb2.PlayerEvent:
    at = overrides.pop("at", NOW - timedelta(seconds=5))
    fields: dict[str, object] = {
        "client_event_id": "ce-1",
        "video_id": REEL,
        "type": common_pb2.EVENT_TYPE_WATCH_START,
        "position_seconds": 0.0,
        "watch_seconds": 0.0,
        "country": "DE",
    }
    fields.update(overrides)
    ev = stream_pb2.PlayerEvent(**fields)  # type: ignore[arg-type]
    if at is not None:
        ts = timestamp_pb2.Timestamp()
        ts.FromDatetime(at)  # type: ignore[arg-type]
        ev.occurred_at.CopyFrom(ts)
    return ev


def judge(events: list[stream_pb2.PlayerEvent], catalog: Catalog | None = None):  # noqa: ANN201
    catalog = catalog or Catalog(video(), video(OTHER, 10.0))
    return asyncio.run(validation.validate_batch(events, catalog.get, now=NOW))


def reason(**overrides: object) -> str:
    (verdict,) = judge([event(**overrides)])
    return verdict.reason


# --------------------------------------------------------------------------- batches


def test_a_well_formed_event_is_accepted_with_its_video() -> None:
    (verdict,) = judge([event()])
    assert verdict.accepted and verdict.reason == ""
    assert verdict.video is not None and verdict.video.video_id == REEL
    assert not verdict.duplicate


def test_one_bad_item_never_sinks_its_batch() -> None:
    verdicts = judge(
        [
            event(client_event_id="a"),
            event(client_event_id="b", video_id=""),
            event(client_event_id="c", video_id=OTHER),
        ]
    )
    assert [(v.index, v.client_event_id, v.accepted) for v in verdicts] == [
        (0, "a", True),
        (1, "b", False),
        (2, "c", True),
    ]
    assert verdicts[1].reason == "video_id is required"
    assert verdicts[1].video is None


def test_an_empty_batch_has_no_verdicts() -> None:
    assert judge([]) == []


def test_a_repeated_client_event_id_is_accepted_but_published_once() -> None:
    verdicts = judge([event(client_event_id="x"), event(client_event_id="x")])
    assert [v.accepted for v in verdicts] == [True, True]
    assert [v.duplicate for v in verdicts] == [False, True]


def test_a_retry_of_a_rejected_item_is_not_a_duplicate() -> None:
    verdicts = judge([event(client_event_id="x", country="XYZ"), event(client_event_id="x")])
    assert [v.accepted for v in verdicts] == [False, True]
    assert verdicts[1].duplicate is False


def test_the_catalog_is_asked_once_per_video_and_never_for_malformed_items() -> None:
    catalog = Catalog(video())
    judge(
        [event(client_event_id=str(i)) for i in range(50)]
        + [event(client_event_id="bad", video_id=OTHER, type=0)],
        catalog,
    )
    assert catalog.lookups == [REEL]


def test_an_event_for_a_video_the_catalog_does_not_know_is_rejected() -> None:
    assert reason(video_id="33333333-3333-3333-3333-333333333333") == "unknown video"


def test_the_largest_allowed_batch_is_judged_item_by_item() -> None:
    events = [event(client_event_id=f"e{i}") for i in range(validation.MAX_BATCH)]
    verdicts = judge(events)
    assert len(verdicts) == validation.MAX_BATCH and all(v.accepted for v in verdicts)


# --------------------------------------------------------------------------- fields


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"client_event_id": ""}, "client_event_id is required"),
        ({"client_event_id": "x" * 129}, "client_event_id longer than 128 characters"),
        ({"video_id": ""}, "video_id is required"),
        ({"type": common_pb2.EVENT_TYPE_UNSPECIFIED}, "type is unspecified or unknown"),
        ({"type": 99}, "type is unspecified or unknown"),
        ({"at": None}, "occurred_at is required"),
        ({"position_seconds": -1.0}, "position_seconds must be a finite, non-negative number"),
        ({"position_seconds": math.nan}, "position_seconds must be a finite, non-negative number"),
        ({"watch_seconds": math.inf}, "watch_seconds must be a finite, non-negative number"),
        ({"watch_seconds": -0.5}, "watch_seconds must be a finite, non-negative number"),
        ({"country": "DEU"}, "country must be an ISO 3166-1 alpha-2 code"),
        ({"country": "D1"}, "country must be an ISO 3166-1 alpha-2 code"),
        ({"country": "D"}, "country must be an ISO 3166-1 alpha-2 code"),
    ],
)
def test_a_malformed_field_is_named_in_the_reason(overrides: dict, expected: str) -> None:
    assert reason(**overrides) == expected


def test_a_128_character_client_event_id_is_still_accepted() -> None:
    assert reason(client_event_id="x" * 128) == ""


def test_every_known_event_type_is_accepted() -> None:
    known = [v for v in common_pb2.EventType.values() if v != 0]
    assert len(known) == 8
    for value in known:
        assert reason(type=value) == "", common_pb2.EventType.Name(value)


def test_country_is_optional() -> None:
    assert reason(country="") == ""


def test_a_non_ascii_country_is_not_an_iso_code() -> None:
    assert reason(country="ÅÉ") == "country must be an ISO 3166-1 alpha-2 code"


# --------------------------------------------------------------------------- the clock
#
# The server establishes each event's time: occurred_at + (receive time - the batch's
# sent_at) when the client sends sent_at, else occurred_at as it is (never later than
# the receive time). Honest clocks that run fast or slow are counted; garbage is not.


def stamp(at: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(at)
    return ts


def judge_sent(
    events: list[stream_pb2.PlayerEvent],
    sent_at: datetime | None,
    limits: validation.EventLimits = validation.DEFAULT_LIMITS,
) -> list[validation.Verdict]:
    catalog = Catalog(video(), video(OTHER, 10.0))
    return asyncio.run(
        validation.validate_batch(
            events,
            catalog.get,
            now=NOW,
            limits=limits,
            sent_at=None if sent_at is None else stamp(sent_at),
        )
    )


def established(at: datetime, sent_at: datetime | None) -> datetime:
    (verdict,) = judge_sent([event(at=at)], sent_at)
    assert verdict.accepted, verdict.reason
    return datetime.fromtimestamp(verdict.occurred_at_nanos / 1e9, UTC)


def sent_reason(at: datetime, sent_at: datetime | None) -> str:
    (verdict,) = judge_sent([event(at=at)], sent_at)
    return verdict.reason


@pytest.mark.parametrize("skew_h", [3, -3, 14, -14, 26 * 365 * 24])
def test_with_sent_at_a_skewed_clock_is_counted_at_the_corrected_time(skew_h: int) -> None:
    skew = timedelta(hours=skew_h)
    # Happened 40 s before the server received the batch; the client clock is off.
    assert established(NOW - timedelta(seconds=40) + skew, NOW + skew) == NOW - timedelta(
        seconds=40
    )


@pytest.mark.parametrize("skew_h", [0, 3, -3])
def test_an_offline_queue_keeps_its_distance_to_the_send(skew_h: int) -> None:
    skew = timedelta(hours=skew_h)
    watched = NOW - timedelta(days=2)
    sent = NOW + skew  # sent two days later, by the same (skewed) clock
    assert established(watched + skew, sent) == watched


def test_every_event_of_a_batch_gets_the_same_correction() -> None:
    skew = timedelta(hours=-5)
    times = [NOW - timedelta(minutes=m) for m in (30, 20, 10)]
    verdicts = judge_sent(
        [event(client_event_id=str(i), at=t + skew) for i, t in enumerate(times)], NOW + skew
    )
    assert [datetime.fromtimestamp(v.occurred_at_nanos / 1e9, UTC) for v in verdicts] == times


def test_the_correction_never_puts_an_event_after_its_receipt() -> None:
    # 60 s after the batch's own sent_at is client noise (tolerated), counted at receipt.
    assert established(NOW + timedelta(seconds=60), NOW) == NOW


def test_an_event_long_after_its_own_batch_was_sent_is_a_client_bug() -> None:
    assert sent_reason(NOW + timedelta(hours=1), NOW) == (
        "occurred_at is after the batch's sent_at (both are the client's clock)"
    )


def test_with_sent_at_an_event_corrected_older_than_a_week_is_too_old() -> None:
    skew = timedelta(hours=3)
    reason_ = sent_reason(NOW - timedelta(days=8) + skew, NOW + skew)
    assert reason_.startswith("occurred_at is too old: 8.0 days before it was sent")


def test_a_clock_reset_to_1970_is_honest_when_it_sends_sent_at() -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert established(epoch + timedelta(seconds=5), epoch + timedelta(seconds=35)) == (
        NOW - timedelta(seconds=30)
    )


def test_without_sent_at_occurred_at_is_taken_as_it_is() -> None:
    for ago in (timedelta(seconds=5), timedelta(hours=3), timedelta(days=6)):
        assert established(NOW - ago, None) == NOW - ago


@pytest.mark.parametrize("ahead", [timedelta(seconds=60), timedelta(hours=3), timedelta(hours=25)])
def test_without_sent_at_a_fast_clock_is_counted_at_the_receive_time(ahead: timedelta) -> None:
    assert established(NOW + ahead, None) == NOW


def test_without_sent_at_year_2100_is_a_broken_clock() -> None:
    assert sent_reason(datetime(2100, 1, 1, tzinfo=UTC), None) == (
        "occurred_at is in the future by more than 26 h and the batch has no sent_at "
        "to correct the client clock with"
    )


def test_without_sent_at_year_1970_is_too_old() -> None:
    assert sent_reason(datetime(1970, 1, 1, tzinfo=UTC), None) == (
        "occurred_at is too old (more than 7 days before the server received it; "
        "send sent_at if the client clock is wrong)"
    )


def test_an_offline_player_may_flush_events_days_later() -> None:
    assert reason(at=NOW - timedelta(days=6)) == ""


def test_an_event_older_than_a_week_is_too_old() -> None:
    assert reason(at=NOW - timedelta(days=8)).startswith("occurred_at is too old")


def test_an_invalid_timestamp_is_named() -> None:
    ev = event()
    ev.occurred_at.nanos = -1
    (verdict,) = judge([ev])
    assert verdict.reason == "occurred_at is not a valid timestamp"


# --------------------------------------------------------------------------- the video


def test_the_playhead_may_sit_a_little_past_the_end() -> None:
    assert reason(position_seconds=30.5) == ""


def test_a_playhead_beyond_the_video_is_rejected() -> None:
    assert reason(position_seconds=45.0) == "position_seconds is beyond the video's duration"


def test_looping_playback_may_watch_longer_than_the_video() -> None:
    assert reason(watch_seconds=85.0) == ""  # a 30 s reel looping almost three times


def test_watch_time_beyond_any_replay_is_impossible() -> None:
    assert reason(watch_seconds=200.0) == "watch_seconds is impossible for the video's duration"


def test_the_duration_rules_use_each_events_own_video() -> None:
    # 20 s is fine for the 30 s reel and past the end of the 10 s one.
    verdicts = judge(
        [
            event(client_event_id="a", position_seconds=20.0),
            event(client_event_id="b", video_id=OTHER, position_seconds=20.0),
        ]
    )
    assert [v.reason for v in verdicts] == ["", "position_seconds is beyond the video's duration"]


def test_a_video_of_unknown_duration_accepts_any_position() -> None:
    catalog = Catalog(video(duration_s=0.0))
    (verdict,) = judge([event(position_seconds=10_000.0, watch_seconds=10_000.0)], catalog)
    assert verdict.accepted


# --------------------------------------------------------------------------- event ids


def test_every_retry_of_a_client_event_gets_the_same_event_id() -> None:
    first = validation.event_id_for("user-1", "ce-1")
    assert first == validation.event_id_for("user-1", "ce-1")
    assert first == str(uuid.uuid5(validation.EVENT_ID_NAMESPACE, "user-1\x00ce-1"))
    assert uuid.UUID(first).version == 5


def test_two_users_reusing_a_client_event_id_do_not_collide() -> None:
    assert validation.event_id_for("user-1", "ce-1") != validation.event_id_for("user-2", "ce-1")
    # the separator keeps ("ab", "c") and ("a", "bc") apart
    assert validation.event_id_for("ab", "c") != validation.event_id_for("a", "bc")


# --------------------------------------------------------------------------- configured limits


def test_configured_limits_replace_the_defaults() -> None:
    strict = validation.EventLimits(
        future_skew_s=10, max_age_s=3600, replay_allowance=1, uncorrected_future_s=600
    )
    catalog = Catalog(video())

    def strict_reason(sent_at: datetime | None = None, **overrides: object) -> str:
        (verdict,) = asyncio.run(
            validation.validate_batch(
                [event(**overrides)],
                catalog.get,
                now=NOW,
                limits=strict,
                sent_at=None if sent_at is None else stamp(sent_at),
            )
        )
        return verdict.reason

    assert sent_reason(NOW + timedelta(seconds=60), NOW) == ""
    assert strict_reason(NOW, at=NOW + timedelta(seconds=60)).startswith(
        "occurred_at is after the batch's sent_at"
    )
    assert reason(at=NOW + timedelta(hours=1)) == ""
    assert strict_reason(at=NOW + timedelta(hours=1)).startswith("occurred_at is in the future")
    assert reason(at=NOW - timedelta(hours=2)) == ""
    assert strict_reason(at=NOW - timedelta(hours=2)).startswith("occurred_at is too old")
    assert reason(watch_seconds=45.0) == ""
    assert strict_reason(watch_seconds=45.0) == (
        "watch_seconds is impossible for the video's duration"
    )


def test_the_default_limits_are_the_documented_ones() -> None:
    limits = validation.EventLimits()
    assert (
        limits.future_skew_s,
        limits.max_age_s,
        limits.replay_allowance,
        limits.uncorrected_future_s,
    ) == (120.0, 7 * 86400.0, 3.0, 26 * 3600.0)


# --------------------------------------------------------------------------- string fields
# Every string field of an item is bounded and free of control characters, judged per
# item: one bad field rejects its own item (named in the reason), never the batch.

STRING_FIELDS = {  # field -> (longest accepted, required)
    "client_event_id": (validation.MAX_CLIENT_EVENT_ID, True),
    "video_id": (validation.MAX_VIDEO_ID, True),
    "session_id": (validation.MAX_SESSION_ID, False),
    "rendition": (validation.MAX_RENDITION, False),
}
# Characters no identifier may hold: C0/C1 controls, DEL, bidi override, zero-width
# space and joiner, BOM, line/paragraph separators, whitespace of every kind.
BAD_CHARS = ["\x00", "\x01", "\x1b", "\x7f", "\x85", "\u202e", "\u200b", "\u200d", "\ufeff",
             "\u2028", "\u2029", "\n", "\r", "\t", " ", "\u00a0", "\u3000"]  # fmt: skip


def _valid_for(field: str, length: int) -> str:
    """A value of ``length`` characters that is fine for ``field`` (video ids must exist)."""
    if field == "video_id":
        return REEL
    return ("ab-7_é東" * length)[:length]


def _batch_with(
    field: str, bad: str, size: int = 6, at: int = 3, when: datetime | None = None
) -> list[stream_pb2.PlayerEvent]:
    when = when or NOW - timedelta(seconds=5)
    events = [event(client_event_id=f"ce-{i}", session_id=f"s-{i}", at=when) for i in range(size)]
    setattr(events[at], field, bad)
    return events


@pytest.mark.parametrize("field", list(STRING_FIELDS))
@pytest.mark.parametrize("length", [129, 1024, 100 * 1024])
def test_an_oversized_string_field_rejects_only_its_own_item(field: str, length: int) -> None:
    longest, _ = STRING_FIELDS[field]
    catalog = Catalog(video(), video(OTHER, 10.0))
    bad = "v" * max(length, longest + 1)
    verdicts = asyncio.run(validation.validate_batch(_batch_with(field, bad), catalog.get, now=NOW))
    assert [v.accepted for v in verdicts] == [True, True, True, False, True, True]
    assert verdicts[3].reason == f"{field} longer than {longest} characters"
    assert bad not in catalog.lookups
    # A rejected client_event_id is not echoed back (the index names the item).
    assert len(verdicts[3].client_event_id) <= validation.MAX_CLIENT_EVENT_ID


@pytest.mark.parametrize("field", list(STRING_FIELDS))
@pytest.mark.parametrize("char", BAD_CHARS, ids=[f"U+{ord(c):04X}" for c in BAD_CHARS])
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_a_control_or_invisible_character_rejects_only_its_own_item(
    field: str, char: str, where: str
) -> None:
    base = "abc-123" if field != "video_id" else REEL
    bad = {"start": char + base, "middle": base[:3] + char + base[3:], "end": base + char}[where]
    catalog = Catalog(video(), video(OTHER, 10.0))
    verdicts = asyncio.run(validation.validate_batch(_batch_with(field, bad), catalog.get, now=NOW))
    assert [v.accepted for v in verdicts] == [True, True, True, False, True, True]
    assert verdicts[3].reason.startswith(f"{field} contains a control, invisible or whitespace")
    assert f"U+{ord(char):04X}" in verdicts[3].reason
    assert bad not in catalog.lookups  # never reaches the database


@pytest.mark.parametrize("field", list(STRING_FIELDS))
def test_string_fields_at_their_limit_are_accepted(field: str) -> None:
    longest, _ = STRING_FIELDS[field]
    value = _valid_for(field, longest)
    assert reason(**{field: value}) == ""


@pytest.mark.parametrize("field", [f for f, (_, required) in STRING_FIELDS.items() if required])
def test_required_string_fields_are_named_when_missing(field: str) -> None:
    assert reason(**{field: ""}) == f"{field} is required"


def test_optional_string_fields_may_be_empty() -> None:
    assert reason(session_id="", rendition="") == ""


def test_generated_batches_reject_exactly_the_bad_items() -> None:
    """Random batches with random bad fields: the verdicts match item by item."""
    rng = random.Random(3)
    for _ in range(40):
        events, bad_at = [], set()
        for i in range(rng.randint(1, 40)):
            ev = event(client_event_id=f"ce-{i}", session_id=f"s-{rng.randrange(5)}")
            if rng.random() < 0.3:
                field = rng.choice(list(STRING_FIELDS))
                longest, _ = STRING_FIELDS[field]
                value = rng.choice(
                    ["x" * (longest + rng.randint(1, 5000)), f"a{rng.choice(BAD_CHARS)}b"]
                )
                setattr(ev, field, value)
                bad_at.add(i)
            events.append(ev)
        verdicts = judge(events)
        assert {v.index for v in verdicts if not v.accepted} == bad_at


class _Producer:
    def __init__(self) -> None:
        self.sent: list = []

    async def publish(self, events: list) -> None:
        self.sent.extend(events)


def test_record_events_answers_a_nul_in_one_video_id_per_item_and_records_the_rest() -> None:
    """Through the RPC: the batch is OK, the bad item is rejected with its reason, the
    others are published (a NUL used to reach Postgres and fail the whole batch: 400)."""
    from reels.auth import current_user
    from svc_stream.events.rpc import EventsRpcs

    catalog, producer = Catalog(video()), _Producer()
    events = _batch_with(
        "video_id", REEL[:8] + "\x00" + REEL[8:], when=datetime.now(UTC) - timedelta(seconds=5)
    )
    events[1].session_id = "s\x00" + "x" * 100_000
    events[4].rendition = "r" * 100 * 1024
    request = stream_pb2.RecordEventsRequest(events=events)
    token = current_user.set("viewer-1")
    try:
        reply = asyncio.run(EventsRpcs(catalog, producer).RecordEvents(request, None))  # type: ignore[arg-type]
    finally:
        current_user.reset(token)
    assert reply.accepted_count == 3
    # One batch record (video.event-batches) holding the three accepted events.
    (record,) = producer.sent
    assert record.headers["event-count"] == "3"
    sent = events_pb2.VideoEventBatch.FromString(record.payload).events
    assert [e.client_event_id for e in sent] == [events[i].client_event_id for i in (0, 2, 5)]
    assert [r.accepted for r in reply.results] == [True, False, True, False, False, True]
    assert reply.results[3].reason.startswith("video_id contains a control")
    assert reply.results[1].reason == "session_id longer than 128 characters"
    assert reply.results[4].reason == "rendition longer than 32 characters"
    assert catalog.lookups == [REEL]
