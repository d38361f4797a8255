"""svc_chat's ws part (see svc_chat.parts): the chat WebSocket and its tickets.

* :mod:`svc_chat.ws.server` serves ``GET /api/v1/streams/{stream_id}/chat/ws`` on its
  own port (``REELS_CHAT_WS_PORT``, behind Envoy's ``/api/v1/streams/`` route) on the
  chat core (``ctx.chat``): the same subscription and send as SubscribeChat and
  SendMessage, spoken as JSON (:mod:`svc_chat.ws.protocol`);
* :mod:`svc_chat.ws.tickets` issues the single-use tickets ``CreateChatTicket`` returns
  (browsers cannot set an Authorization header on a WebSocket).
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from reels.v1 import chat_pb2, common_pb2

from reels import errors
from reels.auth import AuthError, TokenVerifier, current_token, current_user
from svc_chat.parts import Context
from svc_chat.ws.protocol import display_name
from svc_chat.ws.server import ChatSocketServer
from svc_chat.ws.tickets import TicketBook, Viewer

log = logging.getLogger(__name__)


class WsPart:
    """Starts and stops the WebSocket server; serves CreateChatTicket."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.settings = ctx.settings.ws
        auth = ctx.settings.platform.auth
        self.verifier = TokenVerifier(auth) if auth.required else None
        self.tickets = TicketBook(
            ctx.redis, ctx.settings.platform.redis_prefix, self.settings.ticket_ttl_seconds
        )
        self.server: ChatSocketServer | None = None
        self.port = 0
        """The WebSocket port actually bound (``settings.ws.port`` may be 0)."""

    async def start(self) -> None:
        self.server = ChatSocketServer(self.ctx.chat, self.tickets, self.verifier, self.settings)
        self.port = await self.server.start()
        log.info("chat WebSocket", extra={"fields": {"port": self.port}})

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def _viewer(self) -> Viewer:
        """The caller, with the display name from its JWT (the interceptor verified it
        already; verifying again costs well under a millisecond and keeps the claims
        honest)."""
        user = current_user.get()
        if not user:
            raise errors.Unauthenticated("sign in to chat: no authenticated user")
        claims: dict[str, object] = {}
        token = current_token.get()
        if self.verifier is not None and token:
            try:
                claims = self.verifier.verify(token).claims
            except AuthError as exc:
                raise errors.Unauthenticated(str(exc)) from exc
        return Viewer(user, display_name(claims, user))

    async def _check_stream(self, stream_id: str) -> None:
        info = await self.ctx.streams.info(stream_id)
        if info is None:
            raise errors.NotFound("stream", stream_id)
        if info.state == common_pb2.LIVE_STREAM_STATE_ENDED:
            raise errors.FailedPrecondition(
                f"stream {stream_id} has ENDED: its chat is closed (GetChatHistory still reads it)"
            )

    async def CreateChatTicket(  # noqa: N802
        self, request: chat_pb2.CreateChatTicketRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.CreateChatTicketResponse:
        """A ticket for ``/api/v1/streams/{stream_id}/chat/ws?ticket=`` (single use,
        ``REELS_CHAT_TICKET_TTL_S`` seconds). Errors: INVALID_ARGUMENT (no stream_id),
        NOT_FOUND (no such stream), FAILED_PRECONDITION (the stream ended),
        UNAUTHENTICATED."""
        stream_id = request.stream_id.strip()
        if not stream_id:
            raise errors.InvalidArgument("stream_id is required", [("stream_id", "required")])
        viewer = await self._viewer()
        await self._check_stream(stream_id)
        ticket, expires = await self.tickets.issue(viewer, stream_id)
        expires_at = timestamp_pb2.Timestamp()
        expires_at.FromDatetime(expires)
        return chat_pb2.CreateChatTicketResponse(ticket=ticket, expires_at=expires_at)


def build(ctx: Context) -> Any:
    return WsPart(ctx)
