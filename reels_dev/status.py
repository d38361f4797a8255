"""`make status`: the health of every part of the local mesh, in one table.

Each row is one component: what it says itself (gRPC health check for the services,
Kafka Metadata for Tansu, /v2/health/ready for Triton, a TCP connect otherwise), the
process `make up` runs it in as supervisord sees it (state, pid, restarts since
`make up`: reels_dev.infra.procfile) and, where Envoy routes to it, Envoy's view of that
upstream (its /clusters admin page on REELS_ENVOY_ADMIN_PORT, 9901 by default: active
health checks, outlier ejection). Exit status 0 when every part is healthy (and, under
supervisord, every process RUNNING), 1 otherwise.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlparse

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import make_url

from reels.config import SERVICE_NAMES, FrontDoorSettings, PlatformSettings
from reels_dev.infra.procfile import Proc, processes
from reels_dev.settings import InfraSettings

HOST = "127.0.0.1"
# No proxy: an http_proxy in the environment must not swallow loopback checks.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Row:
    part: str
    address: str
    check: Callable[[], tuple[bool, str]]
    cluster: str = ""  # Envoy cluster that routes to it ("": none)
    program: str = ""  # its Procfile / supervisor program ("": none, or another row's)


def _tcp(host: str, port: int) -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True, "accepting connections"
    except OSError:
        return False, "down (nothing listens)"


def _http(url: str, timeout: float = 1.0) -> tuple[int, str]:
    try:
        with _DIRECT.open(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def _grpc_health(port: int, service: str) -> tuple[bool, str]:
    with grpc.insecure_channel(f"{HOST}:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            overall = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
            named = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                return False, "down (nothing listens)"
            return False, f"health check failed: {e.code().name}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name
    ok = overall.status == named.status == health_pb2.HealthCheckResponse.SERVING
    if ok:
        return True, "SERVING"
    return False, f"{status(overall.status)} (server), {status(named.status)} ({service})"


def _kafka(port: int) -> tuple[bool, str]:
    from reels_dev.infra.tansu import kafka_metadata_ok

    if kafka_metadata_ok(HOST, port):
        return True, "answers Metadata"
    ok, detail = _tcp(HOST, port)
    return False, "port open, Metadata fails" if ok else detail


def _triton_models(http_port: int) -> tuple[bool, str]:
    """Triton's repository index (POST /v2/repository/index): the versions that serve
    and every version that failed to load, with Triton's reason (reels_dev/models.py)."""
    from reels_dev.models import failed, index_states, summarize

    request = urllib.request.Request(
        f"http://{HOST}:{http_port}/v2/repository/index", data=b"{}", method="POST"
    )
    try:
        with _DIRECT.open(request, timeout=1.0) as r:
            states = index_states(json.loads(r.read().decode()))
    except (urllib.error.URLError, OSError, ValueError):
        return True, ""
    return not failed(states), summarize(states)


def _triton(http_port: int) -> tuple[bool, str]:
    code, _ = _http(f"http://{HOST}:{http_port}/v2/health/ready")
    if not code:
        return False, "down (nothing listens)"
    # Strict readiness: a version that failed to load makes the server "not ready"
    # even while the previous version serves; the index says which and why.
    models_ok, models = _triton_models(http_port)
    head = "ready" if code == 200 else f"not ready (HTTP {code})"
    return code == 200 and models_ok, f"{head}: {models}" if models else head


