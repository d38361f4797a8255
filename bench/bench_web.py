"""The web app's first frame and bundle size, beside hls.js alone on a bare page.

Goal: from navigation start to the first frame of the first feed video, p95 <= 1 s on
loopback. The bundle size is a figure for the record beside hls.js' own (no goal).

What runs (loopback only, everything of its own, removed at the end): a throwaway
migrated Postgres database, a Redis key prefix, a Tansu broker, an OTLP sink, svc_rank
and svc_stream as processes (``python -m svc_x``, as tests/fixtures/mesh.py runs them;
the feed page calls nothing else) and Envoy serving web/dist at ``/`` on the API's own
port (reels_dev/infra/web_app.py) with ``/media/`` to svc_stream's signed origin. One real
2 s 1080p clip is transcoded to the full ladder (tests/publishing.py) and published under
``--reels`` video ids, each announced by its ``video.published`` event; the bench waits
until svc_rank serves them all, playable, to a new user.

1. first frame: headless Chromium (Debian's, driven by Playwright), a phone-sized
   viewport, ``--loads`` page loads for each side, alternately (other work on a shared
   machine then weighs on both alike), after ``--warmup`` loads each that are not
   counted; a fresh browser context (no cache, no cookies) per load.

   * reels web: ``http://127.0.0.1:<envoy>/?token=<a new user's token>``. An init script
     (before the app's own) finds the feed's first ``<video>`` (``.feed-list >
     li[data-index="0"] video``, web/src/feed/reel-view.ts) as the app builds it and
     registers a ``requestVideoFrameCallback`` on it; first frame = ``performance.now()``
     in that callback (milliseconds since navigation start). Everything the app does
     counts: index.html, its entry chunk (the feed; other pages are chunks of their
     own), the token, GetFeed over gRPC-web, the hls.js chunk (imported while GetFeed is
     in flight), GetFeed's signed master URL, the playlists and the first segment.
   * baseline: a bare page from a local aiohttp server (another loopback port, so the
     media requests are cross-origin as in the browser tests) that loads hls.js
     (web/node_modules/hls.js/dist/hls.min.js, the app's version) with a blocking
     ``<script>`` and plays the signed master URL of the same reel, got beforehand through
     Envoy (``GET /api/v1/reels/{id}/playback``, a new user each load) and handed over
     in the page's address: hls.js with the app's settings (web/src/feed/player.ts:
     ``capLevelToPlayerSize``, ``startFragPrefetch``, the active reel's buffer), muted
     autoplay, a ``<video>`` of the size the app's has. The same callback measures it.

   Each side's median timeline (Resource Timing: when what it fetched was asked for or
   had arrived, from navigation start) shows where the time goes, with the playlists and
   segments asked for before the first frame (the app preloads the next reel only after
   the first one's first frame) and
   the main thread's long tasks (> 50 ms: script compile and run, layout) before it.
2. bundle: the gzip -9 size (Python's gzip) of every web/dist/assets/*.js and *.css
   (one line per chunk), summed, beside hls.js' own minified file (hls.min.js) gzipped
   the same way.

Figures (docs/DECISIONS.md, web client): before the code split, p50/p95 685/1041 ms
beside a baseline of 418/622; after, 738/942 beside 523/786 and 770/1202 beside 608/924
(2 shared cores, noisy: compare within a run). Entry chunk 49 KiB gzip (was 87).

Run: .venv/bin/python bench/bench_web.py (about 2-3 minutes on 2 cores; ``--loads 5``
is a quicker smoke run). It stops by itself after ``--timeout`` seconds. It needs
web/dist and web/node_modules (make setup) and Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gen"))

import aiohttp  # noqa: E402
import grpc  # noqa: E402
from aiohttp import web  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from reels.v1 import rank_pb2, rank_pb2_grpc  # noqa: E402
from sqlalchemy import make_url  # noqa: E402

from reels import topics  # noqa: E402
from reels.cache import delete_prefix, redis_client  # noqa: E402
from reels.config import DEFAULT_PORTS  # noqa: E402
from reels.db.engine import create_database, database_url, drop_database  # noqa: E402
from reels.db.migrate import migrate  # noqa: E402
from reels.events import ensure_topics  # noqa: E402
from reels_dev.infra.envoy import EnvoySettings, envoy_process  # noqa: E402
from reels_dev.infra.otlp_sink import start_sink  # noqa: E402
from reels_dev.infra.process import REPO_ROOT, ManagedProcess, free_port, port_open  # noqa: E402
from reels_dev.infra.tansu import tansu_process  # noqa: E402
from reels_dev.infra.web_app import WEB_DIST  # noqa: E402
from reels_dev.keys import ensure_dev_keys, mint_token  # noqa: E402
from svc_transcode.pipeline import TranscodeResult  # noqa: E402
from tests.publishing import publish_to_store, send_published, transcode_ladder  # noqa: E402

GOAL_P95_MS = 1000.0
CHROMIUM = Path(os.environ.get("REELS_CHROMIUM", "/usr/bin/chromium"))
HLS_JS = REPO_ROOT / "web" / "node_modules" / "hls.js" / "dist" / "hls.min.js"
SERVICES = ("rank", "stream")  # what the feed page calls (GetFeed; media, RecordEvents)
VIEWPORT = {"width": 390, "height": 844}
LOAD_TIMEOUT_S = 20.0
PUBLISHED_WITHIN_S = 60.0
FIRST_VIDEO = '.feed-list > li[data-index="0"] video'
# web/src/feed/player.ts: HLS_CONFIG, with the active reel's maxBufferLength.
APP_HLS_CONFIG = {
    "capLevelToPlayerSize": True,
    "maxBufferLength": 20,
    "backBufferLength": 10,
    "startFragPrefetch": True,
}

# Shared by both pages: the first presented frame of ``video``, and what was fetched.
MEASURE_JS = """
window.__bench = {frame: 0, width: 0, height: 0, videoId: "", errors: [], longTasks: [],
                  rvfc: "requestVideoFrameCallback" in HTMLVideoElement.prototype};
