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

from reels.v1 import common_pb2, stream_pb2

from svc_stream.playback.catalog import PublishedVideo

MAX_BATCH = 500
MAX_CLIENT_EVENT_ID = 128
# Players report the playhead a little past the end (rounding, last frame).
POSITION_TOLERANCE_S = 1.0


@dataclass(frozen=True, slots=True)
class EventLimits:
    """How far an event may stray from "now" and from its video (svc_stream Settings)."""

    future_skew_s: float = 120.0
    """Client clocks drift; a little future is tolerated, more is a broken clock."""
    max_age_s: float = 7 * 86400.0
    """Offline players flush late, but a week-old event no longer describes "now" (and
    the dedupe ledger only remembers event ids for a little longer than this window)."""
    replay_allowance: float = 3.0
    """Looping playback (a reel replays by itself) lets watch time exceed the duration."""


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


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome for one item; ``video`` is set when accepted."""

    index: int
    client_event_id: str
    reason: str = ""
    video: PublishedVideo | None = None
    duplicate: bool = False

    @property
    def accepted(self) -> bool:
        return not self.reason


CatalogGet = Callable[[str], Awaitable[PublishedVideo | None]]


def _check_fields(event: stream_pb2.PlayerEvent, now: float, limits: EventLimits) -> str:
    """Everything that can be judged without the catalog; empty string = fine."""
    if not event.client_event_id:
        return "client_event_id is required"
    if len(event.client_event_id) > MAX_CLIENT_EVENT_ID:
        return f"client_event_id longer than {MAX_CLIENT_EVENT_ID} characters"
    if not event.video_id:
        return "video_id is required"
    if event.type not in KNOWN_TYPES:
        return "type is unspecified or unknown"
    if not event.HasField("occurred_at"):
        return "occurred_at is required"
    ts = event.occurred_at.seconds + event.occurred_at.nanos / 1e9
    if ts > now + limits.future_skew_s:
        return "occurred_at is in the future"
    if ts < now - limits.max_age_s:
        return "occurred_at is too old"
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
) -> list[Verdict]:
    """One verdict per item, in order.

    A repeat of an accepted client_event_id inside the batch is answered accepted
    (idempotent) but flagged ``duplicate`` so it is published once.
    """
    clock = (now or datetime.now(UTC)).timestamp()
    seen: set[str] = set()
    videos: dict[str, PublishedVideo | None] = {}
    verdicts: list[Verdict] = []
    for index, event in enumerate(events):
        cid = event.client_event_id
        reason = _check_fields(event, clock, limits)
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
        verdicts.append(Verdict(index, cid, "", video, duplicate=cid in seen))
        seen.add(cid)
    return verdicts
