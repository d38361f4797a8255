"""svc_transcode as a service: real Postgres queue, real Tansu, real ffmpeg, real Triton,
an object store in a temp directory, and the TranscodeService API over real gRPC.

Clips are small (540x960 portrait, a few seconds) and encoded with the ultrafast
preset, except where a test needs a job that is still encoding when it acts on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from google.rpc import error_details_pb2
from reels.v1 import events_pb2, transcode_pb2, transcode_pb2_grpc
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import topics
from reels.config import ServerSettings, platform
from reels.embedding_space import MODEL_VERSION, VIDEO_EMBEDDING_DIM
from reels.errors import from_rpc_error
from reels.events import EVENT_ID_HEADER, EventProducer, ReceivedEvent, from_kafka_headers
from reels.server import RunningServer, run_app
from reels.storage import LocalObjectStore
from reels_dev.infra.process import REPO_ROOT, ManagedProcess, free_port
from reels_dev.infra.triton import MODEL_REPOSITORY, triton_process
from reels_dev.keys import mint_token
from svc_transcode.app import App
from svc_transcode.consumer import make_consumer, make_handler
from svc_transcode.embeddings import NoEmbedder, TritonEmbedder, VideoEmbedder
from svc_transcode.models import TranscodeJob
from svc_transcode.settings import Settings
from svc_transcode.status import NoStatusReporter, StatusReporter
from tests.hls_check import assert_hls_valid
from tests.media import MediaFactory, corrupt_copy, decode_errors, ffprobe_json, make_clip
from tests.polling import eventually

if TYPE_CHECKING:
    from tests.fixtures.infra import TansuBroker

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg/ffprobe are not installed (scripts/setup.sh installs them)",
)

# The Triton models a published video's embeddings need (svc_transcode/embeddings.py).
EMBEDDING_MODELS = ("text_embedding", "visual_embedding")

# Worker settings that make a test's jobs, leases and retries take seconds, not minutes.
FAST: dict[str, object] = {
    "concurrency": 1,
    "lease_s": 3.0,
    "heartbeat_s": 0.5,
    "poll_s": 0.1,
    "max_attempts": 3,
    "backoff_min_s": 0.3,
    "backoff_max_s": 1.0,
    "preset": "ultrafast",
}


def transcode_settings(
    sessionmaker: async_sessionmaker[AsyncSession],
    kafka: TansuBroker,
    tmp: Path,
    **overrides: object,
) -> Settings:
    """FAST settings on this test's database, broker and temp dir; no consumer (tests
    feed the handler), no embeddings, no NSFW moderation and no status reports unless a
    test passes its own."""
    url = sessionmaker.kw["bind"].url.render_as_string(hide_password=False)
    return Settings(
        server=ServerSettings(port=0, grace_seconds=2.0),
        platform=dataclasses.replace(platform(), database_url=url, kafka_bootstrap=kafka.bootstrap),
        work_dir=tmp,
        consumer=False,
        embeddings=False,
        nsfw_moderation=False,
        report_status=False,
        **{**FAST, **overrides},  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
async def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("transcode-worker-media")
    portrait = await make_clip(root / "portrait.mp4", width=540, height=960, seconds=3)
    slow = await make_clip(root / "slow.mp4", width=540, height=960, seconds=4)
    corrupt = corrupt_copy(await MediaFactory(root).get("small"), root / "corrupt.mp4")
    return {"portrait": portrait, "slow": slow, "corrupt": corrupt}


@pytest.fixture(scope="module")
def triton_addr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    for name in EMBEDDING_MODELS:
        model = MODEL_REPOSITORY / name / "1" / "model.onnx"
        if not model.exists():
            pytest.fail(f"{name} is not built ({model} missing): run `bash scripts/models.sh`")
    grpc_port = free_port()
    proc = triton_process(
        free_port(),
        grpc_port,
        None,
        models=list(EMBEDDING_MODELS),
        log_dir=tmp_path_factory.mktemp("triton-log"),
    )
    proc.start()
    try:
        yield f"127.0.0.1:{grpc_port}"
    finally:
        proc.stop()


@dataclass
class Service:
    """One svc_transcode as a test drives it: the App (worker + relay) and its gRPC API."""

    sessionmaker: async_sessionmaker[AsyncSession]
    store: LocalObjectStore
    app: App
    server: RunningServer
    channel: grpc.aio.Channel
    kafka: TansuBroker
    tmp: Path

    @property
    def api(self) -> transcode_pb2_grpc.TranscodeServiceStub:
        return transcode_pb2_grpc.TranscodeServiceStub(self.channel)

    async def job(self, video_id: str) -> TranscodeJob:
        async with self.sessionmaker() as session:
            job = await session.scalar(
                select(TranscodeJob).where(TranscodeJob.video_id == video_id)
            )
        assert job is not None, f"no job for {video_id}"
        return job

    async def submit(self, original: Path | None, **fields: object) -> events_pb2.VideoUploaded:
        """What svc_upload does: the original in storage, then a video.uploaded event,
        fed here straight to the consumer's handler (the Kafka path has its own test)."""
        video_id = str(uuid.uuid4())
        key = f"originals/{video_id}.mp4"
        if original is not None:
            await self.store.put_stream(key, _chunks(original))
        uploaded = events_pb2.VideoUploaded(
            video_id=video_id,
            creator_id="creator-1",
            original_key=key,
            title=str(fields.get("title", "Sunset dance on the beach")),
            description=str(fields.get("description", "a short dance at golden hour")),
            hashtags=list(fields.get("hashtags", ["dance", "beach"])),  # type: ignore[call-overload]
        )
        event = ReceivedEvent(
            event_id=str(uuid.uuid4()),
            topic=topics.VIDEO_UPLOADED.name,
            partition=0,
            offset=0,
            key=video_id.encode(),
            value=uploaded.SerializeToString(),
            headers={},
        )
        async with self.sessionmaker() as session, session.begin():
            await make_handler(self.app.settings.max_attempts)(session, event)
        if self.app.worker is not None:
            self.app.worker.wake()
        return uploaded


