"""The chat WebSocket server: ``GET /api/v1/streams/{stream_id}/chat/ws`` (aiohttp).

Served by svc_chat itself on ``REELS_CHAT_WS_PORT`` (default 50065) behind Envoy's
``/api/v1/streams/`` route (which upgrades it and leaves authentication to this
server). Protocol, frames and close codes: :mod:`svc_chat.ws.protocol`.

The handshake, in order (every refusal is an HTTP answer before the upgrade, with the
JSON body every HTTP door gives, reels.http_errors):

1. not a WebSocket upgrade: 426 Upgrade Required;
2. a malformed query (``recover``, ``since_offset``, ``epoch``): 400;
3. no credential: 401; a bad, expired, used or other-stream ticket or JWT: 401
   (``WWW-Authenticate: Bearer``). Credentials: ``?ticket=`` (CreateChatTicket), a JWT
   offered as the subprotocol ``bearer.<jwt>`` beside ``reels.chat.v1`` (browsers),
   or ``Authorization: Bearer`` (other clients);
4. the subscription is opened and its first frame read: an unknown stream is 404, a
   banned user 403, a dependency outage 503 + ``Retry-After``;
5. the upgrade (subprotocol ``reels.chat.v1`` when offered), then the ``joined`` frame.

Other paths are 404 and other methods 405, with the same JSON body; while the server
stops, a handshake is 503 + ``Retry-After`` and open sockets close with 1001.

After the upgrade two loops run: one writes the subscription's frames (each channel
publication encoded once per instance, protocol.FrameCache), one reads the client's
frames and answers each. A client that reads slowly fills the core's bounded queue and
is dropped by the core (SLOW_CONSUMER notice, close 4008) without slowing any other
socket; a write still waiting after ``send_timeout_seconds`` (a client that stopped
reading altogether) aborts its connection (the server's watchdog).
``heartbeat_seconds`` pings find dead peers.

Tracing: the handshake is one SERVER span, a child of the caller's (Envoy's)
``traceparent``; each message sent over the socket is a SERVER span of its own, linked
to the handshake, so a socket open for hours is not one endless trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import jwt
from aiohttp import WSMsgType, web
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from reels.v1 import chat_pb2

from reels import errors
from reels.auth import AuthError, TokenVerifier
from reels.http_errors import http_error, is_outage
from svc_chat.ws import protocol
from svc_chat.ws.settings import WebSocketSettings
from svc_chat.ws.tickets import TicketBook, Viewer

log = logging.getLogger(__name__)
# aiohttp's websocket logger warns with the client's offered subprotocols, which may hold
# a `bearer.<jwt>`: never at a level that reaches the logs.
logging.getLogger("aiohttp.websocket").setLevel(logging.ERROR)

PATH = "/api/v1/streams/{stream_id}/chat/ws"
ROUTE_NAME = "GET /api/v1/streams/{stream_id}/chat/ws"
_tracer = trace.get_tracer("svc_chat.ws")
# How long stop() lets open sockets take their 1001 close frame.
CLOSE_GRACE_S = 2.0


def _refusal(exc: BaseException) -> web.Response:
    answer = http_error(exc)
    extra: dict[str, str] = {}
    if answer.status == 401:
        extra["WWW-Authenticate"] = 'Bearer realm="reels"'
    return answer.json_response(**extra)


@web.middleware
async def _json_route_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Another path under Envoy's ``/api/v1/streams/`` (404) or another method (405)
    gets the JSON body every HTTP door answers with, not aiohttp's text."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return web.json_response(
            {"code": "NOT_FOUND", "message": f"no such route: the chat WebSocket is GET {PATH}"},
            status=404,
        )
    except web.HTTPMethodNotAllowed:
        return web.json_response(
            {"code": "UNIMPLEMENTED", "message": f"{request.method}: the chat WebSocket is GET"},
            status=405,
            headers={"Allow": "GET"},
        )


SEND_BUFFER_BYTES = 64 * 1024
"""The kernel's send buffer per chat socket. Linux grows it to megabytes by default,
which hid a client that stopped reading behind thousands of queued frames: with 64 KiB
a non-reader fills it within a few hundred frames, the subscription's bounded queue
(256) fills next, and the client is dropped as a slow consumer."""


def _small_send_buffer(request: web.Request) -> None:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        except OSError as exc:  # not a TCP socket (tests' pipes): nothing to bound
            log.debug("chat socket send buffer unchanged: %r", exc)


class ChatSocketServer:
    """The aiohttp application and the open sockets of one svc_chat process.

    ``chat`` is the chat core (``ctx.chat``: ``subscribe``, ``send``); ``verifier`` is
    None when the service runs with auth off (tests of the service alone), where the
    ``x-reels-user`` header names the user as it does for gRPC.
    """

    def __init__(
        self,
        chat: Any,
        tickets: TicketBook,
        verifier: TokenVerifier | None,
        settings: WebSocketSettings,
    ) -> None:
        self.chat = chat
        self.tickets = tickets
        self.verifier = verifier
        self.settings = settings
        self.frames = protocol.FrameCache()
        self.connections: set[Connection] = set()
        # No tracing middleware: it would hold one SERVER span open for a socket's whole
        # life (hours of one trace, memory per socket, and every message sent on it in
        # that trace). The handshake is a span of its own (child of Envoy's), and so is
        # each send, linked to the handshake (handle, Connection._send_message).
        self.app = web.Application(middlewares=[_json_route_errors])
        self.app.router.add_get(PATH, self.handle)
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.closing = False
        self._watchdog: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Listen on the settings' host and port (0: a free one); returns the port."""
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.host, self.settings.port, reuse_address=True)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.settings.port
        self._watchdog = asyncio.create_task(self._watch_writes())
        return self.port

    async def _watch_writes(self) -> None:
        """Abort every socket whose write has waited over ``send_timeout_seconds``."""
        limit = self.settings.send_timeout_seconds
        interval = min(1.0, max(0.05, limit / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for conn in list(self.connections):
                since = conn.sending_since
                if since is not None and now - since > limit:
                    log.info(
                        "chat socket dropped: it stopped reading",
                        extra={"fields": {"stream_id": conn.stream_id, "waited_s": now - since}},
                    )
                    conn.abort()

    async def stop(self) -> None:
        """Refuse new sockets, close open ones with 1001 (reconnect elsewhere, with
        recovery), then stop listening."""
        self.closing = True
        if self.connections:
            await asyncio.wait(
                [
                    asyncio.create_task(c.close(protocol.CLOSE_GOING_AWAY))
                    for c in list(self.connections)
                ],
                timeout=CLOSE_GRACE_S + 1,
            )
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None

    # ------------------------------------------------------------------ handshake

    async def _viewer(self, request: web.Request, stream_id: str, protocols: list[str]) -> Viewer:
        credential = protocol.credential_of(
            request.query, protocols, request.headers.get("Authorization")
        )
        if credential is None:
            user = request.headers.get("x-reels-user") if self.verifier is None else None
            if user:
                return Viewer(user, user)
            raise errors.Unauthenticated(
                "no credential: open the socket with ?ticket=<CreateChatTicket's ticket>, "
                f"or offer the subprotocols '{protocol.SUBPROTOCOL}, bearer.<jwt>'"
            )
        if credential.kind == "ticket":
            return await self.tickets.redeem(credential.value, stream_id)
        try:
            if self.verifier is None:  # auth off: the token names the user, unverified
                claims = jwt.decode(credential.value, options={"verify_signature": False})
                user_id = str(claims["sub"])
            else:
                principal = self.verifier.verify(f"Bearer {credential.value}")
                claims, user_id = principal.claims, principal.user_id
        except (AuthError, jwt.InvalidTokenError, KeyError) as exc:
            raise errors.Unauthenticated(str(exc) or "invalid token") from exc
        return Viewer(user_id, protocol.display_name(claims, user_id))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        stream_id = request.match_info["stream_id"]
        offered = protocol.offered_protocols(request.headers.get("Sec-WebSocket-Protocol"))
        if offered and protocol.SUBPROTOCOL not in offered:
            # Refused here, before aiohttp's handshake: it would log the offered
            # subprotocols, and a `bearer.<jwt>` one is a credential.
            return web.json_response(
                {
                    "code": "INVALID_ARGUMENT",
                    "message": f"offer the subprotocol '{protocol.SUBPROTOCOL}' "
                    "(with 'bearer.<jwt>' if you authenticate that way)",
                },
                status=400,
            )
        ws = web.WebSocketResponse(
            protocols=(protocol.SUBPROTOCOL,),
            heartbeat=self.settings.heartbeat_seconds or None,
            max_msg_size=self.settings.hard_frame_bytes,
            # Chat frames are small: per-socket deflate would cost more CPU per fan-out
            # than it saves bytes, and every socket would compress the same text again.
            compress=False,
        )
        if not ws.can_prepare(request).ok:
            return web.json_response(
                {
                    "code": "FAILED_PRECONDITION",
                    "message": "this path is a WebSocket: send an Upgrade: websocket request",
                },
                status=426,
                headers={"Upgrade": "websocket", "Connection": "Upgrade"},
            )
        if self.closing:
            return _refusal(errors.Unavailable("server restarting: reconnect", 1.0))
        protocols = protocol.offered_protocols(request.headers.get("Sec-WebSocket-Protocol"))
        span = _tracer.start_span(
            ROUTE_NAME,
            context=propagate.extract(request.headers),
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": "GET",
                "http.route": PATH,
                "chat.stream_id": stream_id,
            },
        )
        async with contextlib.AsyncExitStack() as stack:
            try:
                with trace.use_span(span, end_on_exit=False):
                    try:
                        opened = await self._open(request, stream_id, protocols, stack)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - refused before the upgrade
                        refusal = _refusal(exc)
                        span.set_attribute("http.response.status_code", refusal.status)
                        if refusal.status >= 500:
                            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                        return refusal
                    viewer, subscription, frames, first = opened
                    _small_send_buffer(request)
                    await ws.prepare(request)
                    span.set_attribute("http.response.status_code", 101)
                    span.set_attribute("enduser.id", viewer.user_id)
            finally:
                span.end()
            conn = Connection(self, ws, request, subscription, frames, stream_id, viewer)
            conn.handshake = span.get_span_context()
            self.connections.add(conn)
            try:
                await conn.run(first)
            finally:
                self.connections.discard(conn)
        return ws

    async def _open(
        self,
        request: web.Request,
        stream_id: str,
        protocols: list[str],
        stack: contextlib.AsyncExitStack,
    ) -> tuple[Viewer, Any, AsyncIterator[chat_pb2.SubscribeChatResponse], Any]:
        """Authenticate, enter the subscription (on ``stack``) and read its first frame."""
        query = protocol.subscribe_query(request.query)
        viewer = await self._viewer(request, stream_id, protocols)
        subscription = self.chat.subscribe(
            stream_id,
            viewer.user_id,
            recover=query.recover,
            since_offset=query.since_offset,
            epoch=query.epoch,
        )
        entered = await stack.enter_async_context(subscription)
        subscription = entered if entered is not None else subscription
        frames = aiter(subscription)
        first = await anext(frames, None)
        if first is None:
            raise errors.Unavailable("the chat subscription ended at once: retry", 1.0)
        return viewer, subscription, frames, first


class Connection:
    """One open socket: its subscription's frames out, the client's frames in."""

    def __init__(
        self,
        server: ChatSocketServer,
        ws: web.WebSocketResponse,
        request: web.Request,
        subscription: Any,
        frames: AsyncIterator[chat_pb2.SubscribeChatResponse],
        stream_id: str,
        viewer: Viewer,
    ) -> None:
        self.server = server
        self.settings = server.settings
        self.ws = ws
        self.request = request
        self.subscription = subscription
        self.frames = frames
        self.stream_id = stream_id
        self.viewer = viewer
        self.acked = 0
        self.handshake: trace.SpanContext | None = None
        self.sending_since: float | None = None
        """When the write in progress began (monotonic s); None between writes."""
        self._closing = False

    async def run(self, first: chat_pb2.SubscribeChatResponse) -> None:
        """Read the client in this task, write the subscription from another, until
        either side ends: a close from the pump ends the reader's loop, and the end of
        the reader (the client closed or vanished) cancels the pump."""
        pump = asyncio.create_task(self._pump(first))
        try:
            await self._read()
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)

    async def send_text(self, text: str) -> bool:
        """Write one frame; False when the socket is gone. A write still waiting after
        ``send_timeout_seconds`` (the client stopped reading) is aborted by the server's
        watchdog: such a client must not hold a task, Envoy's buffers or our memory.

        No timer per frame: most writes never wait (aiohttp waits only once the
        transport's buffer is over its high mark), and a timer per frame per socket is a
        measurable share of a fan-out's CPU; the watchdog looks once per interval."""
        if self.ws.closed:
            return False
        self.sending_since = time.monotonic()
        try:
            await self.ws.send_str(text)
            return True
        except (ConnectionError, RuntimeError):
            return False
        finally:
            self.sending_since = None

    async def send(self, frame: dict[str, Any]) -> bool:
        return await self.send_text(protocol.dumps(frame))

    def abort(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def close(self, code: int) -> None:
        """Close with ``code`` and its reason (protocol.CLOSE_REASONS); abort when the
        close frame cannot be written within the send timeout."""
        if self._closing or self.ws.closed:
            return
        self._closing = True
        reason = protocol.CLOSE_REASONS.get(code, "").encode()
        try:
            await asyncio.wait_for(
                self.ws.close(code=code, message=reason), self.settings.send_timeout_seconds
            )
        except (TimeoutError, ConnectionError, RuntimeError):
            self.abort()

    # ------------------------------------------------------------------ out

    async def _pump(self, first: chat_pb2.SubscribeChatResponse) -> None:
        cache = self.server.frames
        last: chat_pb2.SubscribeChatResponse | None = first
        try:
            if not await self.send_text(cache.text(first)):
                return
            async for frame in self.frames:
                last = frame
                if not await self.send_text(cache.text(frame)):
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the subscription failed: say so, close
            await self.send(protocol.error_frame(exc))
            if isinstance(exc, errors.Unavailable):
                # This server is draining (the hub ended every subscription): 1001,
                # reconnect with recovery, as documented in protocol.py.
                await self.close(protocol.CLOSE_GOING_AWAY)
                return
            log.warning(
                "chat subscription failed",
                extra={"fields": {"stream_id": self.stream_id, "error": repr(exc)}},
            )
            await self.close(
                protocol.CLOSE_TRY_AGAIN_LATER if is_outage(exc) else protocol.CLOSE_INTERNAL_ERROR
            )
            return
        await self.close(protocol.close_for(last))

    # ------------------------------------------------------------------ in

    async def _read(self) -> None:
        bad = 0
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                ok = await self._on_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await self.send(
                    protocol.error_frame(
                        protocol.FrameError("binary frames are not read: send JSON text frames")
                    )
                )
                ok = False
            else:  # ERROR: aiohttp has closed the socket (1009 for an oversize frame)
                break
            bad = 0 if ok else bad + 1
            if bad >= self.settings.max_bad_frames:
                await self.close(protocol.CLOSE_POLICY_VIOLATION)
                break

    async def _on_text(self, raw: str) -> bool:
        """Answer one text frame; False when it could not be read at all."""
        try:
            frame = protocol.parse_client_frame(raw, self.settings.max_frame_bytes)
        except protocol.FrameError as exc:
            await self.send(protocol.error_frame(exc))
            return False
        if isinstance(frame, protocol.Send):
            await self._send_message(frame)
        elif isinstance(frame, protocol.Ack):
            self.acked = max(self.acked, frame.offset)
            ack = getattr(self.subscription, "ack", None)
            if ack is not None:
                result = ack(frame.offset)
                if asyncio.iscoroutine(result):
                    await result
        else:
            await self.send({"type": "pong"})
        return True

    async def _send_message(self, frame: protocol.Send) -> None:
        links = [Link(self.handshake)] if self.handshake is not None else []
        with _tracer.start_as_current_span(
            "reels.v1.ChatService/SendMessage (WebSocket)",
            kind=SpanKind.SERVER,
            links=links,
            attributes={"chat.stream_id": self.stream_id, "enduser.id": self.viewer.user_id},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                message = await self.server.chat.send(
                    self.stream_id,
                    self.viewer.user_id,
                    frame.text,
                    frame.client_message_id,
                    username=self.viewer.username,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every refusal is an error frame
                reply = protocol.error_frame(exc, frame.client_message_id)
                span.set_attribute("rpc.grpc.status_code_name", reply["code"])
                await self.send(reply)
                return
        await self.send(protocol.sent_frame(message, frame.client_message_id))
