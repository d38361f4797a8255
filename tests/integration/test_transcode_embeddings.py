"""Embeddings at publish against a real tritonserver (visual_embedding + text_embedding).

* near-duplicates: the same clip re-encoded and cropped (or padded) gets a visual
  vector within ``NEAR_DUPLICATE_COSINE`` of the original's; different clips do not;
* a Triton that does not answer in time is ``EmbeddingUnavailable``, quickly;
* Triton stopped: the video still publishes (without vectors), the job shows
  ``embeddings_pending`` through GetJob/ListJobs and is retried with backoff; Triton
  back: the backfill fills the vectors in and a follow-up ``video.published`` carries
  them, which svc_stream's analytics sink writes to ``video_embeddings`` once.

Clips are tiny (360x640, 3 s, lavfi sources) and encoded with the ultrafast preset.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from reels.v1 import events_pb2, transcode_pb2

from reels import embedding_space, topics
from reels.analytics import Analytics
from reels.embedding_space import MODEL_VERSION, NEAR_DUPLICATE_COSINE, cosine
from reels.events import EVENT_ID_HEADER, ReceivedEvent
from reels_dev.infra.process import ManagedProcess, free_port
from reels_dev.infra.triton import MODEL_REPOSITORY, triton_process
from svc_stream.events.sink import AnalyticsSink, ensure_schema
from svc_transcode import jobs
from svc_transcode.embeddings import EmbeddingUnavailable, TritonEmbedder
from svc_transcode.frames import frame_times, sample_frames
from tests.integration.test_transcode_worker import (
    _metadata,
    kafka_records,
    transcode_service,
    wait_state,
)
from tests.media import make_clip
from tests.polling import eventually

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from tests.fixtures.infra import TansuBroker

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (scripts/setup.sh)"
)

MODELS = ("visual_embedding", "text_embedding")
SECONDS = 3.0


async def _ffmpeg(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-v", "error", "-y", *args, stdin=asyncio.subprocess.DEVNULL
    )
    assert await proc.wait() == 0, args


async def _lavfi(out: Path, source: str) -> Path:
    graph = f"{source}{':' if '=' in source else '='}size=360x640:rate=30"
    await _ffmpeg(
        "-f", "lavfi", "-i", graph, "-t", str(SECONDS),
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out),
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
async def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The original (testsrc2), three altered copies of it, and three other clips."""
    root = tmp_path_factory.mktemp("embedding-clips")
    orig = await make_clip(root / "orig.mp4", width=360, height=640, seconds=SECONDS, audio=False)
    copies = {
        # Re-encoded at another size and a low quality, the centre 90 % kept.
        "reencoded_cropped": "crop=iw*0.9:ih*0.9,scale=540:960",
        # 80 % kept, off-centre, brighter, smaller, at an even lower quality.
        "offcentre_crop_brighter": "crop=iw*0.8:ih*0.8:iw*0.05:ih*0.15,scale=288:512,"
        "eq=brightness=0.05",
        # Black bands above and below (a re-upload with borders).
        "padded": "pad=iw:ih*1.2:0:ih*0.1:black",
    }
    out = {"orig": orig}
    for name, vf in copies.items():
        out[name] = root / f"{name}.mp4"
        await _ffmpeg(
            "-i", str(orig), "-vf", vf, "-c:v", "libx264", "-preset", "veryfast",
            "-crf", "36", "-pix_fmt", "yuv420p", str(out[name]),
        )  # fmt: skip
    for name, source in (
        ("other_mandelbrot", "mandelbrot"),
        ("other_cellauto", "cellauto=rule=110"),
        ("other_testsrc", "testsrc"),  # another test pattern: the hardest negative
    ):
        out[name] = await _lavfi(root / f"{name}.mp4", source)
    return out


class Triton:
    """A tritonserver with both embedding models that a test can stop and start."""

    def __init__(self, log_dir: Path) -> None:
        self.grpc_port = free_port()
        self.proc: ManagedProcess = triton_process(
            free_port(), self.grpc_port, None, models=list(MODELS), log_dir=log_dir
        )

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    async def start(self) -> None:
        await asyncio.to_thread(self.proc.start)

    async def stop(self) -> None:
        await asyncio.to_thread(self.proc.stop)


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Triton]:
    for name in MODELS:
        if not (MODEL_REPOSITORY / name / "1" / "model.onnx").exists():
            pytest.fail(f"{name} is not built: run `bash scripts/models.sh`")
    server = Triton(tmp_path_factory.mktemp("triton-log"))
    server.proc.start()
    try:
        yield server
    finally:
        server.proc.stop()


@pytest.fixture
async def embedder(triton: Triton) -> AsyncIterator[TritonEmbedder]:
    e = TritonEmbedder(triton.addr)
    try:
        yield e
    finally:
        await e.close()


