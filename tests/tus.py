"""A tus client for tests: tuspy's uploader, keeping svc_upload's ``Reels-Video-Id``."""

from __future__ import annotations

from urllib.parse import urljoin

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
