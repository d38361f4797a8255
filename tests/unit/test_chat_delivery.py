"""A publication's wire forms and one subscription's queue rules, without Redis."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from reels.v1 import chat_pb2, events_pb2

from svc_chat.chat import notices
from svc_chat.chat.hub import HubStats
from svc_chat.chat.publication import MESSAGE, NOTICE, Publication, pubsub_frame
from svc_chat.chat.settings import ChatSettings
from svc_chat.chat.subscription import Subscription

K = chat_pb2


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 128:
        out.append(n % 128 + 128)
        n //= 128
    out.append(n)
    return bytes(out)


def test_appending_offset_and_epoch_to_an_encoded_message_sets_them() -> None:
    """The Lua step's premise: protobuf fields appended to an encoding are parsed as set
    (ChatMessage 7/8, ChatNotice 7/8, ChatMessageEvent 10/11)."""
    message = K.ChatMessage(message_id="m1", text="hi").SerializeToString()
    epoch = b"abc123"
    appended = message + b"\x38" + _varint(300) + b"\x42" + _varint(len(epoch)) + epoch
    parsed = K.ChatMessage.FromString(appended)
    assert (parsed.message_id, parsed.text, parsed.offset, parsed.epoch) == (
        "m1",
        "hi",
        300,
        "abc123",
    )
    notice = K.ChatNotice(kind=K.CHAT_NOTICE_KIND_USER_BANNED).SerializeToString()
    assert K.ChatNotice.FromString(notice + b"\x38" + _varint(7)).offset == 7
    event = events_pb2.ChatMessageEvent(stream_id="s").SerializeToString()
    parsed_event = events_pb2.ChatMessageEvent.FromString(
        event + b"\x50" + _varint(2**40) + b"\x5a\x01e"
    )
    assert (parsed_event.offset, parsed_event.epoch) == (2**40, "e")


def _message(offset: int, epoch: str = "e1", text: str = "x") -> Publication:
    payload = K.ChatMessage(
        message_id=f"m{offset}", stream_id="s", text=text, offset=offset, epoch=epoch
    ).SerializeToString()
    return Publication.from_pubsub(pubsub_frame(offset, epoch, MESSAGE, payload))


def _notice(offset: int, notice: chat_pb2.ChatNotice, epoch: str = "e1") -> Publication:
    notice.offset, notice.epoch = offset, epoch
    return Publication.from_pubsub(pubsub_frame(offset, epoch, NOTICE, notice.SerializeToString()))


def test_a_pubsub_frame_with_binary_payload_round_trips() -> None:
    pub = _message(12, text="a:b:\x00c")
    assert (pub.offset, pub.epoch, pub.kind) == (12, "e1", MESSAGE)
    assert pub.frame.message.text == "a:b:\x00c"
    assert pub.chat_frame() is pub.chat_frame()  # built once, shared
    assert pub.chat_frame().message.offset == 12


def test_a_deleted_message_is_read_back_as_a_tombstone_in_its_place() -> None:
    payload = K.ChatMessage(
        message_id="m5", stream_id="s", text="rude", offset=5, epoch="e1"
    ).SerializeToString()
    fields = {b"k": b"m", b"p": payload, b"m": b"m5", b"u": b"bob"}
    kept = Publication.from_entry(b"5-0", fields, deleted=set())
    assert kept.frame.message.text == "rude"
    gone = Publication.from_entry(b"5-0", fields, deleted={5})
    notice = gone.frame.notice
    assert gone.offset == 5 and gone.epoch == "e1"
    assert notice.kind == K.CHAT_NOTICE_KIND_MESSAGE_DELETED
    assert (notice.message_id, notice.target_offset, notice.offset) == ("m5", 5, 5)
    assert "rude" not in str(gone.frame)


def test_human_durations() -> None:
    assert notices.human_seconds(0.2) == "1 s"
    assert notices.human_seconds(90) == "90 s"
    assert notices.human_seconds(600) == "10 min"
    assert notices.human_seconds(9000) == "2 h 30 min"
    assert notices.human_seconds(7 * 86400) == "7 d"


# --------------------------------------------------------------------------- subscription


class _Hub:
    def __init__(self) -> None:
        self.stats = HubStats()
        self.detached: list[Any] = []

    def detach(self, sub: Any) -> None:
        self.detached.append(sub)


def _subscription(queue_size: int = 4, user: str = "u1", last: int = 0) -> Subscription:
    part = SimpleNamespace(
        settings=SimpleNamespace(chat=ChatSettings(queue_size=queue_size)), hub=_Hub()
    )
    sub = Subscription(part, "s", user)  # type: ignore[arg-type]
    sub.epoch, sub.last, sub.creator_id = "e1", last, "creator"
    return sub


async def _drain(sub: Subscription) -> list[chat_pb2.SubscribeChatResponse]:
    out = []
    while True:
        try:
            out.append(await asyncio.wait_for(sub.__anext__(), 1))
        except StopAsyncIteration:
            return out


def _describe(frames: list[chat_pb2.SubscribeChatResponse]) -> list[Any]:
    out: list[Any] = []
    for f in frames:
        if f.HasField("message"):
            out.append(f.message.offset)
        else:
            out.append(K.ChatNoticeKind.Name(f.notice.kind))
    return out


async def test_a_full_queue_is_replaced_by_one_slow_consumer_notice_as_the_last_frame() -> None:
    sub = _subscription(queue_size=3)
    for offset in range(1, 6):
        sub.offer(_message(offset))
    frames = await _drain(sub)
    assert _describe(frames) == ["CHAT_NOTICE_KIND_SLOW_CONSUMER"]
    assert "since_offset=0" in frames[0].notice.text
    assert sub.part.hub.stats.slow_consumers == 1
    assert sub.part.hub.detached == [sub]  # the hub stops offering at once


async def test_a_reader_that_keeps_up_gets_everything_in_order_without_duplicates() -> None:
    sub = _subscription(queue_size=3, last=2)
    for offset in (1, 2, 3):  # 1-2: also in the recovered history
        sub.offer(_message(offset))
    assert (await sub.__anext__()).message.offset == 3
    for offset in (3, 4):  # 3 again (a refill raced the live copy)
        sub.offer(_message(offset))
    assert (await sub.__anext__()).message.offset == 4


async def test_a_ban_of_this_user_ends_the_subscription_at_once() -> None:
    sub = _subscription(user="troll")
    sub.offer(_message(1))
    sub.offer(_notice(2, notices.user_banned("s", "someone-else")))
    sub.offer(_message(3))
    sub.offer(_notice(4, notices.user_banned("s", "troll")))
    sub.offer(_message(5))
    assert _describe(await _drain(sub)) == ["CHAT_NOTICE_KIND_YOU_ARE_BANNED"]


async def test_stream_ended_is_delivered_after_everything_before_it_and_ends_the_iteration() -> (
    None
):
    sub = _subscription()
    sub.offer(_message(1))
    sub.offer(_notice(2, notices.stream_ended("s")))
    sub.offer(_message(3))  # cannot happen in one epoch, and is not delivered
    assert _describe(await _drain(sub)) == [1, "CHAT_NOTICE_KIND_STREAM_ENDED"]


async def test_a_gap_or_a_new_epoch_ends_the_subscription_with_a_reset_never_silently() -> None:
    gap = _subscription()
    gap.offer(_message(1))
    gap.offer(_message(3))
    frames = await _drain(gap)
    assert _describe(frames) == [1, "CHAT_NOTICE_KIND_SLOW_CONSUMER"]
    assert "since_offset=1" in frames[-1].notice.text
    reset = _subscription(last=10)
    reset.offer(_message(1, epoch="e2"))
    assert _describe(await _drain(reset)) == ["CHAT_NOTICE_KIND_SLOW_CONSUMER"]