# --------------------------------------------------------------------------- near-duplicates


async def test_reencoded_and_cropped_copies_are_near_duplicates_and_other_clips_are_not(
    embedder: TritonEmbedder, clips: dict[str, Path]
) -> None:
    assert len(frame_times(SECONDS)) == 6  # a 3 s clip: one frame per half second
    visual: dict[str, np.ndarray] = {}
    for name, path in clips.items():
        frames = await sample_frames(path, SECONDS)
        assert frames.shape == (6, 224, 224, 3) and frames.dtype == np.uint8
        vectors = await embedder.embed(frames, "a clip")
        visual[name] = vectors.visual
    scores = {name: cosine(visual["orig"], v) for name, v in visual.items() if name != "orig"}
    for name, score in scores.items():
        print(f"visual cosine(orig, {name}) = {score:.4f}")
    copies = {k: v for k, v in scores.items() if not k.startswith("other_")}
    others = {k: v for k, v in scores.items() if k.startswith("other_")}
    assert all(v >= NEAR_DUPLICATE_COSINE for v in copies.values()), copies
    assert all(v < NEAR_DUPLICATE_COSINE for v in others.values()), others
    # Clearly apart, not by a hair (measured: copies >= 0.95, others <= 0.80).
    assert min(copies.values()) - max(others.values()) > 0.1


async def test_a_triton_that_does_not_answer_is_unavailable_within_the_deadline() -> None:
    # A listener that accepts connections and never speaks HTTP/2: Triton hung.
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    embedder = TritonEmbedder(f"127.0.0.1:{port}", timeout_s=1.0)
    frames = np.zeros((2, 224, 224, 3), dtype=np.uint8)
    started = time.monotonic()
    try:
        with pytest.raises(EmbeddingUnavailable):
            await embedder.embed(frames, "title")
    finally:
        await embedder.close()
        silent.close()
    assert time.monotonic() - started < 3.0
    # A malformed input is a bug, never an outage.
    with pytest.raises(ValueError, match="uint8"):
        await TritonEmbedder("127.0.0.1:1").embed(frames.astype(np.float32), "title")


# --------------------------------------------------------------------------- the analytics sink


def _published(video_id: str, *, vector: list[float] | None, at: datetime) -> ReceivedEvent:
    event_id = str(uuid.uuid4())
    message = events_pb2.VideoPublished(
        meta=events_pb2.EventMeta(event_id=event_id, producer="svc_transcode"),
        video_id=video_id,
        creator_id="c1",
        title="t",
    )
    message.meta.occurred_at.FromDatetime(at)
    message.published_at.FromDatetime(at)
    if vector is not None:
        message.video_embedding[:] = vector
        message.embedding_model_version = MODEL_VERSION
    return ReceivedEvent(
        event_id, topics.VIDEO_PUBLISHED.name, 0, 0, video_id.encode(),
        message.SerializeToString(), {},
    )  # fmt: skip


async def _embedding_rows(analytics: Analytics, video_id: str) -> list[tuple[Any, ...]]:
    return await analytics.query_rows(
        "SELECT model_version, embedding, created FROM video_embeddings FINAL "
        "WHERE video_id = {v:String}",
        {"v": video_id},
    )


async def test_sink_writes_video_embeddings_once_and_only_for_events_with_a_vector(
    tmp_path: Path,
) -> None:
    analytics = Analytics(f"chdb://{tmp_path / 'chdb'}")
    try:
        await ensure_schema(analytics)
        sink = AnalyticsSink(analytics, None)  # type: ignore[arg-type] - no counter deltas here
        vector = embedding_space.normalise(np.arange(1, 257, dtype=np.float32)).tolist()
        at = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
        without = _published("v1", vector=None, at=at)
        follow_up = _published("v1", vector=vector, at=at.replace(minute=5))
        await sink.apply([without])
        assert await _embedding_rows(analytics, "v1") == []
        # The follow-up, then the same batch again (a redelivery after a crash).
        await sink.apply([follow_up])
        await sink.apply([without, follow_up])
        [(version, stored, created)] = await _embedding_rows(analytics, "v1")
        assert version == MODEL_VERSION
        np.testing.assert_allclose(stored, vector, rtol=1e-6)
        assert created.replace(tzinfo=UTC) == at.replace(minute=5)
        [(videos,)] = await analytics.query_rows(
            "SELECT count() FROM videos FINAL WHERE video_id = 'v1'"
        )
        assert videos == 1  # the follow-up is an upsert of the same video
    finally:
        await analytics.aclose()


# --------------------------------------------------------------------------- Triton outage


