"""Playback through the real front door: publish a clip, then play it like a player.

The whole mesh runs as processes behind Envoy (tests/fixtures/mesh.py). The clip is
transcoded by svc_transcode's pipeline, stored where the mesh's object store lives,
and announced on Kafka exactly as svc_transcode announces it; svc_stream's catalog
consumer picks it up. Then ffprobe/ffmpeg, given only the signed master URL, fetch
and decode every rendition through Envoy's ``/media/`` route.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import pytest

from reels_dev.infra.envoy import EnvoySettings
from reels_dev.keys import mint_token
from tests.fixtures.mesh import Mesh
from tests.hls_check import assert_playlist_valid
from tests.publishing import publish_to_store, send_published, transcode_ladder

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg/ffprobe are not installed (scripts/setup.sh)",
)

RUNGS = ["360p", "480p", "720p", "1080p"]


def _auth() -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token('viewer-1')}"}


FFMPEG_TIMEOUT_S = 120


async def _run(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), FFMPEG_TIMEOUT_S)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="module")
async def published(
    mesh: Mesh,
    envoy: EnvoySettings,
    http: aiohttp.ClientSession,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """A video published through Kafka; returns its id once playback info is served."""
    assert mesh.backends.storage_root is not None
    ladder, result = await transcode_ladder(tmp_path_factory.mktemp("e2e-clip"))
    video_id = str(uuid.uuid4())
    event = publish_to_store(ladder, result, mesh.backends.storage_root, video_id)
    await send_published(mesh.backends.kafka_bootstrap, event)
    url = f"http://127.0.0.1:{envoy.listen_port}/api/v1/reels/{video_id}/playback"
    async with asyncio.timeout(60):
        while True:
            async with http.get(url, headers=_auth()) as resp:
                if resp.status == 200:
                    return video_id
                assert resp.status == 404, await resp.text()
            await asyncio.sleep(0.3)


async def _playback(
    http: aiohttp.ClientSession, envoy: EnvoySettings, video_id: str, query: str = ""
) -> dict[str, object]:
    url = f"http://127.0.0.1:{envoy.listen_port}/api/v1/reels/{video_id}/playback{query}"
    async with http.get(url, headers=_auth()) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]


async def test_ffmpeg_decodes_every_rendition_from_only_the_signed_master_url(
    http: aiohttp.ClientSession, envoy: EnvoySettings, published: str
) -> None:
    info = await _playback(http, envoy, published)
    master = str(info["masterManifestUrl"])
    assert master.startswith(f"http://127.0.0.1:{envoy.listen_port}/media/")
    assert [r["name"] for r in info["renditions"]] == RUNGS  # type: ignore[index, union-attr]
    assert info["recommendedRendition"] == "480p"

    rc, out, err = await _run(
        "ffprobe", "-v", "error", "-show_programs", "-show_entries",
        "stream=codec_type,width,height", "-of", "json", master,
    )  # fmt: skip
    assert rc == 0, err
    programs = json.loads(out)["programs"]
    heights = sorted(
        s["height"] for p in programs for s in p["streams"] if s["codec_type"] == "video"
    )
    assert heights == [360, 480, 720, 1080]

    # -map 0: every variant's streams, so every rendition's segments are fetched and decoded.
    rc, _, err = await _run("ffmpeg", "-v", "error", "-i", master, "-map", "0", "-f", "null", "-")
    assert rc == 0 and err.strip() == "", err


async def test_manifest_through_envoy_is_the_signed_master_playlist(
    http: aiohttp.ClientSession, envoy: EnvoySettings, published: str
) -> None:
    url = f"http://127.0.0.1:{envoy.listen_port}/api/v1/reels/{published}/manifest.m3u8"

    async with http.get(url) as anonymous:
        assert anonymous.status == 401
    async with http.get(url, headers=_auth()) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
        body = await resp.text()
    async with http.get(url + "?device=DEVICE_ANDROID", headers=_auth()) as resp:
        android = await resp.text()

    variants = [line for line in body.splitlines() if line and not line.startswith("#")]
    assert body.startswith("#EXTM3U") and len(variants) == len(RUNGS)
    assert_playlist_valid(body, "served master")  # RFC 8216 (tests/hls_check.py)
    assert all(
        v.startswith(f"http://127.0.0.1:{envoy.listen_port}/media/") and "sig=" in v
        for v in variants
    )
    assert "/480p/" in variants[0]
    android_variants = [ln for ln in android.splitlines() if ln and not ln.startswith("#")]
    assert len(android_variants) == 3 and not any("/1080p/" in v for v in android_variants)
    for variant in variants:
        async with http.get(variant) as playlist:  # no token: the signature is the credential
            assert playlist.status == 200
            text = await playlist.text()
            assert "#EXT-X-ENDLIST" in text
            assert_playlist_valid(text, variant)


async def test_tampered_signature_through_envoy_is_forbidden(
    http: aiohttp.ClientSession, envoy: EnvoySettings, published: str
) -> None:
    info = await _playback(http, envoy, published)
    parts = urlsplit(str(info["masterManifestUrl"]))
    query = dict(parse_qsl(parts.query))
    query["sig"] = ("A" if query["sig"][0] != "A" else "B") + query["sig"][1:]
    tampered = urlunsplit(parts._replace(query=urlencode(query)))

    async with http.get(tampered) as resp:
        assert resp.status == 403
    async with http.get(str(info["masterManifestUrl"])) as resp:
        assert resp.status == 200
