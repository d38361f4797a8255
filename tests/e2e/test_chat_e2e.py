"""Live chat through the front door, across two svc_chat instances.

Instance B is the mesh's svc_chat process (behind Envoy); instance A is a second
svc_chat App started here (``reels.server.run_app``) on the same Postgres, Redis key
prefix and Kafka broker. A message sent on A reaches, through Envoy (so through B):

* a gRPC-web SubscribeChat (HTTP/1.1, ``application/grpc-web+proto``, as a browser's
  connect-web transport speaks it);
* a WebSocket opened with a ticket (CreateChatTicket over the JSON API);
* a WebSocket opened with the JWT as a subprotocol (``reels.chat.v1, bearer.<jwt>``);

and a WebSocket on A itself. Bad input over the WebSocket gets an error frame and
nothing is broadcast; a handshake without a credential, or with a used ticket, is 401.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import struct
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import pytest
from reels.v1 import chat_pb2, chat_pb2_grpc, common_pb2

from reels.server import RunningServer, run_app
from reels_dev.infra.envoy import EnvoySettings
from reels_dev.infra.otlp_sink import read_spans
from reels_dev.keys import mint_token
from svc_chat.app import App
from svc_chat.app import build as build_chat
from svc_chat.settings import Settings
from svc_chat.ws.protocol import chat_frame
from svc_chat.ws.server import ROUTE_NAME
from tests.fixtures.mesh import Mesh
from tests.polling import eventually_value

WAIT_S = 10.0


@dataclass
class Instance:
    """svc_chat instance A, in this process."""

    app: App
    server: RunningServer

    @property
    def grpc_addr(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def ws_base(self) -> str:
        assert self.app.ctx is not None
        return f"http://127.0.0.1:{self.app.ctx.ws.port}/api/v1/streams"


@pytest.fixture(scope="module")
async def instance_a(mesh: Mesh, envoy: EnvoySettings) -> AsyncIterator[Instance]:
    settings = Settings.from_env(
        {
            "REELS_DATABASE_URL": mesh.backends.database_url,
            "REELS_KAFKA_BOOTSTRAP": mesh.backends.kafka_bootstrap,
            "REELS_REDIS_PREFIX": mesh.redis_prefix,
            "REELS_CHAT_PORT": "0",
            "REELS_CHAT_WS_PORT": "0",
            "REELS_RTMP_PORT": "0",
            "REELS_SHUTDOWN_GRACE_SECONDS": "1",
        }
    )
    app = build_chat(settings)
    server = await run_app(app, port=0)
    try:
        yield Instance(app, server)
    finally:
        await server.stop(1.0)


def _md(user: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {mint_token(user)}"),)


def _front(envoy: EnvoySettings) -> str:
    return f"http://127.0.0.1:{envoy.listen_port}"


@dataclass
class Live:
    stream_id: str
    creator: str
    stub: chat_pb2_grpc.ChatServiceStub  # on instance A

    async def send(self, user: str, text: str) -> chat_pb2.ChatMessage:
        reply = await self.stub.SendMessage(
            chat_pb2.SendMessageRequest(
                stream_id=self.stream_id, text=text, client_message_id=uuid.uuid4().hex
            ),
            metadata=_md(user),
            timeout=WAIT_S,
        )
        return reply.message


@pytest.fixture
async def live(instance_a: Instance) -> AsyncIterator[Live]:
    """A stream of its own, started, with a stub on instance A."""
    creator = f"creator-{uuid.uuid4().hex[:8]}"
    async with grpc.aio.insecure_channel(instance_a.grpc_addr) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        created = await stub.CreateStream(
            chat_pb2.CreateStreamRequest(title="chat e2e"), metadata=_md(creator), timeout=WAIT_S
        )
        stream_id = created.stream.stream_id
        await stub.StartStream(
            chat_pb2.StartStreamRequest(stream_id=stream_id), metadata=_md(creator), timeout=WAIT_S
        )
        yield Live(stream_id, creator, stub)


# --------------------------------------------------------------------------- clients


class Frames:
    """What one subscriber received, readable as it arrives."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def next(self, kind: str | None = None) -> dict[str, Any]:
        while True:
            frame = await asyncio.wait_for(self.queue.get(), WAIT_S)
            if kind is None or frame["type"] == kind:
                return frame


def _grpc_web_frame(message: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(message)) + message


