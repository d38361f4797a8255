"""A real browser plays a signed reel through hls.js with CMCD on, through Envoy.

Chromium (Debian's, driven by Playwright) loads a tiny page from a local aiohttp server
on its own loopback port, so every media request is cross-origin to Envoy and CORS is
exercised for real. hls.js (vendored from npm by ``make setup``; no CDN) plays the signed
master URL twice: CMCD in query mode (``?CMCD=...`` on every request) and in header mode
(``CMCD-*`` request headers, which need a preflight). Each run must reach
``currentTime > 1 s`` with no 403, no CORS failure and no hls.js error, and CMCD must
really have been sent on the playlists and the segments.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web

from reels_dev.infra.envoy import EnvoySettings
from reels_dev.infra.process import free_port
from reels_dev.keys import mint_token
from tests.browser.chromium import CHROMIUM
from tests.fixtures.mesh import Mesh
from tests.publishing import publish_to_store, send_published, transcode_ladder

HERE = Path(__file__).resolve().parent
HLS_JS = HERE / "node_modules" / "hls.js" / "dist" / "hls.min.js"
PLAY_TIMEOUT_S = 60
CMCD_HEADERS = ("cmcd-request", "cmcd-object", "cmcd-status", "cmcd-session")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"chromium is not installed at {CHROMIUM} (make setup installs it from apt)",
)


@dataclass
class Seen:
    """What the browser did while playing, from Playwright's request/response events."""

    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    responses: list[tuple[int, str]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    console: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
async def master_url(
    mesh: Mesh, envoy: EnvoySettings, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A published reel's signed master URL, as GetPlayback hands it out (via Envoy)."""
    assert mesh.backends.storage_root is not None
    ladder, result = await transcode_ladder(tmp_path_factory.mktemp("hlsjs-clip"))
    video_id = str(uuid.uuid4())
    event = publish_to_store(ladder, result, mesh.backends.storage_root, video_id)
    await send_published(mesh.backends.kafka_bootstrap, event)
    api = f"http://127.0.0.1:{envoy.listen_port}/api/v1/reels/{video_id}/playback"
    auth = {"authorization": f"Bearer {mint_token('viewer-hlsjs')}"}
    async with aiohttp.ClientSession() as http, asyncio.timeout(60):
        while True:
            async with http.get(api, headers=auth) as resp:
                if resp.status == 200:
                    return str((await resp.json())["masterManifestUrl"])
                assert resp.status == 404, await resp.text()
            await asyncio.sleep(0.3)


@pytest.fixture(scope="module")
async def page_origin() -> AsyncIterator[str]:
    """The test page and hls.js, served from another loopback port than Envoy's."""
    assert HLS_JS.exists(), f"{HLS_JS} is missing: run `make setup` (npm ci in tests/browser)"
    app = web.Application()

    async def page(_: web.Request) -> web.FileResponse:
        return web.FileResponse(HERE / "player.html")

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


async def _play(browser: object, page_origin: str, master_url: str, mode: str) -> Seen:
    seen = Seen()
    context = await browser.new_context()  # type: ignore[attr-defined]
    page = await context.new_page()
    page.on("request", lambda r: seen.requests.append((r.method, r.url, dict(r.headers))))
    page.on("response", lambda r: seen.responses.append((r.status, r.url)))
    page.on("requestfailed", lambda r: seen.failures.append((r.url, str(r.failure))))
    page.on("console", lambda m: seen.console.append(f"{m.type}: {m.text}"))
    try:
        await page.goto(f"{page_origin}/")
        assert await page.evaluate(
            "MediaSource.isTypeSupported('video/mp4; codecs=\"avc1.42E01E,mp4a.40.2\"')"
        ), "this chromium has no H.264/AAC in MSE: hls.js cannot play here"
        await page.evaluate("([src, mode]) => window.start(src, mode)", [master_url, mode])
        try:
            await page.wait_for_function(
                "document.getElementById('video').currentTime > 1",
                timeout=PLAY_TIMEOUT_S * 1000,
            )
        except Exception as exc:
            report = await page.evaluate("window.report")
            raise AssertionError(
                f"{mode}: playback did not pass 1 s: {exc}\nhls.js: {report}\n"
                f"responses: {seen.responses}\nfailures: {seen.failures}\n"
                f"console: {seen.console}"
            ) from None
        report = await page.evaluate("window.report")
    finally:
        await context.close()
    # Any network error (a 403, a CORS refusal, a timeout) or fatal error fails the run.
    # Non-fatal media notices (bufferSeekOverHole: the first frame starts a few ms in)
    # are hls.js recovering on its own, not about URLs.
    bad = [e for e in report["errors"] if e["fatal"] or e["type"] != "mediaError"]
    assert not bad, f"{mode}: hls.js errors: {report['errors']}"
    assert report["fragLoaded"] > 0 and report["levelLoaded"] > 0, report
    return seen


def _media(seen: Seen, base: str) -> list[tuple[str, str, dict[str, str]]]:
    return [r for r in seen.requests if r[1].startswith(base)]


def _assert_clean(seen: Seen, base: str, mode: str) -> None:
    media_responses = [(s, u) for s, u in seen.responses if u.startswith(base)]
    assert media_responses, f"{mode}: no media response seen"
    bad = [(s, u) for s, u in media_responses if s >= 400]
    assert not bad, f"{mode}: media requests refused: {bad}"
    assert not seen.failures, f"{mode}: requests failed (CORS?): {seen.failures}"
    cors = [m for m in seen.console if "cors" in m.lower() or "access-control" in m.lower()]
    assert not cors, f"{mode}: CORS errors in the console: {cors}"


def _kinds(requests: list[tuple[str, str, dict[str, str]]]) -> set[str]:
    """Which object kinds were fetched: playlist (.m3u8) and/or segment."""
    return {
        "playlist" if urlsplit(url).path.endswith(".m3u8") else "segment" for _, url, _ in requests
    }


async def test_hlsjs_plays_signed_reel_with_cmcd_in_the_query(
    browser: object, page_origin: str, master_url: str
) -> None:
    base = master_url.split("/media/")[0] + "/media/"
    assert urlsplit(page_origin).netloc != urlsplit(base).netloc  # cross-origin for real
    seen = await _play(browser, page_origin, master_url, "query")
    _assert_clean(seen, base, "query")
    media = [r for r in _media(seen, base) if r[0] == "GET"]
    with_cmcd = [r for r in media if "CMCD" in parse_qs(urlsplit(r[1]).query)]
    assert with_cmcd == media, f"requests without CMCD: {set(media) - set(with_cmcd)}"  # type: ignore[arg-type]
    assert _kinds(with_cmcd) == {"playlist", "segment"}
    payloads = [parse_qs(urlsplit(url).query)["CMCD"][0] for _, url, _ in with_cmcd]
    assert any("ot=v" in p or "ot=av" in p for p in payloads), payloads
    assert all('cid="reels-browser-test"' in p for p in payloads), payloads
    # hls.js appended CMCD to our signed URLs; the signature still held (no 403 above).
    assert all("sig=" in url and "sp=" in url for _, url, _ in media)


async def test_hlsjs_plays_signed_reel_with_cmcd_in_headers(
    browser: object, page_origin: str, master_url: str
) -> None:
    base = master_url.split("/media/")[0] + "/media/"
    seen = await _play(browser, page_origin, master_url, "headers")
    _assert_clean(seen, base, "headers")
    media = [r for r in _media(seen, base) if r[0] == "GET"]
    assert media
    for _, url, headers in media:
        assert "CMCD" not in parse_qs(urlsplit(url).query), url
        sent = {h for h in CMCD_HEADERS if h in headers}
        # Every request carries CMCD-Session (cid/sid); objects carry CMCD-Object too.
        assert "cmcd-session" in sent, (url, headers)
        assert 'cid="reels-browser-test"' in headers["cmcd-session"]
    assert _kinds(media) == {"playlist", "segment"}
    segment_headers = [h for _, u, h in media if not urlsplit(u).path.endswith(".m3u8")]
    assert any(
        "ot=v" in h.get("cmcd-object", "") or "ot=av" in h.get("cmcd-object", "")
        for h in segment_headers
    ), segment_headers
