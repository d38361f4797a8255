"""Publish a real video the way svc_transcode does, for playback tests.

The pipeline runs on a generated clip, its outputs are copied into the object store
under ``videos/<video_id>/`` and the ``video.published`` event svc_transcode would send
is built from the pipeline's result (keys relative to the store).
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

from google.protobuf import duration_pb2, timestamp_pb2
from reels.v1 import common_pb2, events_pb2

from reels import topics
from reels.events import EventProducer
from svc_transcode.pipeline import TranscodeResult, transcode
from tests.hls_check import assert_hls_valid
from tests.media import make_clip


async def transcode_ladder(root: Path) -> tuple[Path, TranscodeResult]:
    """A 2 s 1920x1080 clip transcoded to the full ladder (1080p/720p/480p/360p)."""
    await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
    src = await make_clip(root / "src.mp4", width=1920, height=1080, seconds=2)
    out = root / "ladder"
    result = await transcode(src, out, preset="ultrafast")
    await assert_hls_valid(out)  # every ladder a test publishes meets RFC 8216
    return out, result


def publish_to_store(
    ladder: Path,
    result: TranscodeResult,
    store_root: Path,
    video_id: str,
    *,
    drop: tuple[str, ...] = (),
) -> events_pb2.VideoPublished:
    """Copy the outputs to ``videos/<video_id>/`` (minus the ``drop`` rungs) and return
    the event that announces them."""
    prefix = f"videos/{video_id}"
    shutil.copytree(ladder, store_root / prefix)
    for rung in drop:
        shutil.rmtree(store_root / prefix / rung)
    event_id = str(uuid.uuid4())
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(int(result.duration_s * 1e9))
    published_at = timestamp_pb2.Timestamp()
    published_at.GetCurrentTime()
    return events_pb2.VideoPublished(
        meta=events_pb2.EventMeta(event_id=event_id, producer="tests"),
        video_id=video_id,
        creator_id="creator-1",
        duration=duration,
        width=result.width,
        height=result.height,
        renditions=[
            common_pb2.Rendition(
                name=r.name,
                width=r.width,
                height=r.height,
                bandwidth_bps=r.bandwidth,
                average_bandwidth_bps=r.average_bandwidth,
                codecs=r.codecs,
                frame_rate=r.frame_rate,
                playlist_key=f"{prefix}/{r.playlist}",
            )
            for r in result.renditions
        ],
        thumbnail_key=f"{prefix}/{result.thumbnail}",
        preview_key=f"{prefix}/{result.preview}",
        # What svc_transcode publishes (publish.py): the WebVTT track, which names the sprite.
        storyboard_key=f"{prefix}/{result.storyboard_vtt}",
        master_playlist_key=f"{prefix}/{result.master_playlist}",
        hashtags=["test"],
        published_at=published_at,
        title="a test reel",
    )


async def send_published(bootstrap: str, event: events_pb2.VideoPublished) -> None:
    """Send the event as svc_transcode's outbox relay would (event id in the headers)."""
    async with EventProducer(bootstrap) as producer:
        await producer.send(
            topics.VIDEO_PUBLISHED,
            event.video_id,
            event.SerializeToString(),
            {"event-id": event.meta.event_id},
        )
