"""Opaque feed cursors: a versioned, url-safe token a client hands back unchanged."""

from __future__ import annotations

import base64
import json

from reels import errors

# Offsets travel on as ListTrendingRequest.offset, an int32.
MAX_OFFSET = 2**31 - 1


def encode(offset: int) -> str:
    raw = json.dumps({"v": 1, "o": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(cursor: str) -> int:
    if not cursor:
        return 0
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset = int(data["o"])
        if data.get("v") != 1 or not 0 <= offset <= MAX_OFFSET:
            raise ValueError("unsupported cursor")
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
        raise errors.InvalidArgument(
            "cursor is not one this service issued; start again without a cursor",
            [("cursor", "malformed or expired")],
        ) from exc
    return offset
