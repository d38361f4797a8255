"""What a user sees at the edges, in Debian's Chromium through Envoy against the mesh.

* **Caught up**: once svc_rank has served a user every reel, a reload still shows reels
  (served again, flagged ``FEED_FALLBACK_SEEN_BEFORE``) and the page says "You're all
  caught up", never "No reels yet".
* **Long unbroken text** (a 200-character title, description, comment, stream title,
  tag or hashtag without a space) at 360 px: no page scrolls sideways (feed with the
  comments open, live list, stream page, analytics, upload form).
* **Tokens**: an expired token is refused at sign-in with its expiry time; a token the
  API refuses (401 / UNAUTHENTICATED) signs out with a visible reason, the upload's tus
  401 included; a token signs out by itself when it expires.
* **Retry only where it can help**: analytics of someone else's video (or of no video)
  offers no "Try again".
* **Hashtags the server drops** (``#🔥``) are named under the field before the upload.
* **Chat of a stream not started**: closed (input disabled, a notice), no dangling "·".

Screenshots go to var/screenshots/web_robust_*.png.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from reels.v1 import events_pb2, rank_pb2, rank_pb2_grpc

from reels_dev.infra.envoy import EnvoySettings
from reels_dev.keys import mint_token
from tests.browser.test_web_app import FEED_SETTLED, SCREENSHOTS, pytestmark
from tests.fixtures.mesh import Mesh
from tests.polling import eventually_value
from tests.publishing import send_published

__all__ = ["pytestmark"]  # the skips, reused

PAGE_TIMEOUT_MS = 15_000
PUBLISHED_WITHIN_S = 30.0
WIDTH = 360
LONG = "W" * 200  # one 200-character word
TUS = "/api/v1/uploads/tus/"


async def _overflow(page: Any) -> int:
    """How far the page scrolls sideways (0: not at all)."""
    return int(await page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


async def _json(method: str, url: str, user: str, body: dict[str, Any]) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {mint_token(user)}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.request(method, url, headers=headers, json=body) as resp:
            reply = await resp.json(content_type=None)
            assert resp.status == 200, (url, resp.status, reply)
            return reply


async def _get_feed(mesh: Mesh, user: str, limit: int = 100) -> Any:
    async with grpc.aio.insecure_channel(mesh.addr("rank")) as channel:
        return await rank_pb2_grpc.FeedServiceStub(channel).GetFeed(
            rank_pb2.GetFeedRequest(limit=limit),
            metadata=(("authorization", f"Bearer {mint_token(user)}"),),
            timeout=10,
        )


@pytest.fixture(scope="module")
async def long_video(mesh: Mesh) -> tuple[str, str]:
    """A published video whose title is one 200-character word (and a 50-character
    hashtag), served by svc_rank: (video id, creator)."""
    video_id = str(uuid.uuid4())
    creator = f"long-{video_id[:8]}"
    now = timestamp_pb2.Timestamp()
    now.FromDatetime(datetime.now(UTC))
    await send_published(
        mesh.backends.kafka_bootstrap,
        events_pb2.VideoPublished(
            meta=events_pb2.EventMeta(event_id=str(uuid.uuid4()), occurred_at=now),
            video_id=video_id,
            creator_id=creator,
            duration=duration_pb2.Duration(seconds=6),
            width=720,
            height=1280,
            master_playlist_key=f"videos/{video_id}/master.m3u8",
            published_at=now,
            title=LONG,
            hashtags=["H" * 50],
        ),
    )

    async def served() -> bool:
        reply = await _get_feed(mesh, f"probe-{uuid.uuid4().hex[:8]}")
        return video_id in [i.video_id for i in reply.items]

    await eventually_value(served, PUBLISHED_WITHIN_S, "svc_rank to serve the long-titled video")
    return video_id, creator


async def test_a_reload_after_everything_was_served_says_caught_up(
    browser: Any, envoy: EnvoySettings, mesh: Mesh, long_video: tuple[str, str]
) -> None:
    user = f"caught-up-{uuid.uuid4().hex[:8]}"
    # Everything there is gets served to the user (as a first visit would, page by page).
    first = await _get_feed(mesh, user)
    assert first.items and not first.has_more
    context = await browser.new_context(viewport={"width": WIDTH, "height": 780})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        base = f"http://127.0.0.1:{envoy.listen_port}"
        await page.goto(f"{base}/?token={mint_token(user)}", timeout=PAGE_TIMEOUT_MS)
        await page.wait_for_selector(FEED_SETTLED, timeout=PAGE_TIMEOUT_MS)
        state = await page.get_attribute("section.feed", "data-state")
        caught_up = await page.get_attribute("section.feed", "data-caught-up")
        status = await page.locator("section.feed > .status").inner_text()
        visible = await page.locator("section.feed > .status").is_visible()
        reels = await page.locator(".feed-list > li").count()
        why = await page.locator(".feed-list > li .reel-why").first.inner_text()
        overflow = await _overflow(page)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "web_robust_caught_up.png"))
    finally:
        await context.close()
    assert state == "ready", status
    assert reels == len(first.items)
    assert caught_up == "true"
    assert "all caught up" in status and visible, status
    assert "No reels yet" not in status
    assert "caught up" in why, why
    assert overflow <= 0, overflow
    assert not errors, errors


async def test_long_unbroken_text_never_scrolls_sideways_at_360px(
    browser: Any, envoy: EnvoySettings, long_video: tuple[str, str]
) -> None:
    video_id, creator = long_video
    base = f"http://127.0.0.1:{envoy.listen_port}"
    await _json(
        "POST",
        f"{base}/api/v1/reels/{video_id}/comments",
        f"commenter-{uuid.uuid4().hex[:6]}",
        {"text": "C" * 200, "client_comment_id": str(uuid.uuid4())},
    )
    created = await _json(
        "POST",
        f"{base}/api/v1/live",
        creator,
        {"title": "T" * 200, "description": "S" * 300, "tags": ["G" * 50]},
    )
    stream_id = created["stream"]["streamId"]
    context = await browser.new_context(viewport={"width": WIDTH, "height": 780})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    widths: dict[str, int] = {}
    try:
        # Feed (a new user: every reel, the long one among them), then its comments.
        await page.goto(f"{base}/?token={mint_token('fan-' + creator)}")
        await page.wait_for_selector(FEED_SETTLED, timeout=PAGE_TIMEOUT_MS)
        await page.wait_for_selector(
            f".feed-list > li .title:text('{LONG[:20]}')", timeout=PAGE_TIMEOUT_MS
        )
        widths["feed"] = await _overflow(page)
        reel = page.locator(f".feed-list > li[data-video-id='{video_id}']").last
        await reel.get_by_role("button", name="Comments").click()
        await page.wait_for_selector("dialog[open] li", timeout=PAGE_TIMEOUT_MS)
        widths["comments"] = await _overflow(page)
        await page.screenshot(path=str(SCREENSHOTS / "web_robust_comments_360.png"))
        await page.keyboard.press("Escape")

        # As the creator, signed in afresh (client-side navigation keeps the token).
        await page.goto(f"{base}/live?token={mint_token(creator)}")
        await page.wait_for_selector(f".own-streams li[data-stream-id='{stream_id}']")
        widths["live list"] = await _overflow(page)
        await page.screenshot(path=str(SCREENSHOTS / "web_robust_live_360.png"), full_page=True)

        await page.locator(f".own-streams li[data-stream-id='{stream_id}'] a").click()
        await page.wait_for_selector(".live-stream[data-state='created']")
        await page.wait_for_selector(".chat[data-connection='live']", timeout=PAGE_TIMEOUT_MS)
        widths["stream page"] = await _overflow(page)
        meta = (await page.locator(".stream-header .meta").inner_text()).strip()
        input_disabled = await page.locator("#chat-input").is_disabled()
        send_disabled = await page.get_by_role("button", name="Send").is_disabled()
        closed_note = await page.locator("#chat-closed").inner_text()
        chat_status = await page.locator(".chat-status").inner_text()
        empty = await page.locator(".chat-empty").inner_text()
        await page.screenshot(path=str(SCREENSHOTS / "web_robust_stream_360.png"), full_page=True)

        await page.get_by_role("link", name="Analytics").click()
        await page.get_by_role("heading", name="Analytics", exact=True).wait_for()
        await page.wait_for_selector("section[data-state]:not([data-state='loading'])")
        widths["analytics"] = await _overflow(page)
        await page.goto(f"{base}/analytics/{video_id}?token={mint_token(creator)}")
        await page.wait_for_selector("section[data-state]:not([data-state='loading'])")
        widths["video analytics"] = await _overflow(page)

        await page.get_by_role("link", name="Upload").click()
        await page.get_by_label("Title").fill(LONG)
        await page.get_by_label("Description").fill("D" * 300)
        await page.get_by_label("Hashtags").fill("#" + "x" * 120 + "🔥" + "y" * 80)
        await page.wait_for_selector("#upload-hashtags-note:not([hidden])")
        widths["upload"] = await _overflow(page)
        await page.screenshot(path=str(SCREENSHOTS / "web_robust_upload_360.png"), full_page=True)
    finally:
        await context.close()
    assert all(w <= 0 for w in widths.values()), widths
    # The chat of a stream that has not started is closed from the start, and says so.
    assert input_disabled and send_disabled
    assert "goes live" in closed_note, closed_note
    assert "Connected" not in chat_status and "Say hello" not in empty, (chat_status, empty)
    assert not meta.endswith("·"), meta
    assert meta == f"Not started by {creator} (you)", meta
    assert not errors, errors


async def test_hashtags_the_server_drops_are_named_before_the_upload(
    browser: Any, envoy: EnvoySettings
) -> None:
    base = f"http://127.0.0.1:{envoy.listen_port}"
    context = await browser.new_context(viewport={"width": WIDTH, "height": 780})
    page = await context.new_page()
    try:
        await page.goto(f"{base}/upload?token={mint_token('tagger-' + uuid.uuid4().hex[:6])}")
        field = page.get_by_label("Hashtags")
        await field.fill("#dance #citylife")
        clean_hidden = await page.locator("#upload-hashtags-note").is_hidden()
        await field.fill("#dance #🔥 #wow!great")
        note = await page.locator("#upload-hashtags-note").inner_text()
        described = await field.get_attribute("aria-describedby")
        submit_enabled = await page.get_by_role("button", name="Upload", exact=True).is_enabled()
    finally:
        await context.close()
    assert clean_hidden
    assert "#🔥 is not a hashtag: hashtags are letters, digits and _" in note, note
    assert "#wow!great becomes #wow #great" in note, note
    assert "#dance" not in note, note
    assert "upload-hashtags-note" in (described or "")
    assert submit_enabled  # a note, not a refusal


async def test_an_expired_token_is_refused_at_sign_in_with_its_expiry(
    browser: Any, envoy: EnvoySettings
) -> None:
    base = f"http://127.0.0.1:{envoy.listen_port}"
    expired = mint_token("expired-user", now=time.time() - 7200, ttl_seconds=3600)
    context = await browser.new_context()
    page = await context.new_page()
    try:
        await page.goto(f"{base}/sign-in", timeout=PAGE_TIMEOUT_MS)
        await page.get_by_label("Dev token").fill(expired)
        await page.get_by_role("button", name="Sign in").click()
        error = await page.locator("#token-error").inner_text()
        session = await page.locator(".session").inner_text()
        # The same token in ?token=: not taken, and the sign-in page says why.
        await page.goto(f"{base}/upload?token={expired}", timeout=PAGE_TIMEOUT_MS)
        await page.get_by_label("Dev token").wait_for(timeout=PAGE_TIMEOUT_MS)
        notice = await page.locator("#sign-out-notice").inner_text()
    finally:
        await context.close()
    assert error.startswith("This token expired at "), error
    assert "get a new one with make token" in error, error
    assert "Signed in" not in session, session
    assert "expired at" in notice, notice


async def test_a_refused_token_signs_out_with_a_reason_on_every_page(
    browser: Any, envoy: EnvoySettings, tmp_path: Path
) -> None:
    """A token the API refuses (its signature does not verify: Envoy answers 401) signs
    out with a message: from the feed's gRPC-web call, and from the upload's tus POST."""
    base = f"http://127.0.0.1:{envoy.listen_port}"
    good = mint_token(f"forged-{uuid.uuid4().hex[:6]}")
    head, body, signature = good.split(".")
    foreign = f"{head}.{body}.{signature[::-1]}"  # decodes, but does not verify
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0" * 4096)
    context = await browser.new_context(viewport={"width": WIDTH, "height": 780})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    seen: dict[str, str] = {}
    tus_statuses: list[int] = []

    def on_response(r: Any) -> None:
        if TUS in r.url and r.request.method == "POST":
            tus_statuses.append(r.status)

    page.on("response", on_response)
    try:
        await page.goto(f"{base}/?token={foreign}", timeout=PAGE_TIMEOUT_MS)
        await page.locator("#sign-out-notice").wait_for(timeout=PAGE_TIMEOUT_MS)
        seen["feed"] = await page.locator("#sign-out-notice").inner_text()
        seen["feed session"] = await page.locator(".session").inner_text()

        # The upload page's first API call is tus: its 401 goes the same way.
        await page.goto(f"{base}/upload?token={foreign}", timeout=PAGE_TIMEOUT_MS)
        await page.get_by_label("Video file").set_input_files(str(clip))
        await page.get_by_role("button", name="Upload", exact=True).click()
        await page.locator("#sign-out-notice").wait_for(timeout=PAGE_TIMEOUT_MS)
        seen["upload"] = await page.locator("#sign-out-notice").inner_text()
        seen["upload session"] = await page.locator(".session").inner_text()
        await page.screenshot(path=str(SCREENSHOTS / "web_robust_refused.png"), full_page=True)
    finally:
        await context.close()
    assert "refused your token" in seen["feed"], seen
    assert "refused your token" in seen["upload"], seen
    assert "Signed in" not in seen["feed session"], seen
    assert "Signed in" not in seen["upload session"], seen
    assert 401 in tus_statuses, tus_statuses
    assert not errors, errors


async def test_a_token_signs_out_when_it_expires(browser: Any, envoy: EnvoySettings) -> None:
    base = f"http://127.0.0.1:{envoy.listen_port}"
    user = f"short-{uuid.uuid4().hex[:6]}"
    context = await browser.new_context()
    page = await context.new_page()
    try:
        await page.goto(f"{base}/live?token={mint_token(user, ttl_seconds=4)}")
        await page.get_by_role("heading", name="Live", exact=True).wait_for()
        before = await page.locator(".session").inner_text()
        await page.locator("#sign-out-notice").wait_for(timeout=10_000)
        notice = await page.locator("#sign-out-notice").inner_text()
        after = await page.locator(".session").inner_text()
    finally:
        await context.close()
    assert user in before, before
    assert "your token expired at" in notice, notice
    assert "Signed in" not in after, after


async def test_analytics_offers_try_again_only_when_it_can_help(
    browser: Any, envoy: EnvoySettings, long_video: tuple[str, str]
) -> None:
    video_id, _ = long_video
    base = f"http://127.0.0.1:{envoy.listen_port}"
    context = await browser.new_context()
    page = await context.new_page()
    shown: dict[str, tuple[str, int]] = {}
    try:
        token = mint_token(f"not-the-creator-{uuid.uuid4().hex[:6]}")
        for name, vid in (("not yours", video_id), ("no such video", str(uuid.uuid4()))):
            await page.goto(f"{base}/analytics/{vid}?token={token}", timeout=PAGE_TIMEOUT_MS)
            await page.wait_for_selector("section[data-state='error']", timeout=PAGE_TIMEOUT_MS)
            text = await page.locator("[role='alert']").first.inner_text()
            retry = await page.get_by_role("button", name="Try again").count()
            shown[name] = (text, retry)
        # Unavailable (the request never reaches the service): a retry is offered.
        await page.route("**/reels.v1.StreamService/**", lambda route: route.abort())
        await page.goto(f"{base}/analytics?token={token}", timeout=PAGE_TIMEOUT_MS)
        await page.wait_for_selector("section[data-state='error']", timeout=PAGE_TIMEOUT_MS)
        shown["offline"] = ("", await page.get_by_role("button", name="Try again").count())
    finally:
        await context.close()
    assert shown["not yours"][1] == 0, shown
    assert shown["no such video"][1] == 0, shown
    assert shown["offline"][1] == 1, shown
