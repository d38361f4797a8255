"""`make demo`: one reel through the running mesh, as a client would do it.

Generates a 6 s portrait clip with FFmpeg, uploads it with tus through Envoy, follows
its status until published, asks for playback info and the feed, and checks that
ffprobe can open the signed master playlist. Run after `make up`.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from tusclient.client import TusClient

from reels.config import FrontDoorSettings
from reels_dev.keys import mint_token
from reels_dev.settings import InfraSettings

BASE = (
    InfraSettings.from_env().demo_base_url
    or f"http://127.0.0.1:{FrontDoorSettings.from_env().port}"
)


def make_clip(path: Path) -> Path:
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=720x1280:rate=30:duration=6",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=6",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            str(path),
        ],
        check=True,
    )
    return path


def upload(clip: Path, token: str) -> str:
    client = TusClient(f"{BASE}/api/v1/uploads/tus/", headers={"Authorization": f"Bearer {token}"})
    uploader = client.uploader(
        str(clip),
        chunk_size=256 * 1024,
        metadata={"filename": clip.name, "title": "Demo reel", "hashtags": "demo,reels"},
    )
    uploader.upload()
    # The creation response's Location ends with the upload id; the video id is in
    # Reels-Video-Id, which tuspy does not keep: ask the upload resource.
    import requests

    head = requests.head(
        uploader.url,
        headers={"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"},
        timeout=10,
    )
    return head.headers["Reels-Video-Id"]


FEED_TEXT = (
    "videoId",
    "creatorId",
    "title",
    "thumbnailUrl",
    "streamingUrl",
    "reason",
    "explanation",
)
FEED_NUMBERS = ("durationSeconds", "viewCount", "likeCount", "completionRate", "score")


def feed_item_problems(item: dict) -> list[str]:
    """What is missing from one feed item as a client reads it (JSON through Envoy).

    Counters may be 0 (a reel nobody watched yet) but must be present; the text fields,
    the duration and the score must be filled; the reason must be a real one."""
    problems = [f"{f} empty" for f in FEED_TEXT if not item.get(f)]
    problems += [f"{f} missing" for f in FEED_NUMBERS if item.get(f) is None]
    if not (item.get("durationSeconds") or 0) > 0:
        problems.append("durationSeconds not > 0")
    if item.get("reason") in ("FEED_REASON_UNSPECIFIED", 0):
        problems.append("reason unspecified")
    for f in ("thumbnailUrl", "streamingUrl"):
        if item.get(f) and "/media/" not in item[f]:
            problems.append(f"{f} not under /media/")
    return problems


async def check_feed(http: aiohttp.ClientSession, video_id: str) -> bool:
    """The first feed page through Envoy: every item has every field, and the media
    URLs load through /media/. Asks as a new viewer (a creator's own reels are never in
    their feed), again for a few seconds while svc_rank's catalog catches up."""
    viewer = {"authorization": f"Bearer {mint_token('demo-viewer-' + str(int(time.time())))}"}
    deadline = time.monotonic() + 30
    while True:
        async with http.get(f"{BASE}/api/v1/reels?limit=5", headers=viewer) as r:
            page = await r.json(content_type=None)
            status = r.status
        items = page.get("items", []) if status == 200 else []
        if items or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    print(
        f"feed (first page, {len(items)} items; cacheHit {page.get('cacheHit')}, "
        f"{page.get('responseTimeMs')} ms in svc_rank, scorer {page.get('scorer')!r}, "
        f"fallbacks {page.get('fallbacks', [])}):"
    )
    ok = status == 200 and bool(items)
    if not ok:
        print(f"  no feed page: HTTP {status} {page}")
    for item in items:
        print(
            f"  #{item.get('rank', 0)} {item.get('videoId')} by {item.get('creatorId')}: "
            f"{item.get('title')!r}, {item.get('durationSeconds')} s, "
            f"views {item.get('viewCount')}, likes {item.get('likeCount')}, "
            f"completion {item.get('completionRate')}, score {item.get('score')}, "
            f"{item.get('reason')} ({item.get('explanation')!r})"
        )
        print(
            f"     thumbnail {item.get('thumbnailUrl')}\n     stream    {item.get('streamingUrl')}"
        )
        problems = feed_item_problems(item)
        for f in ("thumbnailUrl", "streamingUrl"):
            if item.get(f):
                async with http.get(item[f]) as media:
                    if media.status != 200:
                        problems.append(f"{f} answered HTTP {media.status}")
        if problems:
            ok = False
            print(f"     MISSING: {', '.join(problems)}")
    if items and video_id not in {i.get("videoId") for i in items}:
        print(f"  (the demo reel {video_id} is not on this first page; other reels are)")
    print("feed: every field filled" if ok else "feed: FAILED (fields missing, see above)")
    return ok


async def main() -> int:
    token = mint_token("demo-creator")
    auth = {"authorization": f"Bearer {token}"}
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "demo.mp4")
        video_id = await asyncio.to_thread(upload, clip, token)
    print(f"uploaded: video {video_id}")
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 180
        last = None
        while time.monotonic() < deadline:
            async with http.get(f"{BASE}/api/v1/reels/{video_id}/status", headers=auth) as r:
                status = await r.json(content_type=None)
            seen = (status.get("status"), status.get("stage"), round(status.get("percent", 0)))
            if seen != last:
                print(f"status: {seen[0]} {seen[1] or ''} {seen[2]}%")
                last = seen
            if status.get("status") in ("VIDEO_STATUS_PUBLISHED", "VIDEO_STATUS_FAILED"):
                break
            await asyncio.sleep(0.5)
        if status.get("status") != "VIDEO_STATUS_PUBLISHED":
            print(f"not published: {status}", file=sys.stderr)
            return 1
        async with http.get(f"{BASE}/api/v1/reels/{video_id}/playback", headers=auth) as r:
            playback = await r.json(content_type=None)
            if r.status != 200:  # the catalog may lag the publish by a moment
                await asyncio.sleep(2)
                async with http.get(f"{BASE}/api/v1/reels/{video_id}/playback", headers=auth) as r2:
                    playback = await r2.json(content_type=None)
        print("renditions:", ", ".join(r["name"] for r in playback.get("renditions", [])))
        master = playback.get("masterManifestUrl", "")
        print("master playlist (signed):", master)
        feed_ok = await check_feed(http, video_id)
    probe = await asyncio.to_thread(
        subprocess.run,
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
            master,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    print("ffprobe of the signed master:", probe.stdout.split() or probe.stderr.strip())
    if not feed_ok:
        print("demo: FAILED at the feed (see above; make status, make logs S=svc_rank)")
        return 1
    if probe.returncode != 0:
        print("demo: FAILED at playback (see above; make status, make logs S=svc_stream)")
        return 1
    print("demo: it works (upload -> transcode -> publish -> feed -> signed playback)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
