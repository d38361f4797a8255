"""GetPlayback and GetManifest latency inside the service vs reading the playlist file.

Goal (issue 4): p99 < 5 ms for both RPCs inside the service. The baseline, measured in
the same run, is what the cheapest possible manifest server would do: read the same
master playlist file from disk (both a plain blocking read and the store's async read,
which hops to a worker thread like our cache misses do).

Setup: a real clip transcoded by the pipeline into a local store, a throwaway migrated
Postgres holding the catalog row (written by Catalog.apply_published, the consumer's
code path). svc_stream's App is built from Settings exactly as the service builds it
(``svc_stream.app.build``) but not started: its background loops (consumers, relay,
origin) play no part in these two RPCs. The playback RPCs are called in-process in a
loop after a warm-up, so the figures are the service's own cost without gRPC framing
or the network.

Run: .venv/bin/python bench/bench_playback.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gen"))

from reels.v1 import events_pb2, stream_pb2  # noqa: E402

from reels.db.engine import create_database, database_url, drop_database  # noqa: E402
from reels.db.migrate import migrate  # noqa: E402
from reels.storage import LocalObjectStore  # noqa: E402
from svc_stream.app import App, build  # noqa: E402
from svc_stream.playback.rpc import PlaybackRpcs  # noqa: E402
from svc_stream.settings import Settings  # noqa: E402
from tests.publishing import publish_to_store, transcode_ladder  # noqa: E402

GOAL_P99_MS = 5.0


async def measure(call: Callable[[], Awaitable[object]], n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        await call()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        await call()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return samples


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def report(name: str, samples: list[float]) -> tuple[float, float]:
    p50, p99 = pct(samples, 50), pct(samples, 99)
    print(
        f"  {name:<38} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms   "
        f"mean {statistics.fmean(samples):7.3f} ms"
    )
    return p50, p99


async def main(calls: int, warmup: int) -> int:
    from sqlalchemy import make_url

    db_url = (
        make_url(database_url())
        .set(database=f"reels_bench_{uuid.uuid4().hex[:8]}")
        .render_as_string(hide_password=False)
    )
    await create_database(db_url)
    try:
        await migrate(db_url)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            ladder, result = await transcode_ladder(root / "clip")
            store_root = root / "store"
            video_id = str(uuid.uuid4())
            event = publish_to_store(ladder, result, store_root, video_id)
            base = Settings.from_env()
            app = build(
                dataclasses.replace(
                    base,
                    platform=dataclasses.replace(
                        base.platform,
                        database_url=db_url,
                        storage_url=store_root.as_uri(),
                        media_signing_key=secrets.token_hex(32),
                    ),
                    media_base_url="http://127.0.0.1:8080/media",
                )
            )
            try:
                return await _measure_all(app, event, video_id, calls, warmup)
            finally:
                await app.stop()
    finally:
        await drop_database(db_url)


async def _measure_all(
    app: App, event: events_pb2.VideoPublished, video_id: str, calls: int, warmup: int
) -> int:
    await app.catalog.apply_published(event)
    app.catalog.forget(video_id)  # the first call below reads Postgres, like a cold start
    store = app.store
    assert isinstance(store, LocalObjectStore)
    svc = PlaybackRpcs(app.catalog, app.signer, app.media)
    playback_req = stream_pb2.GetPlaybackRequest(video_id=video_id)
    manifest_req = stream_pb2.GetManifestRequest(video_id=video_id)
    master_key = event.master_playlist_key
    master = store.path(master_key)

    async def get_playback() -> object:
        return await svc.GetPlayback(playback_req, None)  # type: ignore[arg-type]

    async def get_manifest() -> object:
        return await svc.GetManifest(manifest_req, None)  # type: ignore[arg-type]

    async def read_file() -> object:
        return master.read_bytes()

    async def read_store() -> object:
        return await store.get_bytes(master_key)

    ladder = ", ".join(r.name for r in event.renditions)
    print(f"playback latency, {calls} calls each after {warmup} warm-up calls (ladder: {ladder})")
    _, pb99 = report("GetPlayback (in-process)", await measure(get_playback, calls, warmup))
    _, mf99 = report("GetManifest (in-process)", await measure(get_manifest, calls, warmup))
    _, f99 = report(
        "baseline: read master file (blocking)", await measure(read_file, calls, warmup)
    )
    _, s99 = report("baseline: store.get_bytes (thread)", await measure(read_store, calls, warmup))
    print(
        f"  p99 ratio vs blocking file read: GetPlayback {pb99 / f99:.1f}x, "
        f"GetManifest {mf99 / f99:.1f}x; vs store read: "
        f"{pb99 / s99:.2f}x, {mf99 / s99:.2f}x"
    )
    ok = pb99 < GOAL_P99_MS and mf99 < GOAL_P99_MS
    print(f"goal p99 < {GOAL_P99_MS:g} ms: {'MET' if ok else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.calls, args.warmup)))
