"""Telling svc_upload where a video stands: the injectable status-reporter interface.

svc_upload owns the ``videos`` table (one writer per store), so the worker never
writes a video's status itself; it calls ``UploadService.UpdateVideoStatus``. The
worker depends only on the :class:`StatusReporter` protocol, so it can run where
svc_upload is not deployed (``REELS_TRANSCODE_REPORT_STATUS=off``: the job row is
then the only record of progress) and tests can serve the real svc_upload servicer.
The App (``app.py``) picks the reporter from the settings.
"""

from __future__ import annotations

import logging
from typing import Protocol

import grpc
from reels.v1 import upload_pb2, upload_pb2_grpc

from reels.auth import ServiceTokenSigner
from reels.clients import channel

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


class ServiceCredentials:
    """The bearer token background work calls other services with.

    A worker serves no request whose token it could forward, so it acts as itself:
    ``configured`` (``REELS_SERVICE_TOKEN``; production: issued by the IdP) when set,
    else a short-lived token for ``subject`` from ``signer`` (``reels.auth``; signed
    with ``REELS_JWT_PRIVATE_KEY``), renewed well before it expires.
    """

    def __init__(
        self,
        configured: str = "",
        signer: ServiceTokenSigner | None = None,
        subject: str = SERVICE_USER,
    ) -> None:
        self.configured = configured
        self.signer = signer
        self.subject = subject

    def header(self) -> str | None:
        if self.configured:
            token = self.configured
            return token if " " in token else f"Bearer {token}"
        if self.signer is None or not self.signer.available:
            return None
        return self.signer.header(self.subject)


class UploadStatusReporter:
    """Calls svc_upload's UpdateVideoStatus at ``target`` (host:port) as ``credentials``."""

    def __init__(
        self, target: str, credentials: ServiceCredentials, *, timeout_s: float = 5.0
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.credentials = credentials
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> upload_pb2_grpc.UploadServiceStub:
        # Lazily: a grpc.aio channel belongs to the loop it is created on.
        if self._channel is None:
            self._channel = channel(self.target)
        return upload_pb2_grpc.UploadServiceStub(self._channel)

    async def update(self, request: upload_pb2.UpdateVideoStatusRequest) -> None:
        header = self.credentials.header()
        metadata = (("authorization", header),) if header else ()
        try:
            await self._stub().UpdateVideoStatus(request, metadata=metadata, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise StatusReportError(
                f"svc_upload UpdateVideoStatus: {exc.code().name}: {exc.details()}",
                transient=exc.code() in TRANSIENT_CODES,
            ) from exc

    async def close(self) -> None:
        if self._channel is not None:
            ch, self._channel = self._channel, None
            await ch.close()
