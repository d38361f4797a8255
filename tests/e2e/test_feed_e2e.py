"""The feed through the real front door: ``GET /api/v1/reels`` via Envoy, the whole mesh
running as processes (tests/fixtures/mesh.py).

The scenario the feed issue measured: 12 videos published, one of them watched. The
first page must carry every field (creator, title, duration, counters, signed
thumbnail and streaming URLs that Envoy's ``/media/`` route serves), and the unwatched
videos must be on it — not one trending item with empty fields.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import numpy as np
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from reels.v1 import events_pb2

from reels.cache import redis_client
from reels_dev.infra.envoy import EnvoySettings
from reels_dev.keys import mint_token
from tests.fixtures.mesh import Mesh
from tests.publishing import send_published

DIM = 256
MASTER = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=720x1280\n720p/index.m3u8\n"


def _auth(user: str) -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(user)}"}


@pytest.fixture(scope="module")
async def twelve(mesh: Mesh, envoy: EnvoySettings) -> AsyncIterator[list[str]]:
    """12 published videos by 6 creators, each with a vector and media in the store."""
    assert mesh.backends.storage_root is not None
    rng = np.random.default_rng(11)
    now = timestamp_pb2.Timestamp()
    now.FromDatetime(datetime.now(UTC))
    ids = [f"e2e-{i:02d}-{uuid.uuid4().hex[:6]}" for i in range(12)]
    for i, vid in enumerate(ids):
        folder = mesh.backends.storage_root / "videos" / vid
        folder.mkdir(parents=True)
        (folder / "master.m3u8").write_text(MASTER)
        (folder / "thumb.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        vec = rng.normal(size=DIM)
        vec /= np.linalg.norm(vec)
        await send_published(
            mesh.backends.kafka_bootstrap,
            events_pb2.VideoPublished(
                meta=events_pb2.EventMeta(event_id=str(uuid.uuid4()), occurred_at=now),
                video_id=vid,
                creator_id=f"e2e-creator-{i % 6}",
                duration=duration_pb2.Duration(seconds=20),
                width=720,
                height=1280,
                master_playlist_key=f"videos/{vid}/master.m3u8",
                thumbnail_key=f"videos/{vid}/thumb.jpg",
                published_at=now,
                title=f"Reel number {i}",
                hashtags=["e2e"],
                video_embedding=vec.tolist(),
                embedding_model_version="e2e",
            ),
        )
    yield ids


async def test_after_twelve_published_and_one_watched_a_page_has_every_field(
    envoy: EnvoySettings, mesh: Mesh, twelve: list[str]
) -> None:
    base = f"http://127.0.0.1:{envoy.listen_port}"
    user = f"e2e-viewer-{uuid.uuid4().hex[:6]}"
    watched = twelve[0]
    async with aiohttp.ClientSession() as http:
        # Watch one video, through the front door as a player reports it.
        deadline = time.monotonic() + 120  # a bound, not a timing claim
        events = [
            {
                "clientEventId": f"{user}-{kind}",
                "videoId": watched,
                "type": kind,
                "occurredAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "positionSeconds": pos,
                "watchSeconds": pos,
                "sessionId": "s1",
                "device": "DEVICE_WEB",
            }
            for kind, pos in (
                ("EVENT_TYPE_WATCH_START", 0),
                ("EVENT_TYPE_PROGRESS_50", 10),
                ("EVENT_TYPE_WATCH_COMPLETE", 20),
            )
        ]
        # svc_rank credits a watch to the user vector only for a video it has indexed
        # (its catalog consumer may join the group after svc_stream's on a cold mesh):
        # wait until the watched video is in a feed, as a throwaway viewer.
        probe = 0
        while True:
            probe += 1
            async with http.get(
                base + "/api/v1/reels?limit=50", headers=_auth(f"{user}-probe-{probe}")
            ) as resp:
                listed = await resp.json(content_type=None)
            if watched in {i.get("videoId") for i in listed.get("items", [])}:
                break
            assert time.monotonic() < deadline, f"svc_rank never indexed {watched}: {listed}"
            await asyncio.sleep(0.5)
        while True:  # until svc_stream's catalog knows the video
            async with http.post(
                base + "/api/v1/events", json={"events": events}, headers=_auth(user)
            ) as resp:
                body = await resp.json(content_type=None)
                if resp.status == 200 and body.get("acceptedCount") == len(events):
                    break
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.5)

        # The watch reaches svc_rank (video.events → its user vector and served history).
        redis = redis_client()
        try:
            while not await redis.hexists(f"{mesh.redis_prefix}rank:user:{user}", "vec"):
                assert time.monotonic() < deadline, "the watch never reached svc_rank"
                await asyncio.sleep(0.2)
        finally:
            await redis.aclose()

        # The feed: every unwatched video, with every field (svc_rank's catalog may
        # trail svc_stream's by a moment: ask again as a new user until all are in).
        page: dict = {}
        viewer = user
        while True:
            async with http.get(base + "/api/v1/reels?limit=50", headers=_auth(viewer)) as resp:
                page = await resp.json(content_type=None)
                assert resp.status == 200, page
            got = {i["videoId"] for i in page.get("items", [])}
            if set(twelve[1:]) <= got:
                break
            assert time.monotonic() < deadline, page
            await asyncio.sleep(0.5)
            viewer = f"e2e-late-{uuid.uuid4().hex[:6]}"
        if viewer == user and watched in got:
            # A page longer than what is unseen is filled with seen-before reels (the
            # feed never empties): the watched one only comes flagged, after the unseen.
            reasons = [(i["videoId"], i["reason"]) for i in page["items"]]
            where = [v for v, _ in reasons].index(watched)
            assert reasons[where][1] == "FEED_REASON_SEEN_BEFORE", reasons

        items = [i for i in page["items"] if i["videoId"] in twelve]
        assert len(items) >= 11
        for item in items:
            assert item["creatorId"].startswith("e2e-creator-")
            assert item["title"].startswith("Reel number ")
            assert item["durationSeconds"] == 20
            assert item["score"] > 0 or item["reason"] == "FEED_REASON_SEEN_BEFORE", item
            assert item["reason"].startswith("FEED_REASON_")
            assert item["explanation"]
            for url_field in ("streamingUrl", "thumbnailUrl"):
                url = item[url_field]
                assert url.startswith(base + "/media/") and "sig=" in url
        assert "responseTimeMs" in page
        # Signed URLs play as they are: Envoy's /media/ route serves them.
        async with http.get(items[0]["streamingUrl"]) as media:
            assert media.status == 200
            assert (await media.text()).startswith("#EXTM3U")
        async with http.get(items[0]["thumbnailUrl"]) as thumb:
            assert thumb.status == 200
