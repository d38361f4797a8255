"""The feed page plays real reels in Debian's Chromium and reports what was watched.

Three reels are published the way svc_transcode publishes (one real 2 s ladder, copied
under three video ids, each with its own creator), and a new viewer opens the app with
``?token=``. The current reel must really play through hls.js (``currentTime`` advances,
``videoWidth`` is a rung of the ladder, no autoplay flag: muted autoplay is what a
browser allows by itself) and show why it is in the feed (FeedItem.explanation, read
from the very GetFeed response the browser got). Moving on (ArrowDown) sends the first
reel's watch events over gRPC-web (StreamService.RecordEvents): the test decodes the
requests the browser made and the answers svc_stream gave, and then sees the view in
the creator's analytics (GET /api/v1/reels/{id}/analytics through Envoy). The second
reel's batches are made to fail (a Playwright route aborts them); a wheel scroll moves
on (scroll snapping) and tries them, and the page-hide hand-over (a keepalive POST
/api/v1/events with the token as a header) carries them again with the same client
event ids, accepted. The keys m and k mute and pause; like, follow, share and comment
work on the current reel.

Screenshots at 390x844 and 360 px wide go to var/screenshots/ (git-ignored).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import pytest
from reels.v1 import common_pb2, rank_pb2, rank_pb2_grpc, stream_pb2

from reels_dev.infra.envoy import EnvoySettings
from reels_dev.keys import mint_token
from tests.browser.test_web_app import (
    CHROMIUM,
    FEED_SETTLED,
    GET_FEED,
    SCREENSHOTS,
    grpc_web_frames,
    pytestmark,
)
from tests.fixtures.mesh import Mesh
from tests.polling import eventually_value
from tests.publishing import publish_to_store, send_published, transcode_ladder

__all__ = ["CHROMIUM", "pytestmark"]  # the skips, reused

RECORD_EVENTS = "/reels.v1.StreamService/RecordEvents"
JSON_EVENTS = "/api/v1/events"
PUBLISHED_WITHIN_S = 40.0
ANALYTICS_WITHIN_S = 30.0
PAGE_TIMEOUT_MS = 15_000
PLAY_TIMEOUT_MS = 30_000
ACTIVE = ".feed-list > li.is-active"
WATCH_TYPES = {
    common_pb2.EVENT_TYPE_WATCH_START,
    common_pb2.EVENT_TYPE_PROGRESS_25,
    common_pb2.EVENT_TYPE_PROGRESS_50,
    common_pb2.EVENT_TYPE_PROGRESS_75,
    common_pb2.EVENT_TYPE_WATCH_COMPLETE,
}


@dataclass(frozen=True)
class Published:
    video_ids: tuple[str, ...]
    creators: dict[str, str]
    """video id -> creator id (analytics are the creator's only)."""
    widths: frozenset[int]
    rungs: frozenset[str]
    duration_s: float


@pytest.fixture(scope="module")
async def published(
    mesh: Mesh, envoy: EnvoySettings, tmp_path_factory: pytest.TempPathFactory
) -> Published:
    assert mesh.backends.storage_root is not None
    ladder, result = await transcode_ladder(tmp_path_factory.mktemp("web-feed-clip"))
    ids: list[str] = []
    creators: dict[str, str] = {}
    for n in range(3):
        video_id = str(uuid.uuid4())
        event = publish_to_store(ladder, result, mesh.backends.storage_root, video_id)
        event.creator_id = f"feed-creator-{video_id[:8]}"
        event.title = f"Feed reel {n + 1} {video_id[:6]}"
        await send_published(mesh.backends.kafka_bootstrap, event)
        ids.append(video_id)
        creators[video_id] = event.creator_id

    async with grpc.aio.insecure_channel(mesh.addr("rank")) as channel:
        feed = rank_pb2_grpc.FeedServiceStub(channel)

        async def served() -> bool:
            # A new probe every time: a user's ranked list is cached once built.
            probe = f"probe-{uuid.uuid4().hex[:8]}"
            reply = await feed.GetFeed(
                rank_pb2.GetFeedRequest(limit=100),
                metadata=(("authorization", f"Bearer {mint_token(probe)}"),),
                timeout=10,
            )
            playable = {i.video_id for i in reply.items if i.streaming_url}
            return set(ids) <= playable

        await eventually_value(served, PUBLISHED_WITHIN_S, "svc_rank to serve the three reels")
    return Published(
        video_ids=tuple(ids),
        creators=creators,
        widths=frozenset(r.width for r in result.renditions),
        rungs=frozenset(r.name for r in result.renditions),
        duration_s=result.duration_s,
    )


def _decode_events(bodies: Sequence[bytes]) -> list[stream_pb2.PlayerEvent]:
    events: list[stream_pb2.PlayerEvent] = []
    for body in bodies:
        messages, _ = grpc_web_frames(body)
        for message in messages:
            events.extend(stream_pb2.RecordEventsRequest.FromString(message).events)
    return events


async def _video_analytics(base: str, video_id: str, creator: str) -> dict[str, Any] | None:
    url = f"{base}/api/v1/reels/{video_id}/analytics"
    headers = {"authorization": f"Bearer {mint_token(creator)}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.get(url, headers=headers) as resp:
            body = await resp.json(content_type=None)
            assert resp.status == 200, body
            return body if int(body.get("views", 0)) >= 1 else None


async def _active_index(page: Any) -> int:
    return int(await page.get_attribute(ACTIVE, "data-index"))


async def _wait_playing(page: Any, index: int, *, past: float = 0.3) -> dict[str, Any]:
    """Waits until reel ``index`` is the current one and its playhead passed ``past``."""
    script = """([index, past]) => {
        const li = document.querySelector(`.feed-list > li[data-index="${index}"]`);
        const v = li && li.querySelector("video");
        return !!(li && li.classList.contains("is-active") && v && !v.paused
                  && v.currentTime > past && v.videoWidth > 0);
    }"""
    try:
        await page.wait_for_function(script, arg=[index, past], timeout=PLAY_TIMEOUT_MS)
    except Exception as exc:
        state = await page.evaluate(
            """(index) => { const li = document.querySelector(
                   `.feed-list > li[data-index="${index}"]`);
               const v = li && li.querySelector("video");
               return li && { player: li.dataset.player, active: li.className,
                 message: li.querySelector(".reel-message")?.innerText,
                 t: v?.currentTime, w: v?.videoWidth, paused: v?.paused,
                 ready: v?.readyState, err: v?.error?.message }; }""",
            index,
        )
        raise AssertionError(f"reel {index} did not play: {exc}\nstate: {state}") from None
    return await page.evaluate(
        """(index) => { const v = document.querySelector(
               `.feed-list > li[data-index="${index}"] video`);
           return { t: v.currentTime, w: v.videoWidth, h: v.videoHeight, muted: v.muted }; }""",
        index,
    )


async def test_feed_plays_reels_and_reports_what_was_watched(
    browser: Any, envoy: EnvoySettings, published: Published
) -> None:
    base = f"http://127.0.0.1:{envoy.listen_port}"
    user = f"feed-viewer-{uuid.uuid4().hex[:8]}"
    token = mint_token(user)
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    page = await context.new_page()
    errors: list[str] = []
    finished: list[Any] = []  # RecordEvents / JSON events requests that got an answer
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "requestfinished",
        lambda r: finished.append(r) if r.url.endswith((RECORD_EVENTS, JSON_EVENTS)) else None,
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        async with page.expect_response(
            lambda r: r.url.endswith(GET_FEED), timeout=PAGE_TIMEOUT_MS
        ) as got:
            await page.goto(f"{base}/?token={token}", timeout=PAGE_TIMEOUT_MS)
        feed_body = await (await got.value).body()
        await page.wait_for_selector(FEED_SETTLED, timeout=PAGE_TIMEOUT_MS)
        state = await page.get_attribute("section.feed", "data-state")
        assert state == "ready", await page.locator("section.feed .status").inner_text()
        messages, _ = grpc_web_frames(feed_body)
        served = rank_pb2.GetFeedResponse.FromString(messages[0])
        shown_ids = await page.eval_on_selector_all(
            ".feed-list > li", "els => els.map(e => e.dataset.videoId)"
        )
        assert shown_ids == [i.video_id for i in served.items]
        ours = [i for i, vid in enumerate(shown_ids) if vid in published.video_ids]
        assert len(ours) == 3, (shown_ids, published.video_ids)

        # The feed starts on its first reel; move (keys) to the first of ours if others
        # (other tests' reels) rank above it.
        start = ours[0]
        for _ in range(start):
            await page.keyboard.press("ArrowDown")
        first = await _wait_playing(page, start)
        assert first["w"] in published.widths, (first, published.widths)
        assert first["muted"] is True  # muted autoplay, with "Tap to unmute"
        t0 = first["t"]
        await page.wait_for_function(
            "([i, t]) => document.querySelector("
            "`.feed-list > li[data-index='${i}'] video`).currentTime > t + 0.2",
            arg=[start, t0],
            timeout=PLAY_TIMEOUT_MS,
        )
        item = served.items[start]
        assert item.explanation, item
        why = await page.locator(f"{ACTIVE} .reel-why").inner_text()
        assert item.explanation in why, why
        assert await page.locator(f"{ACTIVE} .reel-unmute").is_visible()
        reel = page.locator(ACTIVE)
        for name in ("Like", "Comments", "Share", "Mute", "Pause"):
            assert await reel.get_by_role("button", name=name, exact=True).count() == 1, name
        follow = reel.get_by_role("button", name=f"Follow @{item.creator_id}")
        assert await follow.count() == 1
        await page.screenshot(path=str(SCREENSHOTS / "web_feed_390x844.png"))

        # Play the first reel through once (2 s): every milestone and watch_complete.
        await page.wait_for_function(
            """(i) => { const v = document.querySelector(
                   `.feed-list > li[data-index='${i}'] video`);
               const p = v.played;
               return p.length > 0 && p.end(p.length - 1) >= v.duration - 0.3
                      && v.currentTime < v.duration - 0.3; }""",
            arg=start,
            timeout=PLAY_TIMEOUT_MS,
        )

        # Keys: m unmutes and mutes again, k pauses and plays.
        await page.keyboard.press("m")
        assert await page.eval_on_selector(f"{ACTIVE} video", "v => v.muted") is False
        await page.keyboard.press("m")
        assert await page.eval_on_selector(f"{ACTIVE} video", "v => v.muted") is True
        await page.keyboard.press("k")
        await page.wait_for_selector(f"{ACTIVE}[data-player='paused']", timeout=PAGE_TIMEOUT_MS)
        await page.keyboard.press("k")
        await page.wait_for_selector(f"{ACTIVE}[data-player='playing']", timeout=PAGE_TIMEOUT_MS)

        # From here on the network "fails" every RecordEvents batch that carries the
        # second reel's events: they must stay queued (same client ids) for later.
        second_id = shown_ids[start + 1]

        async def flaky(route: Any) -> None:
            sent = _decode_events([route.request.post_data_buffer or b""])
            if any(e.video_id == second_id for e in sent):
                await route.abort("failed")
            else:
                await route.continue_()

        await page.route(f"**{RECORD_EVENTS}", flaky)

        # Swipe (ArrowDown): the next reel plays, the first one's events go out at once.
        video_id = shown_ids[start]
        async with page.expect_request(
            lambda r: r.url.endswith(RECORD_EVENTS), timeout=PAGE_TIMEOUT_MS
        ):
            await page.keyboard.press("ArrowDown")
        assert await _active_index(page) == start + 1
        await _wait_playing(page, start + 1, past=0.1)

        # Scrolling (a wheel: scroll snapping settles on the next reel) moves on too, and
        # sends the second reel's events: that attempt fails. (The key's smooth scroll
        # must have come to rest first: a wheel during it stops on the same reel, as
        # scroll-snap-stop says.)
        await page.wait_for_function(
            """(i) => { const list = document.querySelector(".feed-list");
                const li = list.querySelector(`li[data-index='${i}']`);
                return Math.abs(list.scrollTop - li.offsetTop) < 2; }""",
            arg=start + 1,
            timeout=PAGE_TIMEOUT_MS,
        )
        async with page.expect_event(
            "requestfailed", lambda r: r.url.endswith(RECORD_EVENTS), timeout=PAGE_TIMEOUT_MS
        ) as failing:
            await page.mouse.move(195, 420)
            await page.mouse.wheel(0, 600)
            await page.wait_for_selector(
                f".feed-list > li.is-active[data-index='{start + 2}']", timeout=PAGE_TIMEOUT_MS
            )
        failed_events = _decode_events([(await failing.value).post_data_buffer])
        assert any(e.video_id == second_id for e in failed_events), failed_events

        # Page hide (pagehide: a tab closing, the app switched away) hands what is not
        # acknowledged yet to a keepalive request on the JSON route (token as a header):
        # the failed events among them, with the same client event ids.
        async with page.expect_response(
            lambda r: r.url.endswith(JSON_EVENTS), timeout=PAGE_TIMEOUT_MS
        ) as beacon:
            await page.evaluate("window.dispatchEvent(new PageTransitionEvent('pagehide'))")
        beacon_response = await beacon.value
        beacon_request = beacon_response.request
        beacon_headers = await beacon_request.all_headers()
        beacon_sent = beacon_request.post_data_json
        beacon_answer = await beacon_response.json()
        await page.unroute(f"**{RECORD_EVENTS}")

        # The current reel's actions: like, follow, share, comment (StreamService).
        reel = page.locator(ACTIVE)
        await reel.get_by_role("button", name="Like", exact=True, pressed=False).click()
        await reel.get_by_role("button", name="Like", exact=True, pressed=True).wait_for(
            timeout=PAGE_TIMEOUT_MS
        )
        likes = await reel.locator(".reel-like .reel-count").inner_text()
        await reel.get_by_role("button", name=re.compile(r"^Follow @"), pressed=False).click()
        await reel.get_by_role("button", name=re.compile(r"^Following @"), pressed=True).wait_for(
            timeout=PAGE_TIMEOUT_MS
        )
        await reel.get_by_role("button", name="Share", exact=True).click()
        await page.wait_for_function(
            f"document.querySelector('{ACTIVE} .reel-share .reel-count').textContent === '1'",
            timeout=PAGE_TIMEOUT_MS,
        )
        await reel.get_by_role("button", name="Comments", exact=True).click()
        dialog = page.get_by_role("dialog")
        await dialog.get_by_label("Add a comment").fill("Nice reel")
        await dialog.get_by_role("button", name="Post").click()
        await dialog.locator(".comment p", has_text="Nice reel").wait_for(timeout=PAGE_TIMEOUT_MS)
        await page.keyboard.press("Escape")
        await dialog.wait_for(state="hidden", timeout=PAGE_TIMEOUT_MS)
        focus_back = await page.evaluate("document.activeElement.getAttribute('aria-label')")

        # 360 px wide: nothing sticks out sideways, the action rail is on screen.
        await page.set_viewport_size({"width": 360, "height": 740})
        await page.wait_for_timeout(300)  # the snap and the layout settle
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        rail = await page.locator(f"{ACTIVE} .reel-rail").bounding_box()
        info = await page.locator(f"{ACTIVE} .reel-info").bounding_box()
        await page.screenshot(path=str(SCREENSHOTS / "web_feed_360.png"))

        # Every batch that got through was answered: decode requests and answers.
        rpc_requests = [r for r in finished if r.url.endswith(RECORD_EVENTS)]
        bodies = [r.post_data_buffer for r in rpc_requests]
        rpc_headers = [await r.all_headers() for r in rpc_requests]
        answers = []
        for r in rpc_requests:
            response = await r.response()
            msgs, trailers = grpc_web_frames(await response.body())
            status = response.headers.get("grpc-status") or trailers.get("grpc-status")
            answers.append((response.status, status, msgs))
    finally:
        await context.close()

    # The batches went over gRPC-web with the bearer token and were accepted, item by item.
    assert rpc_requests
    for headers in rpc_headers:
        assert headers["content-type"].startswith("application/grpc-web"), headers
        assert headers["authorization"] == f"Bearer {token}"
    for (http_status, grpc_status, msgs), body in zip(answers, bodies, strict=True):
        assert (http_status, grpc_status) == (200, "0"), (http_status, grpc_status)
        reply = stream_pb2.RecordEventsResponse.FromString(msgs[0])
        sent = _decode_events([body])
        assert reply.accepted_count == len(sent), reply
        assert all(r.accepted for r in reply.results), reply
    events = _decode_events(bodies)
    first_events = [e for e in events if e.video_id == video_id]
    assert WATCH_TYPES <= {e.type for e in first_events}, [e.type for e in first_events]
    sessions = {e.session_id for e in first_events}
    assert len(sessions) == 1 and "" not in sessions, sessions  # one view of the reel
    assert len({e.client_event_id for e in events}) == len(events)
    for e in first_events:
        uuid.UUID(e.client_event_id)
        assert e.device == common_pb2.DEVICE_WEB
        assert e.rendition in published.rungs, e.rendition
        assert 0 <= e.position_seconds <= published.duration_s + 1
        assert e.occurred_at.seconds > 0
    completes = [e for e in first_events if e.type == common_pb2.EVENT_TYPE_WATCH_COMPLETE]
    assert completes[0].position_seconds >= published.duration_s - 0.5
    watched = sum(e.watch_seconds for e in first_events)
    assert published.duration_s * 0.5 <= watched <= published.duration_s * 3, watched
    # Every batch carries the client's send time (svc_stream corrects the clock with it).
    for body in bodies:
        msgs, _ = grpc_web_frames(body)
        assert stream_pb2.RecordEventsRequest.FromString(msgs[0]).HasField("sent_at")

    # The page-hide hand-over: JSON, the token as a header, accepted; it carries the
    # events of the failed attempt again (same ids: the server dedupes on them).
    assert beacon_headers["authorization"] == f"Bearer {token}"
    assert beacon_headers["content-type"].startswith("application/json")
    assert beacon_response.status == 200, beacon_answer
    handed = beacon_sent["events"]
    assert handed and "sentAt" in beacon_sent, beacon_sent
    assert int(beacon_answer["acceptedCount"]) == len(handed), beacon_answer
    assert {e.client_event_id for e in failed_events} <= {e["clientEventId"] for e in handed}
    assert any(
        e["videoId"] == second_id and e["type"] == "EVENT_TYPE_WATCH_START" for e in handed
    ), handed
    # Nothing of the second reel got through over gRPC-web (the route refused it all).
    assert not [e for e in _decode_events(bodies) if e.video_id == second_id]

    assert likes == "1", likes
    assert focus_back == "Comments", focus_back  # the dialog gave focus back

    # 360 px: no sideways scrolling, the rail and the text inside the screen.
    assert overflow <= 0, overflow
    assert rail is not None and rail["x"] >= 0 and rail["x"] + rail["width"] <= 360, rail
    assert info is not None and info["x"] >= 0 and info["x"] + info["width"] <= 360, info
    assert not errors, errors

    # svc_stream took them in: the creator's analytics show the view (bounded poll).
    creator = published.creators[video_id]
    analytics = await eventually_value(
        lambda: _video_analytics(base, video_id, creator),
        ANALYTICS_WITHIN_S,
        f"a view of {video_id} in its analytics",
    )
    assert int(analytics["views"]) == 1, analytics
    assert float(analytics["completionRate"]) == pytest.approx(1.0), analytics
    assert [d["key"] for d in analytics["topDevices"]] == ["web"], analytics
