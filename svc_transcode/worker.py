"""The transcode worker: claims jobs from Postgres, runs the pipeline, publishes the outcome.

Each worker process runs up to ``concurrency`` (REELS_TRANSCODE_CONCURRENCY) jobs at once (default
1: one ladder encode already saturates two cores); more processes, on this machine
or others, mean more throughput, since claims use ``FOR UPDATE SKIP LOCKED``.

A claimed job is leased (``REELS_TRANSCODE_LEASE_S``, default 30 s) and a heartbeat
renews the lease every ``REELS_TRANSCODE_HEARTBEAT_S`` (default a third of it). The
heartbeat is also how a worker learns it must stop: when the renewal finds the job
cancelled, or taken over after its lease ran out, the job's task is cancelled, which
kills ffmpeg's process group and cleans the staging prefix. A worker that dies
(SIGKILL, OOM, lost node) simply stops renewing; once the lease runs out the next
claim redoes the job from the start.

Failures are routed by kind, never by parsing messages:

* permanent (``UnusableMedia``: the file is corrupt, not a video, ...; and a
  ``TranscodeError`` with ``transient=False``: ffmpeg exited with an error of its own
  that is neither a signal nor a machine fault, so the same command on the same bytes
  fails the same way — reels.media.ffmpeg_run.ffmpeg_failure) → ``failed`` at once,
  with the reason a person can read;
* transient (ffmpeg crash, kill or machine error such as a full disk; storage,
  svc_upload or Triton unavailable; any unexpected error) → retried after an exponential backoff
  (``REELS_TRANSCODE_BACKOFF_MIN_S`` 5 s doubling up to ``REELS_TRANSCODE_BACKOFF_MAX_S``
  30 s, ±20 % jitter) until ``REELS_TRANSCODE_MAX_ATTEMPTS`` (3), then ``dead_lettered``;
* an NSFW model outage (``nsfw.NsfwModelOut``: unloaded, Triton down or too slow) →
  back to queued WITHOUT counting the attempt, after a backoff capped by
  ``model_out_backoff_max_s`` (``_wait_for_model``): it waits for the model, never
  dead-letters, and the creator never sees Triton's address.

Both terminal failures report FAILED to svc_upload and write the original event to
``video.uploaded.dlq`` and a ``video.failed`` event through the outbox, in the same
transaction as the state change. Success reports PUBLISHED and writes
``video.published`` the same way. The work directory is always removed.

Embeddings (svc_transcode/embeddings.py) are computed between the encode and the
upload: frames sampled from the lowest rendition (frames.py), one Triton request for
them and one for the text. When Triton is down or times out the video is published
anyway, without vectors, and the job ends ``succeeded`` with stage
``embeddings_pending``; the backfill (backfill.py) fills them in later. Only the
frame sampling (our ffmpeg on our own output) fails the attempt like any other
pipeline step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from opentelemetry import trace
from reels.v1 import common_pb2, events_pb2, upload_pb2
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import metrics
from reels.events import extract_trace_context
from reels.media.ffmpeg_run import TranscodeError, UnusableMedia
from reels.storage import ObjectStore
from svc_transcode import frames, hls, jobs, messages, moderation, pipeline, publish
from svc_transcode.embeddings import (
    EmbeddingUnavailable,
    VideoEmbedder,
    VideoEmbeddings,
    video_text,
)
from svc_transcode.models import TranscodeJob
from svc_transcode.nsfw import (
    MODEL_OUT_PUBLIC,
    NoNsfwClassifier,
    NsfwClassifier,
    NsfwModelOut,
    NsfwUnavailable,
)
from svc_transcode.status import StatusReporter, StatusReportError

log = logging.getLogger(__name__)
tracer = trace.get_tracer("svc_transcode.worker")

# Share of the progress bar each step gets; the pipeline's own 0-100 maps into PIPELINE_END.
PIPELINE_END = 95.0
EMBEDDINGS_AT, UPLOAD_AT, PUBLISH_AT = 95.5, 96.0, 99.0
FINAL_REPORT_TRIES = 3
CANCELLED_REASON = "processing was cancelled by an operator"
QUEUE_DEPTH_EVERY_S = 5.0  # how often a worker reads the queue depth for the gauge


@dataclass(frozen=True)
class WorkerConfig:
    """Worker settings (from ``Settings.worker_config``; tests build their own)."""

    concurrency: int = 1
    lease_s: float = 30.0
    heartbeat_s: float = 10.0
    poll_s: float = 1.0
    max_attempts: int = 3
    backoff_min_s: float = 5.0
    backoff_max_s: float = 30.0
    preset: str = hls.DEFAULT_PRESET
    work_root: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    progress_interval_s: float = 0.5
    progress_step: float = 1.0
    # Embedding retries of published videos (backfill.py): from the minimum, doubling
    # per attempt up to the maximum, ±20 %, with no limit on attempts.
    embeddings_retry_min_s: float = 10.0
    embeddings_retry_max_s: float = 600.0
    # NSFW moderation thresholds (svc_transcode/moderation.py).
    nsfw: moderation.Thresholds = field(default_factory=moderation.Thresholds)
    # NSFW model outage (nsfw.NsfwModelOut): the job waits, attempts untouched, from
    # backoff_min_s doubling per consecutive outage up to this cap, ±20 %.
    model_out_backoff_max_s: float = 120.0


def backoff_delay(attempt: int, config: WorkerConfig) -> float:
    """Exponential from the minimum, capped, with jitter so a burst of failures
    (svc_upload restarting) does not come back as a burst of retries."""
    base = config.backoff_min_s * 2 ** max(0, attempt - 1)
    jittered = base * random.uniform(0.8, 1.2)
    return max(config.backoff_min_s, min(config.backoff_max_s, jittered))


def embeddings_backoff(attempt: int, config: WorkerConfig) -> float:
    """Delay before embedding attempt ``attempt + 1`` of a published video."""
    base = config.embeddings_retry_min_s * 2 ** min(max(0, attempt - 1), 20)
    jittered = base * random.uniform(0.8, 1.2)
    return max(config.embeddings_retry_min_s, min(config.embeddings_retry_max_s, jittered))


@dataclass(frozen=True)
class _Embedded:
    """The embedding step's outcome: vectors, or the frames to retry with later."""

    vectors: VideoEmbeddings | None = None
    pending_frames: bytes | None = None
    error: str = ""


