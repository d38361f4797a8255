"""The web client's upload page in Debian's Chromium, through Envoy, against the real mesh.

A real clip (ffmpeg, ~2 MB) goes up with tus-js-client in 256 KiB chunks (`?chunk=`).
Chromium's upload is throttled (DevTools network emulation) so the test can reload the
page at about half way: the token lives in memory only, so the reload signs out, the
test signs in again and chooses the same file, and the page resumes from the server's
offset (tus HEAD). Counted from Playwright's request events: no new upload is created,
and the resumed PATCHes start no earlier than the last one sent before the reload (so
at most that one chunk is sent again). Then the page follows the transcoding over the
server-streamed status (UploadService.WatchVideoStatus, gRPC-web) to published and shows
the thumbnail from its signed /media/ URL (naturalWidth > 0). All of it at 360 px wide,
which must not scroll sideways.

The tus server's error bodies reach the page: a file of noise named .mp4 is "not a
usable video" (422 on the last PATCH), a file over Tus-Max-Size (a sparse file; no byte
is read) is "too big" (413 on the creation POST). A paused upload survives moving to another page
and back; after a reload it is listed as unfinished, and Discard deletes it on the server
(tus termination: HEAD is then 404) and forgets it in localStorage.

Screenshots go to var/screenshots/web_upload_*.png. Skipped when web/dist is not built.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reels_dev.infra.envoy import EnvoySettings
from reels_dev.infra.process import REPO_ROOT
from reels_dev.infra.web_app import WEB_DIST
from reels_dev.keys import mint_token
from tests.browser.chromium import CHROMIUM

SCREENSHOTS = REPO_ROOT / "var" / "screenshots"
TUS = "/api/v1/uploads/tus/"
WATCH = "/reels.v1.UploadService/WatchVideoStatus"
CHUNK = 256 * 1024
# Chromium's upload throttle before the reload: ~2 MB take ~8 s, so "half way" is a
# window of seconds, not a race with loopback speed.
THROTTLE_BYTES_PER_S = 256 * 1024
PAGE_TIMEOUT_MS = 15_000
UPLOAD_TIMEOUT_MS = 30_000
PUBLISH_TIMEOUT_MS = 75_000
WIDTH = 360

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"chromium is not installed at {CHROMIUM} (make setup installs it from apt)",
    ),
    pytest.mark.skipif(
        not (WEB_DIST / "index.html").is_file(),
        reason="web/dist is not built (make setup builds it)",
    ),
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
]


async def make_clip(out: Path) -> Path:
    """A 4 s 360x640 clip with a tone, encoded at a high quality so it is ~2 MB:
    eight chunks of CHUNK bytes."""
    argv = [
        "ffmpeg", "-v", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=360x640:rate=30:duration=4",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=4",
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "10", "-g", "30",
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "-shortest",
        "-movflags", "+faststart", str(out),
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    return out


async def throttle_upload(cdp: Any, bytes_per_s: int) -> None:
    """DevTools network emulation of the page's uplink (-1: no limit)."""
    await cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": bytes_per_s,
        },
    )


async def sign_in(page: Any, token: str) -> None:
    """The sign-in form the app shows in place of a page while signed out."""
    field = page.get_by_label("Dev token")
    await field.wait_for(timeout=PAGE_TIMEOUT_MS)
    await field.fill(token)
    await page.get_by_role("button", name="Sign in").click()


