"""A live stream plays through the front door: ffprobe and hls.js in a real browser.

The whole mesh runs as processes (tests/fixtures/mesh.py). A creator creates a stream
over Envoy's JSON API and a real encoder (ffmpeg, ``-re``, x264 + AAC) publishes it over
RTMP to svc_chat; once the stream is LIVE and its first segments exist, GetPlayback
(through Envoy) hands out a signed live master URL. Through that URL, on Envoy:

* ffprobe reads the ladder: video at the sizes a 640x360 source gets;
* hls.js in Debian's Chromium (Playwright; the page on its own loopback origin, so CORS
  is real) plays it as a live stream: the picture advances at least 2 s, with no fatal
  hls.js error and no refused media request; playlists come with ``max-age=0`` (a
  viewer never reuses a stale live list) and segments as immutable.

The publisher is bounded (``-t``) and always stopped when the module ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from reels_dev.infra.envoy import EnvoySettings
from reels_dev.infra.process import free_port
from reels_dev.keys import mint_token
from tests.browser.chromium import CHROMIUM
from tests.fixtures.mesh import Mesh
from tests.polling import eventually_value

HERE = Path(__file__).resolve().parent
HLS_JS = HERE / "node_modules" / "hls.js" / "dist" / "hls.min.js"

PUBLISH_S = 40
"""How long the encoder publishes at most (it is killed when the module ends)."""
SOURCE_SIZE = (640, 360)
LADDER_SIZES = {(640, 360), (426, 240)}
"""What a 640x360 source may be cut into: its own size, and 240p (16:9, even width)."""
LIVE_WITHIN_S = 15.0
PLAYBACK_WITHIN_S = 20.0
PROBE_TIMEOUT_S = 20.0
START_TIMEOUT_S = 15.0
ADVANCE_S = 2.0
ADVANCE_TIMEOUT_S = 12.0

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"chromium is not installed at {CHROMIUM} (make setup installs it from apt)",
)

PAGE = """<!doctype html>
<html>
<head><meta charset="utf-8"><title>reels live hls.js test</title></head>
<body>
<video id="video" muted playsinline width="320"></video>
<script src="/hls.js"></script>
<script>
  // start(src): play `src` with hls.js defaults; what happened is left in window.report.
  window.report = { errors: [], levels: [], fragLoaded: 0, playing: false };
  window.start = function (src) {
    const video = document.getElementById("video");
    const hls = new Hls();
    hls.on(Hls.Events.ERROR, (_, d) => {
      window.report.errors.push({
        type: d.type, details: d.details, fatal: d.fatal,
        code: d.response ? d.response.code : null,
        url: d.url || (d.context && d.context.url) || (d.frag && d.frag.url) || null,
      });
    });
    hls.on(Hls.Events.LEVEL_LOADED, (_, d) => {
      window.report.levels.push({ live: d.details.live, level: d.level });
    });
    hls.on(Hls.Events.FRAG_LOADED, () => { window.report.fragLoaded += 1; });
    hls.on(Hls.Events.MANIFEST_PARSED, () => { video.play().catch((e) => {
      window.report.errors.push({ type: "play", details: String(e), fatal: true });
    }); });
    video.addEventListener("playing", () => { window.report.playing = true; });
    hls.loadSource(src);
    hls.attachMedia(video);
    window.hls = hls;
  };