class ModerationRejected(Exception):
    """The NSFW classifier rejected the video: a permanent failure with its reason."""


def classify(exc: BaseException) -> tuple[str, bool]:
    """(reason, transient) for a failed attempt."""
    if isinstance(exc, ModerationRejected):
        return str(exc), False
    if isinstance(exc, UnusableMedia):
        return exc.reason, False
    if isinstance(exc, TranscodeError):
        return str(exc), exc.transient
    if isinstance(exc, StatusReportError):
        return str(exc), exc.transient
    if isinstance(exc, (publish.StorageError, EmbeddingUnavailable, NsfwUnavailable, OSError)):
        return str(exc) or repr(exc), True
    # A bug or an outage we did not foresee: retrying costs little, and after the
    # last attempt the job is dead-lettered where an operator sees it.
    return f"unexpected error: {exc!r}", True


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text)


@dataclass
class _Run:
    """One attempt of one job, as the worker's tasks share it."""

    job: TranscodeJob
    uploaded: events_pb2.VideoUploaded
    stage: str = "starting"
    percent: float = 0.0
    lost: bool = False
    sent_stage: str = ""
    sent_percent: float = -100.0
    sent_at: float = 0.0
    progress_due: asyncio.Event = field(default_factory=asyncio.Event)
    # Held while a status report is in flight; once `final` is set (PUBLISHED or
    # FAILED sent) no PROCESSING report may follow and overtake it.
    report_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    final: bool = False
    # How the attempt ended (reels.metrics outcomes; "" while running or when released).
    outcome: str = ""
    started: float = field(default_factory=time.monotonic)
    # The NSFW classifier's finding, sent with the final status report.
    moderation: common_pb2.VideoModeration | None = None

    @property
    def job_id(self) -> uuid.UUID:
        return self.job.id

    @property
    def video_id(self) -> str:
        return self.job.video_id


