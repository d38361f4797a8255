"""The web app's analytics pages show what real watch events made of a video.

A video is published the way svc_transcode announces one (``video.published``) for a
new creator. Three viewers watch it as a player reports it, through Envoy's JSON API
(``POST /api/v1/events``, RecordEvents): a session each, with watch_start, the
progress milestones they reached and, for one of them, watch_complete (10 s video:
one reaches the end, one half way, one a quarter; from DE, DE and FR; on web, web and
iOS). svc_stream sinks them into ClickHouse (chDB in the mesh), so the numbers appear
with a delay: the test polls GetVideoAnalytics (JSON, as the creator) with a bound
until all three views are counted, then opens the pages in Debian's Chromium:

* /analytics/<id>: 3 views, a 33.3 % completion rate, 5.8 s average watch time; the
  retention curve drawn (uPlot's canvas, non-zero size) with its text alternative
  (aria-label summary and a table of the 21 points); completion buckets, countries and
  devices as the service counted them (the page shows the very response the API gave);
* /analytics (client-side navigation from the video page): the creator's overview
  with the same views and the video among their top videos.

Screenshots: var/screenshots/web_analytics_{video,overview}.png.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from reels.v1 import events_pb2

from reels_dev.infra.envoy import EnvoySettings
from reels_dev.infra.process import REPO_ROOT
from reels_dev.infra.web_app import WEB_DIST
from reels_dev.keys import mint_token
from tests.browser.chromium import CHROMIUM
from tests.fixtures.mesh import Mesh
from tests.polling import eventually_value
from tests.publishing import send_published

SCREENSHOTS = REPO_ROOT / "var" / "screenshots"
DURATION_S = 10
ACCEPTED_WITHIN_S = 30.0
"""svc_stream's catalog applies video.published before it accepts events for the video."""
COUNTED_WITHIN_S = 45.0
"""The events reach ClickHouse through the sink's batches."""
PAGE_TIMEOUT_MS = 15_000
# (viewer, country, device, furthest milestone): 10 s video, events every 2.5 s.
VIEWS = [
    ("a", "DE", "DEVICE_WEB", 4),  # start, 25, 50, 75, complete
    ("b", "DE", "DEVICE_WEB", 2),  # start, 25, 50
    ("c", "FR", "DEVICE_IOS", 1),  # start, 25
]
MILESTONES = [
    "EVENT_TYPE_WATCH_START",
    "EVENT_TYPE_PROGRESS_25",
    "EVENT_TYPE_PROGRESS_50",
    "EVENT_TYPE_PROGRESS_75",
    "EVENT_TYPE_WATCH_COMPLETE",
]

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


def _auth(user: str) -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(user)}"}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def watch_events(video_id: str, tag: str) -> dict[str, list[dict[str, Any]]]:
    """Each viewer's batch: the milestones of one session, as a player reports them."""
    start = datetime.now(UTC).timestamp() - 15
    batches: dict[str, list[dict[str, Any]]] = {}
    for viewer, country, device, last in VIEWS:
        events = []
        for i, kind in enumerate(MILESTONES[: last + 1]):
            position = DURATION_S * i / 4
            events.append(
                {
                    "clientEventId": f"{tag}-{viewer}-{i}",
                    "videoId": video_id,
                    "type": kind,
                    "occurredAt": _iso(start + position),
                    "positionSeconds": position,
                    "watchSeconds": 0 if i == 0 else DURATION_S / 4,
                    "rendition": "720p",
                    "device": device,
                    "country": country,
                    "sessionId": f"session-{tag}-{viewer}",
                }
            )
        batches[f"viewer-{tag}-{viewer}"] = events
    return batches


