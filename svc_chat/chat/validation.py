"""What the chat accepts from a client, checked without I/O.

Chat text goes through :func:`reels.text.normalise_text` as a **single-line** field
(docs: "Text people type"): a chat line is one line in every chat UI (Twitch, YouTube,
Owncast), so line breaks and tabs become spaces and runs of spaces collapse; NFC is
applied, control characters are stripped, bidi overrides are refused, zero-width and other invisible
characters are stripped at the edges, and a text with nothing visible is empty. The
length (1..``max_chars``, 500 by default) is counted in code points after that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.protobuf import duration_pb2
from reels.v1 import chat_pb2, common_pb2

from reels import errors
from reels import moderation as text_moderation
from reels.text import normalise_text, shown
from svc_chat.chat.moderation import MAX_SLOW_MODE_S, MAX_TIMEOUT_S

MAX_CLIENT_MESSAGE_ID = 64
MAX_STREAM_ID = 128
MAX_USER_ID = 128
MAX_MESSAGE_ID = 64
MAX_REASON = 200
HISTORY_DEFAULT = 50
HISTORY_MAX = 200

A = common_pb2


def stream_id(value: str) -> str:
    """A stream id as a lookup key: INVALID_ARGUMENT when missing; an id no stream can
    have (too long, unprintable, a Redis hash-tag brace) is NOT_FOUND, like any
    unknown id."""
    if not value:
        raise errors.InvalidArgument(
            "stream_id is required", [("stream_id", "the id CreateStream returned")]
        )
    if len(value) > MAX_STREAM_ID or not value.isprintable() or "{" in value or "}" in value:
        raise errors.NotFound("live stream", shown(value))
    return value


# C0 and C1 control characters other than the whitespace ones (which the single-line
# normaliser turns into spaces).
_CONTROLS = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")


def message_text(value: str, max_chars: int) -> str:
    """The normalised chat text, or INVALID_ARGUMENT naming ``text`` and why.

    Chat strips control characters (issue 10: "control characters are stripped") before
    the shared normaliser, which elsewhere refuses them: a stray BEL or ESC pasted into a
    chat line is noise, not an attack; bidi overrides are still refused (they change what
    the rest of the line looks like). Then the blocklist of ``reels.moderation``; the
    classifier, if any, runs in the async caller."""
    text = normalise_text(
        _CONTROLS.sub("", value),
        field="text",
        label="message",
        max_chars=max_chars,
        empty_message="is empty (nothing visible is left after normalisation)",
    )
    return text_moderation.check("text", text)


async def review_message(text: str) -> None:
    """The text classifier (``REELS_TEXT_CLASSIFIER``, if any) on a chat text that
    :func:`message_text` let through; INVALID_ARGUMENT naming ``text``."""
    await text_moderation.classify({"text": text})


def client_message_id(value: str) -> str:
    """The idempotency key: required, 1..64 printable characters."""
    if not value:
        raise errors.InvalidArgument(
            "client_message_id is required (1 to 64 characters, unique per message: a "
            "retry with the same id returns the first result)",
            [("client_message_id", "is required")],
        )
    if len(value) > MAX_CLIENT_MESSAGE_ID:
        raise errors.InvalidArgument(
            f"client_message_id is longer than {MAX_CLIENT_MESSAGE_ID} characters",
            [("client_message_id", f"is longer than {MAX_CLIENT_MESSAGE_ID} characters")],
        )
    if not value.isprintable() or not value.strip():
        raise errors.InvalidArgument(
            f"client_message_id must be printable and not blank: {shown(value)}",
            [("client_message_id", "must be printable characters")],
        )
    return value


def history_limit(value: int) -> int:
    """GetChatHistory's page size: 0 = 50, at most 200."""
    if value == 0:
        return HISTORY_DEFAULT
    if not 1 <= value <= HISTORY_MAX:
        raise errors.InvalidArgument(
            f"limit must be 1..{HISTORY_MAX} (0 = {HISTORY_DEFAULT}), got {value}",
            [("limit", f"must be 1..{HISTORY_MAX}")],
        )
    return value


# --------------------------------------------------------------------------- moderation


@dataclass(frozen=True)
class ModerationRequest:
    """A checked ModerateChatRequest."""

    action: int
    user_id: str = ""
    message_id: str = ""
    seconds: float = 0.0
    enabled: bool = False
    reason: str = ""


_NEEDS_USER = {
    A.MODERATION_ACTION_MUTE_USER,
    A.MODERATION_ACTION_UNMUTE_USER,
    A.MODERATION_ACTION_BAN_USER,
    A.MODERATION_ACTION_UNBAN_USER,
    A.MODERATION_ACTION_ADD_MODERATOR,
    A.MODERATION_ACTION_REMOVE_MODERATOR,
}


def _seconds(value: duration_pb2.Duration) -> float:
    return value.seconds + value.nanos / 1e9


def moderation(request: chat_pb2.ModerateChatRequest) -> ModerationRequest:
    """INVALID_ARGUMENT for an unknown action or a missing/out-of-range parameter:
    DELETE_MESSAGE needs message_id; user actions need user_id; MUTE_USER a duration of
    1 s..7 days; SET_SLOW_MODE 0 (off)..1 h; reason at most 200 characters."""
    action = request.action
    if action not in A.ModerationAction.values() or action == A.MODERATION_ACTION_UNSPECIFIED:
        raise errors.InvalidArgument(
            "action is required (MODERATION_ACTION_DELETE_MESSAGE, _MUTE_USER, ...)",
            [("action", "is required")],
        )
    reason = normalise_text(request.reason, field="reason", max_chars=MAX_REASON, required=False)
    out = ModerationRequest(action=action, reason=reason, enabled=request.enabled)
    if action == A.MODERATION_ACTION_DELETE_MESSAGE:
        if not request.message_id or len(request.message_id) > MAX_MESSAGE_ID:
            raise errors.InvalidArgument(
                "message_id is required to delete a message",
                [("message_id", "is required (the ChatMessage's message_id)")],
            )
        return ModerationRequest(action=action, message_id=request.message_id, reason=reason)
    if action in _NEEDS_USER:
        user = request.user_id
        if not user or len(user) > MAX_USER_ID or not user.isprintable():
            raise errors.InvalidArgument(
                f"user_id is required for {A.ModerationAction.Name(action)}",
                [("user_id", "is required")],
            )
        out = ModerationRequest(action=action, user_id=user, reason=reason)
    if action == A.MODERATION_ACTION_MUTE_USER:
        seconds = _seconds(request.duration)
        if not 1 <= seconds <= MAX_TIMEOUT_S:
            raise errors.InvalidArgument(
                f"duration of a timeout must be 1 s..7 days, got {seconds:g} s",
                [("duration", "must be 1 s..7 days")],
            )
        return ModerationRequest(
            action=action, user_id=request.user_id, seconds=seconds, reason=reason
        )
    if action == A.MODERATION_ACTION_SET_SLOW_MODE:
        seconds = _seconds(request.duration)
        if not 0 <= seconds <= MAX_SLOW_MODE_S:
            raise errors.InvalidArgument(
                f"slow mode must be 0 (off)..{MAX_SLOW_MODE_S} s, got {seconds:g} s",
                [("duration", f"must be 0..{MAX_SLOW_MODE_S} s")],
            )
        return ModerationRequest(action=action, seconds=seconds, reason=reason)
    return out
