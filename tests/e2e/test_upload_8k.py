"""8K phone video: accepted up to 8192 px on the long edge, transcoded down the normal
ladder (never up), and a clear refusal above that.

The clips are tiny: 1 s at 4 fps, x264 ultrafast at a low quality, so an 8K source costs
a few MB and a couple of seconds to make.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from reels.media.probe import ProbeLimits, UnusableMedia, probe
from reels_dev.infra.envoy import EnvoySettings
from reels_dev.keys import mint_token
from svc_transcode.ladder import STANDARD_RUNGS, build_ladder
from tests.media import _run

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (scripts/setup.sh)"
)

LADDER_TOP = max(short for short, _, _ in STANDARD_RUNGS)


async def _clip(out: Path, width: int, height: int) -> Path:
    await _run(
        "ffmpeg", "-v", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=4:duration=1",
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "40", "-g", "4",
        "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(out),
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
async def clip_8k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return await _clip(tmp_path_factory.mktemp("8k") / "8k.mp4", 7680, 4320)


@pytest.fixture(scope="module")
async def clip_too_wide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Cheap to make: the long edge is what matters (8704 > 8192), the short one is tiny.
    return await _clip(tmp_path_factory.mktemp("wide") / "wide.mp4", 8704, 160)


async def test_probe_accepts_8k_and_refuses_above_8192(clip_8k: Path, clip_too_wide: Path) -> None:
    assert ProbeLimits().max_long_edge == 8192
    info = await probe(clip_8k)
    assert (info.width, info.height) == (7680, 4320)
    with pytest.raises(UnusableMedia, match="8704x160; its long edge must be at most 8192 px"):
        await probe(clip_too_wide)


def test_8k_ladder_goes_down_never_up() -> None:
    for width, height in ((7680, 4320), (4320, 7680), (8192, 4608)):
        rungs = build_ladder(width, height, 30.0)
        assert max(r.short_edge for r in rungs) == LADDER_TOP
        assert all(r.width <= width and r.height <= height for r in rungs)


async def _tus_upload(
    http: aiohttp.ClientSession, base: str, token: str, clip: Path
) -> tuple[aiohttp.ClientResponse, dict, str]:
    """Create + PATCH (1 MiB pieces) through Envoy; (last response, its JSON, video id)."""
    data = await asyncio.to_thread(clip.read_bytes)
    meta = ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}"
        for k, v in {"filename": clip.name, "title": f"8K test {clip.stem}"}.items()
    )
    auth = {"authorization": f"Bearer {token}", "tus-resumable": "1.0.0"}
    async with http.post(
        f"{base}/api/v1/uploads/tus/",
        headers={**auth, "upload-length": str(len(data)), "upload-metadata": meta},
    ) as created:
        assert created.status == 201, await created.text()
        location = created.headers["location"]
        video_id = created.headers["reels-video-id"]
    url = location if location.startswith("http") else base + location
    offset, piece = 0, 1 << 20
    while True:
        chunk = data[offset : offset + piece]
        async with http.patch(
            url,
            data=chunk,
            headers={
                **auth,
                "upload-offset": str(offset),
                "content-type": "application/offset+octet-stream",
            },
        ) as resp:
            body = await resp.json(content_type=None) if resp.status != 204 else {}
            if resp.status != 204 or offset + len(chunk) >= len(data):
                return resp, body, video_id
            offset = int(resp.headers["upload-offset"])


async def test_8k_upload_is_accepted_and_published_down_the_ladder(
    envoy: EnvoySettings, clip_8k: Path
) -> None:
    base = f"http://127.0.0.1:{envoy.listen_port}"
    token = mint_token(f"creator-8k-{uuid.uuid4().hex[:6]}")
    auth = {"authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        last, body, video_id = await _tus_upload(http, base, token, clip_8k)
        assert last.status == 204, body  # complete: probed and accepted

        deadline = time.monotonic() + 180
        while True:
            async with http.get(f"{base}/api/v1/reels/{video_id}/status", headers=auth) as r:
                status = await r.json(content_type=None)
                assert r.status == 200, status
            assert status["status"] != "VIDEO_STATUS_FAILED", status
            if status["status"] == "VIDEO_STATUS_PUBLISHED":
                break
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.5)

        deadline = time.monotonic() + 30
        while True:  # svc_stream's catalog applies video.published shortly after
            async with http.get(f"{base}/api/v1/reels/{video_id}/playback", headers=auth) as r:
                playback = await r.json(content_type=None)
            if r.status == 200:
                break
            assert r.status == 404 and time.monotonic() < deadline, playback
            await asyncio.sleep(0.3)
    renditions = playback["renditions"]
    shorts = sorted((min(x["width"], x["height"]) for x in renditions), reverse=True)
    assert shorts[0] == LADDER_TOP, renditions  # the top rung, not 4320p
    assert all(max(x["width"], x["height"]) <= 1920 for x in renditions), renditions


async def test_upload_above_8192_px_is_refused_with_the_reason(
    envoy: EnvoySettings, clip_too_wide: Path
) -> None:
    base = f"http://127.0.0.1:{envoy.listen_port}"
    token = mint_token(f"creator-wide-{uuid.uuid4().hex[:6]}")
    async with aiohttp.ClientSession() as http:
        last, body, video_id = await _tus_upload(http, base, token, clip_too_wide)
        assert last.status == 422, body
        assert "long edge must be at most 8192 px" in body["message"], body
        async with http.get(
            f"{base}/api/v1/reels/{video_id}/status",
            headers={"authorization": f"Bearer {token}"},
        ) as r:
            status = await r.json(content_type=None)
    assert status["status"] == "VIDEO_STATUS_FAILED", status
    assert "8192 px" in status["failureReason"], status