try {  // main-thread tasks over 50 ms (script compile and run, layout): [start, duration]
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__bench.longTasks.push([e.startTime, e.duration]);
  }).observe({type: "longtask", buffered: true});
} catch (e) { /* no Long Tasks API: the figure stays 0 */ }
window.__benchWatch = function (video) {
  if (video.__benchWatched) return;
  video.__benchWatched = true;
  const b = window.__bench;
  video.requestVideoFrameCallback((now, meta) => {
    if (b.frame) return;
    b.frame = performance.now();
    b.width = meta.width;
    b.height = meta.height;
    b.videoId = (video.closest("li") && video.closest("li").dataset.videoId) || "";
    b.box = [video.clientWidth, video.clientHeight];
  });
};
window.__benchTimeline = function () {
  const nav = performance.getEntriesByType("navigation")[0];
  const out = {document: nav ? nav.responseEnd : 0};
  for (const e of performance.getEntriesByType("resource")) {
    out.resources = out.resources || [];
    out.resources.push([e.name, e.startTime, e.responseEnd]);
  }
  return out;
};
"""

# The app's page: watch the feed's first <video> as soon as the app builds it.
APP_INIT_JS = (
    MEASURE_JS
    + """
(() => {
  const find = () => {
    const v = document.querySelector('FIRST_VIDEO');
    if (v) window.__benchWatch(v);
    return !!v;
  };
  new MutationObserver((_, obs) => { if (find()) obs.disconnect(); })
    .observe(document, {childList: true, subtree: true});
})();
""".replace("FIRST_VIDEO", FIRST_VIDEO)
)

BASELINE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hls.js alone</title>
<style>html, body {margin: 0; height: 100%; background: #000}
video {display: block; object-fit: contain; background: #000}</style>
<script>MEASURE_JS</script>
<script src="/hls.js"></script>
</head><body><video id="v" muted playsinline preload="auto"></video>
<script>
const q = new URLSearchParams(location.search);
const video = document.getElementById("v");
video.style.width = (q.get("w") || "390") + "px";
video.style.height = (q.get("h") || "780") + "px";
video.muted = true;
window.__benchWatch(video);
const hls = new Hls(CONFIG);
hls.on(Hls.Events.ERROR, (_, d) => {
  if (d.fatal) window.__bench.errors.push(d.type + ": " + d.details);
});
hls.loadSource(q.get("src"));
hls.attachMedia(video);
video.play().catch((e) => window.__bench.errors.push("play: " + e));
</script></body></html>
""".replace("MEASURE_JS", MEASURE_JS).replace("CONFIG", json.dumps(APP_HLS_CONFIG))


