"""The front door: every service is reachable through Envoy as native gRPC, JSON and
gRPC-web; JWT and rate limits are enforced; one request is one trace."""

from __future__ import annotations

import asyncio
import json
import struct
import time
import uuid

import aiohttp
import grpc
import pytest
from reels.v1 import (
    chat_pb2,
    chat_pb2_grpc,
    rank_pb2,
    rank_pb2_grpc,
    stream_pb2,
    stream_pb2_grpc,
    transcode_pb2,
    transcode_pb2_grpc,
    upload_pb2,
    upload_pb2_grpc,
)

from reels_dev.infra.envoy import COMMITTED_CONFIG, EnvoySettings, validate, write_config
from reels_dev.infra.otlp_sink import read_spans
from reels_dev.keys import mint_token
from tests.fixtures.mesh import Mesh


def _auth(user: str = "", **kwargs: object) -> dict[str, str]:
    # A new user per call unless one is named: the feed caches a ranked list per user
    # and never re-serves what a user was served, so tests must not share a viewer.
    user = user or f"alice-{uuid.uuid4().hex[:8]}"
    return {"authorization": f"Bearer {mint_token(user, **kwargs)}"}  # type: ignore[arg-type]


def base(settings: EnvoySettings) -> str:
    return f"http://127.0.0.1:{settings.listen_port}"


# One representative RPC per service: (stub, method, request, JSON path).
FEED_LIMIT = 6
"""Room for the trending pair among the fresh videos other tests publish."""


CALLS = {
    "upload": (
        upload_pb2_grpc.UploadServiceStub,
        "GetVideoStatus",
        upload_pb2.GetVideoStatusRequest(video_id="v-1"),
        "/api/v1/reels/v-1/status",
    ),
    "transcode": (
        transcode_pb2_grpc.TranscodeServiceStub,
        "GetJob",
        transcode_pb2.GetJobRequest(job_id="j-1"),
        "/api/v1/transcode/jobs/j-1",
    ),
    "rank": (
        rank_pb2_grpc.FeedServiceStub,
        "GetFeed",
        rank_pb2.GetFeedRequest(limit=FEED_LIMIT),
        f"/api/v1/reels?limit={FEED_LIMIT}",
    ),
    "stream": (
        stream_pb2_grpc.StreamServiceStub,
        "GetVideoAnalytics",
        stream_pb2.GetVideoAnalyticsRequest(video_id="v-1"),
        "/api/v1/reels/v-1/analytics",
    ),
    "chat": (
        chat_pb2_grpc.ChatServiceStub,
        "GetStream",
        chat_pb2.GetStreamRequest(stream_id="s-1"),
        "/api/v1/live/s-1",
    ),
}
IMPLEMENTED = {"rank"}
# Implemented services whose representative call names nothing that exists: the answer
# still comes from the service itself (e.g. TranscodeService: job "j-1" is not a job).
NOT_FOUND = {"transcode", "upload", "stream", "chat"}
HTTP_STATUS = {grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.NOT_FOUND: 404}


def expected_code(service: str) -> grpc.StatusCode:
    return grpc.StatusCode.NOT_FOUND if service in NOT_FOUND else grpc.StatusCode.UNIMPLEMENTED


# Three published videos whose trending order comes from real watch events.
VID_A, VID_B, VID_C = (f"00000000-0000-4000-8000-00000000000{c}" for c in "abc")


def a_before_b(ids: list[str]) -> bool:
    """The trending pair ranked in order. Other tests of the session publish videos too,
    and the feed reserves slots for fresh ones, so the pair need not be the first two."""
    return VID_A in ids and VID_B in ids and ids.index(VID_A) < ids.index(VID_B)