</script>
</body>
</html>
"""


def _auth(user: str) -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(user)}"}


async def _json(
    http: aiohttp.ClientSession, method: str, url: str, user: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, url, headers=_auth(user), json=body) as resp:
        return resp.status, await resp.json(content_type=None)


@dataclass
class LiveStream:
    stream_id: str
    master_url: str
    playback: dict[str, Any]


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        with contextlib.suppress(ProcessLookupError):
            await asyncio.wait_for(proc.wait(), 10)


@pytest.fixture(scope="module")
async def live_stream(
    mesh: Mesh, envoy: EnvoySettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveStream]:
    """A stream on air, published by a real encoder; its signed live master URL as
    GetPlayback hands it to a viewer (everything through Envoy but the RTMP push)."""
    assert mesh.rtmp_port, "the mesh fixture does not say svc_chat's RTMP port"
    api = f"http://127.0.0.1:{envoy.listen_port}/api/v1"
    creator, viewer = f"streamer-{uuid.uuid4().hex[:8]}", f"viewer-{uuid.uuid4().hex[:8]}"
    log_path = tmp_path_factory.mktemp("live-encoder") / "ffmpeg.log"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        status, body = await _json(http, "POST", f"{api}/live", creator, {"title": "Live hls.js"})
        assert status == 200, body
        stream_id, key = body["stream"]["streamId"], body["stream"]["streamKey"]
        assert key, body

        width, height = SOURCE_SIZE
        with log_path.open("wb") as log:
            encoder = await asyncio.create_subprocess_exec(
                "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
                "-re", "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=30",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                "-t", str(PUBLISH_S),
                "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30",
                "-c:a", "aac",
                "-f", "flv", f"rtmp://127.0.0.1:{mesh.rtmp_port}/live/{key}",
                stdout=asyncio.subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        try:

            async def encoder_alive() -> None:
                assert encoder.returncode is None, (
                    f"the encoder exited ({encoder.returncode}): {log_path.read_text()}"
                )

            async def on_air() -> bool:
                await encoder_alive()
                status, got = await _json(http, "GET", f"{api}/live/{stream_id}", creator)
                assert status == 200, got
                return bool(got["stream"]["state"] == "LIVE_STREAM_STATE_LIVE")

            await eventually_value(on_air, LIVE_WITHIN_S, "the stream to go LIVE", interval=0.2)

            async def playback() -> dict[str, Any] | None:
                await encoder_alive()
                status, got = await _json(http, "GET", f"{api}/reels/{stream_id}/playback", viewer)
                # 404 until svc_stream has heard stream.started, 503 until the first
                # segments exist; nothing else is an answer a viewer should get.
                assert status in (200, 404, 503), (status, got)
                return got if status == 200 else None

            got = await eventually_value(
                playback, PLAYBACK_WITHIN_S, "GetPlayback for the live stream", interval=0.3
            )
            yield LiveStream(stream_id, str(got["masterManifestUrl"]), got)
        finally:
            await _stop(encoder)


def test_live_playback_is_a_signed_live_master(live_stream: LiveStream) -> None:
    playback, url = live_stream.playback, live_stream.master_url
    assert playback.get("isLive") is True, playback
    assert playback.get("videoId") == live_stream.stream_id, playback
    path = urlsplit(url).path
    assert path.startswith("/media/live/") and path.endswith(".m3u8"), url
    assert "sig=" in url, url
    assert not playback.get("duration") and not playback.get("renditions"), playback


async def test_ffprobe_reads_the_live_ladder_through_envoy(live_stream: LiveStream) -> None:
    probe = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-show_streams", "-of", "json", live_stream.master_url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(probe.communicate(), PROBE_TIMEOUT_S)
    finally:
        await _stop(probe)
    assert probe.returncode == 0, err.decode()
    streams = json.loads(out)["streams"]
    video = [s for s in streams if s.get("codec_type") == "video"]
    assert video, streams
    sizes = {(int(s["width"]), int(s["height"])) for s in video}
    assert sizes <= LADDER_SIZES, sizes
    assert SOURCE_SIZE in sizes, sizes
    assert all(s["codec_name"] == "h264" for s in video), video
    assert any(s.get("codec_type") == "audio" for s in streams), streams


@dataclass
class Seen:
    """What the browser did while playing, from Playwright's response/failure events."""

    responses: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    console: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
async def page_origin() -> AsyncIterator[str]:
    """The test page and hls.js, served from another loopback port than Envoy's."""
    assert HLS_JS.exists(), f"{HLS_JS} is missing: run `make setup` (npm ci in tests/browser)"
    app = web.Application()

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def hls_js(_: web.Request) -> web.FileResponse:
        return web.FileResponse(HLS_JS)

    app.router.add_get("/", page)
    app.router.add_get("/hls.js", hls_js)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
