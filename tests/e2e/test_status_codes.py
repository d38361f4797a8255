"""A failing JSON call tells one story: the service's gRPC status is the JSON body's
`code`, the HTTP status is the transcoder's mapping of it, and Envoy's access log records
that same gRPC status (not one guessed back from the HTTP status: 400 -> Internal).

The same holds for the answers Envoy writes itself (reels_dev.infra.envoy.LOCAL_REPLIES):
a body the transcoder cannot read, a query value of the wrong type, a body over the
buffer limit, a service answer it cannot turn into JSON, a plain HTTP request on a gRPC
path, an unknown route."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from reels.v1 import events_pb2

from reels.http_errors import HTTP_STATUS
from reels_dev.infra.envoy import GRPC_ONLY_STATUS, EnvoySettings, envoy_process
from reels_dev.infra.process import free_port
from reels_dev.keys import mint_token
from tests.fixtures.mesh import Mesh, _envoy
from tests.publishing import send_published

# Envoy's names in %GRPC_STATUS% (camel case of the code's name, two exceptions).
ENVOY_NAME = {
    code: "".join(part.capitalize() for part in code.name.split("_")) for code in grpc.StatusCode
} | {grpc.StatusCode.OK: "OK", grpc.StatusCode.CANCELLED: "Canceled"}


@pytest.fixture(scope="module")
def logged_envoy(
    mesh: Mesh, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[EnvoySettings, Path]]:
    """A front door of its own, whose stdout (the access log) this module reads."""
    proc = _envoy(mesh, "envoy-status", tmp_path_factory.mktemp("envoy-status"))
    with proc:
        yield proc.settings, proc.log_path  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
async def unplayable(mesh: Mesh, logged_envoy: tuple[EnvoySettings, Path]) -> str:
    """A published video whose media never reached storage: GetPlayback answers
    FAILED_PRECONDITION ("no playable rendition in storage")."""
    settings, _ = logged_envoy
    video_id = str(uuid.uuid4())
    now = timestamp_pb2.Timestamp()
    now.FromDatetime(datetime.now(UTC))
    await send_published(
        mesh.backends.kafka_bootstrap,
        events_pb2.VideoPublished(
            meta=events_pb2.EventMeta(event_id=str(uuid.uuid4()), occurred_at=now),
            video_id=video_id,
            creator_id="creator-status",
            duration=duration_pb2.Duration(seconds=5),
            width=720,
            height=1280,
            master_playlist_key=f"videos/{video_id}/master.m3u8",
            published_at=now,
            title="never stored",
        ),
    )
    url = f"http://127.0.0.1:{settings.listen_port}/api/v1/reels/{video_id}/playback"
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while True:  # until svc_stream's catalog has applied video.published
            async with http.get(url, headers=_auth()) as resp:
                if resp.status != 404:
                    break
            assert time.monotonic() < deadline, "video.published never reached the catalog"
            await asyncio.sleep(0.3)
    return video_id


def _auth() -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token('status-user')}"}


async def _access_log_line(log: Path, trace_id: str, within: float = 10.0) -> dict:
    """The access log entry of the request of this trace (Envoy logs its traceparent)."""
    deadline = time.monotonic() + within
    while True:
        text = await asyncio.to_thread(log.read_text, errors="replace")
        for line in text.splitlines():
            if trace_id in line and line.startswith("{"):
                return json.loads(line)
        assert time.monotonic() < deadline, f"no access log line for trace {trace_id}"
        await asyncio.sleep(0.2)


async def _call(
    settings: EnvoySettings,
    path: str,
    *,
    method: str = "GET",
    data: str | bytes | None = None,
    **headers: str,
) -> tuple[int, dict, str, dict]:
    """``method path``; (HTTP status, JSON body, trace id, response headers)."""
    trace_id = uuid.uuid4().hex
    if data is not None:
        headers.setdefault("content-type", "application/json")
    async with aiohttp.ClientSession() as http:
        async with http.request(
            method,
            f"http://127.0.0.1:{settings.listen_port}{path}",
            data=data,
            headers={**headers, "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        ) as resp:
            text = await resp.text()
            body = json.loads(text) if text.startswith("{") else {"text": text}
            return resp.status, body, trace_id, dict(resp.headers)


async def test_failed_precondition_is_400_code_9_and_failed_precondition_in_the_log(
    logged_envoy: tuple[EnvoySettings, Path], unplayable: str
) -> None:
    settings, log = logged_envoy
    status, body, trace_id, headers = await _call(
        settings, f"/api/v1/reels/{unplayable}/playback", **_auth()
    )
    code = grpc.StatusCode.FAILED_PRECONDITION
    assert status == HTTP_STATUS[code] == 400, body
    assert body["code"] == code.value[0], body
    assert "no playable rendition" in body["message"]
    assert headers.get("grpc-status") == str(code.value[0])
    entry = await _access_log_line(log, trace_id)
    assert entry["grpc_status"] == "FailedPrecondition", entry
    assert entry["status"] == 400, entry


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/api/v1/reels?limit=5000", grpc.StatusCode.INVALID_ARGUMENT),
        (f"/api/v1/transcode/jobs/{uuid.uuid4()}", grpc.StatusCode.NOT_FOUND),
        ("/api/v1/live/s-1", grpc.StatusCode.NOT_FOUND),
        ("/api/v1/reels?limit=2", grpc.StatusCode.OK),
    ],
    ids=lambda v: v.name if isinstance(v, grpc.StatusCode) else None,
)
async def test_http_status_body_and_access_log_agree(
    path: str, code: grpc.StatusCode, logged_envoy: tuple[EnvoySettings, Path]
) -> None:
    settings, log = logged_envoy
    status, body, trace_id, _ = await _call(settings, path, **_auth())
    assert status == HTTP_STATUS[code], body
    if code != grpc.StatusCode.OK:
        assert body["code"] == code.value[0], body
    entry = await _access_log_line(log, trace_id)
    assert entry["grpc_status"] == ENVOY_NAME[code], entry
    assert entry["status"] == status, entry
    # The client's method, not the POST the transcoder turned it into.
    assert entry["method"] == "GET", entry


async def test_front_door_refusals_agree_too(logged_envoy: tuple[EnvoySettings, Path]) -> None:
    settings, log = logged_envoy
    status, _, trace_id, _ = await _call(settings, "/api/v1/reels")
    assert status == 401
    entry = await _access_log_line(log, trace_id)
    assert entry["grpc_status"] == "Unauthenticated", entry


def _events(*events: dict) -> str:
    return json.dumps({"events": list(events)})


# What the transcoder itself refuses, one of each kind: (method, path, JSON body).
BAD_INPUT = {
    "truncated_json": ("POST", "/api/v1/events", "{"),
    "not_json": ("POST", "/api/v1/events", "not json"),
    "array_for_message": ("POST", "/api/v1/events", "[]"),
    "string_for_list": ("POST", "/api/v1/events", '{"events":"x"}'),
    "number_for_string": ("POST", "/api/v1/events", _events({"videoId": 123})),
    "unknown_enum_name": (
        "POST",
        "/api/v1/events",
        _events({"clientEventId": "c-1", "videoId": "v-1", "type": "NO_SUCH_TYPE"}),
    ),
    "query_not_a_number": ("GET", "/api/v1/reels?limit=abc", None),
    "query_out_of_int32": ("GET", "/api/v1/reels?limit=99999999999999999999", None),
    "query_unknown_enum_name": ("GET", "/api/v1/transcode/jobs?state=NO_SUCH_STATE", None),
    "query_camel_case_name": ("GET", "/api/v1/transcode/jobs?pageSize=ten", None),
}


@pytest.mark.parametrize("kind", BAD_INPUT)
async def test_what_the_transcoder_refuses_is_invalid_argument_everywhere(
    kind: str, logged_envoy: tuple[EnvoySettings, Path]
) -> None:
    settings, log = logged_envoy
    method, path, data = BAD_INPUT[kind]
    status, body, trace_id, headers = await _call(
        settings, path, method=method, data=data, **_auth()
    )
    await _agree(log, trace_id, method, status, body, headers, grpc.StatusCode.INVALID_ARGUMENT)


async def _agree(
    log: Path,
    trace_id: str,
    method: str,
    status: int,
    body: dict,
    headers: dict,
    code: grpc.StatusCode,
    http_status: int | None = None,
) -> None:
    """HTTP status, JSON body (the shape of a service's error through the transcoder),
    grpc-status header and the access log's gRPC status all say ``code``."""
    assert status == (http_status or HTTP_STATUS[code]), (status, body)
    assert headers.get("Content-Type") == "application/json", headers
    assert body["code"] == code.value[0], body
    assert body["message"], body
    assert body["details"] == [], body
    assert headers.get("grpc-status") == str(code.value[0]), headers
    entry = await _access_log_line(log, trace_id)
    assert entry["grpc_status"] == ENVOY_NAME[code], entry
    assert entry["status"] == status, entry
    assert entry["method"] == method, entry


async def test_over_the_transcoders_buffer_is_413_or_a_per_item_rejection(
    logged_envoy: tuple[EnvoySettings, Path],
) -> None:
    """A 1 MiB string through the transcoder, whose buffer is 1 MiB (Envoy's default).
    If the body arrives in big enough pieces, the request is refused: 413 with
    RESOURCE_EXHAUSTED (gRPC's answer to a message over its limit; the one local reply
    whose HTTP status is not its code's mapping, 429), and all four places agree. If it
    streams through the transcoder, the request is over RecordEvents' body limit
    (BODY_LIMITS, 1 MiB): the same 413. (Before that limit, RecordEvents rejected that
    item alone for its length without echoing the id back.)"""
    settings, log = logged_envoy
    data = _events({"clientEventId": "x" * (1 << 20), "videoId": "v-1"})
    status, body, trace_id, headers = await _call(
        settings, "/api/v1/events", method="POST", data=data, **_auth()
    )
    if status == 413:
        code, http_status = grpc.StatusCode.RESOURCE_EXHAUSTED, 413
        await _agree(log, trace_id, "POST", status, body, headers, code, http_status)
        # The transcoder's buffer, or RecordEvents' body limit (BODY_LIMITS, 1 MiB): one
        # message, since the client must do the same either way.
        assert "send less" in body["message"], body
        return
    assert status == 200, (status, body)
    assert body["acceptedCount"] == 0, body
    (item,) = body["results"]
    assert not item["accepted"] and item["reason"].startswith("client_event_id longer"), item
    assert item["clientEventId"] == "", item


async def test_plain_http_on_a_grpc_path_is_a_client_error(
    logged_envoy: tuple[EnvoySettings, Path],
) -> None:
    """Not a 503 from the service resetting a stream it cannot read: 415, and the body
    says what to use."""
    settings, log = logged_envoy
    for method, path in [
        ("GET", "/reels.v1.FeedService/GetFeed"),
        ("POST", "/reels.v1.UploadService/GetVideoStatus"),
        ("GET", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
    ]:
        status, body, trace_id, headers = await _call(
            settings, path, method=method, data="{}" if method == "POST" else None, **_auth()
        )
        await _agree(
            log,
            trace_id,
            method,
            status,
            body,
            headers,
            grpc.StatusCode.INVALID_ARGUMENT,
            GRPC_ONLY_STATUS,
        )
        assert "/api/v1" in body["message"], body


async def test_an_unknown_route_is_404_not_found_for_http_and_unimplemented_for_grpc(
    logged_envoy: tuple[EnvoySettings, Path],
) -> None:
    settings, log = logged_envoy
    status, body, trace_id, headers = await _call(settings, "/api/v2/nothing", **_auth())
    await _agree(log, trace_id, "GET", status, body, headers, grpc.StatusCode.NOT_FOUND)

    # A gRPC client of a service that is not here gets what a gRPC server answers.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{settings.listen_port}") as channel:
        call = channel.unary_unary(
            "/no.such.Service/Call", request_serializer=None, response_deserializer=None
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(b"", metadata=tuple(_auth().items()), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def _garbage(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b"\x0f\x01"  # field 1 with wire type 7, which does not exist


@pytest.fixture(scope="module")
async def broken_rank(
    mesh: Mesh, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[EnvoySettings, Path]]:
    """A front door whose FeedService answers bytes that are no GetFeedResponse."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "reels.v1.FeedService",
                {"GetFeed": grpc.unary_unary_rpc_method_handler(_garbage)},
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    log_dir = tmp_path_factory.mktemp("envoy-broken")
    settings = EnvoySettings(
        listen_port=free_port(),
        admin_port=free_port(),
        service_ports={**mesh.ports, "rank": port},
        media_port=free_port(),
        upload_http_port=mesh.upload_http_port,
        otlp_port=mesh.otlp_port,
    )
    proc = envoy_process(
        settings, name="envoy-broken", log_dir=log_dir, config_path=log_dir / "envoy.yaml"
    )
    try:
        with proc:
            yield settings, proc.log_path  # type: ignore[attr-defined]
    finally:
        await server.stop(0)


async def test_a_service_answer_that_is_not_its_message_is_500_internal(
    broken_rank: tuple[EnvoySettings, Path],
) -> None:
    settings, log = broken_rank
    status, body, trace_id, headers = await _call(settings, "/api/v1/reels?limit=2", **_auth())
    await _agree(log, trace_id, "GET", status, body, headers, grpc.StatusCode.INTERNAL)


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/api/v1/live/" + "a" * 15_000, "GET", {404}),
        ("/api/v1/live/" + "a" * 20_000 + ":start", "POST", {404}),
        ("/api/v1/reels?cursor=" + "A" * 50_000, "GET", {400}),
        ("/api/v1/creators/" + "c" * 20_000 + "/see-fewer", "POST", {400}),
    ],
    ids=["long-stream-id", "long-stream-id-start", "long-cursor", "long-creator-id"],
)
async def test_oversized_paths_are_the_clients_fault_not_retry_later(
    path: str, method: str, statuses: set[int], logged_envoy: tuple[EnvoySettings, Path]
) -> None:
    """A 15-50 KB path is below Envoy's header limit but was above gRPC's metadata limit
    (16 KiB): the service answered RESOURCE_EXHAUSTED, a 429 listing our headers."""
    settings, _ = logged_envoy
    status, body, _, _ = await _call(settings, path, method=method, data="{}", **_auth())
    assert status in statuses, body
    assert "metadata" not in body.get("message", "") and len(body.get("message", "")) < 400
