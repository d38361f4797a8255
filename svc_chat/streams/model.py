"""What the other parts of svc_chat (chat, ws) and the RTMP ingest know of a stream."""

from __future__ import annotations

from dataclasses import dataclass

from reels.v1 import common_pb2


@dataclass(frozen=True)
class StreamInfo:
    """The little a hot path needs: who owns the stream and where it is in its life.

    ``state`` is a ``reels.v1.LiveStreamState`` value (``common_pb2.LIVE_STREAM_STATE_*``).
    """

    stream_id: str
    creator_id: str
    title: str
    state: int

    @property
    def live(self) -> bool:
        return self.state == common_pb2.LIVE_STREAM_STATE_LIVE

    @property
    def ended(self) -> bool:
        return self.state == common_pb2.LIVE_STREAM_STATE_ENDED
