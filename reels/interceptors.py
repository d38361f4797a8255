"""Server interceptors every service installs: auth, error mapping, access log, metrics.

They wrap the method handler itself (not just the call details) so that the
authenticated user is visible to the servicer through `reels.auth.current_user`
and every exception, whatever the RPC shape, leaves as a gRPC status.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiokafka.errors
import grpc
import psycopg
import redis.exceptions
import sqlalchemy.exc
from google.protobuf.message import DecodeError

from reels import errors
from reels.admission import Admission
from reels.auth import (
    AuthError,
    TokenVerifier,
    current_roles,
    current_token,
    current_user,
    roles_of,
)
from reels.telemetry import rpc_server_duration

log = logging.getLogger("reels.rpc")

# Failures of a dependency rather than of the request: mapped to UNAVAILABLE + RetryInfo.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    # The connection pool had no connection free within its timeout (QueuePool limit
    # reached): the database is busy, not the request wrong.
    sqlalchemy.exc.TimeoutError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    aiokafka.errors.KafkaConnectionError,
    aiokafka.errors.KafkaTimeoutError,
    ConnectionError,
    TimeoutError,
)

# The errnos of a storage outage: the object store's or staging area's filesystem (or
# the volume behind it) failing, full or read-only. The disk is a dependency like the
# database: UNAVAILABLE + RetryInfo (HTTP 503 + Retry-After), never INTERNAL. Other
# OSErrors (a missing file, a permission) are our bugs and stay INTERNAL.
STORAGE_OUTAGE_ERRNOS = frozenset(
    {errno.EIO, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EAGAIN, errno.ESTALE}
)


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` means a dependency is down or full rather than the request is
    wrong or the code is: :data:`TRANSIENT_ERRORS`, or an OSError whose errno is a
    storage outage (:data:`STORAGE_OUTAGE_ERRNOS`: EIO, ENOSPC, EDQUOT, EROFS...)."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    return isinstance(exc, OSError) and exc.errno in STORAGE_OUTAGE_ERRNOS


# The database refused a value the request carried (a NUL in a string, a number out of
# range, a malformed date...): the request is wrong, not the server. INVALID_ARGUMENT.
DATA_ERRORS: tuple[type[BaseException], ...] = (sqlalchemy.exc.DataError, psycopg.DataError)

# What a person is told, by SQLSTATE (class 22, "data exception"); never the SQL, the
# parameters or the driver's wording.
_DATA_REASONS = {
    "22001": "a text value is longer than the database allows",
    "22003": "a number is out of range",
    "22007": "a date or time is malformed",
    "22008": "a date or time is out of range",
    "22021": "a text value contains a character that cannot be stored (such as NUL)",
    "22P05": "a text value contains a character that cannot be stored (such as NUL)",
    "22P02": "a value is not in the format its field needs",
    "2202E": "an array index is out of range",
}


def data_error(exc: BaseException) -> errors.InvalidArgument | None:
    """INVALID_ARGUMENT for a database DataError caused by input, else None.

    The message says what kind of value was refused and carries a reference id; the
    statement, its parameters and the driver's own message stay in our log.
    """
    if not isinstance(exc, DATA_ERRORS):
        return None
    orig = getattr(exc, "orig", None) or exc
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in _DATA_REASONS:
        reason = _DATA_REASONS[sqlstate]
    elif "NUL" in str(orig):  # psycopg refuses NUL itself, before the server sees it
        reason = _DATA_REASONS["22021"]
    else:
        reason = "a value cannot be stored"
    ref = uuid.uuid4().hex[:12]
    log.warning(
        "data error from input",
        extra={
            "fields": {
                "error_ref": ref,
                "sqlstate": sqlstate,
                "error": type(orig).__name__,
                # The driver's first line: no statement, no parameters.
                "detail": (str(orig).splitlines() or [""])[0][:300],
                "reason": reason,
            }
        },
    )
    return errors.InvalidArgument(
        f"the request has a value the database refused: {reason} (reference {ref})",
        [("request", reason)],
    )


# Infrastructure RPCs anyone may call: load balancers and grpcurl need them.
PUBLIC_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if isinstance(value, str):
            out[key.lower()] = value
    return out


class ReelsServerInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates (JWT), maps errors to statuses, logs and measures each call, and
    admits unary calls through ``admission`` (reels.admission) when one is given."""

    def __init__(
        self,
        verifier: TokenVerifier | None,
        service: str,
        admission: Admission | None = None,
        self_degrading: frozenset[str] = frozenset(),
    ) -> None:
        self.verifier = verifier
        self.service = service
        self.admission = admission
        # Full method names that handle overload themselves (GetFeed: a stale list).
        self.self_degrading = self_degrading

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        public = method.startswith(PUBLIC_PREFIXES)
        admission = None if public or method in self.self_degrading else self.admission
        return _wrap_handler(
            handler, lambda ctx: self._before(method, public, ctx), method, admission
        )

    def _before(self, method: str, public: bool, context: grpc.aio.ServicerContext) -> None:
        md = _metadata(context)
        token = md.get("authorization")
        if public or self.verifier is None:
            current_user.set(md.get("x-reels-user") if self.verifier is None else None)
            current_token.set(token)
            current_roles.set(frozenset())
            return
        try:
            principal = self.verifier.verify(token)
        except AuthError as exc:
            raise errors.Unauthenticated(str(exc)) from exc
        current_user.set(principal.user_id)
        current_token.set(token)
        current_roles.set(roles_of(principal.claims))