# Milestones of a load's timeline: (label, does this resource URL belong to it, "start"
# (when its first such request was sent) or "end" (when its response had arrived)).
def _segment(u: str) -> bool:
    return u.split("?")[0].endswith((".ts", ".m4s", ".mp4"))


def _media(u: str) -> bool:
    return _segment(u) or ".m3u8" in u


MILESTONES: dict[str, Sequence[tuple[str, Callable[[str], bool], str]]] = {
    "reels": (
        ("app script", lambda u: "/assets/index-" in u and u.endswith(".js"), "end"),
        ("GetFeed sent", lambda u: u.endswith("/reels.v1.FeedService/GetFeed"), "start"),
        ("answered", lambda u: u.endswith("/reels.v1.FeedService/GetFeed"), "end"),
        ("hls.js chunk", lambda u: "/assets/hls-" in u, "end"),
        ("master asked", lambda u: "master.m3u8" in u, "start"),
        ("master playlist", lambda u: "master.m3u8" in u, "end"),
        ("rung playlist", lambda u: "/index.m3u8" in u, "end"),
        ("first segment", _segment, "end"),
    ),
    "baseline": (
        ("hls.js", lambda u: u.split("?")[0].endswith("/hls.js"), "end"),
        ("master asked", lambda u: "master.m3u8" in u, "start"),
        ("master playlist", lambda u: "master.m3u8" in u, "end"),
        ("rung playlist", lambda u: "/index.m3u8" in u, "end"),
        ("first segment", _segment, "end"),
    ),
}


# --------------------------------------------------------------------------- figures


T0 = time.monotonic()


def at() -> str:
    return f"[{time.monotonic() - T0:3.0f} s]"


def pct(samples: Sequence[float], p: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def gz(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=9))


@dataclass
class Load:
    first_frame_ms: float | None
    frame_size: tuple[int, int] = (0, 0)
    box: tuple[int, int] = (0, 0)
    video_id: str = ""
    milestones: dict[str, float] = field(default_factory=dict)
    problem: str = ""


@dataclass
class Side:
    name: str
    loads: list[Load] = field(default_factory=list)

    @property
    def ok(self) -> list[float]:
        return [x.first_frame_ms for x in self.loads if x.first_frame_ms is not None]

    @property
    def failed(self) -> list[Load]:
        return [x for x in self.loads if x.first_frame_ms is None]


def milestones(side: str, timeline: dict[str, Any], frame: float) -> dict[str, float]:
    """When each milestone's first resource was sent or had arrived, in ms since
    navigation start; "media requests" counts the playlists and segments asked for
    before the first frame (the players attached by then, all of them)."""
    found = {"document": float(timeline.get("document") or 0.0), "media requests": 0.0}
    for name, start, end in sorted(timeline.get("resources") or [], key=lambda r: r[1]):
        for label, matches, which in MILESTONES[side]:
            if label not in found and matches(name):
                found[label] = float(start if which == "start" else end)
        if _media(name) and start < frame:
            found["media requests"] += 1
    return found


