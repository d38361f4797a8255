"""The web app's live pages, two users in Debian's Chromium, a real encoder.

A creator goes live from the app: the "Go live" form (ChatService.CreateStream over
gRPC-web) shows the stream key once, and a real encoder (ffmpeg, ``-re``, x264 + AAC)
publishes with it over RTMP to svc_chat. A viewer finds the stream on /live and opens
it; the creator opens their stream page. On both the live video plays (hls.js on
GetPlayback's signed live master: ``currentTime`` advances) and ReportViewing
heartbeats go out. Chat over gRPC-web server streaming (SubscribeChat):

* a message the viewer sends (SendMessage) appears on the creator's page;
* the creator's browser goes offline (``context.set_offline``): the app drops the
  subscription at once; the viewer sends two messages the creator cannot see; back
  online, the app subscribes again with ``recover``, ``since_offset`` (the last offset
  it saw) and the epoch, and shows exactly the two messages it missed, in order, with no
  "missed" warning (recovered);
* the creator deletes one of the viewer's messages (ModerateChat): both pages show the
  tombstone;
* offline again, while Redis loses the channel (its epoch, offset and history deleted,
  as a flush would): back online, recovery is impossible (``recovered: false``, a new
  epoch); the app says "Some messages were missed" and shows the latest history;
* the creator ends the stream from their page: both pages show it ended (the chat's
  STREAM_ENDED notice stops the player).

Screenshots: var/screenshots/web_live_{go_live,creator,viewer,missed}.png. The publisher is bounded
(``-t``) and killed by PID, and the stream ended through the JSON API, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from reels.v1 import chat_pb2

from reels.cache import redis_client, set_key_prefix
from reels_dev.infra.envoy import EnvoySettings
from reels_dev.infra.process import REPO_ROOT
from reels_dev.infra.web_app import WEB_DIST
from reels_dev.keys import mint_token
from svc_chat.chat.channel import ChannelKeys
from tests.browser.chromium import CHROMIUM
from tests.fixtures.mesh import Mesh
from tests.polling import eventually_value

SCREENSHOTS = REPO_ROOT / "var" / "screenshots"
SUBSCRIBE = "/reels.v1.ChatService/SubscribeChat"
REPORT_VIEWING = "/reels.v1.ChatService/ReportViewing"
PUBLISH_S = 75
"""How long the encoder publishes at most (it is killed when the test ends)."""
SOURCE = "size=426x240:rate=15"
"""A small source: one 240p rung, so two players and the encoders fit on two cores."""
LIVE_WITHIN_S = 20.0
PAGE_TIMEOUT_MS = 15_000
PLAY_TIMEOUT_MS = 30_000
CHAT_TIMEOUT_MS = 10_000
ADVANCE_S = 1.5

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


@pytest.fixture
def browser(media_browser: Any) -> Any:
    """The player pages here autoplay: conftest's media_browser."""
    return media_browser


def subscribe_request(body: bytes | None) -> chat_pb2.SubscribeChatRequest:
    """The SubscribeChatRequest in a gRPC-web request body (one length-prefixed frame)."""
    assert body is not None and len(body) >= 5, body
    flags, size = struct.unpack(">BI", body[:5])
    assert flags == 0 and len(body) == 5 + size, body
    return chat_pb2.SubscribeChatRequest.FromString(body[5:])


async def _json(
    http: aiohttp.ClientSession, method: str, url: str, user: str, body: Any = None
) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {mint_token(user)}"}
    async with http.request(method, url, headers=headers, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def _stop(proc: asyncio.subprocess.Process | None) -> None:
    if proc is not None and proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, 9)  # our own encoder, by its PID
        with contextlib.suppress(ProcessLookupError, TimeoutError):
            await asyncio.wait_for(proc.wait(), 10)


async def chat_texts(page: Any) -> list[str]:
    return list(await page.locator(".chat-log .chat-message .chat-text").all_text_contents())


async def wait_for_text(page: Any, text: str) -> None:
    await page.locator(".chat-log .chat-text", has_text=text).first.wait_for(
        timeout=CHAT_TIMEOUT_MS
    )


async def lose_channel(mesh: Mesh, stream_id: str) -> None:
    """Deletes the stream's chat channel state (epoch, offset, history) in the mesh's
    Redis, as a flushed Redis would: the next publication starts a new epoch."""
    set_key_prefix(mesh.redis_prefix)
    try:
        keys = ChannelKeys(stream_id)
    finally:
        set_key_prefix(None)
    redis = redis_client()
    try:
        assert await redis.delete(keys.meta, keys.history) == 2
    finally:
        await redis.aclose()


async def video_advances(page: Any, who: str) -> float:
    """Waits until the live player plays and its picture moves on ADVANCE_S seconds."""
    video = "document.querySelector('video.live-video')"
    try:
        await page.wait_for_function(
            f"{video} && {video}.currentTime > 0 && !{video}.paused", timeout=PLAY_TIMEOUT_MS
        )
        started = float(await page.evaluate(f"{video}.currentTime"))
        await page.wait_for_function(
            f"{video}.currentTime >= {started + ADVANCE_S}", timeout=PLAY_TIMEOUT_MS
        )
        return float(await page.evaluate(f"{video}.currentTime")) - started
    except Exception as exc:
        state = await page.get_attribute(".live-player", "data-state")
        note = await page.locator(".player-note").inner_text()
        raise AssertionError(f"{who}'s live video did not play: {exc} ({state}: {note})") from None