def browser(media_browser: Any) -> Any:
    """The player pages here autoplay: conftest's media_browser."""
    return media_browser


async def test_hlsjs_plays_the_live_stream_through_envoy(
    browser: Any, page_origin: str, live_stream: LiveStream
) -> None:
    master_url = live_stream.master_url
    base = master_url.split("/media/")[0] + "/media/"
    assert urlsplit(page_origin).netloc != urlsplit(base).netloc  # cross-origin for real
    seen = Seen()
    context = await browser.new_context()
    page = await context.new_page()
    page.on("response", lambda r: seen.responses.append((r.status, r.url, dict(r.headers))))
    page.on("requestfailed", lambda r: seen.failures.append((r.url, str(r.failure))))
    page.on("console", lambda m: seen.console.append(f"{m.type}: {m.text}"))
    video = "document.getElementById('video')"
    try:
        await page.goto(f"{page_origin}/", timeout=10_000)
        assert await page.evaluate(
            "MediaSource.isTypeSupported('video/mp4; codecs=\"avc1.42E01E,mp4a.40.2\"')"
        ), "this chromium has no H.264/AAC in MSE: hls.js cannot play here"
        await page.evaluate("(src) => window.start(src)", master_url)
        try:
            await page.wait_for_function(
                f"window.report.playing && {video}.currentTime > 0",
                timeout=START_TIMEOUT_S * 1000,
            )
            started = float(await page.evaluate(f"{video}.currentTime"))
            await page.wait_for_function(
                f"{video}.currentTime >= {started + ADVANCE_S}",
                timeout=ADVANCE_TIMEOUT_S * 1000,
            )
        except Exception as exc:
            report = await page.evaluate("window.report")
            raise AssertionError(
                f"the live stream did not play {ADVANCE_S:g} s: {exc}\nhls.js: {report}\n"
                f"responses: {[(s, u) for s, u, _ in seen.responses]}\n"
                f"failures: {seen.failures}\nconsole: {seen.console}"
            ) from None
        report = await page.evaluate("window.report")
    finally:
        await context.close()

    fatal = [e for e in report["errors"] if e["fatal"] or e["type"] == "networkError"]
    assert not fatal, f"hls.js errors: {report['errors']}"
    assert report["levels"] and all(lv["live"] for lv in report["levels"]), report
    assert report["fragLoaded"] > 0, report

    media = [r for r in seen.responses if r[1].startswith(base)]
    refused = [(s, u) for s, u, _ in media if s >= 400]
    assert not refused, f"media requests refused: {refused}"
    assert not seen.failures, f"requests failed (CORS?): {seen.failures}"
    playlists = [r for r in media if urlsplit(r[1]).path.endswith(".m3u8")]
    segments = [r for r in media if not urlsplit(r[1]).path.endswith(".m3u8")]
    # The master, a variant and its refreshes: a live player re-reads the list.
    assert len(playlists) >= 3, [u for _, u, _ in playlists]
    assert segments, [u for _, u, _ in media]
    stale_ok = [(u, h.get("cache-control")) for _, u, h in playlists if not _fresh(h)]
    assert not stale_ok, f"live playlists a browser may reuse: {stale_ok}"
    not_immutable = [
        (u, h.get("cache-control"))
        for _, u, h in segments
        if "immutable" not in _directives(h.get("cache-control", ""))
    ]
    assert not not_immutable, f"segments not immutable: {not_immutable}"


def _directives(cache_control: str) -> set[str]:
    return {d.strip().lower() for d in cache_control.split(",") if d.strip()}


def _fresh(headers: dict[str, str]) -> bool:
    """A live playlist a browser must not reuse: ``max-age=0``."""
    directives = _directives(headers.get("cache-control", ""))
    return "max-age=0" in directives