async def _fail(context: grpc.aio.ServicerContext, exc: BaseException, method: str) -> None:
    exc = data_error(exc) or exc
    if isinstance(exc, NotImplementedError):
        # The generated servicer base raises this for RPCs a later release implements.
        code = grpc.StatusCode.UNIMPLEMENTED
        message = f"{method} is part of the contract but not implemented yet"
        details: list[object] = []
    elif isinstance(exc, errors.ReelsError):
        code, message, details = exc.code, exc.message, exc.details()
        if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
            log.error("rpc failed", extra={"fields": {"method": method}}, exc_info=exc)
        elif code == grpc.StatusCode.UNAVAILABLE and exc.__cause__ is not None:
            log.warning("rpc unavailable: %r", exc.__cause__, extra={"fields": {"method": method}})
    elif is_transient(exc):
        # A dependency (database, cache, broker, storage) is down: the client should retry,
        # which INTERNAL would not tell it. The cause stays in our log.
        log.warning("dependency unavailable: %r", exc, extra={"fields": {"method": method}})
        retry = errors.Unavailable(
            "a backing service is unavailable, retry shortly", retry_after_seconds=1.0
        )
        code, message, details = retry.code, retry.message, retry.details()
    else:
        ref = uuid.uuid4().hex[:12]
        log.error(
            "unhandled error", extra={"fields": {"method": method, "error_ref": ref}}, exc_info=exc
        )
        code = grpc.StatusCode.INTERNAL
        message = f"internal error (reference {ref}); the operators have the details"
        details = []
    trailers: tuple[tuple[str, str | bytes], ...] = (
        (errors.STATUS_DETAILS_KEY, errors.to_status(code, message, details)),
    )
    retry_after = getattr(exc, "retry_after_seconds", None)
    if retry_after is None and code == grpc.StatusCode.UNAVAILABLE:
        retry_after = 1.0
    if retry_after is not None:
        # Envoy's JSON transcoder copies a trailers-only response's metadata into the
        # HTTP response headers: an HTTP client gets `Retry-After` (RFC 9110 §10.2.3).
        trailers += (("retry-after", str(max(1, math.ceil(retry_after)))),)
    await context.abort(code, message, trailing_metadata=trailers)