class TranscodeWorker:
    """Claims and runs jobs until ``stop()``; see the module docstring for the protocol."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        reporter: StatusReporter,
        embedder: VideoEmbedder,
        config: WorkerConfig | None = None,
        *,
        worker_id: str | None = None,
        classifier: NsfwClassifier | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.store = store
        self.reporter = reporter
        self.embedder = embedder
        self.classifier: NsfwClassifier = classifier or NoNsfwClassifier()
        self.config = config or WorkerConfig()
        self.worker_id = worker_id or (
            f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        )
        self.active: dict[uuid.UUID, asyncio.Task[None]] = {}
        self.finished = 0
        """Attempts this worker finished (any outcome); for tests and metrics."""
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._draining = False
        self._depth_at = -QUEUE_DEPTH_EVERY_S
        self._model_outs = 0
        """Consecutive NSFW model outages this worker met (its backoff); 0 once it answers."""

    # ----------------------------------------------------------------------- loop

    def wake(self) -> None:
        """Look for work now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Claim jobs while there is room, until ``stop()``; database outages only slow it."""
        failures = 0
        while not self._stopping.is_set():
            await self._observe_queue_depth()
            if len(self.active) >= self.config.concurrency:
                await self._sleep(self.config.poll_s)
                continue
            try:
                job = await jobs.claim(self.sessionmaker, self.worker_id, self.config.lease_s)
                failures = 0
            except Exception as exc:  # noqa: BLE001 - Postgres down: keep trying, slowly
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                log.warning("transcode worker: claiming failed (%r); retrying in %.1fs", exc, delay)
                await self._sleep(delay)
                continue
            if job is None:
                await self._sleep(self.config.poll_s)
                continue
            if self._stopping.is_set():  # stop() came while we were claiming: give it back
                await jobs.release(self.sessionmaker, job.id, self.worker_id)
                break
            task = asyncio.create_task(self._run_job(job), name=f"transcode-{job.id}")
            self.active[job.id] = task
            task.add_done_callback(lambda _t, jid=job.id: self._done(jid))

    def _done(self, job_id: uuid.UUID) -> None:
        self.active.pop(job_id, None)
        self.finished += 1
        self._wake.set()

    async def stop(self, grace_s: float) -> None:
        """Stop claiming; give running jobs ``grace_s`` to finish, then release their leases.

        A released job goes back to ``queued`` (the attempt is not counted), so another
        worker picks it up at once instead of waiting for the lease to run out.
        """
        self._stopping.set()
        self._wake.set()
        tasks = list(self.active.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        if pending:
            self._draining = True
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _observe_queue_depth(self) -> None:
        """Set the queue-depth gauge (reels.metrics), at most every QUEUE_DEPTH_EVERY_S."""
        now = time.monotonic()
        if now - self._depth_at < QUEUE_DEPTH_EVERY_S:
            return
        self._depth_at = now
        try:
            metrics.transcode_queue_depth.set(await jobs.queue_depth(self.sessionmaker))
        except Exception as exc:  # noqa: BLE001 - a metric never stops the worker
            log.debug("transcode worker: queue depth not read: %r", exc)

    # ----------------------------------------------------------------------- one job

    async def _run_job(self, job: TranscodeJob) -> None:
        try:
            uploaded = events_pb2.VideoUploaded.FromString(job.payload)
        except Exception:  # noqa: BLE001 - the consumer checked it; be safe anyway
            uploaded = events_pb2.VideoUploaded(video_id=job.video_id)
        run = _Run(job, uploaded)
        # The trace the consumer stored with the job (every attempt continues it); jobs
        # queued before t0003 fall back to the upload's context in the event.
        parent = extract_trace_context(job.trace_context or dict(uploaded.meta.trace_context))
        me = asyncio.current_task()
        assert me is not None
        with tracer.start_as_current_span(
            "transcode.job",
            context=parent,
            attributes={
                "reels.video_id": job.video_id,
                "reels.job_id": str(job.id),
                "reels.attempt": job.attempts,
            },
        ):
            helpers = [
                asyncio.create_task(self._heartbeat(run, me)),
                asyncio.create_task(self._progress_pump(run, me)),
            ]
            stopped = False
            try:
                await self._attempt(run)
            except Exception:  # noqa: BLE001 - outside the attempt's own routing (no work dir)
                # The lease runs out and the next claim retries it; say why meanwhile.
                log.exception("job %s: attempt could not start", job.id)
            except asyncio.CancelledError:
                if not (run.lost and not self._draining):
                    if self._draining:
                        with contextlib.suppress(Exception):
                            await asyncio.shield(
                                jobs.release(self.sessionmaker, job.id, self.worker_id)
                            )
                        log.info("job %s released for another worker (draining)", job.id)
                    raise
                # Cancelled by an operator, or another worker took over: not an error.
                me.uncancel()
                stopped = True
            finally:
                for helper in helpers:
                    helper.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)
            if stopped:
                await self._after_stop(run)
            if run.outcome:
                trace.get_current_span().set_attribute("reels.outcome", run.outcome)
                metrics.record_transcode_attempt(run.outcome, time.monotonic() - run.started)

    async def _after_stop(self, run: _Run) -> None:
        """Once ffmpeg is dead and no progress report is in flight, tell svc_upload
        about a cancellation (a takeover needs nothing: the new owner reports)."""
        async with self.sessionmaker() as session:
            state = await session.scalar(
                select(TranscodeJob.state).where(TranscodeJob.id == run.job_id)
            )
        log.info("job %s (video %s) stopped: it is %s", run.job_id, run.video_id, state)
        if state == jobs.JobState.CANCELLED:
            run.outcome = metrics.CANCELLED
            await self._report_failed(run, CANCELLED_REASON, stage="cancelled")

    async def _attempt(self, run: _Run) -> None:
        job, cfg = run.job, self.config
        if job.attempts > job.max_attempts:
            # Claimed again after its lease ran out, with the budget spent: the worker
            # died during every attempt (a file that crashes or OOMs the machine).
            await self._fail(
                run,
                f"the worker stopped (crash, kill or lost node) during each of "
                f"{job.max_attempts} attempts",
                transient=True,
            )
            return
        log.info(
            "job %s: attempt %d/%d for video %s",
            job.id,
            job.attempts,
            job.max_attempts,
            job.video_id,
        )
        work_dir = Path(
            await asyncio.to_thread(
                tempfile.mkdtemp, prefix=f"transcode-{job.id}-", dir=cfg.work_root
            )
        )
        staging = publish.staging_prefix(job.video_id, str(job.id))
        published = False
        try:
            self._progress(run, "download", 0.0, force=True)
            src = work_dir / ("source" + PurePosixPath(job.original_key).suffix[:10])
            await publish.download(self.store, job.original_key, src)

            def on_progress(stage: str, percent: float) -> None:
                self._progress(run, stage, percent * PIPELINE_END / 100.0)

            result = await pipeline.transcode(src, work_dir / "out", on_progress, preset=cfg.preset)
            sampled = await self._sample(work_dir / "out", result)
            verdict = None
            if self.classifier.enabled and sampled is not None:
                self._progress(run, "moderation", EMBEDDINGS_AT, force=True)
                verdict = await self._moderate(run, sampled, result)
            self._progress(run, "embeddings", EMBEDDINGS_AT, force=True)
            embedded = await self._embed(run, sampled)
            self._progress(run, "upload", UPLOAD_AT, force=True)
            staged = await publish.stage(self.store, work_dir / "out", staging)
            self._progress(run, "publish", PUBLISH_AT, force=True)
            if not await jobs.renew_lease(
                self.sessionmaker, job.id, self.worker_id, cfg.lease_s, stage="publish"
            ):
                run.lost = True
                raise asyncio.CancelledError("job no longer ours")
            final = publish.final_prefix(job.video_id)
            await publish.publish(self.store, staged, staging, final)
            published = True
            video = publish.PublishedVideo(job.video_id, result)
            if verdict is not None and verdict.decision == moderation.HOLD:
                await self._hold(run, video, embedded, sampled, verdict)
            else:
                await self._succeed(run, video, embedded)
        except NsfwModelOut as exc:
            # The model is out, not this video: wait for it without spending attempts.
            await self._wait_for_model(run, str(exc))
        except Exception as exc:  # noqa: BLE001 - every failure is routed by classify()
            reason, transient = classify(exc)
            log.warning(
                "job %s failed at %s (%s): %s",
                job.id,
                run.stage,
                "transient" if transient else "permanent",
                _first_line(reason),
            )
            public = MODEL_OUT_PUBLIC if isinstance(exc, NsfwUnavailable) else None
            await self._fail(run, reason, transient=transient, public=public)
        finally:
            await asyncio.to_thread(shutil.rmtree, work_dir, True)
            if not published:
                await publish.discard(self.store, staging)

    async def _sample(self, out_dir: Path, result: pipeline.TranscodeResult) -> np.ndarray | None:
        """The frames both the NSFW classifier and the visual embedding see (one ffmpeg
        run on the lowest rendition, frames.py), or None when neither is on. Sampling
        errors propagate (TranscodeError: retried like any pipeline failure)."""
        if not (self.embedder.enabled or self.classifier.enabled):
            return None
        low = out_dir / result.renditions[-1].playlist  # highest first: the last is cheapest
        return await frames.sample_frames(low, result.duration_s)

    async def _moderate(
        self, run: _Run, sampled: np.ndarray, result: pipeline.TranscodeResult
    ) -> moderation.Verdict:
        """Score the frames (one Triton request) and decide; a rejection raises
        ModerationRejected (permanent), Triton's failure NsfwUnavailable (transient)."""
        scored = await self.classifier.score(sampled)
        self._model_outs = 0
        times = frames.frame_times(result.duration_s)[: len(sampled)]
        verdict = moderation.verdict_of(scored, times, self.config.nsfw)
        run.moderation = verdict.to_proto()
        log.info(
            "job %s: nsfw score %.4f over %d frames (%s %s): %s",
            run.job_id,
            verdict.score,
            len(sampled),
            verdict.model_name,
            verdict.model_version,
            common_pb2.VideoModerationDecision.Name(verdict.decision),  # type: ignore[arg-type]
        )
        if verdict.decision == moderation.REJECT:
            # svc_upload writes the rejection's video.moderated in the transaction of
            # this report's status change, so the report must arrive before the job
            # ends (as for a hold): an svc_upload outage (StatusReportError, transient)
            # retries the job instead of ending it with the decision unrecorded.
            await self._report_final(
                run,
                upload_pb2.UpdateVideoStatusRequest(
                    video_id=run.video_id,
                    status=common_pb2.VIDEO_STATUS_FAILED,
                    stage=run.stage,
                    percent=run.percent,
                    failure_reason=verdict.reason(),
                    job_id=str(run.job_id),
                    moderation=run.moderation,
                ),
            )
            raise ModerationRejected(verdict.reason())
        return verdict

    async def _embed(self, run: _Run, sampled: np.ndarray | None) -> _Embedded:
        """Vectors for the video, or (Triton unavailable) the frames to retry with.

        Embedding errors never propagate.
        """
        if not self.embedder.enabled or sampled is None:
            return _Embedded()
        text = video_text(run.uploaded.title, run.uploaded.description, list(run.uploaded.hashtags))
        try:
            return _Embedded(vectors=await self.embedder.embed(sampled, text))
        except EmbeddingUnavailable as exc:
            log.warning(
                "job %s: embeddings unavailable, publishing without them: %s", run.job_id, exc
            )
            packed = await asyncio.to_thread(frames.pack_frames, sampled)
            return _Embedded(pending_frames=packed, error=str(exc))

    # ----------------------------------------------------------------------- outcomes

    def _outputs_report(
        self, run: _Run, video: publish.PublishedVideo, status: int, stage: str
    ) -> upload_pb2.UpdateVideoStatusRequest:
        result = video.result
        return upload_pb2.UpdateVideoStatusRequest(
            video_id=run.video_id,
            status=status,  # type: ignore[arg-type]
            stage=stage,
            percent=100.0,
            duration=messages.duration_of(result.duration_s),
            width=result.width,
            height=result.height,
            renditions=messages.renditions_of(video),
            thumbnail_key=video.thumbnail_key,
            preview_key=video.preview_key,
            storyboard_key=video.storyboard_key,
            master_playlist_key=video.master_playlist_key,
            job_id=str(run.job_id),
            moderation=run.moderation,
        )

    async def _succeed(self, run: _Run, video: publish.PublishedVideo, embedded: _Embedded) -> None:
        result = video.result
        request = self._outputs_report(run, video, common_pb2.VIDEO_STATUS_PUBLISHED, "done")
        async with self.sessionmaker() as session, session.begin():
            locked = await jobs.lock_owned(session, run.job_id, self.worker_id)
            if locked is None:
                run.lost = True
                log.warning("job %s was cancelled or taken over as it finished", run.job_id)
                return
            try:
                # Retried here: the outputs are already published, and a brief svc_upload
                # outage must not send the whole job back through the encoder.
                await self._report_final(run, request)
            except StatusReportError as exc:
                if not exc.transient:
                    # svc_upload refuses the video (deleted meanwhile): take the outputs down.
                    await publish.discard(self.store, video.prefix)
                raise
            event = messages.video_published(run.uploaded, video, embedded.vectors)
            pending = None
            if embedded.pending_frames is not None:
                pending = jobs.PendingEmbeddings(
                    frames=embedded.pending_frames,
                    event=event.payload,
                    error=embedded.error,
                    retry_in_s=embeddings_backoff(1, self.config),
                )
            await jobs.mark_succeeded(session, locked, [event], pending=pending)
        run.outcome = metrics.SUCCEEDED
        log.info(
            "job %s: video %s published (%d renditions, embeddings %s)",
            run.job_id,
            run.video_id,
            len(result.renditions),
            "pending" if pending else "included" if embedded.vectors is not None else "off",
        )

    async def _hold(
        self,
        run: _Run,
        video: publish.PublishedVideo,
        embedded: _Embedded,
        sampled: np.ndarray | None,
        verdict: moderation.Verdict,
    ) -> None:
        """Held for review: the outputs are in the store, svc_upload is told IN_REVIEW
        (with the top frames, written to the store first), and the video.published the
        video will get is kept in the job row instead of the outbox (jobs.mark_held)
        until a moderator approves it (review_consumer.py)."""
        keys: dict[int, str] = {}
        if sampled is not None:
            for i in verdict.top:
                keys[i] = moderation.frame_key(run.video_id, i)
                data = await asyncio.to_thread(moderation.png, sampled[i])
                await self.store.put_bytes(keys[i], data)
        run.moderation = verdict.to_proto(keys)
        request = self._outputs_report(
            run, video, common_pb2.VIDEO_STATUS_IN_REVIEW, moderation.IN_REVIEW_STAGE
        )
        async with self.sessionmaker() as session, session.begin():
            locked = await jobs.lock_owned(session, run.job_id, self.worker_id)
            if locked is None:
                run.lost = True
                log.warning("job %s was cancelled or taken over as it finished", run.job_id)
                return
            try:
                await self._report_final(run, request)
            except StatusReportError as exc:
                if not exc.transient:
                    await publish.discard(self.store, video.prefix)
                raise
            event = messages.video_published(run.uploaded, video, embedded.vectors)
            await jobs.mark_held(
                session,
                locked,
                event=event.payload,
                frames=embedded.pending_frames,
                error=embedded.error,
            )
        run.outcome = metrics.SUCCEEDED
        log.info(
            "job %s: video %s held for review (nsfw score %.4f)",
            run.job_id,
            run.video_id,
            verdict.score,
        )

    async def _wait_for_model(self, run: _Run, detail: str) -> None:
        """Back to queued after a capped backoff, the attempt NOT counted: an NSFW model
        outage (unloaded, Triton down or too slow) says nothing about this video, and
        publishing unchecked is not an option (fail closed). The video stays
        PROCESSING at stage "moderation"; the detail (with Triton's address) goes to the
        log and the job's last_error for operators, never to the creator."""
        self._model_outs += 1
        base = self.config.backoff_min_s * 2 ** min(self._model_outs - 1, 20)
        cap = max(self.config.backoff_min_s, self.config.model_out_backoff_max_s)
        delay = max(self.config.backoff_min_s, min(cap, base * random.uniform(0.8, 1.2)))
        async with self.sessionmaker() as session, session.begin():
            locked = await jobs.lock_owned(session, run.job_id, self.worker_id)
            if locked is None:
                run.lost = True
                return
            await jobs.schedule_retry(
                session,
                locked,
                error=f"{MODEL_OUT_PUBLIC}: {detail}",
                delay_s=delay,
                count_attempt=False,
                stage="moderation",
            )
        run.outcome = metrics.RETRIED
        log.warning(
            "job %s: nsfw model unavailable (%s); waiting %.1fs, attempt not counted",
            run.job_id,
            detail,
            delay,
        )

    async def _fail(
        self, run: _Run, reason: str, *, transient: bool, public: str | None = None
    ) -> None:
        """Retry later, or finish as failed / dead-lettered with the events and report.

        ``public``: what the creator reads instead of ``reason`` (which may name
        internal addresses); ``reason`` still goes to the job row and the log."""
        async with self.sessionmaker() as session, session.begin():
            locked = await jobs.lock_owned(session, run.job_id, self.worker_id)
            if locked is None:
                run.lost = True
                return
            if transient and locked.attempts < locked.max_attempts:
                delay = backoff_delay(locked.attempts, self.config)
                await jobs.schedule_retry(session, locked, error=reason, delay_s=delay)
                run.outcome = metrics.RETRIED
                log.info(
                    "job %s: retry %d/%d in %.1fs",
                    run.job_id,
                    locked.attempts + 1,
                    locked.max_attempts,
                    delay,
                )
                return
            permanent = not transient
            shown = public or _first_line(reason)
            human = (
                (public or reason)
                if permanent
                else f"processing failed {locked.attempts} times; last error: {shown}"
            )
            await self._report_failed(run, human)
            await jobs.mark_terminal_failure(
                session,
                locked,
                reason=reason if permanent else f"{human}\n{reason}",
                permanent=permanent,
                stage=run.stage,
                messages=[
                    messages.dead_letter(locked, reason=human, permanent=permanent),
                    messages.video_failed(locked, reason=human, stage=run.stage),
                ],
            )
        run.outcome = metrics.FAILED if permanent else metrics.DEAD_LETTERED
        log.warning(
            "job %s: %s: %s",
            run.job_id,
            "failed" if permanent else "dead-lettered",
            _first_line(human),
        )

    async def _report_failed(self, run: _Run, reason: str, *, stage: str | None = None) -> None:
        """FAILED to svc_upload, retried briefly; never blocks the terminal transition.

        If svc_upload stays unreachable the job still ends and video.failed is still
        published (the durable record); the report failure is logged for operators.
        """
        request = upload_pb2.UpdateVideoStatusRequest(
            video_id=run.video_id,
            status=common_pb2.VIDEO_STATUS_FAILED,
            stage=stage or run.stage,
            percent=run.percent,
            failure_reason=reason,
            job_id=str(run.job_id),
            moderation=run.moderation,
        )
        try:
            await self._report_final(run, request)
        except StatusReportError as exc:
            log.error("job %s: could not report FAILED to svc_upload: %s", run.job_id, exc)

    async def _report_final(self, run: _Run, request: upload_pb2.UpdateVideoStatusRequest) -> None:
        """PUBLISHED or FAILED: after any in-flight progress report, retried briefly on
        transient errors, and never followed by another PROCESSING report."""
        async with run.report_lock:
            run.final = True
            for attempt in range(FINAL_REPORT_TRIES):
                try:
                    await self.reporter.update(request)
                    return
                except StatusReportError as exc:
                    if not exc.transient or attempt == FINAL_REPORT_TRIES - 1:
                        raise
                    await asyncio.sleep(0.5 * 2**attempt)

    # ----------------------------------------------------------------------- progress & lease

    def _progress(self, run: _Run, stage: str, percent: float, *, force: bool = False) -> None:
        """Record progress; send it when the stage changed, or it moved ≥ 1 % and ≥ 0.5 s
        passed since the last report (the pipeline reports much more often)."""
        percent = max(run.percent, min(100.0, percent))
        run.stage, run.percent = stage, percent
        now = time.monotonic()
        if (
            force
            or stage != run.sent_stage
            or (
                percent - run.sent_percent >= self.config.progress_step
                and now - run.sent_at >= self.config.progress_interval_s
            )
        ):
            run.sent_stage, run.sent_percent, run.sent_at = stage, percent, now
            run.progress_due.set()

    async def _progress_pump(self, run: _Run, job_task: asyncio.Task[None]) -> None:
        """Delivers the latest progress to the job row and svc_upload, off the pipeline's path.

        Only the newest value matters, so a slow svc_upload delays reports, never ffmpeg.
        """
        while True:
            await run.progress_due.wait()
            run.progress_due.clear()
            stage, percent = run.stage, run.percent
            try:
                ours = await jobs.renew_lease(
                    self.sessionmaker,
                    run.job_id,
                    self.worker_id,
                    self.config.lease_s,
                    stage=stage,
                    percent=percent,
                )
            except Exception as exc:  # noqa: BLE001 - progress is best effort
                log.debug("job %s: progress not recorded: %r", run.job_id, exc)
                ours = True
            if not ours:
                self._lose(run, job_task)
                return
            try:
                async with run.report_lock:
                    if run.final:
                        return
                    await self.reporter.update(
                        upload_pb2.UpdateVideoStatusRequest(
                            video_id=run.video_id,
                            status=common_pb2.VIDEO_STATUS_PROCESSING,
                            stage=stage,
                            percent=percent,
                            job_id=str(run.job_id),
                        )
                    )
            except StatusReportError as exc:
                log.debug("job %s: progress not reported: %s", run.job_id, exc)

    async def _heartbeat(self, run: _Run, job_task: asyncio.Task[None]) -> None:
        """Renew the lease; cancel the job when it is no longer ours."""
        while True:
            await asyncio.sleep(self.config.heartbeat_s)
            try:
                ours = await jobs.renew_lease(
                    self.sessionmaker, run.job_id, self.worker_id, self.config.lease_s
                )
            except Exception as exc:  # noqa: BLE001 - a DB blip; the lease has slack
                log.warning("job %s: lease renewal failed: %r", run.job_id, exc)
                continue
            if not ours:
                self._lose(run, job_task)
                return

    def _lose(self, run: _Run, job_task: asyncio.Task[None]) -> None:
        if not run.lost:
            log.info("job %s: cancelled or taken over; stopping it", run.job_id)
            run.lost = True
            job_task.cancel()
