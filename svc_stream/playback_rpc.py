"""GetPlayback and GetManifest (playback release)."""

from __future__ import annotations

from reels.v1 import stream_pb2_grpc


class PlaybackRpcs(stream_pb2_grpc.StreamServiceServicer):
    pass
