"""The feed cursor codec (svc_rank/cursor.py): opaque to clients, strict on the way back.

A client hands back whatever it got; anything else (typed by hand, cut off, tampered
with, from an older format) must answer INVALID_ARGUMENT telling it to start over, and
never INTERNAL or a page at a nonsense offset.
"""

from __future__ import annotations

import base64
import json
import re

import grpc
import pytest

from reels import errors
from svc_rank import cursor

INT32_MAX = 2**31 - 1  # ListTrendingRequest.offset is an int32


def token(payload: object) -> str:
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("offset", [0, 1, 20, 999_999, INT32_MAX - 100])
def test_cursor_round_trips_to_the_same_offset(offset: int) -> None:
    assert cursor.decode(cursor.encode(offset)) == offset


def test_no_cursor_means_the_first_page() -> None:
    assert cursor.decode("") == 0


def test_cursor_is_url_safe_and_unpadded() -> None:
    for offset in [0, 7, 123456, 10**9]:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor.encode(offset))


def test_cursor_is_opaque_not_a_bare_number() -> None:
    assert cursor.encode(20) != "20"
    with pytest.raises(errors.InvalidArgument):
        cursor.decode("20")


def test_a_client_that_restores_base64_padding_still_gets_its_page() -> None:
    padded = cursor.encode(5) + "=" * (-len(cursor.encode(5)) % 4)
    assert cursor.decode(padded) == 5


@pytest.mark.parametrize(
    "bad",
    [
        "not a cursor!",
        "%%%%",
        "é",
        cursor.encode(5)[:-3],  # cut off
        cursor.encode(5) + "x",  # extra character
        token("plain text"),
        token([1, 2]),
        token("5"),
        token("null"),
        token({"v": 1}),  # no offset
        token({"o": 5}),  # no version
        token({"v": 2, "o": 5}),  # a version this service never issued
        token({"v": 1, "o": -20}),
        token({"v": 1, "o": "abc"}),
        token({"v": 1, "o": None}),
        token('{"v":1,"o":NaN}'),
        base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),  # not UTF-8
    ],
)
def test_tampered_or_garbage_cursor_is_invalid_argument(bad: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        cursor.decode(bad)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "start again without a cursor" in caught.value.message
    assert [field for field, _ in caught.value.violations] == ["cursor"]


@pytest.mark.parametrize(
    "bad",
    [
        token('{"v":1,"o":1e400}'),  # infinity: OverflowError in int()
        token("[" * 100_000),  # nesting deep enough to blow the JSON decoder's recursion
        token({"v": 1, "o": 2**31}),  # does not fit ListTrendingRequest.offset (int32)
        token({"v": 1, "o": 10**300}),
    ],
)
def test_hostile_cursor_is_invalid_argument_not_an_internal_error(bad: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        cursor.decode(bad)


# --------------------------------------------------------------------------- feed (v2)


def test_feed_cursor_names_its_list_and_offset() -> None:
    token_ = cursor.encode_feed("0123456789abcdef", 40)
    assert cursor.decode_feed(token_) == cursor.FeedCursor("0123456789abcdef", 40)
    assert cursor.decode_feed("") is None


@pytest.mark.parametrize(
    "bad",
    [
        cursor.encode(5),  # a trending cursor is not a feed cursor
        token({"v": 2, "o": 5}),
        token({"v": 2, "l": "NOT-HEX", "o": 5}),
        token({"v": 2, "l": "ab", "o": -1}),
        token({"v": 2, "l": "ab", "o": True}),
    ],
)
def test_bad_feed_cursor_is_invalid_argument(bad: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        cursor.decode_feed(bad)