def _metadata() -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {mint_token('operator-1')}"),)


@contextlib.asynccontextmanager
async def transcode_service(
    sessionmaker: async_sessionmaker[AsyncSession],
    kafka: TansuBroker,
    tmp: Path,
    *,
    embedder: VideoEmbedder | None = None,
    reporter: StatusReporter | None = None,
    worker: bool = True,
    **overrides: object,
) -> AsyncIterator[Service]:
    store = LocalObjectStore(tmp / "objects")
    app = App(
        settings=transcode_settings(sessionmaker, kafka, tmp, worker=worker, **overrides),
        store=store,
        reporter=reporter or NoStatusReporter(),
        embedder=embedder or NoEmbedder(),
    )
    server = await run_app(app, port=0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Service(sessionmaker, store, app, server, channel, kafka, tmp)
    finally:
        await channel.close()
        await server.stop(0.5)


async def wait_state(svc: Service, video_id: str, *states: str, within: float = 60) -> TranscodeJob:
    async def done() -> bool:
        return (await svc.job(video_id)).state in states

    await eventually(done, within, f"job of {video_id} in {states}")
    return await svc.job(video_id)


async def kafka_records(
    bootstrap: str, topic: str, key: str, *, expect: int = 1, within: float = 20.0
) -> list[tuple[bytes, dict[str, str]]]:
    """Records of ``key`` in ``topic``, read from the start without a group (no join wait)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[tuple[bytes, dict[str, str]]] = []
    try:
        deadline = time.monotonic() + within
        partitions: set[int] = set()
        while not partitions and time.monotonic() < deadline:
            await consumer._client.force_metadata_update()  # noqa: SLF001
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                await asyncio.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        settle_until = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    if r.key == key.encode():
                        found.append((r.value, from_kafka_headers(r.headers)))
            if len(found) >= expect:
                settle_until = settle_until or time.monotonic() + 0.5
                if time.monotonic() > settle_until:
                    break
        return found
    finally:
        await consumer.stop()


def children_of(pid: int, names: tuple[str, ...] = ("ffmpeg", "ffprobe")) -> list[int]:
    """ffmpeg processes started by ``pid`` (they run in their own session)."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,comm"], capture_output=True, text=True).stdout
    return [
        int(child)
        for child, ppid, comm in (line.split(None, 2) for line in out.splitlines()[1:])
        if int(ppid) == pid and comm.strip() in names
    ]


