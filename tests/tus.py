"""tus clients for tests: tuspy's uploader, keeping svc_upload's ``Reels-Video-Id``, and
many concurrent aiohttp uploads (one connection each) for the load test and bench."""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass
from urllib.parse import urljoin

import aiohttp
import requests
from tusclient.uploader import Uploader


class RecordingUploader(Uploader):
    """tuspy's uploader that records the video id the creation response names."""

    video_id: str | None = None

    def create_url(self) -> str:
        resp = requests.post(self.client.url, headers=self.get_url_creation_headers())
        assert resp.status_code == 201, resp.text
        self.video_id = resp.headers["Reels-Video-Id"]
        return urljoin(self.client.url, resp.headers["Location"])


# -- many uploads at once (tests/e2e/test_upload_load_e2e.py, bench/bench_upload_load.py) --


@dataclass(frozen=True)
class UploadOutcome:
    """One client's upload: the last HTTP status (0: no answer), seconds from the
    creation POST to that answer, the video id, and the error text when not 204."""

    status: int
    seconds: float
    video_id: str | None
    error: str = ""


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


async def tus_upload_once(
    tus_url: str, token: str, body: bytes, *, title: str = "load", timeout_s: float = 600.0
) -> UploadOutcome:
    """tus creation, then one PATCH with the whole ``body``, over its own connection (a
    client of its own, as a phone is). Never raises for what the server answers."""
    started = time.perf_counter()
    auth = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    video_id: str | None = None
    try:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            connector=aiohttp.TCPConnector(limit=1, force_close=False),
        ) as http:
            create = {
                **auth,
                "Upload-Length": str(len(body)),
                "Upload-Metadata": f"filename {_b64('clip.mp4')},title {_b64(title)}",
            }
            async with http.post(tus_url, headers=create) as resp:
                if resp.status != 201:
                    return UploadOutcome(
                        resp.status, time.perf_counter() - started, None, await resp.text()
                    )
                location = urljoin(tus_url, resp.headers["Location"])
                video_id = resp.headers.get("Reels-Video-Id")
            patch = {
                **auth,
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            }
            async with http.patch(location, data=body, headers=patch) as resp:
                text = "" if resp.status == 204 else await resp.text()
                return UploadOutcome(resp.status, time.perf_counter() - started, video_id, text)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return UploadOutcome(0, time.perf_counter() - started, video_id, repr(exc))


async def tus_upload_many(
    tus_url: str, tokens: list[str], body: bytes, *, timeout_s: float = 600.0
) -> list[UploadOutcome]:
    """One upload of ``body`` per token, all started at once."""
    return list(
        await asyncio.gather(
            *(
                tus_upload_once(tus_url, token, body, title=f"load {i}", timeout_s=timeout_s)
                for i, token in enumerate(tokens)
            )
        )
    )
