"""One trace through the outbox and Kafka: request span → PRODUCER span → CONSUMER span.

Real Postgres and a real Tansu broker. The event is enqueued inside a span (as a
request would), the relay sends it later from a background task with no current span,
and the consumer handles it: the relay's PRODUCER span must be a child of the request's
span (the context stored with the outbox row) and the consumer's span a child of the
PRODUCER span (the record's ``traceparent``).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels.events import IdempotentConsumer, ReceivedEvent
from reels.outbox import OutboxRelay, enqueue
from tests.polling import eventually

if TYPE_CHECKING:
    from tests.fixtures.infra import TansuBroker

FAST_GROUP = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 500, "commit_timeout": 2.0}


def _exporter() -> InMemorySpanExporter:
    """Collect this process's spans in memory (installing an SDK provider if none is)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "another tracer provider is installed"
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def test_relay_publishes_in_the_enqueuers_trace_and_the_consumer_continues_it(
    sessionmaker: async_sessionmaker[AsyncSession], kafka: TansuBroker
) -> None:
    exporter = _exporter()
    topic = f"trace.outbox.{uuid.uuid4().hex[:10]}"
    await kafka.create_topics(topic)
    handled: list[ReceivedEvent] = []
    seen_in_handler: list[trace.SpanContext] = []

    async def handler(session: AsyncSession, event: ReceivedEvent) -> None:
        seen_in_handler.append(trace.get_current_span().get_span_context())
        handled.append(event)

    tracer = trace.get_tracer("test")
    event_id = uuid.uuid4()
    with tracer.start_as_current_span("request") as request_span:
        async with sessionmaker() as session, session.begin():
            await enqueue(session, topic, "k", b"payload", event_id)
    request = request_span.get_span_context()

    relay = OutboxRelay(sessionmaker, bootstrap=kafka.bootstrap, poll_interval=0.05)
    consumer = IdempotentConsumer(
        [topic], f"trace-{uuid.uuid4().hex[:8]}", handler, sessionmaker,
        bootstrap=kafka.bootstrap, **FAST_GROUP,
    )  # fmt: skip
    # Started after the request span ended: the context travels in the data only.
    tasks = [
        asyncio.create_task(relay.run()),
        asyncio.create_task(consumer.run()),
    ]
    try:

        async def done() -> bool:
            return bool(handled)

        await eventually(done, 30, "the consumer did not get the event")
    finally:
        relay.stop()
        await consumer.stop()
        await asyncio.gather(*tasks, return_exceptions=True)

    spans: list[ReadableSpan] = [
        s for s in exporter.get_finished_spans() if s.context.trace_id == request.trace_id
    ]
    by_kind = {s.kind: s for s in spans if s.name.startswith(topic)}
    producer = by_kind[trace.SpanKind.PRODUCER]
    consumed = by_kind[trace.SpanKind.CONSUMER]
    assert producer.name == f"{topic} publish"
    assert producer.parent is not None and producer.parent.span_id == request.span_id
    assert producer.attributes["messaging.message.id"] == str(event_id)
    assert "messaging.kafka.offset" in producer.attributes
    assert consumed.parent is not None and consumed.parent.span_id == producer.context.span_id
    assert consumed.attributes["messaging.message.id"] == str(event_id)
    # The handler ran inside the consumer's span (what it enqueues or calls joins the trace).
    assert seen_in_handler[0].span_id == consumed.context.span_id
    # The record carries the PRODUCER span's context, not the request's.
    traceparent = handled[0].headers["traceparent"]
    assert traceparent.split("-")[2] == f"{producer.context.span_id:016x}"