def ffmpeg_children() -> list[int]:
    return children_of(os.getpid())


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    yield await asyncio.to_thread(path.read_bytes)


# --------------------------------------------------------------------------- ingest


async def test_duplicate_delivery_of_one_video_uploaded_event_makes_one_job(
    sessionmaker: async_sessionmaker[AsyncSession], kafka: TansuBroker
) -> None:
    topic = f"{topics.VIDEO_UPLOADED}.test-{uuid.uuid4().hex[:8]}"
    await kafka.create_topics(topic)
    uploaded = events_pb2.VideoUploaded(
        video_id=str(uuid.uuid4()), creator_id="c", original_key="originals/x.mp4"
    )
    event_id = str(uuid.uuid4())
    async with EventProducer(kafka.bootstrap) as producer:
        for _ in range(3):  # the relay resent it, twice
            await producer.send(
                topic, uploaded.video_id, uploaded.SerializeToString(), {EVENT_ID_HEADER: event_id}
            )
        # ...and a producer retry under a fresh event id for the same video.
        await producer.send(
            topic, uploaded.video_id, uploaded.SerializeToString(),
            {EVENT_ID_HEADER: str(uuid.uuid4())},
        )  # fmt: skip
    consumer = make_consumer(
        sessionmaker,
        max_attempts=3,
        bootstrap=kafka.bootstrap,
        topic=topic,
        group_id=f"svc_transcode-{uuid.uuid4().hex[:6]}",
        session_timeout_ms=3000,
        heartbeat_interval_ms=500,
    )
    task = asyncio.create_task(consumer.run())
    try:

        async def all_seen() -> bool:
            async with sessionmaker() as session:
                seen = await session.scalar(
                    select(TranscodeJob.id).where(TranscodeJob.video_id == uploaded.video_id)
                )
            return seen is not None and consumer.skipped >= 2

        await eventually(all_seen, 30, "the four deliveries to be handled")
        await asyncio.sleep(0.5)
    finally:
        await consumer.stop()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
    async with sessionmaker() as session:
        rows = (
            await session.scalars(
                select(TranscodeJob).where(TranscodeJob.video_id == uploaded.video_id)
            )
        ).all()
    assert len(rows) == 1
    assert rows[0].state == "queued" and rows[0].source_event_id == event_id
    assert consumer.skipped == 2


# --------------------------------------------------------------------------- outcomes