async def test_video_analytics_page_shows_the_counted_views_and_draws_retention(
    browser: Any, envoy: EnvoySettings, mesh: Mesh
) -> None:
    base = f"http://127.0.0.1:{envoy.listen_port}"
    tag = uuid.uuid4().hex[:8]
    creator, video_id = f"creator-{tag}", str(uuid.uuid4())
    now = timestamp_pb2.Timestamp()
    now.FromDatetime(datetime.now(UTC))
    await send_published(
        mesh.backends.kafka_bootstrap,
        events_pb2.VideoPublished(
            meta=events_pb2.EventMeta(event_id=str(uuid.uuid4()), occurred_at=now),
            video_id=video_id,
            creator_id=creator,
            duration=duration_pb2.Duration(seconds=DURATION_S),
            width=720,
            height=1280,
            master_playlist_key=f"videos/{video_id}/master.m3u8",
            published_at=now,
            title=f"Analytics {tag}",
        ),
    )

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for viewer, events in watch_events(video_id, tag).items():

            async def accepted(viewer: str = viewer, events: list[Any] = events) -> bool:
                async with http.post(
                    f"{base}/api/v1/events",
                    json={"events": events, "sentAt": _iso(datetime.now(UTC).timestamp())},
                    headers=_auth(viewer),
                ) as resp:
                    body = await resp.json(content_type=None)
                assert resp.status == 200, body
                if body.get("acceptedCount") == len(events):
                    return True
                # Only "unknown video" (the catalog has not caught up) is worth waiting for.
                reasons = {
                    r.get("reason") for r in body.get("results", []) if not r.get("accepted")
                }
                assert reasons <= {"unknown video"}, body
                return False

            await eventually_value(accepted, ACCEPTED_WITHIN_S, f"{viewer}'s events accepted")

        async def counted() -> dict[str, Any] | None:
            async with http.get(
                f"{base}/api/v1/reels/{video_id}/analytics", headers=_auth(creator)
            ) as resp:
                body = await resp.json(content_type=None)
            assert resp.status == 200, body
            return body if int(body.get("views", 0)) == len(VIEWS) else None

        served = await eventually_value(counted, COUNTED_WITHIN_S, "3 views in the analytics")

    # What the service computed from these events (the page must show exactly this).
    assert math.isclose(served["completionRate"], 1 / 3), served
    assert math.isclose(served["averageWatchSeconds"], (10 + 5 + 2.5) / 3), served
    retention = {
        p.get("percentOfDuration", 0): p.get("shareOfViewers", 0) for p in served["retention"]
    }
    assert len(retention) == 21 and math.isclose(retention[50], 2 / 3), retention

    context = await browser.new_context(viewport={"width": 1000, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    failures: list[tuple[str, str]] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: failures.append((r.url, str(r.failure))))
    try:
        await page.goto(
            f"{base}/analytics/{video_id}?token={mint_token(creator)}", timeout=PAGE_TIMEOUT_MS
        )
        section = page.locator(f".analytics-video[data-video-id='{video_id}']")
        await page.locator(
            f".analytics-video[data-video-id='{video_id}'][data-state='ready']"
        ).wait_for(timeout=PAGE_TIMEOUT_MS)
        stat = lambda key: section.locator(f"[data-stat='{key}'] dd[data-value]")  # noqa: E731
        views_shown = await stat("views").inner_text()
        views_raw = await stat("views").get_attribute("data-value")
        rate_shown = await stat("completion-rate").inner_text()
        rate_raw = await stat("completion-rate").get_attribute("data-value")
        watch_shown = await stat("average-watch").inner_text()
        chart = section.locator(".retention-chart[data-drawn='true']")
        await chart.wait_for(timeout=PAGE_TIMEOUT_MS)
        canvas_box = await chart.locator("canvas").first.bounding_box()
        summary = await chart.locator("[role='img']").get_attribute("aria-label")
        points = await chart.locator(".retention-table tbody tr").count()
        half = await chart.locator(".retention-table tr[data-percent='50'] td").get_attribute(
            "data-value"
        )
        rows = "rows => rows.map(r => [r.dataset.key, r.querySelector('.bar-value').dataset.value])"
        buckets = dict(await section.locator(".completion tbody tr").evaluate_all(rows))
        countries = await section.locator(
            "section[aria-labelledby='countries-title'] tbody tr"
        ).evaluate_all(rows)
        devices = await section.locator(
            "section[aria-labelledby='devices-title'] tbody tr"
        ).evaluate_all(rows)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "web_analytics_video.png"), full_page=True)

        # The overview, by a link (no reload: the token lives in memory only).
        await page.get_by_role("link", name="All your analytics").click()
        overview = page.locator(".analytics-overview[data-state='ready']")
        await overview.wait_for(timeout=PAGE_TIMEOUT_MS)
        overview_views = await overview.locator("[data-stat='views'] dd[data-value]").get_attribute(
            "data-value"
        )
        await page.screenshot(path=str(SCREENSHOTS / "web_analytics_overview.png"), full_page=True)
        top_video_links = await overview.locator(
            "section[aria-labelledby='top-videos-title'] a"
        ).evaluate_all("links => links.map(a => a.getAttribute('href'))")
    finally:
        await context.close()

    assert (views_shown, views_raw) == ("3", "3")
    assert rate_raw is not None and math.isclose(float(rate_raw), 1 / 3), rate_raw
    assert rate_shown.replace("\u00a0", "").replace(" ", "") == "33.3%", rate_shown
    assert watch_shown == "5.8 s", watch_shown
    assert canvas_box and canvas_box["width"] > 100 and canvas_box["height"] > 100, canvas_box
    assert summary and "3 views" in summary and "66.7%" in summary, summary
    assert points == 21
    assert half is not None and math.isclose(float(half), 2 / 3), half
    # Reach: one session a quarter in ([20,30)), one half ([50,60)), one to the end.
    assert buckets == {"20-30": "1", "50-60": "1", "90-100": "1"} | {
        k: "0" for k in buckets if k not in ("20-30", "50-60", "90-100")
    }, buckets
    assert countries == [["DE", "2"], ["FR", "1"]], countries
    assert devices == [["web", "2"], ["ios", "1"]], devices
    assert overview_views == "3", overview_views
    assert f"/analytics/{video_id}" in top_video_links, top_video_links
    assert not errors, errors
    # (A request cut short by leaving a page is the app's doing, not a failure.)
    assert not [f for f in failures if "ERR_ABORTED" not in f[1]], failures