async def grpc_web_subscribe(
    http: aiohttp.ClientSession, front: str, stream_id: str, user: str, frames: Frames
) -> dict[str, str]:
    """SubscribeChat as gRPC-web through Envoy; each frame goes to ``frames`` as the
    WebSocket would print it. Returns the trailers (the call's status)."""
    request = chat_pb2.SubscribeChatRequest(stream_id=stream_id)
    headers = {
        "authorization": f"Bearer {mint_token(user)}",
        "content-type": "application/grpc-web+proto",
        "x-grpc-web": "1",
        "origin": "http://localhost:5173",
    }
    async with http.post(
        f"{front}/reels.v1.ChatService/SubscribeChat",
        data=_grpc_web_frame(request.SerializeToString()),
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
    ) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["content-type"].startswith("application/grpc-web")
        while True:
            try:
                head = await resp.content.readexactly(5)
            except asyncio.IncompleteReadError:
                return {"grpc-status": resp.headers.get("grpc-status", "")}
            body = await resp.content.readexactly(struct.unpack(">I", head[1:])[0])
            if head[0] & 0x80:  # the trailers frame
                lines = body.decode().split("\r\n")
                return {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines if line)
                }
            frames.queue.put_nowait(chat_frame(chat_pb2.SubscribeChatResponse.FromString(body)))


async def ws_pump(ws: aiohttp.ClientWebSocketResponse, frames: Frames) -> None:
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            frames.queue.put_nowait(json.loads(msg.data))
    frames.queue.put_nowait({"type": "closed", "code": ws.close_code})


async def ticket_for(http: aiohttp.ClientSession, front: str, stream_id: str, user: str) -> str:
    """CreateChatTicket over the JSON API, through Envoy."""
    async with http.post(
        f"{front}/api/v1/live/{stream_id}/chat:ticket",
        json={},
        headers={"authorization": f"Bearer {mint_token(user)}"},
    ) as resp:
        body = await resp.json(content_type=None)
        assert resp.status == 200, body
        assert body["expiresAt"]
        return str(body["ticket"])


def _ws_url(base: str, stream_id: str, **query: str) -> str:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{base}/{stream_id}/chat/ws" + (f"?{qs}" if qs else "")


@contextlib.asynccontextmanager
async def tasks(*coros: Any) -> AsyncIterator[list[asyncio.Task[Any]]]:
    running = [asyncio.create_task(c) for c in coros]
    try:
        yield running
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


# --------------------------------------------------------------------------- tests


async def test_a_message_sent_on_one_instance_reaches_grpc_web_and_websockets_through_envoy(
    envoy: EnvoySettings, instance_a: Instance, live: Live
) -> None:
    front = _front(envoy)
    ws_front = f"{front}/api/v1/streams"
    web, by_ticket, by_jwt, on_a = Frames(), Frames(), Frames(), Frames()
    async with aiohttp.ClientSession() as http:
        ticket = await ticket_for(http, front, live.stream_id, "viewer-t")
        ws_ticket = await http.ws_connect(_ws_url(ws_front, live.stream_id, ticket=ticket))
        ws_jwt = await http.ws_connect(
            _ws_url(ws_front, live.stream_id),
            protocols=("reels.chat.v1", f"bearer.{mint_token('viewer-j')}"),
        )
        assert ws_jwt.protocol == "reels.chat.v1"  # the token is never echoed
        ticket_a = await ticket_for(http, front, live.stream_id, "viewer-a")
        ws_a = await http.ws_connect(_ws_url(instance_a.ws_base, live.stream_id, ticket=ticket_a))
        async with tasks(
            grpc_web_subscribe(http, front, live.stream_id, "viewer-w", web),
            ws_pump(ws_ticket, by_ticket),
            ws_pump(ws_jwt, by_jwt),
            ws_pump(ws_a, on_a),
        ):
            for frames in (web, by_ticket, by_jwt, on_a):
                assert (await frames.next())["type"] == "joined"
            sent = await live.send("alice", "hello from instance A")
            for frames in (web, by_ticket, by_jwt, on_a):
                got = (await frames.next("message"))["message"]
                assert got["messageId"] == sent.message_id
                assert got["text"] == "hello from instance A"
                assert int(got["offset"]) == sent.offset and got["epoch"] == sent.epoch
            # A send over the WebSocket (through B) reaches the gRPC-web viewer too.
            await ws_ticket.send_json(
                {"type": "send", "text": "and back", "client_message_id": "c-back"}
            )
            echoed = await by_ticket.next("sent")
            assert echoed["message"]["userId"] == "viewer-t"
            assert int(echoed["message"]["offset"]) == sent.offset + 1
            for frames in (web, by_jwt, on_a):
                got = (await frames.next("message"))["message"]
                assert got["text"] == "and back" and got["userId"] == "viewer-t"
        for ws in (ws_ticket, ws_jwt, ws_a):
            await ws.close()