async def test_portrait_clip_is_published_playable_with_event_and_embeddings(
    sessionmaker: async_sessionmaker[AsyncSession],
    kafka: TansuBroker,
    clips: dict[str, Path],
    triton_addr: str,
    tmp_path: Path,
) -> None:
    async with transcode_service(
        sessionmaker, kafka, tmp_path, embedder=TritonEmbedder(triton_addr)
    ) as svc:
        uploaded = await svc.submit(clips["portrait"])
        job = await wait_state(svc, uploaded.video_id, "succeeded", "failed", "dead_lettered")
        assert job.state == "succeeded", job.last_error
        assert (job.attempts, job.stage, job.percent) == (1, "done", 100.0)

        prefix = f"videos/{uploaded.video_id}"
        keys = await svc.store.list(prefix)
        assert f"{prefix}/master.m3u8" in keys
        assert {f"{prefix}/{n}" for n in ("thumbnail.jpg", "preview.mp4", "storyboard.vtt")} <= set(
            keys
        )
        assert not await svc.store.list(f"{prefix}.tmp-{job.id}")  # staging cleaned up
        await assert_hls_valid(svc.store.path(prefix))  # tests/hls_check.py: RFC 8216

        master = svc.store.path(f"{prefix}/master.m3u8")
        probed = await ffprobe_json(master)
        heights = sorted(s["height"] for s in probed["streams"] if s["codec_type"] == "video")
        assert heights[-1] <= 960  # never upscaled
        variants = [k for k in keys if k.endswith("/index.m3u8")]
        assert len(variants) == 2  # 540x960: 480p and 360p
        for variant in variants:
            assert await decode_errors(svc.store.path(variant)) == ""

        [(value, headers)] = await kafka_records(
            kafka.bootstrap, topics.VIDEO_PUBLISHED.name, uploaded.video_id
        )
        published = events_pb2.VideoPublished.FromString(value)
        assert published.meta.event_id == headers[EVENT_ID_HEADER]
        assert published.meta.producer == "svc_transcode"
        assert [r.name for r in published.renditions] == ["480p", "360p"]
        assert all(r.playlist_key.startswith(prefix + "/") for r in published.renditions)
        assert published.master_playlist_key == f"{prefix}/master.m3u8"
        assert (published.width, published.height) == (540, 960)
        assert 2.5 < published.duration.ToNanoseconds() / 1e9 < 3.5
        assert published.title == uploaded.title
        # Visual (1280), text (384) and the combined video vector (256), each unit norm.
        for field, dim in (
            ("visual_embedding", 1280),
            ("text_embedding", 384),
            ("video_embedding", VIDEO_EMBEDDING_DIM),
        ):
            vector = np.array(getattr(published, field))
            assert vector.shape == (dim,), field
            assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4, field
        assert published.embedding_model_version == MODEL_VERSION


async def test_corrupt_file_fails_permanently_at_once_with_dead_letter_and_failed_event(
    sessionmaker: async_sessionmaker[AsyncSession],
    kafka: TansuBroker,
    clips: dict[str, Path],
    tmp_path: Path,
) -> None:
    async with transcode_service(sessionmaker, kafka, tmp_path) as svc:
        uploaded = await svc.submit(clips["corrupt"])
        job = await wait_state(svc, uploaded.video_id, "succeeded", "failed", "dead_lettered")
        assert job.state == "failed"
        assert job.permanent and job.attempts == 1  # no retry for a bad file
        assert "corrupt" in (job.last_error or "")
        reply = await svc.api.GetJob(
            transcode_pb2.GetJobRequest(job_id=str(job.id)), metadata=_metadata()
        )
        assert reply.job.state == transcode_pb2.JOB_STATE_FAILED
        assert "corrupt" in reply.job.last_error

        [(dead, headers)] = await kafka_records(
            kafka.bootstrap, topics.VIDEO_UPLOADED_DLQ.name, uploaded.video_id
        )
        assert dead == job.payload  # the original event, unchanged, for a replay
        assert headers["dlq-permanent"] == "true" and "corrupt" in headers["dlq-reason"]
        assert headers["dlq-original-event-id"] == job.source_event_id
        [(value, _)] = await kafka_records(
            kafka.bootstrap, topics.VIDEO_FAILED.name, uploaded.video_id
        )
        failed = events_pb2.VideoFailed.FromString(value)
        assert failed.permanent and failed.attempts == 1 and "corrupt" in failed.reason
        assert not await svc.store.list(f"videos/{uploaded.video_id}")
        assert not await svc.store.list(f"videos/{uploaded.video_id}.tmp-{job.id}")


