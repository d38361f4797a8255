"""Bytes that do not decode as the request message are bad input (INVALID_ARGUMENT, HTTP
400), never an INTERNAL/UNKNOWN with a Python class name (HTTP 500)."""

from __future__ import annotations

import aiohttp
import grpc
import pytest

from reels_dev.infra.envoy import EnvoySettings
from reels_dev.keys import mint_token
from tests.fixtures.mesh import Mesh


def _auth() -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token('alice')}"}


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/reels/%ff/playback",
        "/api/v1/reels/%ff",
        "/api/v1/reels?cursor=%00%ff",
        "/api/v1/transcode/jobs/%c3%28",
        "/api/v1/reels/%ed%a0%80/status",  # a UTF-16 surrogate encoded as UTF-8
    ],
)
async def test_invalid_utf8_in_path_or_query_is_400_invalid_argument(
    envoy: EnvoySettings, path: str
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{envoy.listen_port}{path}", headers=_auth()) as r:
            body = await r.json(content_type=None)
    assert r.status == 400, body
    assert body["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "UTF-8" in body["message"] and "class" not in body["message"]


@pytest.mark.parametrize("service", ["upload", "transcode", "rank", "stream", "chat"])
async def test_garbage_request_bytes_are_invalid_argument_on_every_service(
    mesh: Mesh, service: str
) -> None:
    # Field 1 (a string in every request message here) holding bytes that are not UTF-8;
    # sent with an identity serializer so the client does not check them.
    methods = {
        "upload": "/reels.v1.UploadService/GetVideoStatus",
        "transcode": "/reels.v1.TranscodeService/GetJob",
        "rank": "/reels.v1.FeedService/GetFeed",
        "stream": "/reels.v1.StreamService/GetPlayback",
        "chat": "/reels.v1.ChatService/GetStream",
    }
    garbage = b"\x12\x02\xff\xfe" if service == "rank" else b"\x0a\x02\xff\xfe"  # rank: cursor
    async with grpc.aio.insecure_channel(mesh.addr(service)) as channel:
        call = channel.unary_unary(
            methods[service], request_serializer=None, response_deserializer=None
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(garbage, metadata=tuple(_auth().items()))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