def print_timeline(side: Side) -> None:
    labels = ["document", *(label for label, _, _ in MILESTONES[side.name]), "first frame"]
    parts = []
    for label in labels:
        values = [
            x.first_frame_ms if label == "first frame" else x.milestones.get(label)
            for x in side.loads
            if x.first_frame_ms is not None
        ]
        values = [v for v in values if v is not None]
        if values:
            parts.append(f"{label} {statistics.median(values):.0f}")
    done = [x for x in side.loads if x.first_frame_ms is not None]
    print(f"  {side.name:<9} median timeline (ms from navigation start): " + " -> ".join(parts))
    if done:
        media = statistics.median(x.milestones.get("media requests", 0) for x in done)
        busy = statistics.median(x.milestones.get("long tasks", 0) for x in done)
        early = statistics.median(x.milestones.get("long tasks before GetFeed", 0) for x in done)
        print(
            f"  {'':<9} before the first frame, median: {media:.0f} playlists + segments "
            f"requested; main thread {busy:.0f} ms in long tasks (> 50 ms each)"
            + (f", {early:.0f} ms of it before GetFeed was sent" if side.name == "reels" else "")
        )


def bundle_sizes() -> dict[str, tuple[int, int]]:
    """web/dist/assets/*.js, *.css: name -> (bytes, gzip -9 bytes)."""
    assets = sorted(
        p for p in (WEB_DIST / "assets").iterdir() if p.suffix in (".js", ".css") and p.is_file()
    )
    return {p.name: (p.stat().st_size, gz(p)) for p in assets}


# --------------------------------------------------------------------------- the mesh


def _serving(port: int) -> bool:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=0.5
        )
        return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False
    finally:
        channel.close()


@dataclass
class Mesh:
    """What tests/fixtures/mesh.py starts, cut to what the feed page uses."""

    tmp: Path
    db_url: str
    prefix: str
    ports: dict[str, int]
    front_port: int
    media_port: int
    upload_http_port: int
    chat_ws_port: int
    kafka_port: int
    otlp_port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def store(self) -> Path:
        return self.tmp / "store"

    def env(self) -> dict[str, str]:
        triton = os.environ.get("REELS_TRITON_ADDR", "127.0.0.1:18001").rsplit(":", 1)
        return {
            "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{REPO_ROOT / 'gen'}",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.otlp_port}",
            "REELS_LOG_LEVEL": "WARNING",
            "REELS_REDIS_PREFIX": self.prefix,
            "REELS_SHUTDOWN_GRACE_SECONDS": "2",
            "REELS_UPLOAD_HTTP_PORT": str(self.upload_http_port),
            "REELS_CHAT_WS_PORT": str(self.chat_ws_port),
            **{f"REELS_{n.upper()}_PORT": str(p) for n, p in self.ports.items()},
            **{f"REELS_{n.upper()}_ADDR": f"127.0.0.1:{p}" for n, p in self.ports.items()},
            "REELS_DATABASE_URL": self.db_url,
            "REELS_KAFKA_BOOTSTRAP": self.bootstrap,
            "REELS_STORAGE_URL": self.store.as_uri(),
            "REELS_MEDIA_PORT": str(self.media_port),
            "REELS_MEDIA_BASE_URL": f"http://127.0.0.1:{self.front_port}/media",
            "REELS_CLICKHOUSE_DSN": f"chdb://{self.tmp / 'chdb'}",
            "REELS_MILVUS_URI": str(self.tmp / "milvus" / "bench.db"),
            "REELS_EMBEDDINGS": "off",
            "REELS_NSFW_MODERATION": "off",  # no Triton in this mesh
            "REELS_TRENDING_INTERVAL_S": "1",
            # No Triton answering: the rule scorer ranks (as the service falls back to).
            **({} if port_open(triton[0], int(triton[1])) else {"REELS_RANK_RANKER": "off"}),
        }


