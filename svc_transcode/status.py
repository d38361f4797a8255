"""Telling svc_upload where a video stands: the injectable status-reporter interface.

svc_upload owns the ``videos`` table (one writer per store), so the worker never
writes a video's status itself; it calls ``UploadService.UpdateVideoStatus``. The
worker depends only on the :class:`StatusReporter` protocol, so it can run where
svc_upload is not deployed (``REELS_TRANSCODE_REPORT_STATUS=off``: the job row is
then the only record of progress) and tests can serve the real svc_upload servicer.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Protocol

import grpc
from reels.v1 import upload_pb2, upload_pb2_grpc

from reels.auth import mint_token
from reels.clients import channel
from reels.config import AuthConfig

log = logging.getLogger(__name__)

# Codes that mean "svc_upload (or the path to it) is not there right now": retry later.
TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)
SERVICE_USER = "svc_transcode"  # svc_upload lets this principal report status
TOKEN_REFRESH_S = 3600.0


class StatusReportError(Exception):
    """svc_upload did not take the update; ``transient`` says whether a retry can help."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class StatusReporter(Protocol):
    """Where a video's processing status goes (svc_upload in production)."""

    async def update(self, request: upload_pb2.UpdateVideoStatusRequest) -> None:
        """Deliver one update; raises :class:`StatusReportError` when it was not taken."""
        ...

    async def close(self) -> None: ...


class NoStatusReporter:
    """Reports nowhere: for running svc_transcode without svc_upload (the job row still
    records stage, percent and the outcome)."""

    async def update(self, request: upload_pb2.UpdateVideoStatusRequest) -> None:
        return None

    async def close(self) -> None:
        return None


class _ServiceToken:
    """The bearer token background work calls other services with.

    A worker serves no request whose token it could forward, so it acts as itself:
    ``REELS_SERVICE_TOKEN`` when set (production: issued by the IdP), else a dev token
    minted from the local key pair and renewed well before it expires.
    """

    def __init__(self) -> None:
        self._token: str | None = None
        self._minted_at = 0.0

    def header(self) -> str | None:
        configured = os.environ.get("REELS_SERVICE_TOKEN")
        if configured:
            return configured if " " in configured else f"Bearer {configured}"
        if self._token is None or time.monotonic() - self._minted_at > TOKEN_REFRESH_S:
            if not AuthConfig().private_key_path.exists():
                return None
            self._token = mint_token(SERVICE_USER)
            self._minted_at = time.monotonic()
        return f"Bearer {self._token}"


class UploadStatusReporter:
    """Calls svc_upload's UpdateVideoStatus (address: ``REELS_UPLOAD_ADDR`` or a host:port)."""

    def __init__(self, target: str = "upload", *, timeout_s: float = 5.0) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self._token = _ServiceToken()
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> upload_pb2_grpc.UploadServiceStub:
        # Lazily: a grpc.aio channel belongs to the loop it is created on.
        if self._channel is None:
            self._channel = channel(self.target)
        return upload_pb2_grpc.UploadServiceStub(self._channel)

    async def update(self, request: upload_pb2.UpdateVideoStatusRequest) -> None:
        header = self._token.header()
        metadata = (("authorization", header),) if header else ()
        try:
            await self._stub().UpdateVideoStatus(
                request, metadata=metadata, timeout=self.timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise StatusReportError(
                f"svc_upload UpdateVideoStatus: {exc.code().name}: {exc.details()}",
                transient=exc.code() in TRANSIENT_CODES,
            ) from exc

    async def close(self) -> None:
        if self._channel is not None:
            ch, self._channel = self._channel, None
            await ch.close()


def reporter_from_env() -> StatusReporter:
    """``REELS_TRANSCODE_REPORT_STATUS=off`` runs without svc_upload; default: report."""
    if os.environ.get("REELS_TRANSCODE_REPORT_STATUS", "on").lower() in ("off", "0", "false"):
        log.warning("REELS_TRANSCODE_REPORT_STATUS=off: video status is not reported to svc_upload")
        return NoStatusReporter()
    return UploadStatusReporter()
