"""The web client through the front door, in Debian's Chromium.

Envoy serves web/dist at / on the API's own port (reels_dev/infra/web_app.py), so the
app's calls are same-origin. The feed page's FeedService.GetFeed goes through the
client generated from proto/ (Connect-ES, web/src/gen) over gRPC-web, and the page
lists what the service answered: the test decodes the very response the browser got
with the Python stubs and compares it with the titles on the page.

The token is the dev issuer's (`make token`), handed over as `?token=`, which the app
keeps in memory and removes from the address bar. A screenshot of the feed goes to
var/screenshots/web_app_feed.png. Skipped when web/dist is not built (`make setup`).
"""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from reels.v1 import events_pb2, rank_pb2, rank_pb2_grpc

from reels_dev.infra.envoy import EnvoySettings
from reels_dev.infra.process import REPO_ROOT
from reels_dev.infra.web_app import IMMUTABLE, WEB_DIST
from reels_dev.keys import mint_token
from tests.browser.chromium import CHROMIUM
from tests.fixtures.mesh import Mesh
from tests.polling import eventually_value
from tests.publishing import send_published

SCREENSHOTS = REPO_ROOT / "var" / "screenshots"
GET_FEED = "/reels.v1.FeedService/GetFeed"
FEED_SETTLED = "section.feed[data-state]:not([data-state='loading'])"
NAV = ["Feed", "Upload", "Analytics", "Live"]
PUBLISHED_WITHIN_S = 30.0
PAGE_TIMEOUT_MS = 15_000

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"chromium is not installed at {CHROMIUM} (make setup installs it from apt)",
    ),
    pytest.mark.skipif(
        not (WEB_DIST / "index.html").is_file(),
        reason="web/dist is not built (make setup builds it)",
    ),
]


def grpc_web_frames(body: bytes) -> tuple[list[bytes], dict[str, str]]:
    """Splits a gRPC-web response body into its messages and its trailers."""
    messages: list[bytes] = []
    trailers: dict[str, str] = {}
    at = 0
    while at + 5 <= len(body):
        flags, size = struct.unpack(">BI", body[at : at + 5])
        payload = body[at + 5 : at + 5 + size]
        at += 5 + size
        if flags & 0x80:
            for line in payload.decode().split("\r\n"):
                if ":" in line:
                    key, value = line.split(":", 1)
                    trailers[key.strip().lower()] = value.strip()
        else:
            messages.append(payload)
    assert at == len(body), f"a truncated gRPC-web body ({len(body)} bytes)"
    return messages, trailers


@pytest.fixture(scope="module")
async def published_title(mesh: Mesh) -> str:
    """A video published the way svc_transcode announces one, served by svc_rank in a
    new user's feed (the fresh pool): the feed page has something to list."""
    video_id = str(uuid.uuid4())
    title = f"Web smoke {video_id[:8]}"
    now = timestamp_pb2.Timestamp()
    now.FromDatetime(datetime.now(UTC))
    await send_published(
        mesh.backends.kafka_bootstrap,
        events_pb2.VideoPublished(
            meta=events_pb2.EventMeta(event_id=str(uuid.uuid4()), occurred_at=now),
            video_id=video_id,
            creator_id=f"creator-{video_id[:8]}",
            duration=duration_pb2.Duration(seconds=6),
            width=720,
            height=1280,
            master_playlist_key=f"videos/{video_id}/master.m3u8",
            published_at=now,
            title=title,
        ),
    )
    async with grpc.aio.insecure_channel(mesh.addr("rank")) as channel:
        feed = rank_pb2_grpc.FeedServiceStub(channel)
        probe = f"probe-{uuid.uuid4().hex[:8]}"

        async def served() -> bool:
            reply = await feed.GetFeed(
                rank_pb2.GetFeedRequest(limit=100),
                metadata=(("authorization", f"Bearer {mint_token(probe)}"),),
                timeout=10,
            )
            return title in [item.title for item in reply.items]

        await eventually_value(served, PUBLISHED_WITHIN_S, f"svc_rank to serve {title!r}")
    return title


async def test_envoy_serves_the_app_on_the_api_port(envoy: EnvoySettings) -> None:
    base = f"http://127.0.0.1:{envoy.listen_port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.get(base + "/") as resp:
            index = await resp.text()
            assert resp.status == 200, index
            assert resp.headers["content-type"] == "text/html; charset=utf-8"
            assert resp.headers["cache-control"] == "no-cache"
        # Deep links (no token needed for the app itself) get the same index.html.
        for path in ("/feed", "/upload", "/analytics", "/live", "/live/s-123", "/live/"):
            async with http.get(base + path) as resp:
                assert (resp.status, await resp.text()) == (200, index), path
        scripts = [line for line in index.split('"') if line.startswith("/assets/")]
        assert scripts, index
        for asset in scripts:
            async with http.get(base + asset) as resp:
                assert resp.status == 200, asset
                assert resp.headers["cache-control"] == IMMUTABLE, asset
                assert resp.headers["x-content-type-options"] == "nosniff"
                want = "text/javascript" if asset.endswith(".js") else "text/css"
                assert resp.headers["content-type"].startswith(want), asset
        # The API's own answers are unchanged: an unknown API path (even one that looks
        # like an app route) is the JSON 404, and a file that is not built is no page.
        token = {"authorization": f"Bearer {mint_token('web-http')}"}
        for path in ("/api/v1/no/such/route", "/api", "/no-such-file.js"):
            async with http.get(base + path, headers=token) as resp:
                body = await resp.json(content_type=None)
                assert resp.status == 404, (path, body)
                assert body["code"] == 5, (path, body)