def start_services(mesh: Mesh, procs: list[ManagedProcess]) -> None:
    """Starts SERVICES (each appended to ``procs`` as it starts, for the caller to stop)
    and returns once every one serves gRPC health."""
    for name in SERVICES:
        proc = ManagedProcess(
            f"svc_{name}",
            [sys.executable, "-m", f"svc_{name}"],
            env=mesh.env(),
            log_dir=mesh.tmp / "logs",
        )
        procs.append(proc)
        proc.start()
    deadline = time.monotonic() + 90
    for name in SERVICES:
        while not _serving(mesh.ports[name]):
            proc = procs[SERVICES.index(name)]
            if proc.proc is not None and proc.proc.poll() is not None:
                tail = proc.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"svc_{name} exited:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"svc_{name} is not serving after 90 s")
            time.sleep(0.2)


def envoy(mesh: Mesh) -> ManagedProcess:
    settings = EnvoySettings(
        listen_port=mesh.front_port,  # the port svc_stream's signed media URLs point at
        admin_port=free_port(),
        service_ports=mesh.ports,
        media_port=mesh.media_port,
        upload_http_port=mesh.upload_http_port,
        chat_ws_port=mesh.chat_ws_port,
        otlp_port=mesh.otlp_port,
        rate_limit_tokens=10_000,
    )
    return envoy_process(
        settings, name="envoy", log_dir=mesh.tmp / "logs", config_path=mesh.tmp / "envoy.yaml"
    )


async def publish(
    mesh: Mesh, ladder: Path, result: TranscodeResult, count: int
) -> tuple[list[str], str]:
    """``count`` reels of one real ladder, announced as svc_transcode does; returns their
    ids once svc_rank serves them all, playable, to a new user, and the ladder's rungs."""
    ids = []
    for n in range(count):
        video_id = str(uuid.uuid4())
        event = await asyncio.to_thread(publish_to_store, ladder, result, mesh.store, video_id)
        event.creator_id = f"bench-creator-{video_id[:8]}"
        event.title = f"Bench reel {n + 1}"
        await send_published(mesh.bootstrap, event)
        ids.append(video_id)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.ports['rank']}") as channel:
        feed = rank_pb2_grpc.FeedServiceStub(channel)
        deadline = time.monotonic() + PUBLISHED_WITHIN_S
        while True:
            reply = await feed.GetFeed(
                rank_pb2.GetFeedRequest(limit=100),
                metadata=(("authorization", f"Bearer {mint_token(new_user('probe'))}"),),
                timeout=10,
            )
            if set(ids) <= {i.video_id for i in reply.items if i.streaming_url}:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"svc_rank did not serve the reels in {PUBLISHED_WITHIN_S} s")
            await asyncio.sleep(0.5)
    rungs = ", ".join(f"{r.width}x{r.height}" for r in result.renditions)
    return ids, rungs


def new_user(kind: str) -> str:
    return f"bench-web-{kind}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- loads


async def load_app(browser: Any, base: str) -> Load:
    context = await browser.new_context(viewport=VIEWPORT)
    try:
        await context.add_init_script(APP_INIT_JS)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(f"{base}/?token={mint_token(new_user('viewer'))}", wait_until="commit")
        return await finish(page, "reels", errors)
    finally:
        await context.close()


async def load_baseline(browser: Any, origin: str, master_url: str, box: tuple[int, int]) -> Load:
    context = await browser.new_context(viewport=VIEWPORT)
    try:
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(
            f"{origin}/?w={box[0]}&h={box[1]}&src={quote(master_url, safe='')}",
            wait_until="commit",
        )
        return await finish(page, "baseline", errors)
    finally:
        await context.close()


