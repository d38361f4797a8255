"""Likes, comments, shares and follows (engagement release)."""

from __future__ import annotations

from reels.v1 import stream_pb2_grpc


class EngagementRpcs(stream_pb2_grpc.StreamServiceServicer):
    pass
