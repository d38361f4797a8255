"""A transcode job keeps the trace it was queued in: every attempt's span continues it.

Real Postgres. The job is created inside a CONSUMER span (as svc_transcode's consumer
creates it); two attempts then run through the real worker code, the first failing
transiently (retry), the second on a *new* worker (a restarted process knows nothing
but the row). Both attempts' ``transcode.job`` spans must be children of the consumer's
span. The pipeline itself is replaced by a stand-in: what is under test is where the
context comes from, not ffmpeg.
"""

from __future__ import annotations

import uuid

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from reels.v1 import events_pb2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import metrics
from svc_transcode import jobs
from svc_transcode.status import NoStatusReporter
from svc_transcode.worker import TranscodeWorker, WorkerConfig, _Run


def _exporter() -> InMemorySpanExporter:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "another tracer provider is installed"
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def _worker(sessionmaker: async_sessionmaker[AsyncSession]) -> TranscodeWorker:
    return TranscodeWorker(
        sessionmaker,
        None,  # type: ignore[arg-type] - the stand-in attempt touches no storage
        NoStatusReporter(),
        None,  # type: ignore[arg-type]
        WorkerConfig(backoff_min_s=0.0, backoff_max_s=0.0),
    )


async def test_every_attempt_continues_the_trace_the_job_was_queued_in(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    exporter = _exporter()
    tracer = trace.get_tracer("test")
    video_id = str(uuid.uuid4())
    with tracer.start_as_current_span("video.uploaded process", kind=trace.SpanKind.CONSUMER):
        consumer = trace.get_current_span().get_span_context()
        async with sessionmaker() as session, session.begin():
            job_id = await jobs.create_job(
                session,
                video_id=video_id,
                source_event_id=str(uuid.uuid4()),
                original_key=f"originals/{video_id}.mp4",
                creator_id="creator-1",
                payload=events_pb2.VideoUploaded(video_id=video_id).SerializeToString(),
                max_attempts=3,
            )
    assert job_id is not None
    assert await jobs.queue_depth(sessionmaker) == 1

    seen: list[trace.Span] = []

    def stand_in(worker: TranscodeWorker, *, transient: bool):  # type: ignore[no-untyped-def]
        async def attempt(run: _Run) -> None:
            seen.append(trace.get_current_span())
            await worker._fail(run, "stand-in failure", transient=transient)  # noqa: SLF001

        return attempt

    # Attempt 1 fails transiently and is queued again; attempt 2 runs on a new worker.
    for transient in (True, False):
        worker = _worker(sessionmaker)
        worker._attempt = stand_in(worker, transient=transient)  # type: ignore[method-assign]  # noqa: SLF001
        job = await jobs.claim(sessionmaker, worker.worker_id, 30.0)
        assert job is not None and job.id == job_id
        assert await jobs.queue_depth(sessionmaker) == 0
        assert f"{consumer.trace_id:032x}" in job.trace_context["traceparent"]
        await worker._run_job(job)  # noqa: SLF001

    assert len(seen) == 2
    job_spans = [s for s in exporter.get_finished_spans() if s.name == "transcode.job"]
    job_spans = [s for s in job_spans if s.attributes.get("reels.job_id") == str(job_id)]
    assert len(job_spans) == 2
    for span in job_spans:
        assert span.context.trace_id == consumer.trace_id
        assert span.parent is not None and span.parent.span_id == consumer.span_id
    assert [s.attributes["reels.outcome"] for s in job_spans] == [
        metrics.RETRIED,
        metrics.FAILED,
    ]
    assert [s.attributes["reels.attempt"] for s in job_spans] == [1, 2]
