"""A small OTLP/gRPC receiver that writes every span it gets to a JSON-lines file.

`make up` runs it on 127.0.0.1:4317 so Envoy's spans and the services' spans land
in one place (var/traces/otlp.jsonl) without a full OpenTelemetry Collector; in
production OTEL_EXPORTER_OTLP_ENDPOINT and Envoy's `otel_collector` cluster point
at a real collector instead. Tests use it to check that one request is one trace.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from reels_dev.settings import InfraSettings


class _TraceSink(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    async def Export(  # noqa: N802 - generated name
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        lines = []
        for resource_spans in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            service = attrs.get("service.name", "unknown")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    lines.append(
                        json.dumps(
                            {
                                "service": service,
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex() or None,
                                "kind": span.kind,
                                "start_ns": span.start_time_unix_nano,
                                "end_ns": span.end_time_unix_nano,
                            }
                        )
                    )
        if lines:
            with self.path.open("a") as f:
                f.write("\n".join(lines) + "\n")
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsSink(metrics_service_pb2_grpc.MetricsServiceServicer):
    async def Export(  # noqa: N802 - generated name
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: object
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        return metrics_service_pb2.ExportMetricsServiceResponse()


async def start_sink(port: int, path: Path) -> grpc.aio.Server:
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceSink(path), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsSink(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server


def read_spans(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def _main() -> None:
    settings = InfraSettings.from_env()
    port, path = settings.otlp_port, settings.otlp_file
    server = await start_sink(port, path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"otlp sink on 127.0.0.1:{port} -> {path}", file=sys.stderr, flush=True)
    await stop.wait()
    await server.stop(1)


if __name__ == "__main__":
    asyncio.run(_main())