async def test_triton_down_publishes_without_vectors_then_the_backfill_fills_them_in(
    sessionmaker: async_sessionmaker[AsyncSession],
    kafka: TansuBroker,
    triton: Triton,
    clips: dict[str, Path],
    tmp_path: Path,
) -> None:
    embedder = TritonEmbedder(triton.addr, timeout_s=2.0)
    await triton.stop()
    try:
        async with transcode_service(
            sessionmaker,
            kafka,
            tmp_path,
            embedder=embedder,
            embeddings_retry_min_s=0.5,
            embeddings_retry_max_s=1.0,
        ) as svc:
            uploaded = await svc.submit(clips["orig"])
            job = await wait_state(svc, uploaded.video_id, "succeeded", "failed", "dead_lettered")
            # Published, on the first attempt, with the embeddings left for later.
            assert job.state == "succeeded" and job.attempts == 1, job.last_error
            assert job.stage == jobs.EMBEDDINGS_PENDING
            assert await svc.store.exists(f"videos/{uploaded.video_id}/master.m3u8")
            reply = await svc.api.GetJob(
                transcode_pb2.GetJobRequest(job_id=str(job.id)), metadata=_metadata()
            )
            assert reply.job.state == transcode_pb2.JOB_STATE_SUCCEEDED
            assert reply.job.stage == "embeddings_pending"
            assert reply.job.last_error.startswith("embeddings pending")
            assert reply.job.HasField("next_attempt_at")
            listed = await svc.api.ListJobs(
                transcode_pb2.ListJobsRequest(video_id=uploaded.video_id), metadata=_metadata()
            )
            assert [j.stage for j in listed.jobs] == ["embeddings_pending"]

            [(first_value, first_headers)] = await kafka_records(
                kafka.bootstrap, topics.VIDEO_PUBLISHED.name, uploaded.video_id
            )
            first = events_pb2.VideoPublished.FromString(first_value)
            assert first.master_playlist_key and first.title == uploaded.title
            assert not first.visual_embedding and not first.text_embedding
            assert not first.video_embedding and not first.embedding_model_version

            # Retried with backoff while Triton stays down.
            async def retried_twice() -> bool:
                return (await svc.job(uploaded.video_id)).embedding_attempts >= 3

            await eventually(retried_twice, 20, "two more embedding tries")
            assert (await svc.job(uploaded.video_id)).stage == jobs.EMBEDDINGS_PENDING

            await triton.start()

            async def filled() -> bool:
                return (await svc.job(uploaded.video_id)).stage == "done"

            await eventually(filled, 30, "the backfill to fill the embeddings in")
            job = await svc.job(uploaded.video_id)
            assert job.state == "succeeded" and job.last_error is None
            records = await kafka_records(
                kafka.bootstrap, topics.VIDEO_PUBLISHED.name, uploaded.video_id, expect=2
            )
            assert len(records) == 2
            (_, (second_value, second_headers)) = records
            second = events_pb2.VideoPublished.FromString(second_value)
    finally:
        await embedder.close()
        if triton.proc.proc is None or triton.proc.proc.poll() is not None:
            with contextlib.suppress(Exception):
                await triton.start()

    # The follow-up: a new event id, the same video field for field, plus the vectors.
    assert second.meta.event_id == second_headers[EVENT_ID_HEADER]
    assert second.meta.event_id != first.meta.event_id
    assert second.published_at == first.published_at
    assert second.master_playlist_key == first.master_playlist_key
    assert list(second.renditions) == list(first.renditions)
    assert second.embedding_model_version == MODEL_VERSION
    for field, dim in (
        ("visual_embedding", 1280),
        ("text_embedding", 384),
        ("video_embedding", 256),
    ):
        vector = np.array(getattr(second, field))
        assert vector.shape == (dim,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    # The video vector is the shared space's combination of the two others.
    video = embedding_space.combine(
        np.array(second.visual_embedding), np.array(second.text_embedding)
    )
    assert cosine(video, np.array(second.video_embedding)) > 0.9999

    # svc_stream's analytics sink takes both events (and their redelivery) as one video
    # with one embedding row.
    analytics = Analytics(f"chdb://{tmp_path / 'chdb'}")
    try:
        await ensure_schema(analytics)
        sink = AnalyticsSink(analytics, None)  # type: ignore[arg-type] - no counter deltas here
        received = [
            ReceivedEvent(h[EVENT_ID_HEADER], topics.VIDEO_PUBLISHED.name, 0, n, b"", v, h)
            for n, (v, h) in enumerate(
                [(first_value, first_headers), (second_value, second_headers)]
            )
        ]
        await sink.apply(received)
        await sink.apply(received)
        rows = await _embedding_rows(analytics, uploaded.video_id)
        assert len(rows) == 1 and rows[0][0] == MODEL_VERSION
        np.testing.assert_allclose(rows[0][1], list(second.video_embedding), rtol=1e-6)
    finally:
        await analytics.aclose()