@pytest.fixture(scope="module")
async def trending(mesh: Mesh) -> None:
    """Publish three videos, record completions 3:2:1 (x10) through svc_stream, and wait until
    the trending job ranks them: the feed then has real data end to end."""
    from datetime import UTC, datetime

    from google.protobuf import duration_pb2, timestamp_pb2
    from reels.v1 import common_pb2, events_pb2

    from tests.publishing import send_published

    now = timestamp_pb2.Timestamp()
    now.FromDatetime(datetime.now(UTC))
    for vid in (VID_A, VID_B, VID_C):
        await send_published(
            mesh.backends.kafka_bootstrap,
            events_pb2.VideoPublished(
                meta=events_pb2.EventMeta(event_id=str(uuid.uuid4()), occurred_at=now),
                video_id=vid,
                # One creator each: the feed allows at most 2 items of a creator in 10.
                creator_id=f"creator-{vid[-1]}",
                duration=duration_pb2.Duration(seconds=10),
                width=720,
                height=1280,
                master_playlist_key=f"videos/{vid}/master.m3u8",
                published_at=now,
                title=f"video {vid[-1]}",
            ),
        )
    # Tens of completions: other tests of the same session (the browser tests watch
    # their own reels) must not outrank these three.
    completions = {VID_A: 30, VID_B: 20, VID_C: 10}
    events = []
    for vid, n in completions.items():
        for i in range(n):
            for kind in (common_pb2.EVENT_TYPE_WATCH_START, common_pb2.EVENT_TYPE_WATCH_COMPLETE):
                events.append(
                    stream_pb2.PlayerEvent(
                        client_event_id=f"{vid}-{i}-{kind}",
                        video_id=vid,
                        type=kind,
                        occurred_at=now,
                        position_seconds=10.0
                        if kind == common_pb2.EVENT_TYPE_WATCH_COMPLETE
                        else 0,
                        watch_seconds=10.0 if kind == common_pb2.EVENT_TYPE_WATCH_COMPLETE else 0,
                        session_id=f"s-{i}",
                        device=common_pb2.DEVICE_WEB,
                    )
                )
    async with grpc.aio.insecure_channel(mesh.addr("stream")) as channel:
        stub = stream_pb2_grpc.StreamServiceStub(channel)
        deadline = time.monotonic() + 60
        while True:  # until the catalog has applied video.published
            reply = await stub.RecordEvents(
                stream_pb2.RecordEventsRequest(events=events),
                metadata=tuple(_auth("viewer").items()),
                timeout=10,
            )
            if reply.accepted_count == len(events):
                break
            assert time.monotonic() < deadline, reply
            await asyncio.sleep(0.5)
        while True:  # until the trending job has ranked them
            page = await stub.ListTrending(
                stream_pb2.ListTrendingRequest(limit=3),
                metadata=tuple(_auth().items()),
                timeout=5,
            )
            if [e.video_id for e in page.entries] == [VID_A, VID_B, VID_C]:
                break
            assert time.monotonic() < deadline, page
            await asyncio.sleep(0.5)
    # svc_rank counts the same watches from video.events on its own (per-view
    # completions and skips): wait until a new user's feed puts A and B first, as the
    # tests below expect.
    async with grpc.aio.insecure_channel(mesh.addr("rank")) as channel:
        feed = rank_pb2_grpc.FeedServiceStub(channel)
        while True:
            reply = await feed.GetFeed(
                rank_pb2.GetFeedRequest(limit=FEED_LIMIT),
                metadata=tuple(_auth().items()),
                timeout=10,
            )
            if a_before_b([i.video_id for i in reply.items]):
                break
            assert time.monotonic() < deadline, [i.video_id for i in reply.items]
            await asyncio.sleep(0.5)


