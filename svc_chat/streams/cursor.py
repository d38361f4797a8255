"""ListStreams' page tokens: opaque to clients, a keyset position to us.

Pure: no I/O. A token is base64url(JSON ``[created_at, stream_id, filter]``): the
last stream of the previous page (streams are listed newest first on ``(created_at,
stream_id)``, so pages stay stable while streams are created) and the filter it was
issued for. A token that does not decode, or was issued for another filter, is
INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from reels import errors

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class Position:
    created_at: datetime
    stream_id: str


def filter_key(state: int, creator_id: str) -> str:
    """What a token is bound to: the request's filters."""
    return f"{state}:{creator_id}"


def encode(position: Position, filters: str) -> str:
    raw = json.dumps([position.created_at.isoformat(), position.stream_id, filters])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(token: str, filters: str) -> Position:
    """The position in ``token``; INVALID_ARGUMENT when it is not one we issued for
    these ``filters``."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created, stream_id, issued_for = json.loads(raw)
        position = Position(datetime.fromisoformat(created), str(stream_id))
        if position.created_at.tzinfo is None:
            raise ValueError("naive timestamp")
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise errors.InvalidArgument(
            "page_token is not one this service issued",
            [("page_token", "pass next_page_token from the previous response unchanged")],
        ) from None
    if issued_for != filters:
        raise errors.InvalidArgument(
            "page_token was issued for other filters",
            [("page_token", "keep state and creator_id as they were for the first page")],
        )
    return position


def page_size(requested: int) -> int:
    """0 means the default (20); more than 100 is cut to 100; negative is
    INVALID_ARGUMENT."""
    if requested < 0:
        raise errors.InvalidArgument(
            f"page_size must not be negative (got {requested})",
            [("page_size", "use 0 for the default of 20, at most 100")],
        )
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