async def finish(page: Any, side: str, errors: list[str]) -> Load:
    try:
        await page.wait_for_function(
            "window.__bench && window.__bench.frame > 0", timeout=LOAD_TIMEOUT_S * 1000
        )
    except Exception:  # noqa: BLE001 - a load that shows nothing is a figure too
        state = await page.evaluate(
            """(sel) => { const v = document.querySelector(sel) || document.querySelector("video");
               const li = v && v.closest("li");
               return {bench: window.__bench, player: li && li.dataset.player,
                       message: li && li.querySelector(".reel-message")?.innerText,
                       feed: document.querySelector("section.feed")?.dataset.state,
                       ready: v && v.readyState, t: v && v.currentTime}; }""",
            FIRST_VIDEO,
        )
        return Load(None, problem=f"no frame in {LOAD_TIMEOUT_S:g} s: {state} {errors[:3]}")
    bench = await page.evaluate("window.__bench")
    timeline = await page.evaluate("window.__benchTimeline()")
    frame = float(bench["frame"])
    tasks = bench.get("longTasks") or []
    busy = sum(min(d, frame - s) for s, d in tasks if s < frame)
    marks = milestones(side, timeline, frame)
    sent = marks.get("GetFeed sent", 0.0)  # the app's own start, before it asks for the feed
    marks["long tasks"] = busy
    marks["long tasks before GetFeed"] = sum(min(d, sent - s) for s, d in tasks if s < sent)
    return Load(
        first_frame_ms=float(bench["frame"]),
        frame_size=(int(bench["width"]), int(bench["height"])),
        box=tuple(bench.get("box") or (0, 0)),  # type: ignore[arg-type]
        video_id=str(bench.get("videoId") or ""),
        milestones=marks,
        problem="; ".join(errors[:3] + bench.get("errors", [])[:3]),
    )


async def signed_master(http: aiohttp.ClientSession, base: str, video_id: str) -> str:
    """GetPlayback through Envoy for a new user: the reel's signed master URL."""
    headers = {"authorization": f"Bearer {mint_token(new_user('baseline'))}"}
    async with http.get(f"{base}/api/v1/reels/{video_id}/playback", headers=headers) as resp:
        body = await resp.json(content_type=None)
        if resp.status != 200:
            raise RuntimeError(f"GetPlayback {video_id}: {resp.status} {body}")
        return str(body["masterManifestUrl"])


