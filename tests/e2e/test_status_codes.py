"""A failing JSON call tells one story: the service's gRPC status is the JSON body's
`code`, the HTTP status is the transcoder's mapping of it, and Envoy's access log records
that same gRPC status (not one guessed back from the HTTP status: 400 -> Internal)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from reels.v1 import events_pb2

from reels.http_errors import HTTP_STATUS
from reels_dev.infra.envoy import EnvoySettings
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


async def _call(settings: EnvoySettings, path: str, **headers: str) -> tuple[int, dict, str, dict]:
    """GET ``path``; (HTTP status, JSON body, trace id, response headers)."""
    trace_id = uuid.uuid4().hex
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"http://127.0.0.1:{settings.listen_port}{path}",
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
        ("/api/v1/live/s-1", grpc.StatusCode.UNIMPLEMENTED),
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


async def test_front_door_refusals_agree_too(logged_envoy: tuple[EnvoySettings, Path]) -> None:
    settings, log = logged_envoy
    status, _, trace_id, _ = await _call(settings, "/api/v1/reels")
    assert status == 401
    entry = await _access_log_line(log, trace_id)
    assert entry["grpc_status"] == "Unauthenticated", entry