def _clamd(port: int) -> tuple[bool, str]:
    """clamd answers PING with PONG (its own protocol, one line)."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(b"nPING\n")
            answer = sock.recv(64).strip()
    except OSError as exc:
        return False, f"no answer ({exc.__class__.__name__})"
    return answer == b"PONG", answer.decode(errors="replace") or "empty answer"


def _envoy(port: int, admin_port: int) -> tuple[bool, str]:
    code, body = _http(f"http://{HOST}:{admin_port}/ready")
    if code == 200:
        ok, _ = _tcp(HOST, port)
        return ok, f"{body.strip()} (admin :{admin_port})" if ok else "admin up, listener down"
    return False, "down (nothing listens)" if not code else f"{body.strip()} (HTTP {code})"


def _postgres(url: str) -> tuple[bool, str]:
    import psycopg

    target = make_url(url).set(drivername="postgresql")
    try:
        with psycopg.connect(
            target.render_as_string(hide_password=False), connect_timeout=2
        ) as conn:
            conn.execute("SELECT 1")
        return True, "accepting connections"
    except psycopg.OperationalError as e:
        if f'database "{target.database}" does not exist' in str(e):
            return False, "database missing (make setup creates it)"
        ok, detail = _tcp(target.host or HOST, target.port or 5432)
        return False, "port open, login fails" if ok else detail


def _redis(url: str) -> tuple[bool, str]:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
        return True, "PING ok"
    except redis.RedisError as e:
        return False, f"down ({type(e).__name__})"
    finally:
        client.close()


def envoy_clusters(admin_port: int) -> dict[str, list[str]] | None:
    """cluster name -> health flags of each host, from Envoy's /clusters (None: no Envoy).

    Lines read ``svc_rank::127.0.0.1:50053::health_flags::healthy`` or
    ``...::health_flags::/failed_active_hc``.
    """
    code, body = _http(f"http://{HOST}:{admin_port}/clusters")
    if code != 200:
        return None
    out: dict[str, list[str]] = {}
    for line in body.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[2] == "health_flags":
            out.setdefault(parts[0], []).append(parts[3])
    return out


def _envoy_view(clusters: dict[str, list[str]] | None, name: str) -> tuple[bool, str]:
    if not name:
        return True, ""
    if clusters is None:
        return False, "-"
    flags = clusters.get(name)
    if not flags:
        return False, f"{name}: no hosts"
    ok = all(f == "healthy" for f in flags)
    return ok, f"{name}: {', '.join(f.lstrip('/') for f in flags)}"


def ports() -> dict[str, int]:
    """Every loopback port `make up` listens on, by part, in start order (scripts/up.sh)."""
    front = FrontDoorSettings.from_env()
    infra = InfraSettings.from_env()
    return {
        "otlp-sink": infra.otlp_port,
        "kafka": infra.kafka_port,
        "triton": infra.triton_grpc_port,
        "triton-http": infra.triton_http_port,
        "triton-metrics": infra.triton_metrics_port,
        "clamd": infra.clamd_port,
        **{f"svc_{svc}": port for svc, port in front.service_ports().items()},
        "svc_upload-tus": front.upload_http_port,
        "svc_stream-media": front.media_port,
        "svc_chat-ws": front.chat_ws_port,
        "envoy": front.port,
        "envoy-admin": front.admin_port,
    }


def rows() -> list[Row]:
    front = FrontDoorSettings.from_env()
    infra = InfraSettings.from_env()
    platform = PlatformSettings.from_env()
    ports = front.service_ports()
    db = make_url(platform.database_url)
    redis_at = urlparse(platform.redis_url)  # shown without any password
    out = [
        Row(
            "postgres",
            f"{db.host}:{db.port or 5432}/{db.database}",
            lambda: _postgres(platform.database_url),
        ),
        Row(
            "redis",
            f"{redis_at.hostname}:{redis_at.port or 6379}",
            lambda: _redis(platform.redis_url),
        ),
        Row(
            "otlp-sink",
            f"{HOST}:{infra.otlp_port}",
            lambda: _tcp(HOST, infra.otlp_port),
            "otel_collector",
            "otlp",
        ),
        Row(
            "kafka (tansu)",
            f"{HOST}:{infra.kafka_port}",
            lambda: _kafka(infra.kafka_port),
            program="kafka",
        ),
        Row(
            "triton",
            f"{HOST}:{infra.triton_grpc_port}",
            lambda: _triton(infra.triton_http_port),
            program="triton",
        ),
        Row(
            "clamd",
            f"{HOST}:{infra.clamd_port}",
            lambda: _clamd(infra.clamd_port),
            program="clamd",
        ),
    ]
    for svc, service_name in SERVICE_NAMES.items():
        port = ports[svc]
        out.append(
            Row(
                f"svc_{svc}",
                f"{HOST}:{port}",
                lambda port=port, name=service_name: _grpc_health(port, name),
                f"svc_{svc}",
                svc,
            )
        )
    out += [
        Row(
            "svc_upload tus",
            f"{HOST}:{front.upload_http_port}",
            lambda: _tcp(HOST, front.upload_http_port),
            "upload_http",
        ),
        Row(
            "svc_stream media",
            f"{HOST}:{front.media_port}",
            lambda: _tcp(HOST, front.media_port),
            "media_origin",
        ),
        Row(
            "envoy",
            f"{HOST}:{front.port}",
            lambda: _envoy(front.port, front.admin_port),
            program="envoy",
        ),
    ]
    return out


def _process_view(procs: dict[str, Proc] | None, program: str) -> tuple[bool, str]:
    """(ok, "RUNNING pid 123, 0 restarts") for a row's program; ok when not managed."""
    if not program or procs is None:
        return True, ""
    proc = procs.get(program)
    if proc is None:
        return False, "not in supervisord's config"
    restarts = f"{proc.restarts} restart{'s' if proc.restarts != 1 else ''}"
    if proc.state == "RUNNING":
        return True, f"RUNNING pid {proc.pid}, {restarts}"
    return False, f"{proc.state}, {restarts}" + (
        f" ({proc.description})" if proc.description else ""
    )


def render(table: list[tuple[str, ...]]) -> str:
    header = (
        "",
        "part",
        "address",
        "health",
        "process (supervisord)",
        "envoy's view (cluster: host flags)",
    )
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    lines = []
    for r in [header, *table]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def main() -> int:
    front = FrontDoorSettings.from_env()
    all_rows = rows()
    with ThreadPoolExecutor(max_workers=len(all_rows) + 2) as pool:
        clusters_future = pool.submit(envoy_clusters, front.admin_port)
        procs_future = pool.submit(processes)
        results = list(pool.map(lambda r: r.check(), all_rows))
        clusters = clusters_future.result()
        proc_list = procs_future.result()
    procs = None if proc_list is None else {p.name: p for p in proc_list}
    table = []
    healthy = True
    for row, (ok, detail) in zip(all_rows, results, strict=True):
        view_ok, view = _envoy_view(clusters, row.cluster)
        proc_ok, proc_view = _process_view(procs, row.program)
        # Envoy's view only counts once Envoy runs (otherwise its own row says so).
        row_ok = ok and proc_ok and (view_ok or clusters is None)
        healthy &= row_ok
        table.append(("ok" if row_ok else "!!", row.part, row.address, detail, proc_view, view))
    print(render(table))
    if procs is None:
        print("\nprocesses: supervisord is not running (make up starts it)")
    if not healthy:
        print("\nstatus: not everything is healthy. Logs: make logs S=<part>; start: make up")
    return 0 if healthy else 1