async def static_server() -> tuple[web.AppRunner, str]:
    app = web.Application()

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=BASELINE_PAGE, content_type="text/html")

    async def hls_js(_: web.Request) -> web.FileResponse:
        return web.FileResponse(HLS_JS)

    app.router.add_get("/", page)
    app.router.add_get("/hls.js", hls_js)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> int:
    ensure_dev_keys()
    tmp = Path(tempfile.mkdtemp(prefix="bench-web-"))
    base_url = make_url(os.environ.get("REELS_TEST_DATABASE_URL", database_url()))
    mesh = Mesh(
        tmp=tmp,
        db_url=base_url.set(database=f"reels_bench_{uuid.uuid4().hex[:10]}").render_as_string(
            hide_password=False
        ),
        prefix=f"reels-bench-web-{uuid.uuid4().hex[:8]}:",
        ports={name: free_port() for name in DEFAULT_PORTS},
        front_port=free_port(),
        media_port=free_port(),
        upload_http_port=free_port(),
        chat_ws_port=free_port(),
        kafka_port=free_port(),
        otlp_port=free_port(),
    )
    mesh.store.mkdir()
    stack: list[Callable[[], Awaitable[Any]]] = []
    try:
        await create_database(mesh.db_url)
        stack.append(lambda: drop_database(mesh.db_url))
        await migrate(mesh.db_url)
        sink = await start_sink(mesh.otlp_port, tmp / "spans.jsonl")
        stack.append(lambda: sink.stop(0.5))
        broker = tansu_process(mesh.kafka_port, log_dir=tmp / "logs")
        await asyncio.to_thread(broker.start)
        stack.append(lambda: asyncio.to_thread(broker.stop, 5))
        await ensure_topics(
            [topics.VIDEO_UPLOADED, topics.VIDEO_PUBLISHED], bootstrap=mesh.bootstrap
        )
        t = time.perf_counter()
        procs: list[ManagedProcess] = []
        stack.append(lambda: asyncio.gather(*(asyncio.to_thread(p.stop, 5) for p in procs)))
        # The clip is transcoded while the services start (both take a while).
        making = asyncio.create_task(transcode_ladder(tmp / "clip"))
        try:
            await asyncio.to_thread(start_services, mesh, procs)
            front = envoy(mesh)
            await asyncio.to_thread(front.start)
            stack.append(lambda: asyncio.to_thread(front.stop, 5))
            bundle = bundle_sizes()  # what this Envoy serves (it read web/dist as it started)
            ladder, result = await making
        finally:
            making.cancel()
        ids, rungs = await publish(mesh, ladder, result, args.reels)
        print(
            f"{at()} svc_rank + svc_stream (pids {[p.proc.pid for p in procs if p.proc]}), Envoy "
            f"on 127.0.0.1:{mesh.front_port} serving web/dist, Tansu; {len(ids)} reels of one "
            f"real 2 s ladder ({rungs}) served in {time.perf_counter() - t:.0f} s; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other work on the "
            f"machine shows in every figure); logs in {tmp / 'logs'}"
        )
        code = await run(args, mesh, ids, bundle, stack)
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        return code
    finally:
        for undo in reversed(stack):
            try:
                await undo()
            except Exception as exc:  # noqa: BLE001 - clean up the rest regardless
                print(f"cleanup: {exc!r}", file=sys.stderr)
        client = redis_client()
        await delete_prefix(client, mesh.prefix)
        await client.aclose()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


