"""The chat WebSocket transport (svc_chat.ws.server) on loopback, over a stand-in chat
core with the core's contract (subscribe: ``joined`` first, a bounded queue per
subscriber, a terminal notice; send: a message or a reels.errors refusal).

What a client sees: the handshake's HTTP refusals (426, 401), the frames, error frames
for what it sends wrong, and the close code that tells it what to do next. The real
core, Redis and Envoy are in tests/e2e/test_chat_e2e.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from google.protobuf import timestamp_pb2
from reels.v1 import chat_pb2

from reels import errors
from reels.auth import TokenVerifier
from reels.config import AuthConfig
from reels_dev.keys import ensure_dev_keys, mint_token
from svc_chat.ws.server import ChatSocketServer
from svc_chat.ws.settings import WebSocketSettings
from svc_chat.ws.tickets import TicketBook, Viewer

STREAM = "s-1"
QUEUE = 256  # the stand-in core's queue per subscriber (Owncast: 256)


class FakeRedis:
    """SET ... PX and GETDEL, with expiry: what TicketBook uses."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[bytes, float]] = {}

    async def set(self, key: str, value: str, px: int) -> None:
        self.data[key] = (value.encode(), time.monotonic() + px / 1000)

    async def getdel(self, key: str) -> bytes | None:
        value, until = self.data.pop(key, (None, 0.0))
        return value if value is not None and time.monotonic() < until else None


