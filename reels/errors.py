"""Domain errors and their mapping to gRPC status codes with google.rpc details.

Services raise these; the error interceptor turns them into a status, a message a
person can act on and, where useful, BadRequest / ResourceInfo / RetryInfo details
(readable by any client through the `grpc-status-details-bin` trailer). Anything
else becomes INTERNAL with a reference id; the stack trace stays in our logs.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"


class ReelsError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> list[object]:
        return []


class InvalidArgument(ReelsError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, violations: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.violations = list(violations)

    def details(self) -> list[object]:
        if not self.violations:
            return []
        return [
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in self.violations
                ]
            )
        ]


class NotFound(ReelsError):
    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, resource_type: str, resource_name: str, message: str | None = None) -> None:
        from reels.text import shown  # reels.text raises errors of this module

        # The name comes from the request: echoed at most 80 characters, invisible
        # characters escaped (a 5,000-character or NUL-laden id stays readable).
        resource_name = shown(resource_name, 80)
        super().__init__(message or f"{resource_type} '{resource_name}' not found")
        self.resource_type = resource_type
        self.resource_name = resource_name

    def details(self) -> list[object]:
        return [
            error_details_pb2.ResourceInfo(
                resource_type=self.resource_type,
                resource_name=self.resource_name,
                description=self.message,
            )
        ]


class AlreadyExists(ReelsError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(ReelsError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(ReelsError):
    code = grpc.StatusCode.UNAUTHENTICATED


class FailedPrecondition(ReelsError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class _Retryable(ReelsError):
    def __init__(self, message: str, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds

    def details(self) -> list[object]:
        if self.retry_after_seconds is None:
            return []
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(self.retry_after_seconds * 1e9))
        return [error_details_pb2.RetryInfo(retry_delay=delay)]


class ResourceExhausted(_Retryable):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(_Retryable):
    code = grpc.StatusCode.UNAVAILABLE


class Unimplemented(ReelsError):
    code = grpc.StatusCode.UNIMPLEMENTED


def to_status(code: grpc.StatusCode, message: str, details: Sequence[object] = ()) -> bytes:
    """Serialized google.rpc.Status for the `grpc-status-details-bin` trailer."""
    status = status_pb2.Status(code=code.value[0], message=message)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)  # type: ignore[arg-type]
        status.details.append(packed)
    return status.SerializeToString()


def from_rpc_error(error: grpc.aio.AioRpcError | grpc.RpcError) -> list[object]:
    """Unpack google.rpc details from a failed call (for clients and tests)."""
    trailers = error.trailing_metadata() or ()
    for key, value in trailers:  # type: ignore[misc]
        if key == STATUS_DETAILS_KEY:
            status = status_pb2.Status.FromString(value)
            out: list[object] = []
            for packed in status.details:
                for cls in (
                    error_details_pb2.BadRequest,
                    error_details_pb2.ResourceInfo,
                    error_details_pb2.RetryInfo,
                    error_details_pb2.ErrorInfo,
                ):
                    if packed.Is(cls.DESCRIPTOR):
                        msg = cls()
                        packed.Unpack(msg)
                        out.append(msg)
            return out
    return []


assert code_pb2.INVALID_ARGUMENT == grpc.StatusCode.INVALID_ARGUMENT.value[0]
