"""OpenTelemetry set-up: traces and metrics for every service.

With OTEL_EXPORTER_OTLP_ENDPOINT set, spans and metrics go to that collector over
OTLP/gRPC; otherwise spans are appended as JSON lines to a local file
(REELS_OTEL_FILE, default var/traces/spans.jsonl) so a developer can follow a
request without running a collector.

Metrics (``reels.metrics``) can also be scraped by Prometheus: with
``REELS_METRICS_PORT`` set (0, the default: no endpoint) the process serves
``GET /metrics`` (Prometheus text format, ``opentelemetry-exporter-prometheus``) on
that port, on the host its gRPC server listens on.

The tus endpoint (aiohttp) is traced by the OpenTelemetry aiohttp server
instrumentation (:func:`http_server_middleware`): Envoy's ``traceparent`` makes its
span the parent of the request's server span.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.grpc import (
    aio_client_interceptors,
    aio_server_interceptor,
    filters,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from reels import config
from reels.metrics import rpc_server_duration

__all__ = [
    "client_interceptors",
    "http_server_middleware",
    "rpc_server_duration",
    "serve_metrics",
    "server_interceptors",
    "setup_telemetry",
    "shutdown_telemetry",
    "stop_metrics_servers",
]

_configured: str | None = None
# (host, port) -> the running /metrics server (one per process and port).
_metrics_servers: dict[tuple[str, int], Any] = {}
_aiohttp_ready = False


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


def setup_telemetry(
    service_name: str,
    settings: config.PlatformSettings | None = None,
    *,
    metrics_host: str = "127.0.0.1",
) -> int:
    """Install the tracer and meter providers once per process, and serve ``/metrics``
    on ``settings.metrics_port`` (0: not served). Returns the metrics port (0: none)."""
    global _configured
    settings = settings or config.platform()
    if _configured is None:
        _install(service_name, settings)
        _configured = service_name
    return serve_metrics(settings.metrics_port, metrics_host)


def _install(service_name: str, settings: config.PlatformSettings) -> None:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    resource = Resource.create(
        {"service.name": service_name, "service.namespace": "reels", "process.pid": os.getpid()}
    )
    endpoint = settings.otlp_endpoint or None
    # Shut down by shutdown_telemetry() within a bound, not by an unbounded atexit hook
    # (which would retry a vanished collector for ~10 s after the service said 'stopped').
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    if endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter: SpanExporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
        metric_exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True)
        readers: list[MetricReader] = [PeriodicExportingMetricReader(metric_exporter)]
    else:
        exporter = JsonlSpanExporter(settings.otel_file)
        readers = []
    # Always there (it only works when scraped); served by serve_metrics().
    readers.append(PrometheusMetricReader())
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=200))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(
        MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
    )


def serve_metrics(port: int, host: str = "127.0.0.1") -> int:
    """Serve the Prometheus text format on ``http://host:port/metrics`` (a daemon thread).

    0 serves nothing. Idempotent per (host, port). Returns ``port``.
    """
    if port <= 0:
        return 0
    if (host, port) not in _metrics_servers:
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=host)
        _metrics_servers[(host, port)] = server
    return port


def stop_metrics_servers() -> None:
    for key in list(_metrics_servers):
        server = _metrics_servers.pop(key)
        server.shutdown()
        server.server_close()


def shutdown_telemetry(timeout_s: float = 2.0) -> None:
    """Export what is buffered and stop, in about ``timeout_s`` at most.

    The OTLP exporter retries a collector that is gone for up to 10 s, which would
    outlast a supervisor's stop timeout (honcho kills after 5 s): past the bound the
    process exits without the last batch rather than being killed for it.
    """
    tracer_provider = trace.get_tracer_provider()
    meter_provider = metrics.get_meter_provider()

    def flush_and_stop() -> None:
        try:
            if isinstance(tracer_provider, TracerProvider):
                tracer_provider.shutdown()  # exports the remaining spans first
            if isinstance(meter_provider, MeterProvider):
                meter_provider.shutdown(timeout_millis=timeout_s * 1000)
        except Exception as exc:  # noqa: BLE001 - a collector that is gone is not our crash
            logging.getLogger(__name__).warning("telemetry: shutdown incomplete: %r", exc)

    worker = threading.Thread(target=flush_and_stop, name="telemetry-shutdown", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        logging.getLogger(__name__).warning(
            "telemetry: final export unfinished after %.1f s; exiting without it", timeout_s
        )
    stop_metrics_servers()


def http_server_middleware() -> Any:
    """The OpenTelemetry aiohttp server middleware, for one ``web.Application``.

    Put it first in ``middlewares=[...]``: its SERVER span (parent: the request's
    ``traceparent``, i.e. Envoy's span) is current while the handler runs, so work
    the request causes (outbox events, gRPC calls) joins the request's trace. The
    instrumentor is initialised (tracer, HTTP metrics) but does not replace
    ``web.Application`` globally: only apps that add this middleware are traced.
    """
    from opentelemetry.instrumentation.aiohttp_server import (
        AioHttpServerInstrumentor,
        create_aiohttp_middleware,
    )

    global _aiohttp_ready
    if not _aiohttp_ready:
        instrumentor = AioHttpServerInstrumentor()
        with warnings.catch_warnings():
            # instrument() defines a web.Application subclass, which aiohttp frowns upon;
            # it is handed straight back by uninstrument().
            warnings.simplefilter("ignore", DeprecationWarning)
            instrumentor.instrument()
        instrumentor.uninstrument()  # keep its globals, give web.Application back
        _aiohttp_ready = True
    return create_aiohttp_middleware()


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    # Envoy health-checks every service every few seconds: tracing those would
    # bury real requests.
    return [aio_server_interceptor(filter_=filters.negate(filters.health_check()))]


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    return list(aio_client_interceptors())
