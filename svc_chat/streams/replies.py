"""``reels.v1.LiveStream`` messages from stored streams and live viewer counts.

The stream key is in a reply only when the caller passes it (CreateStream and
RotateStreamKey); nothing stored can produce it (only its hash is kept).
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2
from reels.v1 import chat_pb2

from svc_chat.models import LiveStream
from svc_chat.streams.events import duration_s
from svc_chat.streams.lifecycle import State
from svc_chat.streams.settings import StreamSettings
from svc_chat.streams.viewers import ViewerCounts


def _ts(value: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def stream_proto(
    stream: LiveStream,
    settings: StreamSettings,
    counts: ViewerCounts | None = None,
    *,
    stream_key: str = "",
    now: datetime | None = None,
) -> chat_pb2.LiveStream:
    """The client's view of ``stream``.

    Viewer counts: LIVE, from ``counts`` (Redis, every instance); ENDED, as frozen at
    the end; CREATED, zero. ``duration``: LIVE, since the start; ENDED, start to end
    (0 if it never went live); CREATED, 0.
    """
    state = State[stream.state]
    out = chat_pb2.LiveStream(
        stream_id=stream.stream_id,
        creator_id=stream.creator_id,
        title=stream.title,
        description=stream.description,
        tags=list(stream.tags),
        state=state.value,  # type: ignore[arg-type]
        ingest_url=settings.ingest_url,
        stream_key=stream_key,
        playback_url=settings.playback_url.replace("{stream_id}", stream.stream_id),
        created_at=_ts(stream.created_at),
        peak_viewer_count=stream.peak_viewer_count,
        unique_viewer_count=stream.unique_viewer_count,
        recording_video_id=stream.recording_video_id or "",
    )
    if stream.started_at is not None:
        out.started_at.CopyFrom(_ts(stream.started_at))
    if stream.ended_at is not None:
        out.ended_at.CopyFrom(_ts(stream.ended_at))
    seconds = 0.0
    if state == State.LIVE:
        seconds = duration_s(stream.started_at, now or datetime.now(UTC))
        if counts is not None:
            out.viewer_count = counts.now
            out.peak_viewer_count = max(stream.peak_viewer_count, counts.peak)
            out.unique_viewer_count = max(stream.unique_viewer_count, counts.unique)
    elif state == State.ENDED:
        seconds = duration_s(stream.started_at, stream.ended_at)
    out.duration.SetInParent()  # present even when 0: "0s" in JSON
    out.duration.FromNanoseconds(int(round(seconds * 1e9)))
    return out
