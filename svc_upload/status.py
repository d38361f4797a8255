"""The video status state machine and the per-video watch channel.

``uploading -> processing -> published | failed(reason) | in_review``, ``in_review
-> published | failed`` (a moderator's decision, svc_upload.review), and ``deleted``
from anywhere. Reports from svc_transcode arrive at least once and possibly late, so a
repeated report is a no-op and a report that would move a video backwards out of a
terminal state is refused, with one exception: ``failed -> processing`` is how a
re-queued job starts over.

Every committed change is published (after commit) on a Redis channel per video;
WatchVideoStatus subscribes to it and sends a snapshot first, so a watcher sees
each stage/percent change without polling the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import datetime

import redis.asyncio as aioredis

from reels import errors
from reels.cache import key
from svc_upload.models import VideoStatus

log = logging.getLogger(__name__)

TERMINAL = frozenset({VideoStatus.PUBLISHED, VideoStatus.FAILED, VideoStatus.DELETED})

# (from, to) pairs that change the status; same-status updates are handled apart.
ALLOWED: frozenset[tuple[VideoStatus, VideoStatus]] = frozenset(
    {
        (VideoStatus.UPLOADING, VideoStatus.PROCESSING),
        (VideoStatus.UPLOADING, VideoStatus.FAILED),
        (VideoStatus.PROCESSING, VideoStatus.PUBLISHED),
        (VideoStatus.PROCESSING, VideoStatus.FAILED),
        (VideoStatus.FAILED, VideoStatus.PROCESSING),  # a re-queued transcode job
        # NSFW moderation (svc_upload.review): held, then a moderator's decision.
        (VideoStatus.PROCESSING, VideoStatus.IN_REVIEW),
        (VideoStatus.IN_REVIEW, VideoStatus.PUBLISHED),
        (VideoStatus.IN_REVIEW, VideoStatus.FAILED),
        *((s, VideoStatus.DELETED) for s in VideoStatus if s != VideoStatus.DELETED),
    }
)


def check_transition(current: VideoStatus, target: VideoStatus, video_id: str) -> bool:
    """True when the status changes, False for a repeat; FailedPrecondition when illegal.

    A repeat of the current status is allowed for ``processing`` (progress) and is an
    idempotent no-op for the terminal states.
    """
    if current == target:
        return False
    if (current, target) not in ALLOWED:
        raise errors.FailedPrecondition(
            f"video {video_id} is {current.value}; it cannot become {target.value}"
        )
    return True


@dataclass(frozen=True)
class StatusSnapshot:
    """What a watcher sees; published as JSON on the video's channel."""

    video_id: str
    status: str
    stage: str
    percent: float
    failure_reason: str
    updated_at: str  # ISO 8601; orders snapshots that race on the channel

    @property
    def terminal(self) -> bool:
        return self.status in {s.value for s in TERMINAL}

    def visible(self) -> tuple[str, str, float, str]:
        """The fields whose change is worth a message to watchers."""
        return (self.status, self.stage, self.percent, self.failure_reason)

    def updated(self) -> datetime:
        return datetime.fromisoformat(self.updated_at)


def channel_name(video_id: str, prefix: str | None = None) -> str:
    """The video's Redis channel; ``prefix`` is the platform's key prefix (None: the
    process default, ``reels.cache.key_prefix``)."""
    if prefix is None:
        return key("video-status", video_id)
    return f"{prefix}video-status:{video_id}"


class StatusChannel:
    """Publishes status snapshots and lets a watcher follow one video's channel."""

    def __init__(self, redis: aioredis.Redis, prefix: str | None = None) -> None:
        self.redis = redis
        self.prefix = prefix

    async def publish(self, snap: StatusSnapshot) -> None:
        """Best effort: watchers also re-read the database periodically, so a lost
        message delays a watcher a little but never leaves it stuck."""
        try:
            await self.redis.publish(
                channel_name(snap.video_id, self.prefix), json.dumps(asdict(snap))
            )
        except Exception as exc:  # noqa: BLE001 - the change is committed; watchers recover
            log.warning("status publish for %s failed: %s", snap.video_id, exc)

    @contextlib.asynccontextmanager
    async def subscribe(self, video_id: str) -> AsyncIterator[_Subscription]:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(channel_name(video_id, self.prefix))
        try:
            yield _Subscription(pubsub)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.unsubscribe()
            with contextlib.suppress(Exception):
                await pubsub.aclose()


class _Subscription:
    def __init__(self, pubsub: aioredis.client.PubSub) -> None:
        self.pubsub = pubsub

    async def next(self, wait_s: float) -> StatusSnapshot | None:
        """The next snapshot, or None when ``wait_s`` passes without one."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return None
            message = await self.pubsub.get_message(timeout=left)
            if message is None or message.get("type") != "message":
                continue
            try:
                return StatusSnapshot(**json.loads(message["data"]))
            except (TypeError, ValueError) as exc:
                log.warning("ignoring malformed status message: %s", exc)
