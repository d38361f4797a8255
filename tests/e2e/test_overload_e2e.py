"""A saturated service's refusal through the real front door (issue 14 section 2).

The service here is a real gRPC server built by ``reels.server.start_server`` with the
project's interceptors and admission control (one slot, no wait), serving FeedService
with a servicer whose GetTrending holds its slot until the test lets go: that is how
the slot gets taken deterministically. Envoy is the project's config (own ports, the
rank cluster pointed at this server). What is checked is what a client sees: the JSON
client gets 429 with ``Retry-After`` and a google.rpc.Status body with RetryInfo; a
gRPC client through Envoy gets RESOURCE_EXHAUSTED with RetryInfo; the next call after
the slot frees is served.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from reels.v1 import rank_pb2, rank_pb2_grpc

from reels import errors
from reels.admission import Admission
from reels.config import AuthConfig
from reels.server import RunningServer, start_server
from reels_dev.infra.envoy import EnvoySettings
from reels_dev.keys import ensure_dev_keys, mint_token
from tests.fixtures.mesh import Mesh, _envoy
from tests.polling import eventually


class _HeldTrending(rank_pb2_grpc.FeedServiceServicer):
    def __init__(self) -> None:
        self.hold = asyncio.Event()
        self.holding = 0

    async def GetTrending(  # noqa: N802 - generated name
        self, request: rank_pb2.GetTrendingRequest, context: grpc.aio.ServicerContext
    ) -> rank_pb2.GetTrendingResponse:
        if request.region == "hold":
            self.holding += 1
            await self.hold.wait()
        return rank_pb2.GetTrendingResponse()


@pytest.fixture
async def one_slot_rank() -> AsyncIterator[tuple[RunningServer, _HeldTrending]]:
    ensure_dev_keys()
    servicer = _HeldTrending()
    running = await start_server(
        "rank",
        [(rank_pb2_grpc.add_FeedServiceServicer_to_server, servicer, "reels.v1.FeedService")],
        auth=AuthConfig(),
        admission=Admission("rank", max_inflight=1, wait_s=0.0),
    )
    try:
        yield running, servicer
    finally:
        servicer.hold.set()
        await running.stop(0.5)


async def test_a_saturated_service_answers_429_with_retry_after_through_envoy(
    mesh: Mesh, one_slot_rank: tuple[RunningServer, _HeldTrending], tmp_path: Path
) -> None:
    running, servicer = one_slot_rank
    proc = _envoy(mesh, "envoy-overload", tmp_path, service_ports={"rank": running.port})
    settings: EnvoySettings = proc.settings  # type: ignore[attr-defined]
    base = f"http://127.0.0.1:{settings.listen_port}"
    headers = {"authorization": f"Bearer {mint_token('overload-e2e')}"}
    with proc:
        async with aiohttp.ClientSession() as http:

            async def served() -> bool:
                async with http.get(f"{base}/api/v1/reels/trending", headers=headers) as r:
                    return r.status == 200

            await eventually(served, 30, "Envoy never routed to the one-slot service")
            held = asyncio.ensure_future(
                http.get(f"{base}/api/v1/reels/trending?region=hold", headers=headers)
            )
            await eventually(
                lambda: _true(servicer.holding == 1), 10, "the held call never arrived"
            )
            async with http.get(f"{base}/api/v1/reels/trending", headers=headers) as r:
                body = json.loads(await r.text())
                assert r.status == 429, body
                assert r.headers.get("retry-after") == "1"
            assert body["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
            assert "svc_rank is overloaded" in body["message"]
            assert any(
                d.get("@type", "").endswith("google.rpc.RetryInfo") for d in body["details"]
            ), body

            async with grpc.aio.insecure_channel(f"127.0.0.1:{settings.listen_port}") as ch:
                stub = rank_pb2_grpc.FeedServiceStub(ch)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.GetTrending(
                        rank_pb2.GetTrendingRequest(),
                        metadata=tuple(headers.items()),
                        timeout=10,
                    )
                assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                (retry,) = [
                    d for d in errors.from_rpc_error(refused.value) if hasattr(d, "retry_delay")
                ]
                assert retry.retry_delay.seconds == 1

            servicer.hold.set()
            response = await held
            assert response.status == 200
            response.release()
            assert await served()


async def _true(value: bool) -> bool:
    return value