async def test_two_users_watch_and_chat_and_the_chat_recovers_after_going_offline(
    browser: Any, envoy: EnvoySettings, mesh: Mesh, tmp_path: Path
) -> None:
    assert mesh.rtmp_port, "the mesh fixture does not say svc_chat's RTMP port"
    base = f"http://127.0.0.1:{envoy.listen_port}"
    api = f"{base}/api/v1"
    tag = uuid.uuid4().hex[:8]
    creator, viewer = f"streamer-{tag}", f"viewer-{tag}"
    title = f"Web live {tag}"
    log_path = tmp_path / "ffmpeg.log"
    encoder: asyncio.subprocess.Process | None = None
    stream_id = ""
    errors: list[str] = []
    subscribes: list[tuple[str, bytes | None]] = []
    heartbeats: dict[str, int] = {"creator": 0, "viewer": 0}

    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    creator_ctx = await browser.new_context(viewport={"width": 1200, "height": 800})
    viewer_ctx = await browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        owner = await creator_ctx.new_page()
        watcher = await viewer_ctx.new_page()
        for who, page in (("creator", owner), ("viewer", watcher)):

            def on_request(request: Any, who: str = who) -> None:
                if request.url.endswith(SUBSCRIBE):
                    subscribes.append((who, request.post_data_buffer))
                elif request.url.endswith(REPORT_VIEWING):
                    heartbeats[who] += 1

            page.on("pageerror", lambda e, who=who: errors.append(f"{who}: {e}"))
            page.on("request", on_request)

        # The creator goes live from the app: the key is on the page, once.
        await owner.goto(f"{base}/live?token={mint_token(creator)}", timeout=PAGE_TIMEOUT_MS)
        await owner.get_by_label("Title").fill(title)
        await owner.get_by_role("button", name="Create stream").click()
        panel = owner.locator(".credentials")
        await panel.wait_for(timeout=PAGE_TIMEOUT_MS)
        stream_id = str(await panel.get_attribute("data-stream-id"))
        key = await panel.locator("[data-credential='stream-key']").inner_text()
        assert stream_id and key, (stream_id, key)
        ingest = await panel.locator("[data-credential='ingest-url']").inner_text()
        assert ingest.startswith("rtmp://"), ingest
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await owner.screenshot(path=str(SCREENSHOTS / "web_live_go_live.png"), full_page=True)

        with log_path.open("wb") as log:
            encoder = await asyncio.create_subprocess_exec(
                "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
                "-re", "-f", "lavfi", "-i", f"testsrc2={SOURCE}",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                "-t", str(PUBLISH_S),
                "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "15",
                "-c:a", "aac",
                "-f", "flv", f"rtmp://127.0.0.1:{mesh.rtmp_port}/live/{key}",
                stdout=asyncio.subprocess.DEVNULL, stderr=log,
            )  # fmt: skip

        async def on_air() -> bool:
            assert encoder is not None and encoder.returncode is None, log_path.read_text()
            status, got = await _json(http, "GET", f"{api}/live/{stream_id}", creator)
            assert status == 200, got
            return bool(got["stream"]["state"] == "LIVE_STREAM_STATE_LIVE")

        await eventually_value(on_air, LIVE_WITHIN_S, "the stream to go LIVE", interval=0.3)

        # The creator opens their stream page from the panel (client-side navigation);
        # the viewer finds the stream among those live now.
        await panel.get_by_role("link", name="Open your stream page").click()
        await watcher.goto(f"{base}/live?token={mint_token(viewer)}", timeout=PAGE_TIMEOUT_MS)
        listed = watcher.locator(f".live-now .stream-item[data-stream-id='{stream_id}']")
        await listed.wait_for(timeout=PAGE_TIMEOUT_MS)
        await listed.get_by_role("link", name=title).click()

        for page in (owner, watcher):
            await page.wait_for_selector(
                f".live-stream[data-stream-id='{stream_id}'] .chat[data-connection='live']",
                timeout=PAGE_TIMEOUT_MS,
            )
        # Moderation controls are the creator's only.
        assert await owner.locator(".owner-tools").count() == 1
        assert await watcher.locator(".owner-tools").count() == 0

        # The live video plays on both pages.
        advanced = await asyncio.gather(
            video_advances(owner, "the creator"), video_advances(watcher, "the viewer")
        )

        # A message from the viewer reaches the creator (and the viewer's own log).
        hello = f"hello from the viewer {tag}"
        await watcher.get_by_label("Message", exact=True).fill(hello)
        await watcher.get_by_label("Message", exact=True).press("Enter")
        await wait_for_text(owner, hello)
        await wait_for_text(watcher, hello)
        seen_offset = int(str(await owner.get_attribute(".chat", "data-offset")))
        assert seen_offset >= 1

        # The creator drops off the network: the app notices and stops its subscription.
        before = len([s for s in subscribes if s[0] == "creator"])
        await creator_ctx.set_offline(True)
        await owner.wait_for_selector(".chat[data-connection='offline']", timeout=CHAT_TIMEOUT_MS)
        missed = [f"while you were away {tag} #{i}" for i in (1, 2)]
        for text in missed:
            await watcher.get_by_label("Message", exact=True).fill(text)
            await watcher.get_by_label("Message", exact=True).press("Enter")
            await wait_for_text(watcher, text)
        await asyncio.sleep(1.0)  # time enough for a live frame, were there a path
        while_offline = await chat_texts(owner)
        assert not set(missed) & set(while_offline), while_offline

        # Back online: it resubscribes from its last offset and shows what it missed.
        await creator_ctx.set_offline(False)
        for text in missed:
            await wait_for_text(owner, text)
        await owner.wait_for_selector(".chat[data-connection='live']", timeout=CHAT_TIMEOUT_MS)
        creator_log = await chat_texts(owner)
        missed_banner = await owner.locator(".chat-missed").is_visible()
        resubscribes = [s for s in subscribes if s[0] == "creator"][before:]

        # The creator deletes the viewer's first message: both logs show the tombstone.
        line = owner.locator(".chat-log .chat-message", has_text=hello)
        await line.get_by_role("button", name=f"Delete this message from {viewer}").click()
        deleted = f".chat-log .chat-message.deleted[data-offset='{seen_offset}']"
        await owner.wait_for_selector(deleted, timeout=CHAT_TIMEOUT_MS)
        await watcher.wait_for_selector(deleted, timeout=CHAT_TIMEOUT_MS)
        viewer_log = await chat_texts(watcher)

        await owner.screenshot(path=str(SCREENSHOTS / "web_live_creator.png"), full_page=True)
        await watcher.screenshot(path=str(SCREENSHOTS / "web_live_viewer.png"), full_page=True)

        # Redis loses the channel while the creator is offline (a new epoch): what they
        # missed cannot be recovered; the app says so and shows the latest instead.
        await creator_ctx.set_offline(True)
        await owner.wait_for_selector(".chat[data-connection='offline']", timeout=CHAT_TIMEOUT_MS)
        await lose_channel(mesh, stream_id)
        fresh = f"after the reset {tag}"
        await watcher.get_by_label("Message", exact=True).fill(fresh)
        await watcher.get_by_label("Message", exact=True).press("Enter")
        await wait_for_text(watcher, fresh)
        await creator_ctx.set_offline(False)
        await owner.locator(".chat-missed").wait_for(state="visible", timeout=CHAT_TIMEOUT_MS)
        await wait_for_text(owner, fresh)
        missed_text = await owner.locator(".chat-missed").inner_text()
        after_reset = await chat_texts(owner)
        await owner.screenshot(path=str(SCREENSHOTS / "web_live_missed.png"), full_page=True)

        # The creator ends the stream from the page (asked twice): both pages say so.
        await owner.get_by_role("button", name="End stream").click()
        await owner.get_by_role("button", name="Yes, end the stream").click()
        for page in (owner, watcher):
            await page.wait_for_selector(
                ".live-stream[data-state='ended'] .chat[data-connection='ended']",
                timeout=CHAT_TIMEOUT_MS,
            )
            await page.wait_for_selector(
                ".live-player[data-state='ended']", timeout=CHAT_TIMEOUT_MS
            )
        ended_note = await watcher.locator(".player-note").inner_text()
    finally:
        await creator_ctx.close()
        await viewer_ctx.close()
        await _stop(encoder)
        if stream_id:
            with contextlib.suppress(Exception):
                await _json(http, "POST", f"{api}/live/{stream_id}:end", creator, {})
        await http.close()

    assert all(a >= ADVANCE_S for a in advanced), advanced
    # Recovery: the creator's order is the channel's, the two missed ones right after.
    at = creator_log.index(missed[0])
    assert creator_log[at : at + 2] == missed, creator_log
    assert creator_log.index(hello) < at, creator_log
    assert not missed_banner, "recovered, yet the app says messages were missed"
    assert resubscribes, "the app never subscribed again after going back online"
    again = subscribe_request(resubscribes[-1][1])
    assert again.stream_id == stream_id
    assert again.recover, again
    assert again.since_offset == seen_offset, (again, seen_offset)
    assert again.epoch, again
    first = subscribe_request(next(body for who, body in subscribes if who == "viewer"))
    assert not first.recover, first  # a first visit asks for no recovery
    assert "Message deleted" in viewer_log, viewer_log
    assert hello not in viewer_log, viewer_log
    assert "some messages were missed" in missed_text.lower(), missed_text
    assert after_reset == [fresh], after_reset  # the old epoch's lines are gone
    assert "ended" in ended_note, ended_note
    assert heartbeats["creator"] >= 1 and heartbeats["viewer"] >= 1, heartbeats
    assert not errors, errors
