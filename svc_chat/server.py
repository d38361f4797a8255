"""ChatService: the whole contract is served; RPCs of later releases answer UNIMPLEMENTED.

The generated base class raises NotImplementedError for every RPC not overridden
here, which the shared interceptor maps to UNIMPLEMENTED with a clear message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from reels.v1 import chat_pb2_grpc

from reels.server import Registration


class ChatService(chat_pb2_grpc.ChatServiceServicer):
    pass


def registrations() -> list[Registration]:
    return [
        (chat_pb2_grpc.add_ChatServiceServicer_to_server, ChatService(), "reels.v1.ChatService")
    ]


async def build() -> tuple[list[Registration], list[Callable[[], Awaitable[None]]]]:
    return registrations(), []