async def test_transient_failure_is_retried_after_backoff_and_then_succeeds(
    sessionmaker: async_sessionmaker[AsyncSession],
    kafka: TansuBroker,
    clips: dict[str, Path],
    tmp_path: Path,
) -> None:
    async with transcode_service(
        sessionmaker, kafka, tmp_path, backoff_min_s=1.5, backoff_max_s=2.0
    ) as svc:
        uploaded = await svc.submit(None)  # the original is not in storage (yet)

        async def first_attempt_failed() -> bool:
            job = await svc.job(uploaded.video_id)
            return job.state == "queued" and job.attempts == 1

        await eventually(first_attempt_failed, 20, "the first attempt to fail")
        reply = await svc.api.GetJob(
            transcode_pb2.GetJobRequest(job_id=str((await svc.job(uploaded.video_id)).id)),
            metadata=_metadata(),
        )
        assert reply.job.state == transcode_pb2.JOB_STATE_QUEUED
        assert "not in object storage" in reply.job.last_error
        wait = (
            reply.job.next_attempt_at.ToDatetime() - reply.job.updated_at.ToDatetime()
        ).total_seconds()
        assert 1.5 * 0.8 <= wait <= 2.0 + 0.1  # backoff, not an immediate retry

        await svc.store.put_stream(uploaded.original_key, _chunks(clips["portrait"]))
        job = await wait_state(svc, uploaded.video_id, "succeeded", "failed", "dead_lettered")
        assert job.state == "succeeded" and job.attempts == 2
        assert await svc.store.exists(f"videos/{uploaded.video_id}/master.m3u8")
        await assert_hls_valid(svc.store.path(f"videos/{uploaded.video_id}"))


async def test_dead_lettered_after_max_attempts_then_retry_job_requeues_and_completes(
    sessionmaker: async_sessionmaker[AsyncSession],
    kafka: TansuBroker,
    clips: dict[str, Path],
    tmp_path: Path,
) -> None:
    async with transcode_service(sessionmaker, kafka, tmp_path, max_attempts=2) as svc:
        uploaded = await svc.submit(None)
        job = await wait_state(svc, uploaded.video_id, "succeeded", "failed", "dead_lettered")
        assert job.state == "dead_lettered" and job.attempts == 2 and not job.permanent
        [(dead, headers)] = await kafka_records(
            kafka.bootstrap, topics.VIDEO_UPLOADED_DLQ.name, uploaded.video_id
        )
        assert dead == job.payload
        assert (headers["dlq-permanent"], headers["dlq-attempts"]) == ("false", "2")
        [(value, _)] = await kafka_records(
            kafka.bootstrap, topics.VIDEO_FAILED.name, uploaded.video_id
        )
        assert events_pb2.VideoFailed.FromString(value).attempts == 2

        # Operators: list it, fix the cause, re-queue it.
        listed = await svc.api.ListJobs(
            transcode_pb2.ListJobsRequest(state=transcode_pb2.JOB_STATE_DEAD_LETTERED),
            metadata=_metadata(),
        )
        assert [j.video_id for j in listed.jobs] == [uploaded.video_id]
        await svc.store.put_stream(uploaded.original_key, _chunks(clips["portrait"]))
        retried = await svc.api.RetryJob(
            transcode_pb2.RetryJobRequest(job_id=str(job.id)), metadata=_metadata()
        )
        assert retried.job.state == transcode_pb2.JOB_STATE_QUEUED and retried.job.attempts == 0
        svc.app.worker.wake()  # type: ignore[union-attr]
        job = await wait_state(svc, uploaded.video_id, "succeeded", "failed", "dead_lettered")
        assert job.state == "succeeded" and job.attempts == 1

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await svc.api.RetryJob(
                transcode_pb2.RetryJobRequest(job_id=str(job.id)), metadata=_metadata()
            )
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "succeeded" in (err.value.details() or "")


