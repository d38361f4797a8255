"""The embeddings backfill: vectors for videos that were published without them.

When Triton is down or times out at publish, the worker publishes the video anyway
and leaves the job ``succeeded`` with ``stage = 'embeddings_pending'``, the sampled
frames and the sent ``video.published`` kept in the job row (jobs.py). This loop,
beside the worker in every svc_transcode process that runs one, claims due jobs one
at a time (``FOR UPDATE SKIP LOCKED``, so any number of processes share the work),
embeds the stored frames and the text again, and in one transaction sets the stage
to ``done``, drops the frames and writes the follow-up event.

The follow-up is a second ``video.published`` for the same video, field for field
the first one plus the vectors, under a new event id (messages.py). It is a
republish, not a new kind of event, because every consumer already treats
``video.published`` as an upsert keyed by ``video_id``: svc_stream's catalog replaces
the row, the analytics tables keep the newest version and add the
``video_embeddings`` row, svc_rank indexes the vectors.

Failures: Triton still unavailable → due again after an exponential backoff
(``REELS_EMBEDDINGS_RETRY_MIN_S`` 10 s doubling up to ``REELS_EMBEDDINGS_RETRY_MAX_S``
600 s, ±20 %), for as long as it takes: an outage of hours must not leave videos
without vectors forever, and a due check is one indexed query. Stored frames that
cannot be read (a bug, not an outage) → ``embeddings_failed``, no more tries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from opentelemetry import trace
from reels.v1 import events_pb2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels.events import extract_trace_context
from svc_transcode import frames, jobs, messages
from svc_transcode.embeddings import EmbeddingUnavailable, VideoEmbedder, video_text
from svc_transcode.worker import WorkerConfig, embeddings_backoff

log = logging.getLogger(__name__)
tracer = trace.get_tracer("svc_transcode.backfill")

# How long a claimed try owns its job: well past the embedder's own deadline.
MIN_LEASE_S = 60.0


class EmbeddingBackfill:
    """Claims and embeds pending jobs until ``stop()``; see the module docstring."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        embedder: VideoEmbedder,
        config: WorkerConfig | None = None,
        *,
        lease_s: float = MIN_LEASE_S,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.embedder = embedder
        self.config = config or WorkerConfig()
        self.lease_s = lease_s
        self.filled = 0
        """Videos whose follow-up event this backfill wrote (tests, logs)."""
        self.failed_tries = 0
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Work through due jobs, then poll every ``poll_s``; database outages only slow it."""
        failures = 0
        while not self._stopping.is_set():
            try:
                worked = await self.run_once()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - Postgres down: keep trying, slowly
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                log.warning("embeddings backfill: %r; retrying in %.1fs", exc, delay)
                await self._sleep(delay)
                continue
            if not worked:
                await self._sleep(self.config.poll_s)

    async def stop(self) -> None:
        """Stop after the current try (a claimed job whose try is cut short comes due
        again when its lease runs out)."""
        self._stopping.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def run_once(self) -> bool:
        """Claim one due job and try it; False when none was due."""
        claim = await jobs.claim_embeddings(self.sessionmaker, self.lease_s)
        if claim is None:
            return False
        parent = extract_trace_context(claim.trace_context)
        with tracer.start_as_current_span(
            "transcode.embeddings_backfill",
            context=parent,
            attributes={
                "reels.video_id": claim.video_id,
                "reels.job_id": str(claim.job_id),
                "reels.attempt": claim.attempts,
            },
        ):
            await self._try(claim)
        return True

    async def _try(self, claim: jobs.EmbeddingsClaim) -> None:
        try:
            if claim.frames is None or claim.event is None:
                raise ValueError("the job kept no frames or event to embed")
            sampled = await asyncio.to_thread(frames.unpack_frames, claim.frames)
            uploaded = _uploaded(claim.uploaded)
            text = video_text(uploaded.title, uploaded.description, list(uploaded.hashtags))
            vectors = await self.embedder.embed(sampled, text)
            if vectors is None:
                raise EmbeddingUnavailable("embeddings are switched off")
        except EmbeddingUnavailable as exc:
            self.failed_tries += 1
            delay = embeddings_backoff(claim.attempts, self.config)
            log.info(
                "job %s: embeddings still unavailable (try %d), next in %.0fs: %s",
                claim.job_id,
                claim.attempts,
                delay,
                exc,
            )
            await jobs.retry_embeddings_later(
                self.sessionmaker, claim.job_id, error=str(exc), delay_s=delay
            )
            return
        except ValueError as exc:
            self.failed_tries += 1
            log.error("job %s: embeddings cannot be computed: %s", claim.job_id, exc)
            await jobs.retry_embeddings_later(
                self.sessionmaker, claim.job_id, error=str(exc), delay_s=None
            )
            return
        event = messages.video_published_with_embeddings(claim.event, vectors)
        async with self.sessionmaker() as session, session.begin():
            done = await jobs.finish_embeddings(session, claim.job_id, [event])
        if done:
            self.filled += 1
            log.info(
                "job %s: embeddings of video %s filled in (try %d); follow-up event %s",
                claim.job_id,
                claim.video_id,
                claim.attempts,
                event.event_id,
            )


def _uploaded(payload: bytes) -> events_pb2.VideoUploaded:
    """The job's original video.uploaded: the text is embedded from the same title,
    description and hashtags as at publish (video.published has no description)."""
    try:
        return events_pb2.VideoUploaded.FromString(payload)
    except Exception:  # noqa: BLE001 - the consumer checked it; be safe anyway
        return events_pb2.VideoUploaded()
