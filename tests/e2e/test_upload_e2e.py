"""Upload through the real front door: tus (tuspy) via Envoy, then the status JSON.

The whole mesh runs as processes behind Envoy (tests/fixtures/mesh.py) with a
migrated database, a broker and an object store, exactly as `make up` runs it.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
import pytest
import requests
from tusclient.client import TusClient
from tusclient.uploader import Uploader

from reels_dev.infra.envoy import EnvoySettings
from reels_dev.keys import mint_token
from tests.media import make_clip

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (scripts/setup.sh)"
)


class RecordingUploader(Uploader):
    """tuspy's uploader, keeping the creation response's ``Reels-Video-Id``."""

    video_id: str | None = None

    def create_url(self) -> str:
        resp = requests.post(self.client.url, headers=self.get_url_creation_headers())
        assert resp.status_code == 201, resp.text
        self.video_id = resp.headers["Reels-Video-Id"]
        return urljoin(self.client.url, resp.headers["Location"])


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