async def run(
    args: argparse.Namespace,
    mesh: Mesh,
    ids: list[str],
    sizes: dict[str, tuple[int, int]],
    stack: list[Callable[[], Any]],
) -> int:
    from playwright.async_api import async_playwright

    base = f"http://127.0.0.1:{mesh.front_port}"
    runner, origin = await static_server()
    stack.append(runner.cleanup)
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    stack.append(http.close)
    pw = await async_playwright().start()
    stack.append(pw.stop)
    browser = await pw.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=True,
        timeout=30_000,
        args=["--no-sandbox", "--disable-dev-shm-usage", "--mute-audio"],
    )
    stack.append(browser.close)

    # ---------------------------------------------------------------- 1. first frame
    print(
        f"\n{at()} 1. first frame: headless Chromium {browser.version}, "
        f"{VIEWPORT['width']}x{VIEWPORT['height']} viewport, a fresh context and a new user "
        f"per load; {args.warmup} warm-up load(s) each, then {args.loads} each, alternately"
    )
    app, baseline = Side("reels"), Side("baseline")
    box = (390, 780)
    video_id = ids[0]
    for i in range(args.warmup + args.loads):
        ours = await load_app(browser, base)
        if ours.first_frame_ms is not None:
            box = ours.box if ours.box[0] > 0 else box
            video_id = ours.video_id or video_id  # the reel the app played first
        master = await signed_master(http, base, video_id)
        theirs = await load_baseline(browser, origin, master, box)
        if i >= args.warmup:
            app.loads.append(ours)
            baseline.loads.append(theirs)
        for side, got in (("reels", ours), ("baseline", theirs)):
            if got.problem:
                print(f"  load {i + 1} {side}: {got.problem[:400]}")
    for side in (app, baseline):
        shown = sorted(
            {f"{x.frame_size[0]}x{x.frame_size[1]}" for x in side.loads if x.frame_size[0]}
        )
        print(
            f"  {side.name:<9} first frame p50 {pct(side.ok, 50):6.0f} ms  p95 "
            f"{pct(side.ok, 95):6.0f} ms  max {max(side.ok, default=float('nan')):6.0f} ms  "
            f"(n={len(side.ok)}, no frame {len(side.failed)}; rung shown {', '.join(shown)}; "
            f"player {box[0]}x{box[1]} px)"
        )
    for side in (app, baseline):
        print_timeline(side)
    await browser.close()
    await pw.stop()
    stack.remove(browser.close)
    stack.remove(pw.stop)

    # ---------------------------------------------------------------- 2. bundle
    total_gz = sum(g for _, g in sizes.values())
    total_raw = sum(r for r, _ in sizes.values())
    hls_raw, hls_gz = HLS_JS.stat().st_size, gz(HLS_JS)
    print(f"\n{at()} 2. bundle: web/dist/assets/*.js, *.css (gzip -9):")
    for name, (raw, g) in sizes.items():
        print(f"  {name:<32} {raw / 1024:7.1f} KiB  gzip {g / 1024:6.1f} KiB")
    print(f"  {'total':<32} {total_raw / 1024:7.1f} KiB  gzip {total_gz / 1024:6.1f} KiB")
    print(
        f"  {'hls.js ' + HLS_JS.name + ' (reference)':<32} {hls_raw / 1024:7.1f} KiB  gzip "
        f"{hls_gz / 1024:6.1f} KiB"
    )

    # ---------------------------------------------------------------- the table
    ok, theirs = app.ok, baseline.ok
    rows = [
        ("first frame p50", f"{pct(ok, 50):.0f} ms", f"{pct(theirs, 50):.0f} ms", "-"),
        ("first frame p95", f"{pct(ok, 95):.0f} ms", f"{pct(theirs, 95):.0f} ms", "<= 1000 ms"),
        (
            "loads with no first frame",
            f"{len(app.failed)} of {len(app.loads)}",
            f"{len(baseline.failed)} of {len(baseline.loads)}",
            "0",
        ),
        (
            "bundle, all assets, gzip -9",
            f"{total_gz / 1024:.1f} KiB",
            f"{hls_gz / 1024:.1f} KiB (hls.min.js)",
            "-",
        ),
    ]
    print(
        f"\n{at()} reels web: the app from Envoy (GetFeed, hls.js alongside); baseline: "
        "hls.js alone on a bare page that already knows the signed master URL"
    )
    header = ("metric", "reels web", "baseline", "goal")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(4)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    met = bool(ok) and not app.failed and pct(ok, 95) <= GOAL_P95_MS
    print(
        f"\ngoal first frame p95 <= {GOAL_P95_MS:g} ms: {'MET' if met else 'NOT MET'} "
        f"({pct(ok, 95):.0f} ms over {len(ok)} loads, {len(app.failed)} without a frame; "
        f"baseline {pct(theirs, 95):.0f} ms, +{pct(ok, 95) - pct(theirs, 95):.0f} ms)"
    )
    return 0 if met else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=int, default=20, help="measured page loads per side")
    parser.add_argument("--warmup", type=int, default=2, help="uncounted loads per side first")
    parser.add_argument("--reels", type=int, default=3, help="reels published (one ladder)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--timeout", type=float, default=300, help="stop after this (s)")
    a = parser.parse_args()
    for needed, why in (
        (CHROMIUM, "chromium"),
        (HLS_JS, "hls.js (npm ci in web/)"),
        (WEB_DIST / "index.html", "built web app (web/dist)"),
    ):
        if not needed.exists():
            print(f"bench_web: no {why} at {needed}: run make setup", file=sys.stderr)
            sys.exit(2)
    try:
        sys.exit(asyncio.run(asyncio.wait_for(main(a), a.timeout)))
    except TimeoutError:
        print(f"bench_web: stopped after {a.timeout:g} s", file=sys.stderr)
        sys.exit(2)
