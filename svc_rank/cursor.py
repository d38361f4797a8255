"""Opaque feed cursors: a versioned, url-safe token a client hands back unchanged.

Two kinds, told apart by their version:

* ``v1`` ``{"o": offset}`` — GetTrending pages through svc_stream's trending set.
* ``v2`` ``{"l": list_id, "o": offset}`` — GetFeed pages through one cached ranked
  list (``feed:{user_id}``). ``list_id`` names the list the offset belongs to: when
  the cached list is gone (TTL) or was replaced, the offset means nothing in the new
  one, so the service starts a fresh list (excluding everything already served)
  instead of jumping into the middle of a different order.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass

from reels import errors

# Offsets travel on as ListTrendingRequest.offset, an int32.
MAX_OFFSET = 2**31 - 1
_LIST_ID = re.compile(r"^[0-9a-f]{1,32}$")


def _pack(data: dict[str, object]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _invalid(exc: BaseException | None = None) -> errors.InvalidArgument:
    err = errors.InvalidArgument(
        "cursor is not one this service issued; start again without a cursor",
        [("cursor", "malformed or expired")],
    )
    if exc is not None:
        err.__cause__ = exc
    return err


def _unpack(cursor: str) -> dict[str, object]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, RecursionError) as exc:
        raise _invalid(exc) from exc
    if not isinstance(data, dict):
        raise _invalid()
    return data


def _offset(data: dict[str, object]) -> int:
    try:
        offset = int(data["o"])  # type: ignore[call-overload]
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise _invalid(exc) from exc
    if isinstance(data["o"], bool) or not 0 <= offset <= MAX_OFFSET:
        raise _invalid()
    return offset


def encode(offset: int) -> str:
    """A trending (v1) cursor."""
    return _pack({"v": 1, "o": offset})


def decode(cursor: str) -> int:
    """The offset of a trending (v1) cursor; 0 for none."""
    if not cursor:
        return 0
    data = _unpack(cursor)
    if data.get("v") != 1:
        raise _invalid()
    return _offset(data)


@dataclass(frozen=True, slots=True)
class FeedCursor:
    list_id: str
    offset: int


def encode_feed(list_id: str, offset: int) -> str:
    """A feed (v2) cursor: ``offset`` into the ranked list ``list_id``."""
    return _pack({"v": 2, "l": list_id, "o": offset})


def decode_feed(cursor: str) -> FeedCursor | None:
    """The position a feed cursor names; None for none (the first page)."""
    if not cursor:
        return None
    data = _unpack(cursor)
    if data.get("v") != 2:
        raise _invalid()
    list_id = data.get("l")
    if not isinstance(list_id, str) or not _LIST_ID.match(list_id):
        raise _invalid()
    return FeedCursor(list_id, _offset(data))
