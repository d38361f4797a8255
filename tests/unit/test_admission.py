"""Admission control (reels.admission) on a real grpc.aio server: a saturated service
answers RESOURCE_EXHAUSTED with RetryInfo and a retry-after trailer at once, health
checks are always answered, and a slot frees when its call ends (error or not)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reels import errors
from reels.admission import Admission
from reels.config import AuthConfig, SettingError, server_settings
from reels.server import start_server

METHOD = "/test.Slow/Call"


class _Slow:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    async def call(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.entered += 1
        if request == b"fail":
            raise errors.InvalidArgument("bad")
        await self.release.wait()
        return b"ok"


def _register(slow: _Slow):  # type: ignore[no-untyped-def]
    handler = grpc.method_handlers_generic_handler(
        "test.Slow",
        {"Call": grpc.unary_unary_rpc_method_handler(slow.call)},
    )

    def add(_servicer: object, server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((handler,))

    return (add, None, "test.Slow")


async def test_a_saturated_service_sheds_with_retry_info_and_frees_slots() -> None:
    slow = _Slow()
    admission = Admission("test", max_inflight=2, wait_s=0.05)
    running = await start_server(
        "test", [_register(slow)], admission=admission, auth=AuthConfig(required=False)
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            call = ch.unary_unary(METHOD)
            held = [asyncio.ensure_future(call(b"x", timeout=10)) for _ in range(2)]
            for _ in range(500):
                if slow.entered >= 2:
                    break
                await asyncio.sleep(0.01)
            assert slow.entered == 2
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call(b"x", timeout=10)
            err = refused.value
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "svc_test is overloaded" in (err.details() or "")
            trailers = dict(err.trailing_metadata() or ())
            assert trailers.get("retry-after") == "1"
            (retry,) = [d for d in errors.from_rpc_error(err) if hasattr(d, "retry_delay")]
            assert retry.retry_delay.seconds == 1
            # Health is never shed.
            health = health_pb2_grpc.HealthStub(ch)
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            slow.release.set()
            assert await asyncio.gather(*held) == [b"ok", b"ok"]
            # Slots came back, also from a call that failed.
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await call(b"fail", timeout=5)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert await call(b"x", timeout=5) == b"ok"
            assert admission.inflight == 0 and admission.shed == 1
    finally:
        await running.stop(0.5)


async def test_a_short_burst_waits_for_a_slot_instead_of_failing() -> None:
    slow = _Slow()
    slow.release.set()
    admission = Admission("test", max_inflight=1, wait_s=5.0)
    running = await start_server(
        "test", [_register(slow)], admission=admission, auth=AuthConfig(required=False)
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            call = ch.unary_unary(METHOD)
            assert (
                await asyncio.gather(*(call(b"x", timeout=10) for _ in range(20))) == [b"ok"] * 20
            )
            assert admission.shed == 0
    finally:
        await running.stop(0.5)


def test_admission_settings_per_service_override_the_global_ones() -> None:
    env = {"REELS_MAX_INFLIGHT_RPCS": "64", "REELS_RANK_ADMISSION_WAIT_MS": "50"}
    rank = server_settings("rank", env)
    assert (rank.max_inflight_rpcs, rank.admission_wait_s) == (64, 0.05)
    upload = server_settings("upload", env)
    assert (upload.max_inflight_rpcs, upload.admission_wait_s) == (64, 1.0)
    with pytest.raises(SettingError):
        server_settings("rank", {"REELS_MAX_INFLIGHT_RPCS": "-1"})
