"""UploadService: the whole contract is served; RPCs of later releases answer UNIMPLEMENTED.

The generated base class raises NotImplementedError for every RPC not overridden
here, which the shared interceptor maps to UNIMPLEMENTED with a clear message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from reels.v1 import upload_pb2_grpc

from reels.server import Registration


class UploadService(upload_pb2_grpc.UploadServiceServicer):
    pass


def registrations() -> list[Registration]:
    return [
        (
            upload_pb2_grpc.add_UploadServiceServicer_to_server,
            UploadService(),
            "reels.v1.UploadService",
        )
    ]


async def build() -> tuple[list[Registration], list[Callable[[], Awaitable[None]]]]:
    return registrations(), []