async def test_job_api_errors_and_pagination(
    sessionmaker: async_sessionmaker[AsyncSession], kafka: TansuBroker, tmp_path: Path
) -> None:
    async with transcode_service(sessionmaker, kafka, tmp_path, worker=False) as svc:
        missing = str(uuid.uuid4())
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await svc.api.GetJob(transcode_pb2.GetJobRequest(job_id=missing), metadata=_metadata())
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        [info] = from_rpc_error(err.value)
        assert isinstance(info, error_details_pb2.ResourceInfo)
        assert (info.resource_type, info.resource_name) == ("transcode job", missing)

        videos = [(await svc.submit(None)).video_id for _ in range(5)]
        seen: list[str] = []
        token = ""
        while True:
            page = await svc.api.ListJobs(
                transcode_pb2.ListJobsRequest(page_size=2, page_token=token), metadata=_metadata()
            )
            seen += [j.video_id for j in page.jobs]
            token = page.next_page_token
            if not token:
                break
        assert seen == list(reversed(videos))  # newest first, each once
        only = await svc.api.ListJobs(
            transcode_pb2.ListJobsRequest(video_id=videos[2]), metadata=_metadata()
        )
        assert [j.video_id for j in only.jobs] == [videos[2]]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await svc.api.ListJobs(
                transcode_pb2.ListJobsRequest(page_token="garbage!"), metadata=_metadata()
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        queued = await svc.job(videos[0])
        cancelled = await svc.api.CancelJob(
            transcode_pb2.CancelJobRequest(job_id=str(queued.id)), metadata=_metadata()
        )
        assert cancelled.job.state == transcode_pb2.JOB_STATE_CANCELLED
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await svc.api.CancelJob(
                transcode_pb2.CancelJobRequest(job_id=str(queued.id)), metadata=_metadata()
            )
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


# --------------------------------------------------------------------------- stopping jobs


async def test_cancel_job_stops_the_running_ffmpeg_and_leaves_no_temp_prefix(
    sessionmaker: async_sessionmaker[AsyncSession],
    kafka: TansuBroker,
    clips: dict[str, Path],
    tmp_path: Path,
) -> None:
    # veryslow: still encoding when cancelled
    async with transcode_service(sessionmaker, kafka, tmp_path, preset="veryslow") as svc:
        uploaded = await svc.submit(clips["slow"])

        async def encoding() -> bool:
            return (await svc.job(uploaded.video_id)).stage == "encode" and bool(ffmpeg_children())

        await eventually(encoding, 30, "the job to be encoding")
        job = await svc.job(uploaded.video_id)
        started = time.monotonic()
        reply = await svc.api.CancelJob(
            transcode_pb2.CancelJobRequest(job_id=str(job.id)), metadata=_metadata()
        )
        assert reply.job.state == transcode_pb2.JOB_STATE_CANCELLED

        async def stopped() -> bool:
            return not svc.app.worker.active and not ffmpeg_children()  # type: ignore[union-attr]

        await eventually(stopped, 10, "the worker to kill ffmpeg and drop the job")
        assert time.monotonic() - started < 5  # noticed at a heartbeat, not at the end
        job = await svc.job(uploaded.video_id)
        assert job.state == "cancelled" and job.lease_owner is None
        assert not await svc.store.list(f"videos/{uploaded.video_id}.tmp-{job.id}")
        assert not await svc.store.list(f"videos/{uploaded.video_id}")
        assert not await asyncio.to_thread(lambda: list(tmp_path.glob("transcode-*")))


async def test_worker_killed_mid_job_is_redone_by_another_worker_with_no_partial_output(
    sessionmaker: async_sessionmaker[AsyncSession],
    migrated_database_url: str,
    kafka: TansuBroker,
    clips: dict[str, Path],
    tmp_path: Path,
) -> None:
    objects = tmp_path / "objects"
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{REPO_ROOT / 'gen'}",
        "REELS_DATABASE_URL": migrated_database_url,
        "REELS_STORAGE_URL": objects.resolve().as_uri(),
        "REELS_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "REELS_TRANSCODE_PORT": str(free_port()),
        "REELS_TRANSCODE_CONSUMER": "off",
        "REELS_TRANSCODE_RELAY": "off",
        "REELS_EMBEDDINGS": "off",
        "REELS_TRANSCODE_REPORT_STATUS": "off",
        "REELS_TRANSCODE_LEASE_S": "3",
        "REELS_TRANSCODE_HEARTBEAT_S": "1",
        "REELS_TRANSCODE_POLL_S": "0.1",
        "REELS_TRANSCODE_PRESET": "veryslow",  # still encoding when we kill it
        "REELS_TRANSCODE_WORK_DIR": str(tmp_path),
    }
    # Step 1: the job exists, and a separate worker process takes it.
    async with transcode_service(sessionmaker, kafka, tmp_path, worker=False) as submitter:
        uploaded = await submitter.submit(clips["slow"])
    prefix = f"videos/{uploaded.video_id}"
    seen: list[list[str]] = []
    store = LocalObjectStore(objects)

    async def watch() -> None:  # what a player would see, as often as it could look
        while True:
            seen.append(await store.list(prefix))
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    proc = ManagedProcess(
        "svc_transcode-doomed",
        [sys.executable, "-m", "svc_transcode"],
        env=env,
        log_dir=tmp_path,
    ).start()
    try:

        async def job_row() -> TranscodeJob:
            async with sessionmaker() as session:
                found = await session.scalar(
                    select(TranscodeJob).where(TranscodeJob.video_id == uploaded.video_id)
                )
            assert found is not None
            return found

        async def encoding_elsewhere() -> bool:
            job = await job_row()
            return job.state == "running" and job.stage == "encode"

        await eventually(encoding_elsewhere, 30, "the worker process to be encoding")
        doomed = (await job_row()).lease_owner
        # The node dies: the worker and its ffmpeg, all at once, with no chance to clean up.
        assert proc.proc is not None
        ffmpeg = await asyncio.to_thread(children_of, proc.proc.pid)
        assert ffmpeg, "the worker process should be running ffmpeg"
        os.kill(proc.proc.pid, signal.SIGKILL)
        for pid in ffmpeg:  # ffmpeg runs in its own session; the "node" takes it down too
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        proc.proc.wait(5)
        killed_at = time.monotonic()
        assert (await job_row()).state == "running"  # nobody told the database

        # Step 2: another worker takes over once the lease has run out, and finishes.
        async with transcode_service(sessionmaker, kafka, tmp_path) as svc:
            job = await wait_state(svc, uploaded.video_id, "succeeded", "failed", "dead_lettered")
        assert job.state == "succeeded", job.last_error
        assert job.attempts == 2 and job.lease_owner is None
        assert doomed and doomed != svc.app.worker.worker_id  # type: ignore[union-attr]
        assert time.monotonic() - killed_at >= 2.0  # waited for the lease, did not steal it
    finally:
        proc.kill()
        watcher.cancel()
        with contextlib.suppress(BaseException):
            await watcher

    final = await store.list(prefix)
    assert f"{prefix}/master.m3u8" in final
    for variant in (k for k in final if k.endswith("/index.m3u8")):
        assert await decode_errors(store.path(variant)) == ""
    # Never a partial set: each look found nothing at all, or the complete output.
    assert all(listing in ([], final) for listing in seen), "a partial output was visible"
    assert seen[0] == [] and seen[-1] == final
    assert not await store.list(f"{prefix}.tmp-{job.id}")
    await assert_hls_valid(store.path(prefix))


