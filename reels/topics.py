"""The topic registry: Kafka topic -> protobuf message type -> key, from events.proto.

Every payload message in ``proto/reels/v1/events.proto`` carries a
``(reels.v1.topic)`` option naming its topic, its key field and, where it has one,
its dead-letter topic. This module reads those options once, so producers,
consumers and tests refer to ``topics.VIDEO_UPLOADED`` and never spell a topic
name; a new topic is a new option in the contract, nothing else.

    event = topics.VIDEO_PUBLISHED.message(video_id=..., ...)
    await enqueue(session, topics.VIDEO_PUBLISHED, event, event_id)   # key from key_field
    payload = topics.VIDEO_PUBLISHED.parse(record.value)              # -> VideoPublished
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError, Message

from reels.v1 import events_pb2


@dataclass(frozen=True)
class Topic:
    """One Kafka topic and the one message type it carries."""

    name: str
    message: type[Message]
    key_field: str
    dead_letter: str = ""
    producer: str = ""
    """The one service that writes this topic (its outbox relay sends the rows)."""
    dead_letter_producer: str = ""

    def key(self, message: Message) -> str:
        """The Kafka key of ``message`` (the value of ``key_field``)."""
        return str(getattr(message, self.key_field))

    def parse(self, payload: bytes) -> Any:
        """Decode a record value; raises ``DecodeError`` for bytes that are not this type."""
        out = self.message()
        out.ParseFromString(payload)
        return out

    @property
    def dead_letter_topic(self) -> Topic:
        """The topic unhandleable records of this one are parked on (same payload)."""
        if not self.dead_letter:
            raise LookupError(f"topic {self.name} has no dead-letter topic in events.proto")
        return Topic(
            self.dead_letter, self.message, self.key_field, producer=self.dead_letter_producer
        )

    def __str__(self) -> str:
        return self.name


def _registry() -> dict[str, Topic]:
    out: dict[str, Topic] = {}
    for desc in events_pb2.DESCRIPTOR.message_types_by_name.values():
        opts = desc.GetOptions()
        if not opts.HasExtension(events_pb2.topic):
            continue
        o = opts.Extensions[events_pb2.topic]
        cls = getattr(events_pb2, desc.name)
        if o.key_field not in desc.fields_by_name:
            raise RuntimeError(f"{desc.name}: key_field {o.key_field!r} is not a field")
        topic = Topic(o.name, cls, o.key_field, o.dead_letter, o.producer, o.dead_letter_producer)
        if topic.name in out:
            raise RuntimeError(f"topic {topic.name} claimed by two messages")
        out[topic.name] = topic
        if topic.dead_letter:
            out[topic.dead_letter] = topic.dead_letter_topic
    return out


REGISTRY: dict[str, Topic] = _registry()


def by_name(name: str) -> Topic:
    """The registered topic called ``name``; KeyError names the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}; known: {sorted(REGISTRY)}") from None


def produced_by(service: str) -> list[Topic]:
    """The topics ``service`` (e.g. "svc_upload") writes, dead-letter topics included."""
    return [t for t in REGISTRY.values() if t.producer == service]


def _of(message: type[Message]) -> Topic:
    for topic in REGISTRY.values():
        if topic.message is message and not topic.name.endswith(".dlq"):
            return topic
    raise LookupError(f"{message.DESCRIPTOR.name} has no (reels.v1.topic) option")


VIDEO_UPLOADED = _of(events_pb2.VideoUploaded)
VIDEO_UPLOADED_DLQ = VIDEO_UPLOADED.dead_letter_topic
VIDEO_PUBLISHED = _of(events_pb2.VideoPublished)
VIDEO_FAILED = _of(events_pb2.VideoFailed)
VIDEO_REJECTED = _of(events_pb2.VideoRejected)
VIDEO_MODERATED = _of(events_pb2.VideoModerated)
VIDEO_EVENTS = _of(events_pb2.VideoEvent)
VIDEO_EVENT_BATCHES = _of(events_pb2.VideoEventBatch)
ENGAGEMENT_EVENTS = _of(events_pb2.EngagementEvent)
STREAMS_EVENTS = _of(events_pb2.StreamLifecycleEvent)
STREAMS_CHAT = _of(events_pb2.ChatMessageEvent)
STREAMS_RECORDINGS = _of(events_pb2.StreamRecorded)
FEED_EXPOSURES = _of(events_pb2.FeedExposure)

__all__ = [
    "DecodeError",
    "ENGAGEMENT_EVENTS",
    "FEED_EXPOSURES",
    "REGISTRY",
    "STREAMS_CHAT",
    "STREAMS_EVENTS",
    "STREAMS_RECORDINGS",
    "Topic",
    "VIDEO_EVENTS",
    "VIDEO_EVENT_BATCHES",
    "VIDEO_FAILED",
    "VIDEO_PUBLISHED",
    "VIDEO_REJECTED",
    "VIDEO_MODERATED",
    "VIDEO_UPLOADED",
    "VIDEO_UPLOADED_DLQ",
    "by_name",
    "produced_by",
]
