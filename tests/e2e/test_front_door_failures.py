"""What a client sees through the front door when a service fails, hangs or is sent too
much (reels_dev.infra.envoy LOCAL_REPLIES, RPC_TIMEOUT_S, BODY_LIMITS).

No mesh: a real Envoy with the project's config in front of stand-ins that fail the
way a real service does: a closed port (a dead or restarting service: connection
refused), a socket that accepts and never answers (a hung service, e.g. SIGSTOP), and
a gRPC server whose RecordEvents takes anything and whose ChatService answers
UNAVAILABLE itself. Every answer is checked as a client reads it: HTTP status, JSON
body code, Retry-After, grpc-status, and a native gRPC caller's status.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import grpc
import pytest
from reels.v1 import common_pb2, stream_pb2

from reels_dev.infra.envoy import BODY_LIMITS, UPSTREAM_RETRY_AFTER_S, EnvoySettings, envoy_process
from reels_dev.infra.process import free_port
from reels_dev.keys import ensure_dev_keys, mint_token
from svc_stream.events.validation import (
    KNOWN_TYPES,
    MAX_BATCH,
    MAX_CLIENT_EVENT_ID,
    MAX_RENDITION,
    MAX_SESSION_ID,
    MAX_VIDEO_ID,
)

ORIGIN = "http://localhost:5173"  # an allowed origin (DEFAULT_CORS_ORIGINS)
ROUTE_TIMEOUT_S = 1.0  # the unary route timeout of this Envoy (15 s in `make up`)
OWN_UNAVAILABLE = "svc_chat's own: redis is down"


@dataclass
class FrontDoor:
    settings: EnvoySettings
    recorded: list[int]  # sizes of the RecordEvents requests that reached the service

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.settings.listen_port}"


async def _never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A hung service: the connection is accepted, and nothing ever comes back."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        pass
    finally:
        writer.close()


@pytest.fixture(scope="module")
async def front_door(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FrontDoor]:
    ensure_dev_keys()
    recorded: list[int] = []

    async def record(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        recorded.append(len(request))
        return stream_pb2.RecordEventsResponse(accepted_count=1).SerializeToString()

    async def unavailable(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await context.abort(grpc.StatusCode.UNAVAILABLE, OWN_UNAVAILABLE)
        return b""

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "reels.v1.StreamService",
                {"RecordEvents": grpc.unary_unary_rpc_method_handler(record)},
            ),
            grpc.method_handlers_generic_handler(
                "reels.v1.ChatService",
                {"GetStream": grpc.unary_unary_rpc_method_handler(unavailable)},
            ),
        ]
    )
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    hung = await asyncio.start_server(_never_answer, "127.0.0.1", 0)
    hung_port = hung.sockets[0].getsockname()[1]
    dead_port = free_port()  # nothing listens: connection refused
    settings = EnvoySettings(
        listen_port=free_port(),
        admin_port=free_port(),
        service_ports={
            "rank": dead_port,
            "upload": dead_port,
            "transcode": hung_port,
            "stream": grpc_port,
            "chat": grpc_port,
        },
        media_port=free_port(),
        upload_http_port=free_port(),
        chat_ws_port=free_port(),
        otlp_port=free_port(),
        rpc_timeout_s=ROUTE_TIMEOUT_S,
    )
    log_dir = tmp_path_factory.mktemp("envoy-failures")
    proc = envoy_process(
        settings, name="envoy-failures", log_dir=log_dir, config_path=log_dir / "envoy.yaml"
    )
    try:
        with proc:
            yield FrontDoor(settings, recorded)
    finally:
        hung.close()
        await server.stop(0)


def _auth(**extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token('failures-user')}", **extra}


async def _call(
    door: FrontDoor, method: str, path: str, *, data: str | None = None, **headers: str
) -> tuple[int, dict, dict[str, str], float]:
    """(HTTP status, JSON body, headers (lower-case names), seconds taken)."""
    if data is not None:
        headers.setdefault("content-type", "application/json")
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        async with http.request(method, door.base + path, data=data, headers=headers) as resp:
            text = await resp.text()
            taken = time.monotonic() - started
            body = json.loads(text) if text.startswith("{") else {"text": text}
            return resp.status, body, {k.lower(): v for k, v in resp.headers.items()}, taken


def _retry_info(body: dict) -> list[dict]:
    return [d for d in body["details"] if d.get("@type", "").endswith("google.rpc.RetryInfo")]


async def _grpc_call(door: FrontDoor, path: str, deadline_s: float = 10) -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{door.settings.listen_port}") as channel:
        call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(b"", metadata=tuple(_auth().items()), timeout=deadline_s)
    return info.value


@pytest.mark.parametrize("origin", [None, ORIGIN])
async def test_a_dead_service_is_503_unavailable_with_retry_after(
    front_door: FrontDoor, origin: str | None
) -> None:
    headers = _auth(**({"origin": origin} if origin else {}))
    status, body, resp, _ = await _call(front_door, "GET", "/api/v1/reels/trending", **headers)
    assert status == 503, body
    assert resp["content-type"] == "application/json", resp
    assert body["code"] == grpc.StatusCode.UNAVAILABLE.value[0], body
    assert body["message"].startswith("svc_rank unavailable"), body
    assert resp["grpc-status"] == "14", resp
    assert resp["retry-after"] == str(UPSTREAM_RETRY_AFTER_S), resp
    (retry,) = _retry_info(body)
    assert retry["retryDelay"] == f"{UPSTREAM_RETRY_AFTER_S}s", body
    if origin:
        assert resp["access-control-allow-origin"] == origin, resp
        assert "retry-after" in resp["access-control-expose-headers"], resp


async def test_a_dead_service_is_unavailable_to_a_grpc_caller(front_door: FrontDoor) -> None:
    error = await _grpc_call(front_door, "/reels.v1.FeedService/GetTrending")
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
    assert error.details().startswith("svc_rank unavailable"), error.details()
    assert ("retry-after", str(UPSTREAM_RETRY_AFTER_S)) in tuple(error.trailing_metadata() or ())


async def test_a_services_own_unavailable_is_left_as_it_said_it(front_door: FrontDoor) -> None:
    """A 503 the service sent (via the transcoder) is not rewritten as Envoy's."""
    status, body, _, _ = await _call(front_door, "GET", "/api/v1/live/s-1", **_auth())
    assert status == 503, body
    assert body["code"] == 14 and body["message"] == OWN_UNAVAILABLE, body


