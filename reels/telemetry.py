"""OpenTelemetry set-up: traces and metrics for every service.

With OTEL_EXPORTER_OTLP_ENDPOINT set, spans and metrics go to that collector over
OTLP/gRPC; otherwise spans are appended as JSON lines to a local file
(REELS_OTEL_FILE, default var/traces/spans.jsonl) so a developer can follow a
request without running a collector.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import grpc
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.grpc import (
    aio_client_interceptors,
    aio_server_interceptor,
    filters,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from reels import config

_configured: str | None = None


class JsonlSpanExporter(SpanExporter):
    """Appends finished spans to a file, one JSON object per line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            ctx = span.get_span_context()
            parent = span.parent
            lines.append(
                json.dumps(
                    {
                        "service": span.resource.attributes.get("service.name"),
                        "name": span.name,
                        "kind": span.kind.name,
                        "trace_id": f"{ctx.trace_id:032x}",
                        "span_id": f"{ctx.span_id:016x}",
                        "parent_span_id": f"{parent.span_id:016x}" if parent else None,
                        "start_ns": span.start_time,
                        "end_ns": span.end_time,
                        "status": span.status.status_code.name,
                        "attributes": dict(span.attributes or {}),
                    },
                    default=str,
                )
            )
        with self._lock, self.path.open("a") as f:
            f.write("\n".join(lines) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def setup_telemetry(service_name: str, settings: config.PlatformSettings | None = None) -> None:
    """Install the tracer and meter providers once per process."""
    global _configured
    if _configured is not None:
        return
    settings = settings or config.platform()
    resource = Resource.create(
        {"service.name": service_name, "service.namespace": "reels", "process.pid": os.getpid()}
    )
    endpoint = settings.otlp_endpoint or None
    tracer_provider = TracerProvider(resource=resource)
    if endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter: SpanExporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
        metric_exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True)
        readers = [PeriodicExportingMetricReader(metric_exporter)]
    else:
        exporter = JsonlSpanExporter(settings.otel_file)
        readers = []
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=200))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    _configured = service_name


def shutdown_telemetry() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush()
        provider.shutdown()


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    # Envoy health-checks every service every few seconds: tracing those would
    # bury real requests.
    return [aio_server_interceptor(filter_=filters.negate(filters.health_check()))]


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    return list(aio_client_interceptors())


_meter = metrics.get_meter("reels.rpc")
rpc_server_duration = _meter.create_histogram(
    "rpc.server.duration", unit="ms", description="Time to serve one RPC, by method and code"
)