async def test_bad_input_over_the_websocket_gets_an_error_frame_and_nothing_is_broadcast(
    envoy: EnvoySettings, live: Live
) -> None:
    front = _front(envoy)
    ws_front = f"{front}/api/v1/streams"
    watcher = Frames()
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            _ws_url(
                ws_front, live.stream_id, ticket=await ticket_for(http, front, live.stream_id, "w")
            )
        )
        sender = await http.ws_connect(
            _ws_url(
                ws_front,
                live.stream_id,
                ticket=await ticket_for(http, front, live.stream_id, "sender"),
            )
        )
        async with tasks(ws_pump(ws, watcher)):
            joined = (await watcher.next("joined"))["joined"]
            assert (await sender.receive_json(timeout=WAIT_S))["type"] == "joined"
            bad: list[tuple[Any, str, str]] = [
                ("not json at all", "INVALID_ARGUMENT", ""),
                (
                    {"type": "send", "text": "", "client_message_id": "c-empty"},
                    "INVALID_ARGUMENT",
                    "c-empty",
                ),
                (
                    {"type": "send", "text": "x" * 501, "client_message_id": "c-long"},
                    "INVALID_ARGUMENT",
                    "c-long",
                ),
                (
                    {"type": "send", "text": "\u200b\u200b", "client_message_id": "c-zw"},
                    "INVALID_ARGUMENT",
                    "c-zw",
                ),
                ({"type": "dance"}, "INVALID_ARGUMENT", ""),
            ]
            for frame, code, cmid in bad:
                await (
                    sender.send_str(frame) if isinstance(frame, str) else sender.send_json(frame)
                )
                reply = await sender.receive_json(timeout=WAIT_S)
                assert reply["type"] == "error", reply
                assert reply["code"] == code and reply["message"]
                assert reply.get("clientMessageId", "") == cmid
            await sender.send_json({"type": "send", "text": "ok", "client_message_id": "c-ok"})
            first = await watcher.next("message")
            # Nothing before it was broadcast: it is the next offset after joining.
            assert first["message"]["text"] == "ok"
            assert int(first["message"]["offset"]) == int(joined["offset"]) + 1
        await sender.close()
        await ws.close()


async def test_a_websocket_without_a_valid_credential_is_401_through_envoy(
    envoy: EnvoySettings, live: Live
) -> None:
    front = _front(envoy)
    ws_front = f"{front}/api/v1/streams"
    async with aiohttp.ClientSession() as http:
        for kwargs in (
            {},  # nothing at all
            {"protocols": ("reels.chat.v1", "bearer.not-a-jwt")},
            {"protocols": ("reels.chat.v1", f"bearer.{mint_token('x', ttl_seconds=-60)}")},
        ):
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(_ws_url(ws_front, live.stream_id), **kwargs)  # type: ignore[arg-type]
            assert info.value.status == 401, kwargs
        # A bad Authorization header is refused by Envoy's jwt_authn already.
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(
                _ws_url(ws_front, live.stream_id), headers={"authorization": "Bearer nope"}
            )
        assert info.value.status == 401
        # A ticket opens one socket; used again (on any instance) it is 401.
        ticket = await ticket_for(http, front, live.stream_id, "once")
        ws = await http.ws_connect(_ws_url(ws_front, live.stream_id, ticket=ticket))
        assert (await ws.receive_json(timeout=WAIT_S))["type"] == "joined"
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(_ws_url(ws_front, live.stream_id, ticket=ticket))
        assert info.value.status == 401
        await ws.close()


async def test_a_ticket_is_only_issued_for_a_stream_that_exists(envoy: EnvoySettings) -> None:
    missing = str(uuid.uuid4())
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{_front(envoy)}/api/v1/live/{missing}/chat:ticket",
            json={},
            headers={"authorization": f"Bearer {mint_token('someone')}"},
        ) as resp:
            assert resp.status == 404, await resp.text()
        async with http.post(f"{_front(envoy)}/api/v1/live/{missing}/chat:ticket", json={}) as resp:
            assert resp.status == 401  # the JSON API still needs a JWT