def test_rendered_and_committed_envoy_configs_validate(tmp_path) -> None:
    rendered = write_config(EnvoySettings(), tmp_path / "envoy.yaml")
    for path in (rendered, COMMITTED_CONFIG):
        result = validate(path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "OK" in result.stdout


@pytest.mark.parametrize("service", list(CALLS))
async def test_native_grpc_through_envoy_reaches_each_service(
    service: str, envoy: EnvoySettings, trending: None
) -> None:
    stub_cls, method, request, _ = CALLS[service]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{envoy.listen_port}") as channel:
        call = getattr(stub_cls(channel), method)
        if service in IMPLEMENTED:
            reply = await call(request, metadata=tuple(_auth().items()), timeout=5)
            assert a_before_b([i.video_id for i in reply.items])
            assert reply.next_cursor or len(reply.items) < FEED_LIMIT
        else:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(request, metadata=tuple(_auth().items()), timeout=5)
            # The answer comes from the service itself, not from Envoy.
            assert info.value.code() == expected_code(service)
            if service not in NOT_FOUND:
                assert "not implemented yet" in info.value.details()


@pytest.mark.parametrize("service", list(CALLS))
async def test_json_through_envoy_reaches_each_service(
    service: str, envoy: EnvoySettings, trending: None
) -> None:
    path = CALLS[service][3]
    async with aiohttp.ClientSession() as http:
        async with http.get(base(envoy) + path, headers=_auth()) as resp:
            body = await resp.json(content_type=None)
            if service in IMPLEMENTED:
                assert resp.status == 200, body
                assert a_before_b([i["videoId"] for i in body["items"]])
                (item_a,) = [i for i in body["items"] if i["videoId"] == VID_A]
                # A is recalled by trending; when exploration recalls it too, it may
                # fill a slot reserved for exploration (svc_rank/filter/mixer.py) and
                # then says so. Either way the JSON names the enum and explains it.
                explained = {
                    "FEED_REASON_TRENDING": "Trending now",
                    "FEED_REASON_EXPLORATION": "Something different to try",
                }
                assert item_a["reason"] in explained, item_a
                assert item_a["explanation"] == explained[item_a["reason"]], item_a
            else:
                code = expected_code(service)
                assert resp.status == HTTP_STATUS[code], body
                assert body["code"] == code.value[0]
                if service not in NOT_FOUND:
                    assert "not implemented yet" in body["message"]


def _grpc_web_frame(message: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(message)) + message


def _grpc_web_parse(body: bytes) -> tuple[list[bytes], dict[str, str]]:
    messages, trailers, pos = [], {}, 0
    while pos < len(body):
        flag, length = body[pos], struct.unpack(">I", body[pos + 1 : pos + 5])[0]
        chunk = body[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if flag & 0x80:
            for line in chunk.decode().split("\r\n"):
                if line:
                    k, _, v = line.partition(":")
                    trailers[k.strip().lower()] = v.strip()
        else:
            messages.append(chunk)
    return messages, trailers


@pytest.mark.parametrize("service", list(CALLS))
async def test_grpc_web_through_envoy_reaches_each_service(
    service: str, envoy: EnvoySettings, trending: None
) -> None:
    stub_cls, method, request, _ = CALLS[service]
    full = {
        "upload": "reels.v1.UploadService",
        "transcode": "reels.v1.TranscodeService",
        "rank": "reels.v1.FeedService",
        "stream": "reels.v1.StreamService",
        "chat": "reels.v1.ChatService",
    }[service]
    headers = {
        **_auth(),
        "content-type": "application/grpc-web+proto",
        "x-grpc-web": "1",
        "origin": "http://localhost:5173",
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base(envoy)}/{full}/{method}",
            data=_grpc_web_frame(request.SerializeToString()),
            headers=headers,
        ) as resp:
            assert resp.status == 200
            assert resp.headers["content-type"].startswith("application/grpc-web")
            assert resp.headers.get("access-control-allow-origin") == "http://localhost:5173"
            body = await resp.read()
    messages, trailers = _grpc_web_parse(body)
    status = trailers.get("grpc-status") or resp.headers.get("grpc-status")
    if service in IMPLEMENTED:
        assert status == "0"
        reply = rank_pb2.GetFeedResponse.FromString(messages[0])
        assert a_before_b([i.video_id for i in reply.items])
    else:
        assert status == str(expected_code(service).value[0])


async def test_cors_preflight_is_answered_without_a_token(envoy: EnvoySettings) -> None:
    headers = {
        "origin": "http://localhost:5173",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type,x-grpc-web",
    }
    async with aiohttp.ClientSession() as http:
        async with http.options(
            f"{base(envoy)}/reels.v1.FeedService/GetFeed", headers=headers
        ) as resp:
            assert resp.status == 200
            assert resp.headers["access-control-allow-origin"] == "http://localhost:5173"
            assert "x-grpc-web" in resp.headers["access-control-allow-headers"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"authorization": "Bearer not-a-jwt"}, 401),
        ("expired", 401),
        ("wrong-audience", 403),
        ("valid", 200),
    ],
)
async def test_jwt_is_enforced_at_the_front_door(
    headers: object, status: int, envoy: EnvoySettings, trending: None
) -> None:
    if headers == "expired":
        headers = _auth(now=time.time() - 7200, ttl_seconds=600)
    elif headers == "wrong-audience":
        headers = _auth(audience="someone-else")
    elif headers == "valid":
        headers = _auth()
    async with aiohttp.ClientSession() as http:
        async with http.get(base(envoy) + "/api/v1/reels", headers=headers) as resp:
            assert resp.status == status, await resp.text()