class Sub:
    def __init__(self, core: FakeChat, user_id: str) -> None:
        self.core, self.user_id = core, user_id
        self.queue: asyncio.Queue[chat_pb2.SubscribeChatResponse | None] = asyncio.Queue(QUEUE)
        self.acked: list[int] = []

    async def __aenter__(self) -> Sub:
        if self.user_id in self.core.banned:
            raise errors.PermissionDenied("you are banned from this chat")
        self.core.subs.add(self)
        self.queue.put_nowait(
            chat_pb2.SubscribeChatResponse(
                joined=chat_pb2.ChatJoined(stream_id=STREAM, epoch="e1", offset=self.core.offset)
            )
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.core.subs.discard(self)

    def __aiter__(self) -> AsyncIterator[chat_pb2.SubscribeChatResponse]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[chat_pb2.SubscribeChatResponse]:
        while (frame := await self.queue.get()) is not None:
            yield frame

    def ack(self, offset: int) -> None:
        self.acked.append(offset)

    def deliver(self, frame: chat_pb2.SubscribeChatResponse, *, terminal: bool = False) -> None:
        if self not in self.core.subs:
            return
        if self.queue.qsize() >= QUEUE - 2:  # full: drop it, as the core does
            self.core.subs.discard(self)
            kind = chat_pb2.CHAT_NOTICE_KIND_SLOW_CONSUMER
            self.queue.put_nowait(
                chat_pb2.SubscribeChatResponse(notice=chat_pb2.ChatNotice(kind=kind))
            )
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(frame)
        if terminal:
            self.core.subs.discard(self)
            self.queue.put_nowait(None)


class FakeChat:
    def __init__(self) -> None:
        self.subs: set[Sub] = set()
        self.offset = 0
        self.banned: set[str] = set()
        self.sent: list[chat_pb2.ChatMessage] = []

    def subscribe(self, stream_id: str, user_id: str, **query: Any) -> Sub:
        if stream_id != STREAM:
            raise errors.NotFound("stream", stream_id)
        self.query = query
        return Sub(self, user_id)

    def publish(self, frame: chat_pb2.SubscribeChatResponse, *, terminal: bool = False) -> None:
        for sub in list(self.subs):
            sub.deliver(frame, terminal=terminal)

    async def send(
        self, stream_id: str, user_id: str, text: str, client_message_id: str, *, username: str = ""
    ) -> chat_pb2.ChatMessage:
        if not 1 <= len(text.strip()) <= 500:
            raise errors.InvalidArgument("a message is 1 to 500 characters", [("text", "1..500")])
        self.offset += 1
        message = chat_pb2.ChatMessage(
            message_id=f"m{self.offset}",
            stream_id=stream_id,
            user_id=user_id,
            username=username,
            text=text,
            client_message_id=client_message_id,
            offset=self.offset,
            epoch="e1",
            sent_at=timestamp_pb2.Timestamp(seconds=int(time.time())),
        )
        self.sent.append(message)
        self.publish(chat_pb2.SubscribeChatResponse(message=message))
        return message

    def end(self, kind: int) -> None:
        self.offset += 1
        notice = chat_pb2.ChatNotice(kind=kind, stream_id=STREAM, offset=self.offset, epoch="e1")  # type: ignore[arg-type]
        self.publish(chat_pb2.SubscribeChatResponse(notice=notice), terminal=True)


@dataclasses.dataclass
class Harness:
    core: FakeChat
    server: ChatSocketServer
    tickets: TicketBook
    url: str


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    config = ensure_dev_keys(AuthConfig())
    core = FakeChat()
    tickets = TicketBook(FakeRedis(), "test:", ttl_seconds=30)  # type: ignore[arg-type]
    settings = WebSocketSettings(port=0, send_timeout_seconds=0.5, max_bad_frames=5)
    server = ChatSocketServer(core, tickets, TokenVerifier(config), settings)
    port = await server.start()
    try:
        yield Harness(core, server, tickets, f"http://127.0.0.1:{port}/api/v1/streams")
    finally:
        await server.stop()


async def _ticket(h: Harness, user: str = "alice", stream: str = STREAM) -> str:
    ticket, _ = await h.tickets.issue(Viewer(user, user.title()), stream)
    return ticket


async def _next(ws: aiohttp.ClientWebSocketResponse, kind: str | None = None) -> dict[str, Any]:
    while True:
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
        frame: dict[str, Any] = json.loads(msg.data)
        if kind is None or frame["type"] == kind:
            return frame


async def _closed(ws: aiohttp.ClientWebSocketResponse) -> tuple[int | None, str]:
    while True:
        msg = await asyncio.wait_for(ws.receive(), 10)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return ws.close_code, str(msg.extra or "")


async def test_the_handshake_is_a_get_upgrade_with_a_credential_else_http_refuses(
    h: Harness,
) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(f"{h.url}/{STREAM}/chat/ws")
        assert info.value.status == 401
        async with http.get(f"{h.url}/{STREAM}/chat/ws") as resp:
            assert resp.status == 426  # a plain GET: this path is a WebSocket
            assert resp.headers["Upgrade"] == "websocket"
        async with http.post(f"{h.url}/{STREAM}/chat/ws") as resp:
            assert resp.status == 405 and (await resp.json())["code"] == "UNIMPLEMENTED"
        async with http.get(f"{h.url}/{STREAM}/chat") as resp:
            assert resp.status == 404 and "chat/ws" in (await resp.json())["message"]


async def test_a_ticket_opens_one_socket_and_only_one(h: Harness) -> None:
    ticket = await _ticket(h)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{h.url}/{STREAM}/chat/ws?ticket={ticket}") as ws:
            joined = await _next(ws)
            assert joined["type"] == "joined" and joined["joined"]["epoch"] == "e1"
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(f"{h.url}/{STREAM}/chat/ws?ticket={ticket}")
        assert info.value.status == 401
        other = await _ticket(h, stream="s-2")
        async with http.get(
            f"{h.url}/{STREAM}/chat/ws?ticket={other}",
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            },
        ) as resp:
            body = await resp.json()
            assert resp.status == 401 and "another stream" in body["message"]
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_ticket_expires_unused(h: Harness) -> None:
    short = TicketBook(h.tickets.redis, "test:", ttl_seconds=0.05)
    ticket, expires = await short.issue(Viewer("late", "Late"), STREAM)
    assert 0 < (expires - datetime.now(UTC)).total_seconds() <= 0.05
    await asyncio.sleep(0.1)
    with pytest.raises(errors.Unauthenticated, match="expired"):
        await short.redeem(ticket, STREAM)