async def no_sideways_scroll(page: Any) -> int:
    return int(await page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


async def test_upload_resumes_after_a_reload_and_shows_the_published_video(
    browser: Any, envoy: EnvoySettings, tmp_path: Path
) -> None:
    clip = await make_clip(tmp_path / "web-upload.mp4")
    size = clip.stat().st_size
    chunks = math.ceil(size / CHUNK)
    assert chunks >= 6, f"the clip is {size} bytes: too few chunks to interrupt half way"
    user = f"web-up-{uuid.uuid4().hex[:8]}"
    token = mint_token(user)
    title = f"Resumed upload {user[-8:]}"
    base = f"http://127.0.0.1:{envoy.listen_port}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    context = await browser.new_context(viewport={"width": WIDTH, "height": 800})
    page = await context.new_page()
    phase = ["before"]
    patches: list[tuple[str, int, str]] = []  # (before/after the reload, Upload-Offset, url)
    posts: list[str] = []
    heads: list[str] = []
    watches: list[str] = []
    failed: list[tuple[str, str]] = []
    errors: list[str] = []

    def on_request(request: Any) -> None:
        if TUS in request.url:
            if request.method == "PATCH":
                patches.append(
                    (phase[0], int(request.headers.get("upload-offset", "-1")), request.url)
                )
            elif request.method == "POST":
                posts.append(phase[0])
            elif request.method == "HEAD":
                heads.append(phase[0])
        elif request.url.endswith(WATCH):
            watches.append(phase[0])

    page.on("request", on_request)
    # The reload aborts the PATCH in flight (expected); anything else failing is a bug.
    page.on(
        "requestfailed",
        lambda r: failed.append((phase[0], f"{r.method} {r.url} {r.failure}")),
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    cdp = await context.new_cdp_session(page)
    await cdp.send("Network.enable")
    try:
        await throttle_upload(cdp, THROTTLE_BYTES_PER_S)
        await page.goto(f"{base}/upload?chunk={CHUNK}&token={token}", timeout=PAGE_TIMEOUT_MS)
        await page.get_by_role("heading", name="Upload", exact=True).wait_for(
            timeout=PAGE_TIMEOUT_MS
        )
        await page.get_by_label("Video file").set_input_files(str(clip))
        await page.get_by_label("Title").fill(title)
        await page.get_by_label("Description").fill(
            "Sent in chunks, interrupted by a reload, resumed."
        )
        await page.get_by_label("Hashtags").fill("#webupload #resume")
        form_overflow = await no_sideways_scroll(page)
        await page.screenshot(path=str(SCREENSHOTS / "web_upload_form.png"), full_page=True)
        await page.get_by_role("button", name="Upload", exact=True).click()

        # Half way: the page's <progress> (and its text) say so; then reload.
        progress = page.get_by_role("progressbar", name="Upload progress")
        await progress.wait_for(timeout=PAGE_TIMEOUT_MS)
        # Pause holds the transfer; Resume continues it (from the server's offset).
        await page.wait_for_function(
            "() => Number(document.getElementById('upload-progress')?.value ?? 0) >= 15",
            timeout=UPLOAD_TIMEOUT_MS,
        )
        await page.get_by_role("button", name="Pause").click()
        await page.wait_for_selector(
            "section.upload-job[data-state='paused']", timeout=PAGE_TIMEOUT_MS
        )
        paused_at = await progress.evaluate("p => p.value")
        await page.wait_for_timeout(700)
        still_at = await progress.evaluate("p => p.value")
        patches_while_paused = len(patches)
        await page.get_by_role("button", name="Resume").click()
        await page.wait_for_selector(
            "section.upload-job[data-state='uploading']", timeout=PAGE_TIMEOUT_MS
        )
        await page.wait_for_function(
            "() => Number(document.getElementById('upload-progress')?.value ?? 0) >= 50",
            timeout=UPLOAD_TIMEOUT_MS,
        )
        at_half = await page.locator("#upload-progress-text").inner_text()
        await page.screenshot(path=str(SCREENSHOTS / "web_upload_progress.png"), full_page=True)
        stored_before = await page.evaluate(
            "Object.keys(localStorage).filter(k => k.startsWith('tus::'))"
        )
        await page.reload(timeout=PAGE_TIMEOUT_MS)
        phase[0] = "after"
        sent_before = [offset for when, offset, _ in patches if when == "before"]
        await throttle_upload(cdp, -1)

        # Signed out by the reload (in-memory token): sign in, choose the same file.
        await sign_in(page, token)
        await page.get_by_role("heading", name="Unfinished uploads").wait_for(
            timeout=PAGE_TIMEOUT_MS
        )
        unfinished = await page.locator(".upload-stored-list").inner_text()
        await page.get_by_label("Video file").set_input_files(str(clip))
        resume = page.get_by_role("button", name="Resume upload")
        await resume.wait_for(timeout=PAGE_TIMEOUT_MS)
        prefilled = await page.get_by_label("Title").input_value()
        await page.screenshot(path=str(SCREENSHOTS / "web_upload_resume.png"), full_page=True)
        # Keyboard: the button is reachable and works with Enter.
        await resume.focus()
        await page.keyboard.press("Enter")

        job = page.locator("section.upload-job")
        await page.wait_for_selector(
            "section.upload-job:is([data-state='processing'], [data-state='published'])",
            timeout=UPLOAD_TIMEOUT_MS,
        )
        resumed_text = await page.locator(".upload-resumed").inner_text()
        processing_seen = await job.get_attribute("data-state")
        await page.wait_for_selector(
            "section.upload-job[data-state='published']", timeout=PUBLISH_TIMEOUT_MS
        )
        thumbnail = page.locator("img.upload-thumbnail")
        await thumbnail.wait_for(timeout=PAGE_TIMEOUT_MS)
        await page.wait_for_function(
            "() => { const i = document.querySelector('img.upload-thumbnail');"
            " return i && i.complete && i.naturalWidth > 0; }",
            timeout=PAGE_TIMEOUT_MS,
        )
        natural_width = await thumbnail.evaluate("i => i.naturalWidth")
        thumbnail_src = await thumbnail.get_attribute("src")
        thumbnail_alt = await thumbnail.get_attribute("alt")
        shown_title = await page.locator(".upload-result-title").inner_text()
        process_value = await page.locator("#process-progress").evaluate("p => p.value")
        video_id = await job.get_attribute("data-video-id")
        published_overflow = await no_sideways_scroll(page)
        await page.screenshot(path=str(SCREENSHOTS / "web_upload_published.png"), full_page=True)
        stored_after = await page.evaluate("JSON.stringify(Object.keys(localStorage))")
        storage_dump = await page.evaluate("JSON.stringify(Object.entries(localStorage))")
    finally:
        await context.close()

    # Pause stopped the transfer (no new PATCH, no progress) and Resume went on.
    assert still_at == paused_at < 100, (paused_at, still_at)
    assert len([p for p in patches if p[0] == "before"]) > patches_while_paused
    # Half way when the reload came, and the upload URL (not the token) was stored.
    assert "%" in at_half, at_half
    assert len(stored_before) == 1, stored_before
    assert token not in storage_dump, "the token must never be stored"
    # One upload, created once, before the reload; resumed after it (HEAD, then PATCH).
    assert posts == ["before"], posts
    assert "after" in heads, heads
    assert title in unfinished, unfinished
    assert prefilled == title
    sent_after = [offset for when, offset, _ in patches if when == "after"]
    assert sent_before and sent_after, patches
    last_started = max(sent_before)
    resumed_at = sent_after[0]
    # The server kept every chunk that was answered, and what arrived of the one in
    # flight: at most that chunk is sent again, and the rest goes once.
    assert last_started <= resumed_at < size, (last_started, resumed_at, size)
    assert resumed_at - last_started <= CHUNK
    assert len(sent_after) <= math.ceil((size - resumed_at) / CHUNK) + 1, (sent_after, size)
    assert sent_after == sorted(sent_after), sent_after
    assert len({url for _, _, url in patches}) == 1, "every PATCH goes to the one upload"
    assert "Resumed at" in resumed_text, resumed_text
    # The status stream drove the page to published; the thumbnail came from /media/.
    assert watches.count("after") >= 1, watches
    assert processing_seen in ("processing", "published")
    assert video_id, "the panel names the video"
    assert natural_width > 0
    assert thumbnail_src and "/media/" in thumbnail_src, thumbnail_src
    assert thumbnail_alt == f"Thumbnail of “{title}”"
    assert shown_title == title
    assert process_value == 100
    assert "tus::" not in stored_after, "a finished upload is forgotten"
    # 360 px: nothing wider than the viewport.
    assert form_overflow <= 0 and published_overflow <= 0, (form_overflow, published_overflow)
    unexpected = [f for f in failed if f[0] == "after" or "PATCH" not in f[1]]
    assert not unexpected, unexpected
    assert not errors, errors


async def test_upload_errors_show_the_servers_reasons(
    browser: Any, envoy: EnvoySettings, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{envoy.listen_port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.options(base + TUS) as resp:
            max_size = int(resp.headers["Tus-Max-Size"])
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(os.urandom(200 * 1024))
    huge = tmp_path / "huge.mp4"
    with huge.open("wb") as f:
        f.truncate(max_size + 1)  # sparse: nothing is written, and the browser reads none
    token = mint_token(f"web-err-{uuid.uuid4().hex[:8]}")

    context = await browser.new_context(viewport={"width": WIDTH, "height": 800})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        await page.goto(f"{base}/upload?token={token}", timeout=PAGE_TIMEOUT_MS)
        # Enter in a field submits; without a file the form says so and focuses the input.
        await page.get_by_label("Title").fill("No file yet")
        await page.get_by_label("Title").press("Enter")
        no_file = await page.locator("#upload-form-error").inner_text()
        focused = await page.evaluate("document.activeElement?.id")

        # Not a video: every byte arrives, the last PATCH answers 422 with the reason.
        await page.get_by_label("Video file").set_input_files(str(noise))
        await page.get_by_role("button", name="Upload", exact=True).click()
        await page.wait_for_selector(
            "section.upload-job[data-state='upload-error']", timeout=UPLOAD_TIMEOUT_MS
        )
        not_video = await page.locator(".upload-problem").inner_text()
        await page.screenshot(path=str(SCREENSHOTS / "web_upload_not_a_video.png"), full_page=True)
        await page.get_by_role("button", name="Choose another file").click()

        # Too big: refused at creation (413), before any byte is sent.
        await page.get_by_label("Video file").set_input_files(str(huge))
        await page.get_by_role("button", name="Upload", exact=True).click()
        await page.wait_for_selector(
            "section.upload-job[data-state='upload-error']", timeout=PAGE_TIMEOUT_MS
        )
        too_big = await page.locator(".upload-problem").inner_text()
        overflow = await no_sideways_scroll(page)
        await page.screenshot(path=str(SCREENSHOTS / "web_upload_too_big.png"), full_page=True)
    finally:
        await context.close()
        huge.unlink(missing_ok=True)

    assert "choose a video file" in no_file.lower(), no_file
    assert focused == "upload-file"
    assert "not a usable video" in not_video, not_video
    assert len(not_video.splitlines()) >= 2, f"the server's reason is shown: {not_video!r}"
    assert "too big" in too_big, too_big
    assert str(max_size) in too_big, f"the server's message names the limit: {too_big!r}"
    assert overflow <= 0, overflow
    assert not errors, errors


async def test_an_unfinished_upload_is_listed_and_can_be_discarded(
    browser: Any, envoy: EnvoySettings, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{envoy.listen_port}"
    partial = tmp_path / "partial.mp4"
    partial.write_bytes(os.urandom(1024 * 1024))
    user = f"web-discard-{uuid.uuid4().hex[:8]}"
    token = mint_token(user)

    context = await browser.new_context(viewport={"width": WIDTH, "height": 800})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    cdp = await context.new_cdp_session(page)
    await cdp.send("Network.enable")
    try:
        await throttle_upload(cdp, 128 * 1024)
        await page.goto(f"{base}/upload?chunk=65536&token={token}", timeout=PAGE_TIMEOUT_MS)
        await page.get_by_label("Video file").set_input_files(str(partial))
        await page.get_by_role("button", name="Upload", exact=True).click()
        await page.wait_for_function(
            "() => Number(document.getElementById('upload-progress')?.value ?? 0) >= 10",
            timeout=UPLOAD_TIMEOUT_MS,
        )
        await page.get_by_role("button", name="Pause").click()
        await page.wait_for_selector(
            "section.upload-job[data-state='paused']", timeout=PAGE_TIMEOUT_MS
        )
        upload_url = await page.evaluate(
            "JSON.parse(localStorage.getItem("
            "Object.keys(localStorage).find(k => k.startsWith('tus::')))).uploadUrl"
        )
        # Another page and back: the paused job is still there (it lives beyond the page).
        await page.get_by_role("link", name="Live").click()
        await page.get_by_role("link", name="Upload").click()
        back_state = await page.locator("section.upload-job").get_attribute("data-state")
        # A reload forgets the job (and the token); the stored upload is listed.
        await page.reload(timeout=PAGE_TIMEOUT_MS)
        await sign_in(page, token)
        await page.get_by_role("heading", name="Unfinished uploads").wait_for(
            timeout=PAGE_TIMEOUT_MS
        )
        listed = await page.locator(".upload-stored-list").inner_text()
        await page.get_by_role(
            "button", name="Discard the unfinished upload of partial.mp4"
        ).click()
        await page.get_by_role("heading", name="Unfinished uploads").wait_for(
            state="hidden", timeout=PAGE_TIMEOUT_MS
        )
        stored = await page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('tus::'))")
    finally:
        await context.close()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.head(
            base + upload_url,
            headers={"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"},
        ) as resp:
            gone = resp.status
    assert back_state == "paused"
    assert "partial.mp4" in listed, listed
    assert stored == []
    assert gone == 404, "Discard terminated the upload on the server (tus DELETE)"
    assert not errors, errors