def _record(method: str, started: float, code: grpc.StatusCode) -> None:
    elapsed_ms = (time.perf_counter() - started) * 1000
    attrs = {"rpc.method": method, "rpc.grpc.status_code": code.name}
    rpc_server_duration.record(elapsed_ms, attrs)
    level = (
        logging.INFO if code in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED) else logging.WARNING
    )
    if level == logging.INFO and method.startswith(PUBLIC_PREFIXES):
        level = logging.DEBUG  # Envoy health-checks every service every few seconds
    log.log(
        level,
        "rpc",
        extra={"fields": {"method": method, "code": code.name, "ms": round(elapsed_ms, 2)}},
    )


def _code_of(exc: BaseException, context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        # The client went away (a viewer closing the chat, a deadline): not our fault.
        return grpc.StatusCode.CANCELLED
    if isinstance(exc, NotImplementedError):
        return grpc.StatusCode.UNIMPLEMENTED
    if isinstance(exc, errors.ReelsError):
        return exc.code
    if isinstance(exc, DATA_ERRORS):
        return grpc.StatusCode.INVALID_ARGUMENT
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.INTERNAL


@dataclass(frozen=True)
class _Undecodable:
    """Stands in for a request message whose bytes did not parse.

    grpc-python turns an exception in the request deserializer into UNKNOWN with the
    Python class name in the message (HTTP 500 through Envoy). Returning this marker
    instead lets the handler answer INVALID_ARGUMENT like any other bad input; the
    usual cause is a path or query value that is not UTF-8 (`/api/v1/reels/%ff`).
    """

    reason: str

    def error(self, method: str) -> errors.InvalidArgument:
        return errors.InvalidArgument(
            f"the request to {method} could not be decoded: {self.reason} "
            "(string fields, path and query values must be valid UTF-8)",
            [("request", "not a valid encoding of the request message")],
        )


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except (DecodeError, ValueError) as exc:  # ValueError: hand-written wire parsers
            return _Undecodable(str(exc) or type(exc).__name__)

    return deserialize


def _checked_request(request: Any, method: str) -> Any:
    """The request, or its stream with undecodable messages turned into INVALID_ARGUMENT."""
    if isinstance(request, _Undecodable):
        raise request.error(method)
    if not hasattr(request, "__aiter__"):
        return request

    async def stream() -> Any:
        async for item in request:
            if isinstance(item, _Undecodable):
                raise item.error(method)
            yield item

    return stream()


def _wrap_handler(
    handler: grpc.RpcMethodHandler,
    before: Callable[[grpc.aio.ServicerContext], None],
    method: str,
    admission: Admission | None = None,
) -> grpc.RpcMethodHandler:
    def wrap_unary_response(behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            admitted = False
            try:
                before(context)
                request = _checked_request(request, method)
                if admission is not None:
                    if not await admission.try_acquire():
                        raise admission.overloaded()
                    admitted = True
                response = await behavior(request, context)
            except BaseException as exc:
                _record(method, started, _code_of(exc, context))
                if _is_abort(exc):
                    raise
                await _fail(context, exc, method)
                raise  # unreachable: abort raises
            finally:
                if admitted:
                    admission.release()  # type: ignore[union-attr]
            _record(method, started, grpc.StatusCode.OK)
            return response

        return wrapped

    def wrap_stream_response(behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                before(context)
                request = _checked_request(request, method)
                result = behavior(request, context)
                if inspect.isasyncgen(result):
                    async for item in result:
                        yield item
                else:
                    await result
            except BaseException as exc:
                _record(method, started, _code_of(exc, context))
                if _is_abort(exc):
                    raise
                await _fail(context, exc, method)
                raise
            _record(method, started, grpc.StatusCode.OK)

        return wrapped

    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            wrap_unary_response(handler.unary_unary),
            request_deserializer=_lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            wrap_unary_response(handler.stream_unary),
            request_deserializer=_lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            wrap_stream_response(handler.unary_stream),
            request_deserializer=_lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    return grpc.stream_stream_rpc_method_handler(
        wrap_stream_response(handler.stream_stream),
        request_deserializer=_lenient(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


def _is_abort(exc: BaseException) -> bool:
    """context.abort() raises AbortError; cancellation must propagate untouched."""
    return isinstance(exc, (grpc.aio.AbortError, asyncio.CancelledError, GeneratorExit))
