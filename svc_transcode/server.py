"""TranscodeService: the whole contract is served; RPCs of later releases answer UNIMPLEMENTED.

The generated base class raises NotImplementedError for every RPC not overridden
here, which the shared interceptor maps to UNIMPLEMENTED with a clear message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from reels.v1 import transcode_pb2_grpc

from reels.server import Registration


class TranscodeService(transcode_pb2_grpc.TranscodeServiceServicer):
    pass


def registrations() -> list[Registration]:
    return [
        (
            transcode_pb2_grpc.add_TranscodeServiceServicer_to_server,
            TranscodeService(),
            "reels.v1.TranscodeService",
        )
    ]


async def build() -> tuple[list[Registration], list[Callable[[], Awaitable[None]]]]:
    return registrations(), []
