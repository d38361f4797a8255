"""A live stream's recording is published as a video, through the front door.

The whole mesh runs as processes (tests/fixtures/mesh.py). A creator creates a stream
over the JSON API, a real encoder (ffmpeg, ``-re``) publishes over RTMP, the creator
ends the stream; the recording then goes svc_chat -> ``streams.recordings`` ->
svc_upload (``video.uploaded``) -> svc_transcode -> published, and a follower's feed
shows it. Everything a person would do is done through Envoy.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp

from reels_dev.infra.envoy import EnvoySettings
from reels_dev.keys import mint_token
from tests.fixtures.mesh import Mesh
from tests.polling import eventually_value

PUBLISH_S = 4.0


def _auth(user: str) -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(user)}"}


async def _json(
    http: aiohttp.ClientSession, method: str, url: str, user: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, url, headers=_auth(user), json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_a_streams_recording_is_published_as_a_video_in_a_followers_feed(
    mesh: Mesh, envoy: EnvoySettings
) -> None:
    api = f"http://127.0.0.1:{envoy.listen_port}/api/v1"
    creator, fan = f"streamer-{uuid.uuid4().hex[:8]}", f"fan-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession() as http:
        status, body = await _json(http, "POST", f"{api}/creators/{creator}/follow", fan, {})
        assert status == 200, body
        status, body = await _json(
            http, "POST", f"{api}/live", creator, {"title": "Live from the test", "tags": ["jam"]}
        )
        assert status == 200, body
        stream_id, key = body["stream"]["streamId"], body["stream"]["streamKey"]

        encoder = await asyncio.create_subprocess_exec(
            "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
            "-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
            "-f", "lavfi", "-i", "sine", "-t", f"{PUBLISH_S:g}",
            "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-c:a", "aac",
            "-f", "flv", f"rtmp://127.0.0.1:{mesh.rtmp_port}/live/{key}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            _, err = await asyncio.wait_for(encoder.communicate(), PUBLISH_S + 20)
        finally:
            if encoder.returncode is None:
                encoder.kill()
                await encoder.wait()
        assert encoder.returncode == 0, err.decode()
        # The creator ends it (no need to wait out the reconnect grace period).
        status, body = await _json(http, "POST", f"{api}/live/{stream_id}:end", creator, {})
        assert status == 200, body
        assert body["stream"]["state"] == "LIVE_STREAM_STATE_ENDED"

        async def recording_video() -> str | None:
            _, got = await _json(http, "GET", f"{api}/live/{stream_id}", creator)
            return str(got["stream"].get("recordingVideoId") or "") or None

        video_id = await eventually_value(recording_video, 30, "the stream's recording video")

        async def published() -> dict[str, Any] | None:
            _, got = await _json(http, "GET", f"{api}/reels/{video_id}/status", creator)
            assert got.get("status") != "VIDEO_STATUS_FAILED", got
            return got if got.get("status") == "VIDEO_STATUS_PUBLISHED" else None

        await eventually_value(published, 180, "the recording to be published", interval=1.0)

        async def playable() -> dict[str, Any] | None:
            # svc_stream's catalog applies the same video.published on its own consumer:
            # playback follows the status by that consumer's lag (a 404 until then).
            status, got = await _json(http, "GET", f"{api}/reels/{video_id}/playback", fan)
            assert status in (200, 404), got
            return got if status == 200 else None

        playback = await eventually_value(playable, 30, "the recording's playback", interval=0.5)
        assert not playback.get("isLive")
        probe = await asyncio.create_subprocess_exec(
            "ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json",
            playback["masterManifestUrl"],
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(probe.communicate(), 30)
        assert probe.returncode == 0, err.decode()
        duration = float(json.loads(out)["format"]["duration"])
        assert PUBLISH_S - 1.0 < duration < PUBLISH_S + 1.0, duration

        async def in_feed() -> dict[str, Any] | None:
            _, page = await _json(http, "GET", f"{api}/reels?limit=20", fan)
            items = page.get("items") or []
            return next((i for i in items if i.get("videoId") == video_id), None)

        item = await eventually_value(in_feed, 30, "the recording in the follower's feed")
        assert item["creatorId"] == creator
