"""Channels to other services: traced, and carrying the caller's token.

Services talk to each other only through generated stubs over these channels, so
a call inside the mesh continues the caller's trace and acts for the same user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from reels.auth import current_token
from reels.config import platform, service_addr
from reels.telemetry import client_interceptors


class _ForwardToken(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """Adds the served call's bearer token (or REELS_SERVICE_TOKEN) to outgoing calls."""

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        token = current_token.get() or platform().service_token
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        if token and "authorization" not in metadata:
            metadata.add("authorization", token if " " in token else f"Bearer {token}")
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )

    async def intercept_unary_unary(  # type: ignore[override]
        self, continuation: Callable, details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_unary_stream(  # type: ignore[override]
        self, continuation: Callable, details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_stream_unary(  # type: ignore[override]
        self, continuation: Callable, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(details), request_iterator)

    async def intercept_stream_stream(  # type: ignore[override]
        self, continuation: Callable, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(details), request_iterator)


def channel(service_or_addr: str) -> grpc.aio.Channel:
    """An insecure channel to a service name ("stream") or a host:port."""
    addr = service_or_addr if ":" in service_or_addr else service_addr(service_or_addr)
    return grpc.aio.insecure_channel(addr, interceptors=[_ForwardToken(), *client_interceptors()])