async def test_a_hung_service_is_504_deadline_exceeded_after_the_route_timeout(
    front_door: FrontDoor,
) -> None:
    status, body, resp, taken = await _call(
        front_door, "GET", "/api/v1/transcode/jobs/j-1", **_auth(origin=ORIGIN)
    )
    assert status == 504, body
    assert ROUTE_TIMEOUT_S * 0.9 <= taken < ROUTE_TIMEOUT_S + 3, taken
    assert body["code"] == grpc.StatusCode.DEADLINE_EXCEEDED.value[0], body
    assert body["message"].startswith("svc_transcode did not answer"), body
    assert resp["grpc-status"] == "4", resp
    assert resp["retry-after"] == str(UPSTREAM_RETRY_AFTER_S), resp
    assert _retry_info(body), body
    assert resp["access-control-allow-origin"] == ORIGIN, resp

    started = time.monotonic()
    error = await _grpc_call(front_door, "/reels.v1.TranscodeService/GetJob", deadline_s=30)
    assert time.monotonic() - started < ROUTE_TIMEOUT_S + 3
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error
    assert error.details().startswith("svc_transcode did not answer"), error.details()


def _largest_valid_event(i: int) -> dict:
    return {
        "clientEventId": f"{i:08d}".ljust(MAX_CLIENT_EVENT_ID, "x"),
        "videoId": str(uuid.uuid4()).ljust(MAX_VIDEO_ID, "v"),
        "type": common_pb2.EventType.Name(max(KNOWN_TYPES)),
        "occurredAt": "2026-01-01T00:00:00.123456789Z",
        "positionSeconds": 123456789.123456,
        "watchSeconds": 123456789.123456,
        "rendition": "r" * MAX_RENDITION,
        "device": common_pb2.Device.Name(max(common_pb2.Device.values())),
        "country": "ZZ",
        "sessionId": "s" * MAX_SESSION_ID,
    }


async def test_the_largest_valid_event_batch_passes(front_door: FrontDoor) -> None:
    batch = [_largest_valid_event(i) for i in range(MAX_BATCH)]
    data = json.dumps({"events": batch, "sentAt": "2026-01-01T00:00:00.123456789Z"})
    status, body, _, _ = await _call(front_door, "POST", "/api/v1/events", data=data, **_auth())
    assert status == 200, body
    assert front_door.recorded and front_door.recorded[-1] < BODY_LIMITS[("stream", "RecordEvents")]


async def test_a_20_mb_event_batch_is_413_and_not_worth_retrying(front_door: FrontDoor) -> None:
    """The batch is refused before the service sees it; no Retry-After or RetryInfo: a
    client that retries on 429 (what the service's own limit answered) must not loop."""
    seen = len(front_door.recorded)
    event = _largest_valid_event(0)
    data = json.dumps({"events": [event] * 33_000})
    assert len(data) > 20_000_000
    status, body, resp, _ = await _call(
        front_door, "POST", "/api/v1/events", data=data, **_auth(origin=ORIGIN)
    )
    assert status == 413, body
    assert body["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], body
    assert "send less" in body["message"], body
    assert body["details"] == [], body
    assert "retry-after" not in resp, resp
    assert resp["grpc-status"] == "8", resp
    assert resp["access-control-allow-origin"] == ORIGIN, resp
    assert len(front_door.recorded) == seen, "the service saw the oversized batch"

    # A gRPC caller: RESOURCE_EXHAUSTED, what gRPC answers for a message over its limit.
    request = stream_pb2.RecordEventsRequest(
        events=[stream_pb2.PlayerEvent(client_event_id="x" * 1000)] * 2000
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{front_door.settings.listen_port}") as ch:
        call = ch.unary_unary(
            "/reels.v1.StreamService/RecordEvents",
            request_serializer=stream_pb2.RecordEventsRequest.SerializeToString,
            response_deserializer=stream_pb2.RecordEventsResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(request, metadata=tuple(_auth().items()), timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value
    assert len(front_door.recorded) == seen


async def test_a_missing_web_asset_is_404_without_a_token(front_door: FrontDoor) -> None:
    status, body, resp, _ = await _call(front_door, "GET", "/assets/no-such-file.js")
    assert status == 404, body
    assert body["code"] == grpc.StatusCode.NOT_FOUND.value[0], body
    assert resp["grpc-status"] == "5", resp