# --------------------------------------------------------------------------- with svc_upload


async def test_upload_through_svc_upload_ends_published_with_status_reported(
    migrated_database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    kafka: TansuBroker,
    clamd: str,
    clips: dict[str, Path],
    tmp_path: Path,
) -> None:
    """The real flow: svc_upload stores the original and emits video.uploaded; the
    consumer queues the job; the worker reports progress and PUBLISHED to svc_upload."""
    from reels.v1 import common_pb2, upload_pb2, upload_pb2_grpc

    from reels.auth import ServiceTokenSigner
    from svc_transcode.status import ServiceCredentials, UploadStatusReporter
    from svc_upload.app import App as UploadApp
    from svc_upload.settings import ScanSettings
    from svc_upload.settings import Settings as UploadSettings

    path = clips["portrait"]
    upload = UploadApp(
        settings=UploadSettings(
            server=ServerSettings(port=0),
            platform=dataclasses.replace(
                platform(),
                database_url=migrated_database_url,
                kafka_bootstrap=kafka.bootstrap,
                redis_prefix=f"reels-test-{uuid.uuid4().hex[:8]}:",
            ),
            http_port=0,
            scan=ScanSettings(clamd_address=clamd),
        ),
        store=LocalObjectStore(tmp_path / "objects"),
    )
    upload_server = await run_app(upload, port=0)
    reporter = UploadStatusReporter(
        f"127.0.0.1:{upload_server.port}",
        ServiceCredentials(signer=ServiceTokenSigner(platform().auth)),
    )
    creator = f"creator-{uuid.uuid4().hex[:6]}"
    who = (("authorization", f"Bearer {mint_token(creator)}"),)
    try:
        async with transcode_service(sessionmaker, kafka, tmp_path, reporter=reporter) as svc:
            consumer = make_consumer(
                sessionmaker,
                max_attempts=3,
                bootstrap=kafka.bootstrap,
                group_id=f"svc_transcode-{uuid.uuid4().hex[:6]}",
                session_timeout_ms=3000,
                heartbeat_interval_ms=500,
            )
            consuming = asyncio.create_task(consumer.run())
            data = await asyncio.to_thread(path.read_bytes)

            async def messages() -> AsyncIterator[upload_pb2.UploadVideoRequest]:
                yield upload_pb2.UploadVideoRequest(
                    metadata=upload_pb2.UploadMetadata(
                        title="Tall dance",
                        hashtags=["dance"],
                        declared_size_bytes=len(data),
                        filename="clip.mp4",
                        mime_type="video/mp4",
                    )
                )
                yield upload_pb2.UploadVideoRequest(chunk=data)

            try:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{upload_server.port}") as ch:
                    api = upload_pb2_grpc.UploadServiceStub(ch)
                    reply = await api.UploadVideo(messages(), metadata=who)
                    svc.app.worker.wake()  # type: ignore[union-attr]
                    percents: list[float] = []

                    async def published() -> bool:
                        status = await api.GetVideoStatus(
                            upload_pb2.GetVideoStatusRequest(video_id=reply.video_id),
                            metadata=who,
                        )
                        if status.status == common_pb2.VIDEO_STATUS_PROCESSING:
                            percents.append(status.percent)
                        return status.status in (
                            common_pb2.VIDEO_STATUS_PUBLISHED,
                            common_pb2.VIDEO_STATUS_FAILED,
                        )

                    await eventually(published, 60, "svc_upload to show the video published")
                    video = (
                        await api.GetVideo(
                            upload_pb2.GetVideoRequest(video_id=reply.video_id), metadata=who
                        )
                    ).video
            finally:
                await consumer.stop()
                consuming.cancel()
                with contextlib.suppress(BaseException):
                    await consuming
            job = await svc.job(reply.video_id)
    finally:
        await upload_server.stop(0.5)
        await reporter.close()
    assert job.state == "succeeded", job.last_error
    assert video.status == common_pb2.VIDEO_STATUS_PUBLISHED, video.failure_reason
    assert video.master_playlist_key == f"videos/{reply.video_id}/master.m3u8"
    assert [r.name for r in video.renditions] == ["480p", "360p"]
    assert (video.width, video.height) == (540, 960)
    assert percents == sorted(percents) and max(percents) > 0  # progress reached svc_upload
