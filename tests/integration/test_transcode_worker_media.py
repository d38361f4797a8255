"""svc_transcode's worker on media that needs normalising: an iPhone MOV whose default audio
track this ffmpeg cannot decode is published with its AAC track (or silent), and a
deterministic ffmpeg failure ends the job as FAILED at once instead of three attempts.

Real Postgres queue, real Tansu and real ffmpeg, as in test_transcode_worker.py (whose
service harness this module reuses).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from reels.v1 import events_pb2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import topics
from svc_transcode import normalise
from tests.integration.test_transcode_worker import kafka_records, transcode_service, wait_state
from tests.media import make_spatial_audio_mov

if TYPE_CHECKING:
    from tests.fixtures.infra import TansuBroker

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg/ffprobe are not installed (scripts/setup.sh installs them)",
)


@pytest.fixture(scope="module")
async def movs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("iphone")
    return {
        "spatial": await make_spatial_audio_mov(root / "IMG_0001.MOV", width=360, height=640),
        "apac_only": await make_spatial_audio_mov(
            root / "IMG_0002.MOV", width=360, height=640, aac_companion=False
        ),
    }


async def test_iphone_mov_is_published_with_its_aac_track_in_one_attempt(
    sessionmaker: async_sessionmaker[AsyncSession],
    kafka: TansuBroker,
    movs: dict[str, Path],
    tmp_path: Path,
) -> None:
    async with transcode_service(sessionmaker, kafka, tmp_path) as svc:
        uploaded = await svc.submit(movs["spatial"])
        job = await wait_state(svc, uploaded.video_id, "succeeded", "failed", "dead_lettered")
        assert job.state == "succeeded" and job.attempts == 1, job.last_error
        master = svc.store.path(f"videos/{uploaded.video_id}/master.m3u8").read_text()
        codecs = [line for line in master.splitlines() if line.startswith("#EXT-X-STREAM-INF")]
        assert codecs and all("mp4a.40.2" in line for line in codecs)
        [(value, _)] = await kafka_records(
            kafka.bootstrap, topics.VIDEO_PUBLISHED.name, uploaded.video_id
        )
        published = events_pb2.VideoPublished.FromString(value)
        assert all("mp4a" in r.codecs for r in published.renditions)


async def test_iphone_mov_without_decodable_audio_is_published_silent(
    sessionmaker: async_sessionmaker[AsyncSession],
    kafka: TansuBroker,
    movs: dict[str, Path],
    tmp_path: Path,
) -> None:
    async with transcode_service(sessionmaker, kafka, tmp_path) as svc:
        uploaded = await svc.submit(movs["apac_only"])
        job = await wait_state(svc, uploaded.video_id, "succeeded", "failed", "dead_lettered")
        assert job.state == "succeeded" and job.attempts == 1, job.last_error
        master = svc.store.path(f"videos/{uploaded.video_id}/master.m3u8").read_text()
        assert "#EXT-X-STREAM-INF" in master and "mp4a" not in master


async def test_a_deterministic_ffmpeg_failure_fails_the_job_at_once(
    sessionmaker: async_sessionmaker[AsyncSession],
    kafka: TansuBroker,
    movs: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The old behaviour, forced: the ladder maps the APAC track and ffmpeg exits 1
    ("Decoder (codec none) not found"). That happens on every attempt, so it is permanent."""

    async def the_apac_track(src: Path, facts: normalise.SourceFacts) -> int | None:
        return 1

    monkeypatch.setattr(normalise, "pick_audio", the_apac_track)
    async with transcode_service(sessionmaker, kafka, tmp_path, max_attempts=3) as svc:
        uploaded = await svc.submit(movs["spatial"])
        job = await wait_state(svc, uploaded.video_id, "succeeded", "failed", "dead_lettered")
        assert job.state == "failed", job.last_error
        assert job.permanent and job.attempts == 1  # not retried: it would fail the same way
        assert "cannot be processed" in (job.last_error or "")
        assert "Decoder (codec none) not found" in (job.last_error or "")  # for operators
        [(value, headers)] = await kafka_records(
            kafka.bootstrap, topics.VIDEO_FAILED.name, uploaded.video_id
        )
        failed = events_pb2.VideoFailed.FromString(value)
        assert failed.permanent and failed.attempts == 1
        [(_, dlq)] = await kafka_records(
            kafka.bootstrap, topics.VIDEO_UPLOADED_DLQ.name, uploaded.video_id
        )
        assert dlq["dlq-permanent"] == "true"