async def test_feed_page_lists_getfeed_over_grpc_web(
    browser: Any, envoy: EnvoySettings, published_title: str
) -> None:
    user = f"web-{uuid.uuid4().hex[:8]}"
    token = mint_token(user)
    context = await browser.new_context(viewport={"width": 1000, "height": 700})
    page = await context.new_page()
    failures: list[tuple[str, str]] = []
    errors: list[str] = []
    page.on("requestfailed", lambda r: failures.append((r.url, str(r.failure))))
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        async with page.expect_response(
            lambda r: r.url.endswith(GET_FEED), timeout=PAGE_TIMEOUT_MS
        ) as got:
            await page.goto(
                f"http://127.0.0.1:{envoy.listen_port}/?token={token}", timeout=PAGE_TIMEOUT_MS
            )
        response = await got.value
        await page.wait_for_selector(FEED_SETTLED, timeout=PAGE_TIMEOUT_MS)
        state = await page.get_attribute("section.feed", "data-state")
        status_text = await page.locator("section.feed .status").inner_text()
        shown = await page.locator(".feed-list .title").all_text_contents()
        main_nav = page.get_by_role("navigation", name="Main")
        nav = await main_nav.get_by_role("link").all_inner_texts()
        signed_in = await page.locator(".session").inner_text()
        url_after = page.url
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "web_app_feed.png"), full_page=True)
        request_headers = await response.request.all_headers()
        body = await response.body()
    finally:
        await context.close()

    # The call went over gRPC-web, same-origin, with the token as a bearer header.
    assert request_headers["content-type"].startswith("application/grpc-web"), request_headers
    assert request_headers["authorization"] == f"Bearer {token}"
    assert response.status == 200, body
    messages, trailers = grpc_web_frames(body)
    grpc_status = response.headers.get("grpc-status") or trailers.get("grpc-status")
    assert grpc_status == "0", (response.headers, trailers)
    assert len(messages) == 1, messages
    served = rank_pb2.GetFeedResponse.FromString(messages[0])
    # The page shows what the service answered, in its order: the generated client decoded it.
    assert state == "ready", status_text
    assert shown == [item.title or "Untitled" for item in served.items], status_text
    assert published_title in shown, shown
    assert nav == NAV
    assert user in signed_in, signed_in
    assert "token=" not in url_after, url_after  # taken out of the address bar
    assert not failures, failures
    assert not errors, errors


async def test_signed_out_visitor_signs_in_with_a_pasted_token_and_navigates(
    browser: Any, envoy: EnvoySettings
) -> None:
    user = f"web-{uuid.uuid4().hex[:8]}"
    base = f"http://127.0.0.1:{envoy.listen_port}"
    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        # A deep link while signed out: the sign-in form stands in for the page.
        await page.goto(base + "/analytics", timeout=PAGE_TIMEOUT_MS)
        field = page.get_by_label("Dev token")
        await field.wait_for(timeout=PAGE_TIMEOUT_MS)
        await field.fill("not a token")
        await page.get_by_role("button", name="Sign in").click()
        alert = await page.locator("#token-error").inner_text()
        await field.fill(mint_token(user))
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("heading", name="Analytics", exact=True).wait_for(
            timeout=PAGE_TIMEOUT_MS
        )
        current = await page.get_by_role("link", name="Analytics").get_attribute("aria-current")
        # Client-side navigation to the feed: no reload (the token lives in memory only).
        async with page.expect_response(lambda r: r.url.endswith(GET_FEED)) as got:
            await page.get_by_role("link", name="Feed").click()
        feed_status = (await got.value).status
        await page.wait_for_selector(FEED_SETTLED, timeout=PAGE_TIMEOUT_MS)
        state = await page.get_attribute("section.feed", "data-state")
        path = await page.evaluate("location.pathname")
        stored = await page.evaluate(
            "JSON.stringify([Object.keys(localStorage), Object.keys(sessionStorage)])"
        )
        # A reload forgets the token: signed out again.
        await page.reload()
        await page.get_by_label("Dev token").wait_for(timeout=PAGE_TIMEOUT_MS)
    finally:
        await context.close()

    assert "not a token" in alert.lower() or "jwt" in alert.lower(), alert
    assert current == "page"
    assert feed_status == 200
    assert state in ("ready", "empty"), state
    assert path == "/"
    assert stored == "[[],[]]", stored
    assert not errors, errors
