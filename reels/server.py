"""The grpc.aio server bootstrap every service uses.

One place decides what every service has: health checking (Check/Watch), server
reflection, the auth / error / telemetry interceptors, JSON logs, and a graceful
drain on SIGTERM (health turns NOT_SERVING so Envoy stops routing, in-flight calls
get `grace_seconds` to finish, then the process exits).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from reels.admission import Admission
from reels.auth import TokenVerifier
from reels.config import AuthConfig, PlatformSettings, ServerSettings
from reels.interceptors import ReelsServerInterceptor
from reels.jsonlog import setup_logging
from reels.supervise import Supervisor
from reels.telemetry import server_interceptors, setup_telemetry, shutdown_telemetry

log = logging.getLogger("reels.server")

# (add_XServicer_to_server function, servicer instance, full service name)
Registration = tuple[Callable[[Any, grpc.aio.Server], None], object, str]


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service_names: list[str]
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_drain: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """Run after health turns NOT_SERVING and before the server waits out its grace:
    an app ends its long-lived streams here (chat subscriptions), so the drain does
    not wait the whole grace period for calls that never end by themselves."""

    async def stop(self, grace: float = 5.0) -> None:
        for name in [*self.service_names, ""]:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        for hook in self.on_drain:
            try:
                await asyncio.wait_for(hook(), timeout=grace)
            except TimeoutError:
                log.warning("drain hook timed out", extra={"fields": {"hook": repr(hook)}})
            except Exception:
                log.exception("drain hook failed")
        await self.server.stop(grace)
        for hook in self.on_stop:
            # A hook waiting on a dead dependency (broker gone, say) must not keep
            # the process alive: SIGTERM means exit, after a bounded drain.
            try:
                await asyncio.wait_for(hook(), timeout=grace + 5.0)
            except TimeoutError:
                log.warning("stop hook timed out", extra={"fields": {"hook": repr(hook)}})
            except Exception:
                log.exception("stop hook failed")


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"

# How many arrived calls gRPC core holds for the aio server before it refuses more
# (calls, per server): 4 x what Envoy sends one service at once (GRPC_LIMITS.max_requests,
# 4,096, reels_dev/infra/envoy.py), so every call Envoy forwards reaches admission
# control (reels.admission: served, or 429 + Retry-After) instead of being refused by
# core as CANCELLED (HTTP 499, no Retry-After).
PENDING_CALLS = 16 * 1024
# The largest request message a service takes (bytes, grpc.max_receive_message_length);
# Envoy refuses a larger unary body with 413 before it gets here (reels_dev/infra/envoy.py
# MAX_MESSAGE_BYTES).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def contract_service_names() -> list[str]:
    """Every service in the contracts (gen/reels/v1), each module imported so that
    reflection can describe it from the default descriptor pool."""
    import reels.v1 as contracts

    names: list[str] = []
    for module in pkgutil.iter_modules(contracts.__path__):
        if module.name.endswith("_pb2"):
            pb2 = importlib.import_module(f"{contracts.__name__}.{module.name}")
            names += [s.full_name for s in pb2.DESCRIPTOR.services_by_name.values()]
    return sorted(names)


class _MethodAwareReflection(reflection.aio.ReflectionServicer):  # type: ignore[misc]
    """grpcio-reflection answers NOT_FOUND for a method symbol
    (``reels.v1.FeedService.GetFeed``: protobuf's pool finds services and messages, not
    methods), so ``grpcurl describe <method>`` failed. A method's file is its service's."""

    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        response = super()._file_containing_symbol(request, fully_qualified_name)
        service, _, method = fully_qualified_name.rpartition(".")
        if response.HasField("error_response") and service:
            try:
                desc = self._pool.FindServiceByName(service)
            except KeyError:
                return response
            if method in desc.methods_by_name:
                return super()._file_containing_symbol(request, service)
        return response


def enable_reflection(server: grpc.aio.Server) -> None:
    """Reflection of every reels.v1 service (not only this one's), so that one service
    behind Envoy's reflection route lets grpcurl list and describe the whole API.

    Served as v1alpha and as v1 (grpcurl asks v1 first): both packages carry the same
    messages on the wire.
    """
    names = [*contract_service_names(), "grpc.health.v1.Health", reflection.SERVICE_NAME]
    servicer = _MethodAwareReflection(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": v1}),)
    )


async def start_server(
    service: str,
    registrations: Sequence[Registration],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    auth: AuthConfig | None = None,
    options: Sequence[tuple[str, Any]] = (),
    admission: Admission | None = None,
    self_degrading: Sequence[str] = (),
) -> RunningServer:
    """Start serving on host:port (0 = pick a free one) and return at once.

    ``options`` are extra gRPC channel arguments; they override the defaults here.
    ``admission`` bounds the unary calls in progress (reels.admission), except the
    ``self_degrading`` full method names, which answer overload themselves.
    """
    auth = auth or AuthConfig.from_env()
    verifier = TokenVerifier(auth) if auth.required else None
    interceptor = ReelsServerInterceptor(verifier, service, admission, frozenset(self_degrading))
    server = grpc.aio.server(
        interceptors=[*server_interceptors(), interceptor],
        options=list(
            {
                "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
                "grpc.so_reuseport": 0,
                # Above Envoy's request-header limit (75 KiB, the tus metadata): an
                # oversized path or id reaches the service, which says what is wrong
                # (INVALID_ARGUMENT / NOT_FOUND), instead of gRPC's metadata limit
                # (16 KiB) answering RESOURCE_EXHAUSTED — a 429 "retry later" listing
                # our headers.
                "grpc.max_metadata_size": 256 * 1024,
                "grpc.absolute_max_metadata_size": 256 * 1024,
                # Calls that arrived but that the aio server has not yet taken from
                # gRPC core (it takes one at a time, as its event loop gets to it).
                # Past core's default backlog (1,000 soft, 3,000 hard) core refuses new
                # calls as CANCELLED with no details: HTTP 499 through Envoy, not the
                # admission control's 429 + Retry-After (reels.admission), which can
                # only answer a call it is handed. PENDING_CALLS is above what Envoy
                # sends one service at once (GRPC_LIMITS.max_requests, 4,096).
                "grpc.server.max_pending_requests": PENDING_CALLS,
                "grpc.server.max_pending_requests_hard_limit": PENDING_CALLS,
                **dict(options),
            }.items()
        ),
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = []
    for add, servicer, name in registrations:
        add(servicer, server)
        names.append(name)
    enable_reflection(server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise RuntimeError(f"svc_{service}: cannot listen on {host}:{port} (port in use?)")
    await server.start()
    for name in [*names, ""]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving", extra={"fields": {"service": f"svc_{service}", "port": bound}})
    return RunningServer(server, bound, health_servicer, names)


class ServiceApp(Protocol):
    """What every ``svc_x/app.py`` App provides to the bootstrap.

    ``start()`` opens the service's resources and starts its supervised loops (it must
    return at once, never wait for a remote component); ``registrations()`` are its
    gRPC servicers; ``stop()`` drains and closes what ``start()`` opened.
    """

    name: str  # "upload", "stream", ...
    supervisor: Supervisor

    @property
    def server(self) -> ServerSettings: ...

    @property
    def platform(self) -> PlatformSettings: ...

    @property
    def grpc_options(self) -> Sequence[tuple[str, Any]]: ...

    async def start(self) -> None: ...

    def registrations(self) -> list[Registration]: ...

    async def stop(self) -> None: ...


class AppBase:
    """What every App derives from its ``settings`` (a Settings with ``server`` and
    ``platform`` groups): the listen address, the platform, default gRPC options.

    An App overrides ``grpc_options`` when it needs channel arguments of its own.
    """

    settings: Any

    @property
    def server(self) -> ServerSettings:
        return self.settings.server  # type: ignore[no-any-return]

    @property
    def platform(self) -> PlatformSettings:
        return self.settings.platform  # type: ignore[no-any-return]

    @property
    def grpc_options(self) -> Sequence[tuple[str, Any]]:
        return ()


async def run_app(app: ServiceApp, *, port: int | None = None) -> RunningServer:
    """Start ``app`` and its gRPC server (tests: ``port=0`` picks a free one).

    The returned server's ``stop()`` drains the server, then stops the app. Required
    loops that go down turn the service's health NOT_SERVING (reels.supervise).
    """
    # Also serves Prometheus /metrics on REELS_METRICS_PORT (0: none), beside gRPC.
    setup_telemetry(f"svc_{app.name}", app.platform, metrics_host=app.server.host)
    await app.start()
    try:
        running = await start_server(
            app.name,
            app.registrations(),
            host=app.server.host,
            port=app.server.port if port is None else port,
            auth=app.platform.auth,
            options=app.grpc_options,
            admission=Admission(
                app.name, app.server.max_inflight_rpcs, app.server.admission_wait_s
            ),
            self_degrading=getattr(app, "self_degrading_methods", ()),
        )
    except BaseException:
        await app.stop()
        raise
    running.on_stop.append(app.stop)
    drain = getattr(app, "drain", None)
    if drain is not None:
        running.on_drain.append(drain)

    async def report(healthy: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if healthy
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in [*running.service_names, ""]:
            await running.health.set(name, status)

    await app.supervisor.attach_health(report)
    return running


def serve_forever(app: ServiceApp) -> None:
    """``python -m svc_x``: run ``app`` until SIGTERM/SIGINT, then drain and exit."""
    setup_logging(f"svc_{app.name}", app.platform)
    asyncio.run(_serve(app))


async def _serve(app: ServiceApp) -> None:
    running = await run_app(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    grace = app.server.grace_seconds
    log.info("draining", extra={"fields": {"grace_s": grace}})
    await running.stop(grace)
    shutdown_telemetry()
    log.info("stopped")