async def test_a_reconnecting_websocket_recovers_what_it_missed(
    envoy: EnvoySettings, live: Live
) -> None:
    front = _front(envoy)
    ws_front = f"{front}/api/v1/streams"
    async with aiohttp.ClientSession() as http:
        ticket = await ticket_for(http, front, live.stream_id, "r")
        ws = await http.ws_connect(_ws_url(ws_front, live.stream_id, ticket=ticket))
        joined = (await ws.receive_json(timeout=WAIT_S))["joined"]
        await ws.close()
        missed = [await live.send("alice", f"while away {i}") for i in range(3)]
        ticket = await ticket_for(http, front, live.stream_id, "r")
        ws = await http.ws_connect(
            _ws_url(
                ws_front,
                live.stream_id,
                ticket=ticket,
                since_offset=str(joined["offset"]),
                epoch=joined["epoch"],
            )
        )
        back = await ws.receive_json(timeout=WAIT_S)
        assert back["type"] == "joined" and back["joined"]["recovered"] is True
        got = [(await ws.receive_json(timeout=WAIT_S))["message"] for _ in missed]
        assert [m["messageId"] for m in got] == [m.message_id for m in missed]
        await ws.send_json({"type": "ack", "offset": got[-1]["offset"]})
        await ws.close()


async def test_ending_the_stream_closes_its_websockets_with_1000(
    envoy: EnvoySettings, live: Live
) -> None:
    front = _front(envoy)
    async with aiohttp.ClientSession() as http:
        ticket = await ticket_for(http, front, live.stream_id, "e")
        ws = await http.ws_connect(
            _ws_url(f"{front}/api/v1/streams", live.stream_id, ticket=ticket)
        )
        frames = Frames()
        async with tasks(ws_pump(ws, frames)):
            await frames.next("joined")
            await live.stub.EndStream(
                chat_pb2.EndStreamRequest(stream_id=live.stream_id),
                metadata=_md(live.creator),
                timeout=WAIT_S,
            )
            notice = (await frames.next("notice"))["notice"]
            assert notice["kind"] == "CHAT_NOTICE_KIND_STREAM_ENDED"
            assert (await frames.next("closed"))["code"] == 1000


async def test_the_websocket_handshake_continues_the_callers_trace_through_envoy(
    envoy: EnvoySettings, mesh: Mesh, live: Live
) -> None:
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    front = _front(envoy)
    async with aiohttp.ClientSession() as http:
        ticket = await ticket_for(http, front, live.stream_id, "traced")
        ws = await http.ws_connect(
            _ws_url(f"{front}/api/v1/streams", live.stream_id, ticket=ticket),
            headers={"traceparent": f"00-{trace_id}-{client_span}-01"},
        )
        assert (await ws.receive_json(timeout=WAIT_S))["type"] == "joined"
        await ws.close()

    async def spans() -> list[dict[str, object]] | None:
        found = [s for s in read_spans(mesh.spans_path) if s["trace_id"] == trace_id]
        services = {s["service"] for s in found}
        return found if {"envoy", "svc_chat"} <= services else None

    found = await eventually_value(spans, 30, "Envoy's and svc_chat's spans of the handshake")
    assert found is not None
    by_id = {s["span_id"]: s for s in found}
    (handshake,) = [s for s in found if s["name"] == ROUTE_NAME]
    assert handshake["service"] == "svc_chat" and handshake["kind"] == 2  # SERVER
    assert by_id[handshake["parent_span_id"]]["service"] == "envoy"


async def test_a_ban_on_one_instance_closes_the_users_websocket_on_the_other_with_4003(
    envoy: EnvoySettings, live: Live
) -> None:
    front = _front(envoy)
    ws_front = f"{front}/api/v1/streams"
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            _ws_url(ws_front, live.stream_id),
            protocols=("reels.chat.v1", f"bearer.{mint_token('troll')}"),
        )
        frames = Frames()
        async with tasks(ws_pump(ws, frames)):
            await frames.next("joined")
            await live.stub.ModerateChat(  # on instance A; the socket is on B
                chat_pb2.ModerateChatRequest(
                    stream_id=live.stream_id,
                    action=common_pb2.MODERATION_ACTION_BAN_USER,
                    user_id="troll",
                    reason="e2e",
                ),
                metadata=_md(live.creator),
                timeout=WAIT_S,
            )
            notice = (await frames.next("notice"))["notice"]
            assert notice["kind"] == "CHAT_NOTICE_KIND_YOU_ARE_BANNED"
            assert (await frames.next("closed"))["code"] == 4003
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(
                _ws_url(ws_front, live.stream_id),
                protocols=("reels.chat.v1", f"bearer.{mint_token('troll')}"),
            )
        assert info.value.status == 403
