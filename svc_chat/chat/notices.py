"""Every chat notice the server sends, named and worded in one place (as Owncast names
every chat event type in one file).

Two families:

* **channel notices** are publications: they take the next offset of the channel, are
  kept in its history, recovered like messages and relayed to Kafka when they are
  moderation (tombstones, timeouts, bans, mode changes); their ``offset``/``epoch`` are
  filled in by the publishing Lua step (svc_chat.chat.channel);
* **client notices** go to one subscriber only (``offset`` 0): the terminal reasons a
  subscription ends for (slow consumer, banned, reset) and the STREAM_ENDED a
  subscriber to an already ended stream gets.
"""

from __future__ import annotations

from google.protobuf import duration_pb2
from reels.v1 import chat_pb2

K = chat_pb2


def duration(seconds: float) -> duration_pb2.Duration:
    """A protobuf Duration of ``seconds`` (fractions kept to the nanosecond)."""
    out = duration_pb2.Duration()
    out.FromNanoseconds(max(0, int(round(seconds * 1e9))))
    return out


def human_seconds(seconds: float) -> str:
    """``"12 s"``, ``"5 min"``, ``"2 h 30 min"``: how a refusal tells a person when."""
    total = max(1, int(round(seconds)))
    if total < 120:
        return f"{total} s"
    minutes = (total + 59) // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


# --------------------------------------------------------------------------- channel notices


def message_deleted(stream_id: str, message_id: str, target_offset: int) -> chat_pb2.ChatNotice:
    return K.ChatNotice(
        kind=K.CHAT_NOTICE_KIND_MESSAGE_DELETED,
        stream_id=stream_id,
        message_id=message_id,
        target_offset=target_offset,
        text="a message was deleted by a moderator",
    )


def user_muted(stream_id: str, user_id: str, seconds: float) -> chat_pb2.ChatNotice:
    """A timeout (``seconds`` > 0), or its early end (``seconds`` == 0: the user may
    chat again; the contract has no USER_UNMUTED kind)."""
    text = (
        f"{user_id} was timed out for {human_seconds(seconds)}"
        if seconds > 0
        else f"{user_id}'s timeout was lifted"
    )
    return K.ChatNotice(
        kind=K.CHAT_NOTICE_KIND_USER_MUTED,
        stream_id=stream_id,
        user_id=user_id,
        text=text,
        retry_after=duration(seconds),
    )


def user_banned(stream_id: str, user_id: str) -> chat_pb2.ChatNotice:
    return K.ChatNotice(
        kind=K.CHAT_NOTICE_KIND_USER_BANNED,
        stream_id=stream_id,
        user_id=user_id,
        text=f"{user_id} was banned from the chat",
    )


def user_unbanned(stream_id: str, user_id: str) -> chat_pb2.ChatNotice:
    return K.ChatNotice(
        kind=K.CHAT_NOTICE_KIND_USER_UNBANNED,
        stream_id=stream_id,
        user_id=user_id,
        text=f"{user_id} may chat again",
    )


def slow_mode(stream_id: str, seconds: float) -> chat_pb2.ChatNotice:
    """MODE_CHANGED for slow mode: ``retry_after`` carries the interval (0 = off)."""
    text = (
        f"slow mode: one message every {human_seconds(seconds)}"
        if seconds > 0
        else "slow mode is off"
    )
    return K.ChatNotice(
        kind=K.CHAT_NOTICE_KIND_MODE_CHANGED,
        stream_id=stream_id,
        text=text,
        retry_after=duration(seconds),
    )


def followers_only(stream_id: str, enabled: bool) -> chat_pb2.ChatNotice:
    return K.ChatNotice(
        kind=K.CHAT_NOTICE_KIND_MODE_CHANGED,
        stream_id=stream_id,
        text="followers-only chat is on" if enabled else "followers-only chat is off",
    )


def moderator_changed(stream_id: str, user_id: str, added: bool) -> chat_pb2.ChatNotice:
    """MODE_CHANGED naming ``user_id`` (the contract has no moderator kind)."""
    return K.ChatNotice(
        kind=K.CHAT_NOTICE_KIND_MODE_CHANGED,
        stream_id=stream_id,
        user_id=user_id,
        text=f"{user_id} is now a moderator" if added else f"{user_id} is no longer a moderator",
    )


def stream_started(stream_id: str) -> chat_pb2.ChatNotice:
    return K.ChatNotice(
        kind=K.CHAT_NOTICE_KIND_STREAM_STARTED, stream_id=stream_id, text="the stream is live"
    )


def stream_ended(stream_id: str, epoch: str = "") -> chat_pb2.ChatNotice:
    """The channel publication, or (offset 0) what a subscriber to an ended stream gets."""
    return K.ChatNotice(
        kind=K.CHAT_NOTICE_KIND_STREAM_ENDED,
        stream_id=stream_id,
        epoch=epoch,
        text="the stream has ended",
    )


# --------------------------------------------------------------------------- client notices


def slow_consumer(stream_id: str, queue_size: int, last_offset: int) -> chat_pb2.ChatNotice:
    return K.ChatNotice(
        kind=K.CHAT_NOTICE_KIND_SLOW_CONSUMER,
        stream_id=stream_id,
        text=(
            f"disconnected: more than {queue_size} publications were waiting for you; "
            f"subscribe again with recover=true, since_offset={last_offset} and your epoch "
            "to get what you missed"
        ),
    )


def reset(stream_id: str, last_offset: int) -> chat_pb2.ChatNotice:
    """The channel's history was lost under this subscription (a new epoch, or a gap the
    history no longer covers): never a silent gap, the client resubscribes and is told
    ``recovered: false`` when it cannot have what it missed."""
    return K.ChatNotice(
        kind=K.CHAT_NOTICE_KIND_SLOW_CONSUMER,
        stream_id=stream_id,
        text=(
            "disconnected: the chat's history was reset under this subscription; "
            f"subscribe again with recover=true and since_offset={last_offset} "
            "(the reply says whether what you missed can be recovered)"
        ),
    )


def you_are_banned(stream_id: str, user_id: str) -> chat_pb2.ChatNotice:
    return K.ChatNotice(
        kind=K.CHAT_NOTICE_KIND_YOU_ARE_BANNED,
        stream_id=stream_id,
        user_id=user_id,
        text="you were banned from this chat",
    )
