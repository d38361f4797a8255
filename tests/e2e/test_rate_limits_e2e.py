"""Rate limits at the front door (issue 14 §3): per verified JWT subject and class, per
client IP for what needs no token; a refused client gets 429 + Retry-After (gRPC:
RESOURCE_EXHAUSTED with a RetryInfo), and nobody else is refused because of it.

The Envoy here has small budgets refilled every FILL_S seconds, so a test finishes long
before a bucket gains a token back (the refill is continuous: budget / FILL_S per s).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from google.rpc import error_details_pb2
from reels.v1 import stream_pb2, stream_pb2_grpc, upload_pb2, upload_pb2_grpc

from reels.errors import from_rpc_error
from reels_dev.infra.envoy import (
    RATE_LIMITED_MESSAGE,
    EnvoySettings,
    envoy_process,
    rate_limit_budgets,
    validate,
    write_config,
)
from reels_dev.infra.process import free_port
from reels_dev.keys import mint_token
from tests.fixtures.mesh import Mesh, _envoy

FILL_S = 600
READS = 5
WRITES = 3
PER_IP = 3
ORIGIN = "http://127.0.0.1:5173"  # one of the default CORS origins


@pytest.fixture(scope="module")
def limited(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnvoySettings]:
    proc = _envoy(
        mesh,
        "envoy-rate-limits",
        tmp_path_factory.mktemp("envoy-rate-limits"),
        rate_limit_reads=READS,
        rate_limit_writes=WRITES,
        rate_limit_media_per_ip=PER_IP,
        rate_limit_public_per_ip=PER_IP,
        rate_limit_fill_seconds=FILL_S,
    )
    with proc:
        yield proc.settings  # type: ignore[attr-defined]


def _user() -> str:
    return f"rl-{uuid.uuid4().hex[:8]}"


def _auth(user: str) -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(user)}"}


def base(settings: EnvoySettings) -> str:
    return f"http://127.0.0.1:{settings.listen_port}"


async def _read(
    http: aiohttp.ClientSession, settings: EnvoySettings, user: str
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """UploadService.GetVideoStatus through the JSON API: a read. Status, headers, body."""
    headers = {**_auth(user), "origin": ORIGIN}
    async with http.get(base(settings) + "/api/v1/reels/v-none/status", headers=headers) as r:
        return r.status, dict(r.headers), await r.json(content_type=None)


def _assert_refusal(status: int, headers: dict[str, str], body: dict[str, Any]) -> None:
    assert status == 429, body
    assert headers["Retry-After"] == str(FILL_S)
    assert body["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert body["message"] == RATE_LIMITED_MESSAGE
    assert body["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{FILL_S}s"}
    ]


async def test_one_user_over_budget_is_refused_while_another_is_not(
    limited: EnvoySettings,
) -> None:
    greedy, calm = _user(), _user()
    async with aiohttp.ClientSession() as http:

        async def calm_user() -> list[int]:
            statuses = []
            for _ in range(READS):  # the whole budget, spread over the greedy burst
                statuses.append((await _read(http, limited, calm))[0])
                await asyncio.sleep(0.05)
            return statuses

        burst, calm_statuses = await asyncio.gather(
            asyncio.gather(*(_read(http, limited, greedy) for _ in range(10 * READS))),
            calm_user(),
        )
        # The greedy user's other classes are untouched: a write still reaches the service.
        async with http.post(
            base(limited) + "/api/v1/reels/v-none/like", headers=_auth(greedy), json={}
        ) as r:
            write_status = r.status
    refused = [answer for answer in burst if answer[0] == 429]
    served = [answer[0] for answer in burst if answer[0] != 429]
    assert len(served) == READS, served
    assert len(refused) == 9 * READS
    for status, headers, body in refused:
        _assert_refusal(status, headers, body)
        assert headers["Access-Control-Allow-Origin"] == ORIGIN  # a page can read why
    # The service answered the calm user every time (the video does not exist).
    assert 429 not in calm_statuses and len(set(calm_statuses)) == 1, calm_statuses
    assert calm_statuses[0] == served[0] < 500
    assert write_status != 429 and write_status < 500, write_status


async def test_grpc_client_over_budget_gets_resource_exhausted_with_retry_info(
    limited: EnvoySettings,
) -> None:
    metadata = tuple(_auth(_user()).items())
    answers: list[grpc.StatusCode] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{limited.listen_port}") as channel:
        stub = upload_pb2_grpc.UploadServiceStub(channel)
        for _ in range(READS):
            with pytest.raises(grpc.aio.AioRpcError) as served:
                await stub.GetVideoStatus(
                    upload_pb2.GetVideoStatusRequest(video_id="v-none"),
                    metadata=metadata,
                    timeout=10,
                )
            answers.append(served.value.code())
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetVideoStatus(
                upload_pb2.GetVideoStatusRequest(video_id="v-none"), metadata=metadata, timeout=10
            )
        # Writes are a budget of their own (WRITES per user): this one is served.
        with pytest.raises(grpc.aio.AioRpcError) as write:
            await stream_pb2_grpc.StreamServiceStub(channel).LikeVideo(
                stream_pb2.LikeVideoRequest(video_id="v-none"), metadata=metadata, timeout=10
            )
    # The service's own answers (the video does not exist), not Envoy's.
    assert not {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE} & set(answers)
    refused = info.value
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.details() == RATE_LIMITED_MESSAGE
    (retry,) = [d for d in from_rpc_error(refused) if isinstance(d, error_details_pb2.RetryInfo)]
    assert retry.retry_delay.seconds == FILL_S
    assert dict(refused.trailing_metadata())["retry-after"] == str(FILL_S)  # type: ignore[arg-type]
    assert write.value.code() not in (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAVAILABLE,
    )


async def test_media_is_limited_per_client_address_whatever_it_claims(
    limited: EnvoySettings,
) -> None:
    """/media/ needs no token: its budget is the peer address's. A forged X-Forwarded-For
    or a token for a new user each time does not give a client a new bucket."""
    statuses = []
    async with aiohttp.ClientSession() as http:
        for i in range(PER_IP + 2):
            headers = {"x-forwarded-for": f"203.0.113.{i}", **_auth(_user())}
            async with http.get(
                base(limited) + "/media/videos/v-none/master.m3u8", headers=headers
            ) as r:
                statuses.append(r.status)
                last = (
                    r.status,
                    dict(r.headers),
                    await r.json(content_type=None) if r.status == 429 else {},
                )
    assert all(s not in (429, 503) for s in statuses[:PER_IP]), statuses  # the origin's
    assert statuses[PER_IP:] == [429, 429], statuses
    _assert_refusal(*last)


async def test_tus_discovery_is_limited_per_client_address(limited: EnvoySettings) -> None:
    statuses = []
    async with aiohttp.ClientSession() as http:
        for _ in range(PER_IP + 2):
            async with http.options(base(limited) + "/api/v1/uploads/tus/") as r:
                statuses.append(r.status)
                if r.status == 429:
                    refusal = (r.status, dict(r.headers), await r.json(content_type=None))
                else:
                    assert r.headers["Tus-Version"]  # svc_upload's answer
    assert statuses[PER_IP:] == [429, 429], statuses
    _assert_refusal(*refusal)
    # Uploads with a token are per user: this one still starts.
    async with aiohttp.ClientSession() as http:
        headers = {**_auth(_user()), "Tus-Resumable": "1.0.0", "Upload-Length": "10"}
        async with http.post(base(limited) + "/api/v1/uploads/tus/", headers=headers) as r:
            assert r.status != 429, await r.text()


def test_budgets_below_one_are_refused_and_the_config_validates(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reads per user must be at least 1"):
        rate_limit_budgets(EnvoySettings(rate_limit_reads=0))
    settings = EnvoySettings(rate_limit_chat=1, rate_limit_media_per_ip=7, web_dist=None)
    result = validate(write_config(settings, tmp_path / "envoy.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


# -- the user header: only jwt_authn writes it ------------------------------------------


@pytest.fixture
async def echo() -> AsyncIterator[tuple[int, list[dict[str, str]]]]:
    """An HTTP upstream that records the headers of each request it gets."""
    seen: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append({k.lower(): v for k, v in request.headers.items()})
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port, seen
    finally:
        await runner.cleanup()


async def test_a_client_cannot_name_the_user_upstream(
    echo: tuple[int, list[dict[str, str]]], tmp_path: Path
) -> None:
    port, seen = echo
    settings = EnvoySettings(
        listen_port=free_port(),
        admin_port=free_port(),
        service_ports={name: free_port() for name in EnvoySettings().service_ports},
        media_port=port,
        upload_http_port=port,
        chat_ws_port=free_port(),
        otlp_port=free_port(),
        web_dist=None,
    )
    proc = envoy_process(
        settings, name="envoy-echo", log_dir=tmp_path, config_path=tmp_path / "e.yaml"
    )
    spoof = {"x-reels-user": "mallory"}
    with proc:
        async with aiohttp.ClientSession() as http:
            async with http.get(base(settings) + "/media/x.m3u8", headers=spoof) as r:
                assert r.status == 204
            headers = {**spoof, **_auth("alice"), "Tus-Resumable": "1.0.0"}
            async with http.post(base(settings) + "/api/v1/uploads/tus/", headers=headers) as r:
                assert r.status == 204
    media, tus = seen
    assert "x-reels-user" not in media
    assert tus["x-reels-user"] == "alice"
