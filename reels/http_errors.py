"""One mapping from errors to HTTP answers, for the HTTP endpoints services serve
themselves (tus in svc_upload, the media origin in svc_stream).

It is the HTTP twin of the gRPC error interceptor (``reels.interceptors``) and follows
the same rules, so an error means the same thing whichever door a client came in by:

* a domain error (``reels.errors``) keeps its code and message; its status is the
  standard HTTP mapping of the gRPC code (google.rpc ``code.proto``, as Envoy's JSON
  transcoder uses it) unless the endpoint's protocol says otherwise (tus: 409 for a
  failed precondition, 460 for a checksum mismatch...): pass ``status=``;
  ``retry_after_seconds`` becomes ``Retry-After``;
* a database DataError (a value the database refused: NUL in a string, a number out of
  range) is 400 INVALID_ARGUMENT, as ``reels.interceptors.data_error`` words it;
* a dependency outage (database, Redis, Kafka, a connection or a timeout, a storage
  OSError such as ENOSPC or EIO: the interceptor's ``is_transient``, plus an endpoint's
  own ``outages=``) is 503 + ``Retry-After``: the client should retry, which a 500
  would not tell it;
* anything else is 500 with a reference id; the stack trace stays in our log.

Bodies are JSON ``{"code": "NOT_FOUND", "message": ..., "field_violations": [...]}``.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
from aiohttp import web

from reels import errors
from reels.interceptors import data_error, is_transient

log = logging.getLogger("reels.http")

# Seconds a client is told to wait after an outage (the interceptor's RetryInfo too).
OUTAGE_RETRY_AFTER_S = 1.0
OUTAGE_MESSAGE = "a backing service is unavailable, retry shortly"

HTTP_STATUS: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


@dataclass(frozen=True)
class HttpError:
    """What to answer: status, code, message, headers and field violations."""

    status: int
    code: grpc.StatusCode
    message: str
    headers: dict[str, str] = field(default_factory=dict)
    violations: list[tuple[str, str]] = field(default_factory=list)

    def body(self) -> dict[str, object]:
        out: dict[str, object] = {"code": self.code.name, "message": self.message}
        if self.violations:
            out["field_violations"] = [{"field": f, "description": d} for f, d in self.violations]
        return out

    def json_response(self, **extra_headers: str) -> web.Response:
        return web.json_response(
            self.body(), status=self.status, headers={**self.headers, **extra_headers}
        )


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def is_outage(exc: BaseException, outages: tuple[type[BaseException], ...] = ()) -> bool:
    """True when ``exc`` means a dependency is down rather than the request is wrong."""
    return is_transient(exc) or isinstance(exc, outages)


def http_error(
    exc: BaseException,
    *,
    status: int | None = None,
    outages: tuple[type[BaseException], ...] = (),
    retry_after_s: float = OUTAGE_RETRY_AFTER_S,
) -> HttpError:
    """The HTTP answer for ``exc`` (see the module docstring).

    ``status`` overrides the status of a domain error (the endpoint's protocol);
    ``outages`` are the endpoint's own outage exceptions, answered like the shared ones.
    """
    exc = data_error(exc) or exc
    if isinstance(exc, errors.ReelsError):
        retry = getattr(exc, "retry_after_seconds", None)
        violations = list(getattr(exc, "violations", []) or [])
        return HttpError(
            status or HTTP_STATUS.get(exc.code, 500),
            exc.code,
            exc.message,
            _retry_after(retry) if retry is not None else {},
            violations,
        )
    if is_outage(exc, outages):
        log.warning("dependency unavailable: %r", exc)
        return HttpError(
            503, grpc.StatusCode.UNAVAILABLE, OUTAGE_MESSAGE, _retry_after(retry_after_s)
        )
    if isinstance(exc, NotImplementedError):
        return HttpError(501, grpc.StatusCode.UNIMPLEMENTED, "not implemented yet")
    ref = uuid.uuid4().hex[:12]
    log.error("unhandled error", extra={"fields": {"error_ref": ref}}, exc_info=exc)
    return HttpError(
        500,
        grpc.StatusCode.INTERNAL,
        f"internal error (reference {ref}); the operators have the details",
    )
