"""svc_chat's live-stream rules without I/O: the state machine, stream keys, page
tokens, CreateStream's input, the lifecycle event's payload and the info cache."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from reels.v1 import common_pb2

from reels import errors
from svc_chat.models import LiveStream
from svc_chat.streams import cursor, keys
from svc_chat.streams.events import lifecycle_event
from svc_chat.streams.info_cache import InfoCache
from svc_chat.streams.lifecycle import (
    ALLOWED,
    State,
    can_transition,
    check_key_rotation,
    check_transition,
)
from svc_chat.streams.model import StreamInfo
from svc_chat.streams.validation import new_stream

# --------------------------------------------------------------------------- state machine


def test_created_can_go_live_or_end_and_live_can_end() -> None:
    assert ALLOWED == {
        (State.CREATED, State.LIVE),
        (State.CREATED, State.ENDED),
        (State.LIVE, State.ENDED),
    }
    for current, target in ALLOWED:
        check_transition("s", current, target)  # no error


@pytest.mark.parametrize(
    ("current", "target", "message"),
    [
        (State.ENDED, State.LIVE, "stream s is ENDED; it cannot start again"),
        (State.ENDED, State.ENDED, "stream s is ENDED; it has already ended"),
        (State.LIVE, State.LIVE, "stream s is LIVE; it is already live"),
        (State.LIVE, State.CREATED, "stream s is LIVE; it cannot become CREATED"),
        (State.ENDED, State.CREATED, "stream s is ENDED; it cannot become CREATED"),
    ],
)
def test_every_other_transition_is_refused_naming_the_current_state(
    current: State, target: State, message: str
) -> None:
    assert not can_transition(current, target)
    with pytest.raises(errors.FailedPrecondition) as caught:
        check_transition("s", current, target)
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.message.startswith(message)


def test_states_are_the_contracts_enum_values_and_names() -> None:
    assert State.CREATED == common_pb2.LIVE_STREAM_STATE_CREATED
    assert State.LIVE == common_pb2.LIVE_STREAM_STATE_LIVE
    assert State.ENDED == common_pb2.LIVE_STREAM_STATE_ENDED
    assert State.of("LIVE") is State.LIVE and State.of(3) is State.ENDED


def test_a_key_can_be_rotated_until_the_stream_ends() -> None:
    check_key_rotation("s", State.CREATED)
    check_key_rotation("s", State.LIVE)
    with pytest.raises(errors.FailedPrecondition, match="stream s is ENDED"):
        check_key_rotation("s", State.ENDED)


# --------------------------------------------------------------------------- keys


def test_keys_are_random_prefixed_and_stored_as_sha256_hex() -> None:
    a, b = keys.new_key(), keys.new_key()
    assert a != b
    assert a.startswith("live_") and len(a) == keys.KEY_LENGTH == 37
    assert keys.hash_key(a) == hashlib.sha256(a.encode()).hexdigest()
    assert len(keys.hash_key(a)) == 64 and a not in keys.hash_key(a)
    assert keys.matches(a, keys.hash_key(a))
    assert not keys.matches(b, keys.hash_key(a))


def test_only_strings_shaped_like_keys_are_looked_up() -> None:
    assert keys.looks_like_key(keys.new_key())
    assert not keys.looks_like_key("")
    assert not keys.looks_like_key("live_short")
    assert not keys.looks_like_key("x" * keys.KEY_LENGTH)


# --------------------------------------------------------------------------- page tokens


def test_a_page_token_round_trips_for_the_same_filters() -> None:
    position = cursor.Position(datetime(2027, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), "id-1")
    filters = cursor.filter_key(2, "alice")
    token = cursor.encode(position, filters)
    assert cursor.decode(token, filters) == position


@pytest.mark.parametrize("token", ["garbage", "!!!", "W10", "WyJ4IiwgInkiLCAieiJd"])
def test_a_token_we_did_not_issue_is_invalid_argument(token: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="page_token is not one this service"):
        cursor.decode(token, cursor.filter_key(0, ""))


def test_a_token_from_other_filters_is_invalid_argument() -> None:
    position = cursor.Position(datetime(2027, 1, 2, tzinfo=UTC), "id-1")
    token = cursor.encode(position, cursor.filter_key(2, ""))
    with pytest.raises(errors.InvalidArgument, match="other filters"):
        cursor.decode(token, cursor.filter_key(3, ""))


def test_page_size_defaults_to_20_and_is_capped_at_100() -> None:
    assert cursor.page_size(0) == 20
    assert cursor.page_size(7) == 7
    assert cursor.page_size(1000) == 100
    with pytest.raises(errors.InvalidArgument, match="page_size must not be negative"):
        cursor.page_size(-1)


# --------------------------------------------------------------------------- input


def test_create_input_is_normalised() -> None:
    got = new_stream("  Friday\tnight  live ", "line 1\r\nline 2", ["#Music", "music", "Café"])
    assert got.title == "Friday night live"
    assert got.description == "line 1\nline 2"
    assert got.tags == ["music", "café"]


@pytest.mark.parametrize(
    ("title", "description", "tags", "field", "message"),
    [
        ("", "", [], "title", "title is empty"),
        ("\u200b \u200b", "", [], "title", "title is empty"),
        ("x" * 201, "", [], "title", "title is longer than 200 characters (got 201)"),
        ("ok", "d" * 2001, [], "description", "description is longer than 2000 characters"),
        ("ok", "", [f"t{i}" for i in range(11)], "tags", "hashtags must be at most 10 (got 11)"),
        ("ok", "", ["x" * 51], "tags", "hashtags must be 1-50"),
    ],
)
def test_bad_input_names_the_field(
    title: str, description: str, tags: list[str], field: str, message: str
) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        new_stream(title, description, tags)
    assert caught.value.message.startswith(message)
    assert [f for f, _ in caught.value.violations] == [field]


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        new_stream("", "", [f"t{i}" for i in range(11)])
    assert [f for f, _ in caught.value.violations] == ["title", "tags"]
    assert "title is empty" in caught.value.message and "at most 10" in caught.value.message


def test_200_characters_and_10_tags_are_accepted() -> None:
    got = new_stream("é" * 200, "d" * 2000, [f"t{i}" for i in range(10)])
    assert len(got.title) == 200 and len(got.tags) == 10


# --------------------------------------------------------------------------- events


def _stream(state: State, started: datetime | None, ended: datetime | None) -> LiveStream:
    return LiveStream(
        stream_id="s-1",
        creator_id="alice",
        title="t",
        description="",
        tags=[],
        state=state.name,
        stream_key_hash="h",
        created_at=datetime(2027, 1, 1, tzinfo=UTC),
        started_at=started,
        ended_at=ended,
        peak_viewer_count=7,
        unique_viewer_count=9,
    )


def test_the_ended_event_carries_the_true_duration_and_the_counts() -> None:
    start = datetime(2027, 1, 1, 12, tzinfo=UTC)
    end = start + timedelta(minutes=90, milliseconds=250)
    event_id = uuid.uuid4()
    event = lifecycle_event(_stream(State.ENDED, start, end), State.LIVE, event_id)
    assert event.event_type == "stream.ended"
    assert event.meta.event_id == str(event_id) and event.meta.producer == "svc_chat"
    assert event.meta.occurred_at.ToDatetime(tzinfo=UTC) == end
    assert event.state == State.ENDED and event.previous_state == State.LIVE
    assert event.duration_seconds == pytest.approx(5400.25)
    assert event.viewer_count == event.peak_viewer_count == 7
    assert event.unique_viewer_count == 9
    assert event.started_at.ToDatetime(tzinfo=UTC) == start


def test_a_stream_that_never_went_live_ends_with_zero_duration() -> None:
    event = lifecycle_event(
        _stream(State.ENDED, None, datetime(2027, 1, 1, tzinfo=UTC)), State.CREATED, uuid.uuid4()
    )
    assert event.duration_seconds == 0.0 and not event.HasField("started_at")
    assert event.previous_state == State.CREATED


def test_the_started_event_has_no_end_fields() -> None:
    start = datetime(2027, 1, 1, 12, tzinfo=UTC)
    event = lifecycle_event(_stream(State.LIVE, start, None), State.CREATED, uuid.uuid4())
    assert event.event_type == "stream.started"
    assert event.started_at.ToDatetime(tzinfo=UTC) == start
    assert not event.HasField("ended_at") and event.duration_seconds == 0.0
    assert event.viewer_count == 0


# --------------------------------------------------------------------------- info cache


async def test_info_is_loaded_once_for_concurrent_misses_and_again_after_the_ttl() -> None:
    loads: list[str] = []

    async def load(stream_id: str) -> StreamInfo | None:
        loads.append(stream_id)
        await asyncio.sleep(0.01)
        return StreamInfo(stream_id, "alice", "t", State.LIVE.value)

    cache = InfoCache(load, ttl_s=0.05, max_entries=10)
    got = await asyncio.gather(*(cache.get("s") for _ in range(20)))
    assert loads == ["s"] and all(g is not None and g.live for g in got)
    assert (await cache.get("s")) is got[0] and loads == ["s"]  # fresh: no load
    cache.put("s", StreamInfo("s", "alice", "t", State.ENDED.value))  # this instance ended it
    ended = await cache.get("s")
    assert ended is not None and ended.ended and loads == ["s"]
    await asyncio.sleep(0.06)
    await cache.get("s")
    assert loads == ["s", "s"]  # stale after ttl_s: loaded again


async def test_the_info_cache_is_bounded() -> None:
    async def load(stream_id: str) -> StreamInfo | None:
        return None

    cache = InfoCache(load, ttl_s=1.0, max_entries=3)
    for i in range(10):
        await cache.get(f"s{i}")
    assert list(cache._entries) == ["s7", "s8", "s9"]  # noqa: SLF001
