"""A burst larger than gRPC core's own backlog still ends in admission's answers.

The aio server takes arrived calls from gRPC core one at a time; with core's default
backlog (``grpc.server.max_pending_requests`` 1,000, hard limit 3,000) core refused the
rest of a burst as CANCELLED with no details and no retry-after (HTTP 499 through
Envoy's JSON transcoder), before admission control (reels.admission) could answer them.
Here one channel (one HTTP/2 connection, as Envoy's to a service) sends 4,096 calls at
once, Envoy's per-cluster max_requests (reels_dev/infra/envoy.py GRPC_LIMITS): each
must be served, or refused with RESOURCE_EXHAUSTED and a retry-after trailer.
"""

from __future__ import annotations

import asyncio
import collections

import grpc

from reels.admission import Admission
from reels.config import AuthConfig
from reels.server import start_server

BURST = 4096  # Envoy's GRPC_LIMITS.max_requests: the most it sends one service at once


async def _work(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await asyncio.sleep(0.01)  # a database round trip
    return b"ok"


def _register():  # type: ignore[no-untyped-def]
    handler = grpc.method_handlers_generic_handler(
        "test.Work", {"Call": grpc.unary_unary_rpc_method_handler(_work)}
    )

    def add(_servicer: object, server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((handler,))

    return (add, None, "test.Work")


async def test_a_burst_past_grpc_cores_backlog_is_served_or_shed_never_cancelled() -> None:
    admission = Admission("test", max_inflight=64, wait_s=0.05)
    running = await start_server(
        "test", [_register()], admission=admission, auth=AuthConfig(required=False)
    )
    outcomes: collections.Counter[str] = collections.Counter()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            call = ch.unary_unary("/test.Work/Call")

            async def one() -> None:
                try:
                    await call(b"x", timeout=60)
                    outcomes["OK"] += 1
                except grpc.aio.AioRpcError as err:
                    retry_after = dict(err.trailing_metadata() or ()).get("retry-after")
                    outcomes[f"{err.code().name} retry-after={retry_after}"] += 1

            await asyncio.gather(*(one() for _ in range(BURST)))
    finally:
        await running.stop(0.5)
    assert sum(outcomes.values()) == BURST
    assert set(outcomes) <= {"OK", "RESOURCE_EXHAUSTED retry-after=1"}, outcomes
    assert outcomes["OK"] > 0
