"""Per-item validation of player events: one bad item never sinks its batch.

Players batch events offline and retry, so a batch mixes good and bad items. Each
item is judged alone against the catalog (is the video real, how long is it) and
the clock; the answer names the reason so a client developer can fix the player.
The checks are pure (no I/O besides the catalog lookup) so they are cheap enough to
run on every event of a 500-item batch.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from google.protobuf import timestamp_pb2
from reels.v1 import common_pb2, stream_pb2

from svc_stream.playback.catalog import PublishedVideo

MAX_BATCH = 500
MAX_CLIENT_EVENT_ID = 128
# Every string field of an item is bounded and free of control characters, each checked
# alone so that one bad item is rejected with its reason and the rest recorded (a NUL
# that reached the catalog's Postgres lookup used to fail the whole batch). Identifiers
# are what players generate (UUIDs, ULIDs, counters): printable, no whitespace.
MAX_VIDEO_ID = 64  # our ids are UUIDs (36); room for other id shapes, not for payloads
MAX_SESSION_ID = 128
MAX_RENDITION = 32  # "1080p", "720p60", "audio-en-stereo"
# (field, longest, required): the free-form identifier fields, checked in this order.
ID_FIELDS: tuple[tuple[str, int, bool], ...] = (
    ("client_event_id", MAX_CLIENT_EVENT_ID, True),
    ("video_id", MAX_VIDEO_ID, True),
    ("session_id", MAX_SESSION_ID, False),
    ("rendition", MAX_RENDITION, False),
)
# Players report the playhead a little past the end (rounding, last frame).
POSITION_TOLERANCE_S = 1.0


@dataclass(frozen=True, slots=True)
class EventLimits:
    """How far an event may stray from "now" and from its video (svc_stream Settings).

    An event's time is *established* by the server (see :func:`establish_time`): with
    the batch's ``sent_at`` the client clock's error is measured and taken out, so these
    limits judge the corrected time; without it (older clients) the raw ``occurred_at``
    is judged against the server clock with the wider ``uncorrected_future_s``.
    """

    future_skew_s: float = 120.0
    """How far an event's occurred_at may lie after its own batch's ``sent_at`` (both on
    the client clock: the player stamps events and batch within the same second, so
    more is a client bug)."""
    max_age_s: float = 7 * 86400.0
    """Offline players flush late, but a week-old event no longer describes "now" (and
    the dedupe ledger only remembers event ids for a little longer than this window).
    Judged on the corrected time."""
    replay_allowance: float = 3.0
    """Looping playback (a reel replays by itself) lets watch time exceed the duration."""
    uncorrected_future_s: float = 26 * 3600.0
    """Without ``sent_at``: how far ahead of the server an event may be and still be
    counted (at the receive time). 26 h covers a phone whose wall clock is right but
    whose time zone is wrong (UTC-12 .. UTC+14); beyond that it is a broken clock."""


DEFAULT_LIMITS = EventLimits()

# Event id namespace: uuid5(NS, user \x00 client_event_id) is the same on every retry.
EVENT_ID_NAMESPACE = uuid.UUID("6f1d6a52-8a34-4f57-9a1e-2f8f3d1c0b7e")
KNOWN_TYPES = frozenset(v for v in common_pb2.EventType.values() if v != 0)


_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


def event_id_for(user_id: str, client_event_id: str) -> str:
    """The deterministic event id that makes every retry of one client event the same event.

    ``str(uuid.uuid5(EVENT_ID_NAMESPACE, user + "\\x00" + client_event_id))``, computed
    without building a UUID object (this runs for every accepted event).
    """
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + f"{user_id}\x00{client_event_id}".encode()).digest()[:16]  # noqa: S324 - UUIDv5 is SHA-1 by definition
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def batch_event_id(event_ids: Sequence[str]) -> str:
    """The id of a ``VideoEventBatch`` record: ``"batch:" + sha256 hex`` of its items'
    event ids in order (NUL-separated), so the retry of a RecordEvents call writes a
    record with the same id. Consumers count the items by their own ids; this one
    names the record (the ``event-id`` header, logs, dead letters)."""
    digest = hashlib.sha256("\x00".join(event_ids).encode()).hexdigest()
    return f"batch:{digest}"


class Verdict(NamedTuple):
    """The outcome for one item; ``video`` and ``occurred_at`` are set when accepted.

    ``occurred_at`` is the established time (epoch seconds, server clock) the event is
    counted at; ``occurred_at_nanos`` is the same as an exact integer. A named tuple:
    one is made per item of every RecordEvents call (a frozen dataclass costs several
    times as much to build).
    """

    index: int
    client_event_id: str
    reason: str = ""
    video: PublishedVideo | None = None
    duplicate: bool = False
    occurred_at_nanos: int = 0

    @property
    def accepted(self) -> bool:
        return not self.reason

    @property
    def occurred_at(self) -> float:
        return self.occurred_at_nanos / 1e9


CatalogGet = Callable[[str], Awaitable[PublishedVideo | None]]

_NS = 1_000_000_000


def _nanos(stamp: timestamp_pb2.Timestamp) -> int:
    return stamp.seconds * _NS + stamp.nanos


@dataclass(frozen=True, slots=True)
class Clock:
    """How one batch's event times are established.

    ``offset_nanos`` = server receive time - client ``sent_at``: added to every
    occurred_at of the batch, it turns the client clock into the server's (the upload
    latency, usually well under a second, is the only error left). ``sent_nanos`` is
    None for a batch without ``sent_at``: then there is no offset to apply.
    """

    received_nanos: int
    sent_nanos: int | None = None

    @property
    def offset_nanos(self) -> int:
        return 0 if self.sent_nanos is None else self.received_nanos - self.sent_nanos

    @classmethod
    def for_batch(cls, received: datetime, sent_at: timestamp_pb2.Timestamp | None) -> Clock:
        received_nanos = round(received.timestamp() * 1e6) * 1000
        if sent_at is None or not 0 <= sent_at.nanos < _NS:
            return cls(received_nanos)
        return cls(received_nanos, _nanos(sent_at))


def establish_time(
    occurred_at: timestamp_pb2.Timestamp, clock: Clock, limits: EventLimits
) -> tuple[int, str]:
    """(established time in epoch nanoseconds, rejection reason or "").

    With ``sent_at``: corrected = occurred_at + (received - sent_at), never later than
    the receive time (an event cannot happen after we received it). A clock that runs
    hours fast or slow is thereby counted at the right time, and so is an offline queue
    flushed days later (its events keep their distance to the send). The event must not
    lie more than ``future_skew_s`` after its own batch's sent_at (client bug), and its
    corrected time must be within ``max_age_s``.

    Without ``sent_at`` (older clients): occurred_at as it is, against the server clock.
    Up to ``uncorrected_future_s`` ahead is a skewed clock: counted at the receive time.
    Further ahead (year 2100) or older than ``max_age_s`` (year 1970) is rejected.
    """
    raw = _nanos(occurred_at)
    received = clock.received_nanos
    if clock.sent_nanos is not None:
        if raw > clock.sent_nanos + limits.future_skew_s * _NS:
            return 0, "occurred_at is after the batch's sent_at (both are the client's clock)"
        established = min(received, raw + clock.offset_nanos)
        if established < received - limits.max_age_s * _NS:
            return 0, (
                f"occurred_at is too old: {(received - established) / 86400 / _NS:.1f} days "
                f"before it was sent (the limit is {limits.max_age_s / 86400:g} days)"
            )
        return established, ""
    if raw > received + limits.uncorrected_future_s * _NS:
        return 0, (
            "occurred_at is in the future by more than "
            f"{limits.uncorrected_future_s / 3600:g} h and the batch has no sent_at "
            "to correct the client clock with"
        )
    if raw < received - limits.max_age_s * _NS:
        return 0, (
            f"occurred_at is too old (more than {limits.max_age_s / 86400:g} days before "
            "the server received it; send sent_at if the client clock is wrong)"
        )
    return min(raw, received), ""


def check_identifier(name: str, value: str, longest: int, required: bool) -> str:
    """One identifier-like string field: present if required, at most ``longest``
    characters, only printable characters and no whitespace; "" = fine."""
    if not value:
        return f"{name} is required" if required else ""
    if len(value) > longest:
        return f"{name} longer than {longest} characters"
    if not value.isprintable() or " " in value:
        # isprintable() is False for controls (NUL...), format characters (bidi
        # overrides, zero-width), separators, surrogates and unassigned code points.
        # The one whitespace character it lets through is U+0020 (checked over every
        # code point: no other c has c.isprintable() and c.isspace()), hence " " in
        # value instead of a per-character isspace() loop (the hot path of RecordEvents).
        bad = next(ch for ch in value if not ch.isprintable() or ch.isspace())
        return (
            f"{name} contains a control, invisible or whitespace character "
            f"(U+{ord(bad):04X} at character {value.index(bad) + 1})"
        )
    return ""


def _check_fields(event: stream_pb2.PlayerEvent) -> str:
    """Everything that can be judged without the catalog and the clock; "" = fine."""
    for name, longest, required in ID_FIELDS:
        why = check_identifier(name, getattr(event, name), longest, required)
        if why:
            return why
    if event.type not in KNOWN_TYPES:
        return "type is unspecified or unknown"
    if not event.HasField("occurred_at"):
        return "occurred_at is required"
    if not 0 <= event.occurred_at.nanos < _NS:
        return "occurred_at is not a valid timestamp"
    for name in ("position_seconds", "watch_seconds"):
        value = getattr(event, name)
        if not math.isfinite(value) or value < 0:
            return f"{name} must be a finite, non-negative number"
    country = event.country
    if country and not (len(country) == 2 and country.isascii() and country.isalpha()):
        return "country must be an ISO 3166-1 alpha-2 code"
    return ""


def _check_against_video(
    event: stream_pb2.PlayerEvent, video: PublishedVideo, limits: EventLimits
) -> str:
    duration = video.duration_s
    if duration > 0:
        if event.position_seconds > duration + POSITION_TOLERANCE_S:
            return "position_seconds is beyond the video's duration"
        if event.watch_seconds > duration * limits.replay_allowance + POSITION_TOLERANCE_S:
            return "watch_seconds is impossible for the video's duration"
    return ""


async def validate_batch(
    events: Sequence[stream_pb2.PlayerEvent],
    catalog_get: CatalogGet,
    *,
    now: datetime | None = None,
    limits: EventLimits = DEFAULT_LIMITS,
    sent_at: timestamp_pb2.Timestamp | None = None,
) -> list[Verdict]:
    """One verdict per item, in order; an accepted one carries its established time.

    ``now`` is the server's receive time, ``sent_at`` the batch's client send time
    (None when the client did not send one). A repeat of an accepted client_event_id
    inside the batch is answered accepted (idempotent) but flagged ``duplicate`` so it
    is published once.
    """
    clock = Clock.for_batch(now or datetime.now(UTC), sent_at)
    seen: set[str] = set()
    videos: dict[str, PublishedVideo | None] = {}
    verdicts: list[Verdict] = []
    for index, event in enumerate(events):
        cid = event.client_event_id
        reason = _check_fields(event)
        if reason.startswith("client_event_id"):
            cid = ""  # never echo a malformed id (100 KB, NUL...): the index names the item
        established = 0
        if not reason:
            established, reason = establish_time(event.occurred_at, clock, limits)
        video: PublishedVideo | None = None
        if not reason:
            if event.video_id not in videos:
                videos[event.video_id] = await catalog_get(event.video_id)
            video = videos[event.video_id]
            reason = (
                "unknown video" if video is None else _check_against_video(event, video, limits)
            )
        if reason:
            verdicts.append(Verdict(index, cid, reason))
            continue
        verdicts.append(
            Verdict(index, cid, "", video, duplicate=cid in seen, occurred_at_nanos=established)
        )
        seen.add(cid)
    return verdicts
