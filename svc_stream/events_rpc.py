"""RecordEvents and the analytics RPCs (events release)."""

from __future__ import annotations

from reels.v1 import stream_pb2_grpc


class EventsRpcs(stream_pb2_grpc.StreamServiceServicer):
    pass