async def test_service_rejects_a_call_without_token_even_inside_the_mesh(mesh: Mesh) -> None:
    async with grpc.aio.insecure_channel(mesh.addr("rank")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await rank_pb2_grpc.FeedServiceStub(channel).GetFeed(rank_pb2.GetFeedRequest())
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "bearer" in info.value.details().lower()


async def test_bad_input_gets_invalid_argument_with_field_violation(
    envoy: EnvoySettings, trending: None
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(base(envoy) + "/api/v1/reels?limit=5000", headers=_auth()) as resp:
            body = await resp.json(content_type=None)
    assert resp.status == 400
    assert body["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "limit" in body["message"]
    violation = body["details"][0]["fieldViolations"][0]
    assert violation["field"] == "limit"


async def test_requests_over_the_rate_limit_get_429(
    envoy_rate_limited: EnvoySettings, trending: None
) -> None:
    # A new user per call: the whole front door's backstop (rate_limit_tokens), which
    # every request spends besides its own client's budget (test_rate_limits_e2e.py).
    statuses = []
    async with aiohttp.ClientSession() as http:
        for _ in range(8):
            async with http.get(base(envoy_rate_limited) + "/api/v1/reels", headers=_auth()) as r:
                statuses.append(r.status)
    assert statuses[:5] == [200] * 5
    assert statuses[5:] == [429] * 3


async def test_one_request_through_envoy_is_one_trace_across_two_services(
    envoy: EnvoySettings, mesh: Mesh, trending: None
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e" + f"{int(time.time()) % 65536:04x}"
    traceparent = f"00-{trace_id}-00f067aa0ba902b7-01"
    async with aiohttp.ClientSession() as http:
        async with http.get(
            base(envoy) + "/api/v1/reels?limit=1",
            headers={**_auth(), "traceparent": traceparent},
        ) as resp:
            assert resp.status == 200
    wanted = {"envoy", "svc_rank", "svc_stream"}
    deadline = time.monotonic() + 15
    spans: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        spans = [s for s in read_spans(mesh.spans_path) if s["trace_id"] == trace_id]
        if wanted <= {s["service"] for s in spans}:
            break
        await asyncio.sleep(0.3)
    services = {s["service"] for s in spans}
    assert wanted <= services, json.dumps(spans, indent=1)
    names = {(s["service"], s["name"]) for s in spans}
    assert ("svc_rank", "/reels.v1.FeedService/GetFeed") in names
    assert ("svc_stream", "/reels.v1.StreamService/ListTrending") in names
    # Every span hangs off another span of the same trace (one connected tree).
    ids = {s["span_id"] for s in spans}
    roots = [s for s in spans if s["parent_span_id"] not in ids]
    assert all(r["parent_span_id"] == "00f067aa0ba902b7" for r in roots), roots
