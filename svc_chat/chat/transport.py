"""The chat's gRPC ways in: SendMessage, SubscribeChat, Chat, GetChatHistory, ModerateChat.

All five are thin: they name the caller (``reels.auth.current_user``) and call the core
(:class:`svc_chat.chat.part.ChatPart`: ``send``, ``subscribe``, ``history``,
``moderate``), which the WebSocket part calls too, so the three transports share one
set of rules.

* ``SubscribeChat`` is a server stream, which Envoy's gRPC-web filter serves to
  browsers as is.
* ``Chat`` is bidirectional: the first frame must be ``join``; then each ``send`` frame
  is answered by a ``sent`` frame (ChatSendResult: the message, or the status code,
  reason and retry_after SendMessage would have failed with: a refused send never
  ends the call), among the frames SubscribeChat would push. ``ack`` frames are
  recorded (the subscriber's acknowledged offset) and otherwise ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
import jwt
from reels.v1 import chat_pb2

from reels import errors
from reels.auth import current_token, current_user
from reels.interceptors import is_transient
from reels.text import TextError, normalise_text
from svc_chat.chat import notices
from svc_chat.chat.moderation import retry_after_of

if TYPE_CHECKING:
    from svc_chat.chat.part import ChatPart
    from svc_chat.chat.subscription import Subscription

log = logging.getLogger(__name__)

Ctx = grpc.aio.ServicerContext
MAX_USERNAME = 64


def caller() -> str:
    """The authenticated user of this call (UNAUTHENTICATED when there is none)."""
    user = current_user.get()
    if not user:
        raise errors.Unauthenticated("chat needs an authenticated user")
    return user


def display_name(user_id: str) -> str:
    """The caller's display name: the JWT's ``name`` or ``preferred_username`` (already
    verified by the auth interceptor; a single line of at most 64 characters), else
    the user id."""
    raw = current_token.get() or ""
    token = raw.partition(" ")[2].strip() if " " in raw else raw
    if not token:
        return user_id
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return user_id
    if str(claims.get("sub", "")) != user_id:
        return user_id
    for claim in ("name", "preferred_username"):
        value = claims.get(claim)
        if isinstance(value, str) and value:
            try:
                name = normalise_text(value, field=claim, max_chars=MAX_USERNAME, required=False)
            except TextError:
                continue
            if name:
                return name
    return user_id


def send_result(client_message_id: str, exc: BaseException) -> chat_pb2.ChatSendResult:
    """A refused send as the ``sent`` frame of a Chat call."""
    if isinstance(exc, errors.ReelsError):
        code, message = exc.code, exc.message
    elif is_transient(exc):
        code, message = grpc.StatusCode.UNAVAILABLE, "the chat store is unavailable, retry shortly"
    else:
        code, message = grpc.StatusCode.INTERNAL, "internal error; the operators have the details"
    result = chat_pb2.ChatSendResult(
        client_message_id=client_message_id, code=code.value[0], error=message
    )
    retry = retry_after_of(exc)
    if retry is not None:
        result.retry_after.CopyFrom(notices.duration(retry))
    return result


class GrpcTransport:
    """The RPC methods ChatService delegates to the chat part (svc_chat.server)."""

    async def SendMessage(  # noqa: N802
        self: ChatPart, request: chat_pb2.SendMessageRequest, context: Ctx
    ) -> chat_pb2.SendMessageResponse:
        user = caller()
        message = await self.send(
            request.stream_id,
            user,
            request.text,
            request.client_message_id,
            username=display_name(user),
        )
        return chat_pb2.SendMessageResponse(message=message)

    async def SubscribeChat(  # noqa: N802
        self: ChatPart, request: chat_pb2.SubscribeChatRequest, context: Ctx
    ) -> AsyncIterator[chat_pb2.SubscribeChatResponse]:
        user = caller()
        subscription = self.subscribe(
            request.stream_id,
            user,
            recover=request.recover,
            since_offset=request.since_offset,
            epoch=request.epoch,
        )
        async with subscription:
            async for frame in subscription:
                yield frame

    async def GetChatHistory(  # noqa: N802
        self: ChatPart, request: chat_pb2.GetChatHistoryRequest, context: Ctx
    ) -> chat_pb2.GetChatHistoryResponse:
        return await self.history(
            request.stream_id, limit=request.limit, before_offset=request.before_offset
        )

    async def ModerateChat(  # noqa: N802
        self: ChatPart, request: chat_pb2.ModerateChatRequest, context: Ctx
    ) -> chat_pb2.ModerateChatResponse:
        return await self.moderate(request.stream_id, caller(), request)

    async def Chat(  # noqa: N802
        self: ChatPart, request_iterator: AsyncIterator[chat_pb2.ChatRequest], context: Ctx
    ) -> AsyncIterator[chat_pb2.ChatResponse]:
        user = caller()
        username = display_name(user)
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None:
            return
        if first.WhichOneof("frame") != "join":
            raise errors.InvalidArgument(
                "the first frame of a Chat call must be join", [("join", "must come first")]
            )
        join = first.join
        subscription = self.subscribe(
            join.stream_id,
            user,
            recover=join.recover,
            since_offset=join.since_offset,
            epoch=join.epoch,
        )
        results: asyncio.Queue[chat_pb2.ChatResponse] = asyncio.Queue()
        async with subscription:
            reader = asyncio.create_task(
                self._chat_requests(requests, subscription, username, results)
            )
            frame_task = asyncio.create_task(subscription.next_chat())
            result_task: asyncio.Task[Any] = asyncio.create_task(results.get())
            try:
                while True:
                    await asyncio.wait(
                        {frame_task, result_task}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if result_task.done():
                        yield result_task.result()
                        result_task = asyncio.create_task(results.get())
                    if frame_task.done():
                        try:
                            frame = frame_task.result()
                        except StopAsyncIteration:
                            break
                        yield frame
                        frame_task = asyncio.create_task(subscription.next_chat())
                # Answers to sends already being processed still go out.
                while not results.empty():
                    yield results.get_nowait()
            finally:
                for task in (reader, frame_task, result_task):
                    task.cancel()
                for task in (reader, frame_task, result_task):
                    with contextlib.suppress(BaseException):
                        await task

    async def _chat_requests(
        self: ChatPart,
        requests: AsyncIterator[chat_pb2.ChatRequest],
        subscription: Subscription,
        username: str,
        results: asyncio.Queue[chat_pb2.ChatResponse],
    ) -> None:
        async for request in requests:
            which = request.WhichOneof("frame")
            if which == "send":
                send = request.send
                try:
                    message = await self.send(
                        subscription.stream_id,
                        subscription.user_id,
                        send.text,
                        send.client_message_id,
                        username=username,
                    )
                    result = chat_pb2.ChatSendResult(
                        client_message_id=send.client_message_id, message=message
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a refused send never ends the call
                    if not isinstance(exc, errors.ReelsError):
                        log.warning("chat: send on a Chat call failed: %r", exc)
                    result = send_result(send.client_message_id, exc)
                await results.put(chat_pb2.ChatResponse(sent=result))
            elif which == "ack":
                subscription.acked = request.ack.offset
