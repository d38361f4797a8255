"""Upload through the real front door: tus (tuspy) via Envoy, then the status JSON.

The whole mesh runs as processes behind Envoy (tests/fixtures/mesh.py) with a
migrated database, a broker and an object store, exactly as `make up` runs it.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import aiohttp
import pytest
from tusclient.client import TusClient

from reels_dev.infra.envoy import EnvoySettings
from reels_dev.keys import mint_token
from tests.media import make_clip
from tests.tus import RecordingUploader

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (scripts/setup.sh)"
)


async def test_tus_upload_through_envoy_then_status_json(
    envoy: EnvoySettings, tmp_path: Path
) -> None:
    clip = await make_clip(tmp_path / "reel.mp4", width=360, height=640, seconds=2)
    base = f"http://127.0.0.1:{envoy.listen_port}"
    token = mint_token("e2e-creator")
    client = TusClient(f"{base}/api/v1/uploads/tus/", headers={"Authorization": f"Bearer {token}"})
    uploader = RecordingUploader(
        file_path=str(clip),
        client=client,
        chunk_size=64 * 1024,
        metadata={"filename": "reel.mp4", "title": "Through Envoy", "hashtags": "e2e"},
    )
    await asyncio.to_thread(uploader.upload)
    assert uploader.offset == clip.stat().st_size
    assert uploader.video_id

    async with aiohttp.ClientSession() as http:
        url = f"{base}/api/v1/reels/{uploader.video_id}/status"
        async with http.get(url, headers={"authorization": f"Bearer {token}"}) as resp:
            body = await resp.json(content_type=None)
            assert resp.status == 200, body
        async with http.get(url) as anonymous:
            assert anonymous.status == 401
        async with http.get(
            url, headers={"authorization": f"Bearer {mint_token('someone-else')}"}
        ) as other:
            other_body = await other.json(content_type=None)
    assert body["videoId"] == uploader.video_id
    # svc_transcode may already have picked the video up (or finished it).
    assert body["status"] in ("VIDEO_STATUS_PROCESSING", "VIDEO_STATUS_PUBLISHED"), body
    if body["status"] == "VIDEO_STATUS_PUBLISHED":
        return
    assert other.status == 404, other_body  # unpublished: invisible to others
