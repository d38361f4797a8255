"""ChatService: each RPC is served by the part that owns it (svc_chat.parts).

* streams: CreateStream, RotateStreamKey, StartStream, EndStream, GetStream,
  ListStreams, ReportViewing;
* chat: SendMessage, SubscribeChat, Chat, GetChatHistory, ModerateChat;
* ws: CreateChatTicket.

A part that does not implement an RPC yet lets the generated base class raise
NotImplementedError, which the shared interceptor maps to UNIMPLEMENTED.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from reels.v1 import chat_pb2, chat_pb2_grpc

from svc_chat.parts import Context

Ctx = grpc.aio.ServicerContext

_BASE = chat_pb2_grpc.ChatServiceServicer


def _owner(part: Any, name: str) -> Any:
    method = getattr(part, name, None)
    if method is None:
        raise NotImplementedError(f"ChatService.{name} is not implemented yet")
    return method


class ChatService(chat_pb2_grpc.ChatServiceServicer):
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------------ streams

    async def CreateStream(self, request: Any, context: Ctx) -> Any:  # noqa: N802
        return await _owner(self.ctx.streams, "CreateStream")(request, context)

    async def RotateStreamKey(self, request: Any, context: Ctx) -> Any:  # noqa: N802
        return await _owner(self.ctx.streams, "RotateStreamKey")(request, context)

    async def StartStream(self, request: Any, context: Ctx) -> Any:  # noqa: N802
        return await _owner(self.ctx.streams, "StartStream")(request, context)

    async def EndStream(self, request: Any, context: Ctx) -> Any:  # noqa: N802
        return await _owner(self.ctx.streams, "EndStream")(request, context)

    async def GetStream(self, request: Any, context: Ctx) -> Any:  # noqa: N802
        return await _owner(self.ctx.streams, "GetStream")(request, context)

    async def ListStreams(self, request: Any, context: Ctx) -> Any:  # noqa: N802
        return await _owner(self.ctx.streams, "ListStreams")(request, context)

    async def ReportViewing(self, request: Any, context: Ctx) -> Any:  # noqa: N802
        return await _owner(self.ctx.streams, "ReportViewing")(request, context)

    # ------------------------------------------------------------------ chat

    async def SendMessage(self, request: Any, context: Ctx) -> Any:  # noqa: N802
        return await _owner(self.ctx.chat, "SendMessage")(request, context)

    async def SubscribeChat(  # noqa: N802
        self, request: chat_pb2.SubscribeChatRequest, context: Ctx
    ) -> AsyncIterator[chat_pb2.SubscribeChatResponse]:
        async for frame in _owner(self.ctx.chat, "SubscribeChat")(request, context):
            yield frame

    async def Chat(  # noqa: N802
        self, request_iterator: AsyncIterator[chat_pb2.ChatRequest], context: Ctx
    ) -> AsyncIterator[chat_pb2.ChatResponse]:
        async for frame in _owner(self.ctx.chat, "Chat")(request_iterator, context):
            yield frame

    async def GetChatHistory(self, request: Any, context: Ctx) -> Any:  # noqa: N802
        return await _owner(self.ctx.chat, "GetChatHistory")(request, context)

    async def ModerateChat(self, request: Any, context: Ctx) -> Any:  # noqa: N802
        return await _owner(self.ctx.chat, "ModerateChat")(request, context)

    # ------------------------------------------------------------------ ws

    async def CreateChatTicket(self, request: Any, context: Ctx) -> Any:  # noqa: N802
        return await _owner(self.ctx.ws, "CreateChatTicket")(request, context)
