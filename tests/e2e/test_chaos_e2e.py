"""Chaos under load (issue 14 §4), the bounded form of ``make bench B=chaos``.

A mesh of its own (tests/fixtures/chaos.py: private PostgreSQL and Redis, the broker
and the services under a private supervisord, its own Envoy). For each fault, tus
uploads through Envoy (one every 4 s here; the bench sends more) and player events
(batches of 20 every 0.1 s) flow before, during and after it; then the same
invariants hold:

* every upload that got its final 204 is published;
* every event RecordEvents accepted is counted exactly once, in Redis (svc_stream's
  counters) and in the analytics store (GetVideoAnalytics views: one session each);
* the mesh recovers by itself (supervisord restarts what was killed; the test only
  restarts PostgreSQL, which is not under supervisord), and the time to recover is
  printed (``CHAOS ...`` lines, ``pytest -s``).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from reels.v1 import rank_pb2, rank_pb2_grpc
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from reels import faults
from reels_dev.keys import mint_token
from svc_upload.models import Video, VideoStatus
from tests.chaos import load
from tests.fixtures.chaos import ChaosMesh, chaos_mesh
from tests.media import make_clip
from tests.polling import eventually

# The bounded form: fewer uploads to transcode afterwards (2 cores), a shorter tail.
BOUNDED = {"upload_interval_s": 4.0, "after_s": 2.0}


async def run_fault(*args, **kwargs):  # type: ignore[no-untyped-def]
    return await load.run_fault(*args, **{**BOUNDED, **kwargs})


pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (scripts/setup.sh)"
)


@pytest.fixture(scope="module")
def chaos(
    clamd: str,
    dev_keys: None,
    otlp_sink: tuple[int, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ChaosMesh]:
    with chaos_mesh(tmp_path_factory.mktemp("chaos"), clamd, otlp_sink) as mesh:
        yield mesh


@pytest.fixture(scope="module")
async def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("chaos-clip") / "clip.mp4"
    await make_clip(path, width=144, height=256, seconds=1, fps=15, audio=False)
    return path.read_bytes()


def _killer(chaos: ChaosMesh, name: str):  # type: ignore[no-untyped-def]
    async def fault() -> float:
        pid = chaos.kill(name)
        return await asyncio.to_thread(chaos.wait_restarted, name, pid)

    return fault


async def test_broker_kill_9_under_load_loses_nothing(chaos: ChaosMesh, clip: bytes) -> None:
    report = await run_fault(chaos, "kafka kill -9", clip, _killer(chaos, "kafka"))
    assert report.lost == 0


async def test_transcoder_killed_mid_job_publishes_every_upload(
    chaos: ChaosMesh, clip: bytes
) -> None:
    engine = create_async_engine(chaos.mesh.backends.database_url, poolclass=NullPool)

    async def mid_job() -> float:
        async def processing() -> bool:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(Video.id).where(Video.status == VideoStatus.PROCESSING.value)
                )
                return bool(rows.first())

        try:
            await eventually(processing, within=60, what="a video being transcoded", interval=0.1)
        finally:
            await engine.dispose()
        return await _killer(chaos, "transcode")()

    report = await run_fault(chaos, "svc_transcode kill -9 mid-job", clip, mid_job, before_s=0)
    assert report.lost == 0


async def test_stream_and_its_analytics_sink_killed_mid_batch(
    chaos: ChaosMesh, clip: bytes
) -> None:
    # The sink runs inside svc_stream: killing svc_stream kills it mid-batch.
    report = await run_fault(chaos, "svc_stream (sink) kill -9", clip, _killer(chaos, "stream"))
    assert report.lost == 0


async def test_redis_restart_under_load_loses_and_doubles_nothing(
    chaos: ChaosMesh, clip: bytes
) -> None:
    report = await run_fault(chaos, "redis kill -9", clip, _killer(chaos, "redis"))
    assert report.lost == 0


async def test_postgres_restart_under_load_loses_nothing(chaos: ChaosMesh, clip: bytes) -> None:
    async def restart() -> float:
        # Not under supervisord: the test is what restarts it (a crash, then a start).
        started = time.monotonic()
        await asyncio.to_thread(chaos.postgres.stop, immediate=True)
        await asyncio.sleep(2)
        await asyncio.to_thread(chaos.postgres.start)
        return time.monotonic() - started

    report = await run_fault(chaos, "postgres restart", clip, restart)
    assert report.lost == 0


async def test_feed_answers_while_trending_source_triton_and_milvus_fail(
    chaos: ChaosMesh,
) -> None:
    """Faults on demand, the flag way: svc_rank's svc_stream client, Triton and the
    Milvus search failing on every call; the feed still answers (fallbacks), and again
    once cleared."""
    meta = (("authorization", f"Bearer {mint_token('chaos-feed')}"),)
    async with grpc.aio.insecure_channel(chaos.mesh.addr("rank")) as channel:
        feed = rank_pb2_grpc.FeedServiceStub(channel)
        chaos.set_fault(faults.Fault("stream", error_rate=1.0))
        chaos.set_fault(faults.Fault("triton", error_rate=1.0))
        chaos.set_fault(faults.Fault("milvus", error_rate=1.0))
        try:
            await asyncio.sleep(faults.CHECK_INTERVAL_S * 2)
            for _ in range(5):
                await feed.GetFeed(rank_pb2.GetFeedRequest(limit=10), metadata=meta, timeout=10)
        finally:
            chaos.clear_faults()
        await feed.GetFeed(rank_pb2.GetFeedRequest(limit=10), metadata=meta, timeout=10)
