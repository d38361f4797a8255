"""One publication of a chat channel, as it travels: the pub/sub frame, the history entry,
the proto a subscriber gets.

A publication is a serialized ``ChatMessage`` (kind ``m``) or ``ChatNotice`` (kind
``n``) whose ``offset``, ``epoch`` (and for messages ``sent_at``) were appended by the
publishing Lua step (svc_chat.chat.channel). Wire formats, both binary-safe:

* pub/sub: ``b"<offset>:<epoch>:<kind>:" + payload`` (the header lets the hub order and
  check a publication without decoding it twice);
* history stream entry ``<offset>-0`` with fields ``k`` (kind), ``p`` (payload), ``m``
  (message id, messages only) and ``u`` (author, messages only).

Each publication is decoded once per instance and its frame shared by every local
subscriber (frames are never mutated after decoding).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from reels.v1 import chat_pb2

from svc_chat.chat import notices

MESSAGE = "m"
NOTICE = "n"

_ENDS = chat_pb2.CHAT_NOTICE_KIND_STREAM_ENDED
_BANNED = chat_pb2.CHAT_NOTICE_KIND_USER_BANNED


class Publication:
    """A decoded publication: its position (offset, epoch) and the frame to deliver."""

    __slots__ = ("offset", "epoch", "kind", "frame", "_chat_frame")

    def __init__(
        self, offset: int, epoch: str, kind: str, frame: chat_pb2.SubscribeChatResponse
    ) -> None:
        self.offset = offset
        self.epoch = epoch
        self.kind = kind
        self.frame = frame
        self._chat_frame: chat_pb2.ChatResponse | None = None

    @classmethod
    def decode(cls, offset: int, epoch: str, kind: str, payload: bytes) -> Publication:
        frame = chat_pb2.SubscribeChatResponse()
        if kind == MESSAGE:
            frame.message.ParseFromString(payload)
        else:
            frame.notice.ParseFromString(payload)
        return cls(offset, epoch, kind, frame)

    @classmethod
    def from_pubsub(cls, data: bytes) -> Publication:
        """Decode a pub/sub frame; ValueError when it is not one."""
        offset, epoch, kind, payload = data.split(b":", 3)
        return cls.decode(int(offset), epoch.decode(), kind.decode(), payload)

    @classmethod
    def from_entry(
        cls, entry_id: bytes | str, fields: Mapping[bytes, bytes], deleted: Iterable[int] = ()
    ) -> Publication:
        """Decode a history entry. A message whose offset is in ``deleted`` comes back as
        a tombstone in its place (a MESSAGE_DELETED notice at its own offset whose
        ``target_offset`` is itself): its text is never served again, and the offsets
        stay contiguous for recovery."""
        raw_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        offset = int(raw_id.split("-", 1)[0])
        kind = fields[b"k"].decode()
        pub = cls.decode(offset, "", kind, fields[b"p"])
        pub.epoch = pub.frame.message.epoch if kind == MESSAGE else pub.frame.notice.epoch
        if kind == MESSAGE and offset in deleted:
            message = pub.frame.message
            tombstone = notices.message_deleted(message.stream_id, message.message_id, offset)
            tombstone.offset, tombstone.epoch = offset, pub.epoch
            pub = cls(offset, pub.epoch, NOTICE, chat_pb2.SubscribeChatResponse(notice=tombstone))
        return pub

    @property
    def ends_stream(self) -> bool:
        """A STREAM_ENDED publication: every subscription ends after delivering it."""
        return self.kind == NOTICE and self.frame.notice.kind == _ENDS

    @property
    def banned_user(self) -> str:
        """The user a USER_BANNED publication bans ("" for anything else)."""
        if self.kind == NOTICE and self.frame.notice.kind == _BANNED:
            return self.frame.notice.user_id
        return ""

    def chat_frame(self) -> chat_pb2.ChatResponse:
        """The same publication as a ``Chat`` (bidi) frame, built once and shared."""
        if self._chat_frame is None:
            out = chat_pb2.ChatResponse()
            if self.kind == MESSAGE:
                out.message.CopyFrom(self.frame.message)
            else:
                out.notice.CopyFrom(self.frame.notice)
            self._chat_frame = out
        return self._chat_frame


def pubsub_frame(offset: int, epoch: str, kind: str, payload: bytes) -> bytes:
    """What the Lua step publishes (kept here, beside its decoder, for the tests)."""
    return f"{offset}:{epoch}:{kind}:".encode() + payload


def chat_frame_of(frame: chat_pb2.SubscribeChatResponse) -> chat_pb2.ChatResponse:
    """A subscription frame (joined, message, notice) as a ``Chat`` frame."""
    out = chat_pb2.ChatResponse()
    which = frame.WhichOneof("event")
    if which == "message":
        out.message.CopyFrom(frame.message)
    elif which == "notice":
        out.notice.CopyFrom(frame.notice)
    elif which == "joined":
        out.joined.CopyFrom(frame.joined)
    return out