async def test_a_jwt_offered_as_a_subprotocol_authenticates_and_is_not_echoed(h: Harness) -> None:
    token = mint_token("bob", extra_claims={"name": "Bob B."})
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(
            f"{h.url}/{STREAM}/chat/ws", protocols=("reels.chat.v1", f"bearer.{token}")
        ) as ws:
            assert ws.protocol == "reels.chat.v1"
            await _next(ws, "joined")
            await ws.send_json({"type": "send", "text": "hello", "client_message_id": "c1"})
            sent = await _next(ws, "sent")
            assert sent["message"]["username"] == "Bob B." and sent["message"]["userId"] == "bob"
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(
                f"{h.url}/{STREAM}/chat/ws", protocols=("reels.chat.v1", "bearer.not-a-jwt")
            )
        assert info.value.status == 401


async def test_a_bearer_without_the_chat_subprotocol_is_400_and_never_logged(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp's handshake logs offered subprotocols it does not speak: a browser that
    forgot 'reels.chat.v1' must not put its JWT in the log."""
    token = mint_token("carol")
    caplog.set_level(logging.DEBUG)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(f"{h.url}/{STREAM}/chat/ws", protocols=(f"bearer.{token}",))
    assert info.value.status == 400
    assert token not in caplog.text and token[-20:] not in caplog.text


async def test_an_unknown_stream_or_a_banned_user_is_refused_before_the_upgrade(
    h: Harness,
) -> None:
    h.core.banned.add("mallory")
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(f"{h.url}/nope/chat/ws?ticket={await _ticket(h, stream='nope')}")
        assert info.value.status == 404
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(f"{h.url}/{STREAM}/chat/ws?ticket={await _ticket(h, 'mallory')}")
        assert info.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            url = f"{h.url}/{STREAM}/chat/ws?since_offset=-4&ticket={await _ticket(h)}"
            await http.ws_connect(url)
        assert info.value.status == 400


async def test_recovery_query_reaches_the_subscription(h: Harness) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{h.url}/{STREAM}/chat/ws?since_offset=41&epoch=e1&ticket={await _ticket(h)}"
        async with http.ws_connect(url) as ws:
            await _next(ws, "joined")
    assert h.core.query == {"recover": True, "since_offset": 41, "epoch": "e1"}


async def test_bad_frames_get_error_frames_and_nothing_is_broadcast(h: Harness) -> None:
    async with aiohttp.ClientSession() as http:
        viewer = await http.ws_connect(f"{h.url}/{STREAM}/chat/ws?ticket={await _ticket(h, 'v')}")
        await _next(viewer, "joined")
        async with http.ws_connect(f"{h.url}/{STREAM}/chat/ws?ticket={await _ticket(h)}") as ws:
            await _next(ws, "joined")
            await ws.send_str("not json")
            assert "not JSON" in (await _next(ws, "error"))["message"]
            await ws.send_bytes(b"\x00\x01")
            assert "binary" in (await _next(ws, "error"))["message"]
            await ws.send_json({"type": "send", "text": "", "client_message_id": "c1"})
            err = await _next(ws, "error")
            assert err["code"] == "INVALID_ARGUMENT" and err["clientMessageId"] == "c1"
            await ws.send_json({"type": "send", "text": "x" * 501, "client_message_id": "c2"})
            assert (await _next(ws, "error"))["clientMessageId"] == "c2"
            await ws.send_str(json.dumps({"type": "send", "text": "y" * 9000}))
            assert "over the limit" in (await _next(ws, "error"))["message"]
            await ws.send_json({"type": "ack", "offset": "3"})
            await ws.send_json({"type": "ping"})
            assert (await _next(ws))["type"] == "pong"  # the socket is still open
            await ws.send_json({"type": "send", "text": "fine", "client_message_id": "c3"})
            sent = await _next(ws, "sent")
            assert sent["message"]["text"] == "fine"
        first = await _next(viewer, "message")
        assert first["message"]["text"] == "fine"  # the only one broadcast
        assert h.core.sent == [h.core.sent[0]] and len(h.core.sent) == 1
        await viewer.close()


async def test_a_frame_over_the_hard_limit_closes_with_1009(h: Harness) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{h.url}/{STREAM}/chat/ws?ticket={await _ticket(h)}") as ws:
            await _next(ws, "joined")
            await ws.send_str("x" * 70_000)
            code, _ = await _closed(ws)
            assert code == 1009


async def test_a_run_of_unreadable_frames_closes_with_1008(h: Harness) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{h.url}/{STREAM}/chat/ws?ticket={await _ticket(h)}") as ws:
            await _next(ws, "joined")
            for _ in range(5):
                await ws.send_str("{")
            code, reason = await _closed(ws)
            assert code == 1008 and "unreadable" in reason


@pytest.mark.parametrize(
    ("kind", "code", "says"),
    [
        (chat_pb2.CHAT_NOTICE_KIND_STREAM_ENDED, 1000, "stream ended"),
        (chat_pb2.CHAT_NOTICE_KIND_YOU_ARE_BANNED, 4003, "banned from this chat"),
    ],
)
async def test_a_terminal_notice_is_delivered_then_the_socket_closes_with_its_code(
    h: Harness, kind: int, code: int, says: str
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{h.url}/{STREAM}/chat/ws?ticket={await _ticket(h)}") as ws:
            await _next(ws, "joined")
            h.core.end(kind)
            notice = await _next(ws, "notice")
            assert notice["notice"]["kind"] == chat_pb2.ChatNoticeKind.Name(kind)  # type: ignore[arg-type]
            assert await _closed(ws) == (code, says)


async def test_server_shutdown_closes_sockets_with_1001_and_how_to_recover(h: Harness) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{h.url}/{STREAM}/chat/ws?ticket={await _ticket(h)}") as ws:
            await _next(ws, "joined")
            stopping = asyncio.create_task(h.server.stop())
            code, reason = await _closed(ws)
            await stopping
    assert code == 1001 and "since_offset" in reason


def _raw_handshake(port: int, ticket: str) -> socket.socket:
    """A client that completes the handshake, then never reads again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /api/v1/streams/{STREAM}/chat/ws?ticket={ticket} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_a_client_that_never_reads_is_dropped_and_the_others_keep_receiving(
    h: Harness,
) -> None:
    stuck = await asyncio.to_thread(_raw_handshake, h.server.port, await _ticket(h, "stuck"))
    try:
        for _ in range(500):  # the 101 is out; the server registers the socket next
            if h.server.connections:
                break
            await asyncio.sleep(0.01)
        (conn,) = h.server.connections
        # A slow network in miniature: the server's kernel buffer for this socket takes
        # 4 KiB (on loopback it would otherwise absorb megabytes before anyone noticed).
        server_sock = conn.request.transport.get_extra_info("socket")  # type: ignore[union-attr]
        server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        async with aiohttp.ClientSession() as http:
            url = f"{h.url}/{STREAM}/chat/ws?ticket={await _ticket(h, 'reader')}"
            async with http.ws_connect(url) as ws:
                await _next(ws, "joined")
                received = 0
                for i in range(600):  # about 1 MB per socket
                    await h.core.send(STREAM, "alice", "€" * 500, f"c{i}")
                    while received <= i:
                        received += (await _next(ws))["type"] == "message"
                assert received == 600  # the reader got every message, in time
                deadline = time.monotonic() + 5
                while conn in h.server.connections or len(h.core.subs) > 1:
                    assert time.monotonic() < deadline, "the stuck socket is still served"
                    await asyncio.sleep(0.05)
                await h.core.send(STREAM, "alice", "still here", "last")
                assert (await _next(ws, "message"))["message"]["text"] == "still here"
    finally:
        with contextlib.suppress(OSError):
            stuck.close()
