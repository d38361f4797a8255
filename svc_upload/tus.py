"""tus 1.0 over HTTP (core, creation, termination, checksum) on the upload core.

Served by svc_upload itself on ``REELS_UPLOAD_HTTP_PORT`` (default 50061) behind
Envoy's ``/api/v1/uploads/tus/`` route, so tus-js-client, Uppy and tuspy work
unmodified. The JWT is verified here again, as every service does.

HTTP answers (beyond the tus spec's own 204/201/409/460/412):

* 413 when ``Upload-Length`` exceeds the size limit (before any byte is stored)
  and when a PATCH would run past ``Upload-Length``;
* 429 + ``Retry-After`` (seconds to UTC midnight) for the daily quota;
* 422 when the last PATCH completes an upload whose content is not a usable video
  (or whose declared sha256 does not match): the bytes arrived fine, the content
  is what is wrong; the JSON body says why and the video's status is ``failed``;
* 400 for bad metadata, with the field violations in the JSON body;
* 404 for an unknown upload or someone else's (ids never leak existence);
* 503 + ``Retry-After`` when a dependency (database, Redis, ...) is down.

Errors are answered by the shared mapper (``reels.http_errors``), with tus's own
statuses where the protocol has them (:func:`tus_status`).

Bodies are read in pieces and written as they arrive; a PATCH of any size never
sits in memory.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import PurePosixPath

import grpc
from aiohttp import web

from reels import errors
from reels.auth import AuthError, TokenVerifier
from reels.config import AuthConfig
from reels.http_errors import http_error
from reels.telemetry import http_server_middleware
from svc_upload.limits import NewUpload, normalize_hashtags
from svc_upload.uploads import ChecksumMismatch, OffsetMismatch, OutOfRange, UploadCore

log = logging.getLogger(__name__)

BASE_PATH = "/api/v1/uploads/tus/"
TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,termination,checksum"
CHECKSUM_ALGORITHMS = {"sha1": "sha1", "sha256": "sha256", "md5": "md5"}
# Pieces are gathered to this size before a write: one thread hop and one hash
# update per MiB instead of per 64 KiB socket read.
WRITE_PIECE = 1024 * 1024
USER = web.RequestKey("user", str)
CONTENT_TYPES = {"original": 1, "challenge": 2, "duet": 3, "reaction": 4}


class BodyInterrupted(Exception):
    """The client's PATCH body broke off mid-way (not a server or dependency failure)."""


def tus_status(exc: errors.ReelsError) -> int | None:
    """tus's own status for ``exc``, or None for the shared mapping (reels.http_errors)."""
    if isinstance(exc, ChecksumMismatch):
        return 460
    if isinstance(exc, OffsetMismatch):
        return 409
    if isinstance(exc, OutOfRange):
        return 413
    if isinstance(exc, errors.ResourceExhausted):
        return 429 if exc.retry_after_seconds is not None else 413
    if exc.code == grpc.StatusCode.FAILED_PRECONDITION:
        return 409  # tus: the upload is not in a state this request can change
    return None


def _error(exc: BaseException, status: int | None = None, **headers: str) -> web.Response:
    """The JSON error answer for ``exc`` (tus statuses first, then the shared mapper)."""
    if status is None and isinstance(exc, errors.ReelsError):
        status = tus_status(exc)
    if isinstance(exc, OffsetMismatch):
        headers["Upload-Offset"] = str(exc.expected)
    return http_error(exc, status=status).json_response(**headers)


def parse_metadata(header: str) -> dict[str, str]:
    """``key base64,key2 base64`` -> dict; a key without a value maps to ""."""
    out: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in header.split(","))):
        name, _, value = pair.partition(" ")
        try:
            out[name] = base64.b64decode(value.strip(), validate=True).decode() if value else ""
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise errors.InvalidArgument(
                f"Upload-Metadata value of '{name}' is not base64 UTF-8",
                [(f"Upload-Metadata.{name}", "must be base64 of UTF-8 text")],
            ) from exc
    return out


async def coalesce(request: web.Request, size: int = WRITE_PIECE) -> AsyncIterator[memoryview]:
    """The request body in pieces of about ``size`` bytes.

    Socket reads are copied once, into a preallocated buffer (no regrowing); each full
    buffer is handed over as a view and a fresh one collects the next piece while the
    consumer writes this one.
    """
    buffer = memoryview(bytearray(size))
    filled = 0
    try:
        async for data in request.content.iter_any():
            if filled + len(data) > len(buffer):
                if filled:
                    yield buffer[:filled]
                buffer, filled = memoryview(bytearray(max(size, len(data)))), 0
            buffer[filled : filled + len(data)] = data
            filled += len(data)
            if filled >= size:
                yield buffer[:filled]
                buffer, filled = memoryview(bytearray(size)), 0
    except Exception as exc:
        # The body broke off: hand over what did arrive (tus keeps it), then fail.
        # aiohttp raises the connection error before returning bytes it had already
        # buffered; its private reader still hands them out.
        rest = getattr(request.content, "_read_nowait", lambda n: b"")(-1)
        if filled or rest:
            yield memoryview(bytes(buffer[:filled]) + rest)
        # Told apart from a dependency's ConnectionError, which is an outage (503).
        raise BodyInterrupted(repr(exc)) from exc
    if filled:
        yield buffer[:filled]


class TusApp:
    """The aiohttp application; one per service process."""

    def __init__(self, core: UploadCore, auth: AuthConfig | None = None) -> None:
        self.core = core
        auth = auth or AuthConfig()
        self.verifier = TokenVerifier(auth) if auth.required else None
        # OpenTelemetry first: its SERVER span (child of Envoy's, via traceparent) is
        # current while the request runs, so the outbox event of a completing PATCH
        # carries this trace on (reels.telemetry).
        self.app = web.Application(middlewares=[http_server_middleware(), self._middleware])
        base = BASE_PATH.rstrip("/")
        for path in (base, base + "/"):
            self.app.router.add_route("OPTIONS", path, self.options)
            self.app.router.add_route("POST", path, self.create)
        item = base + "/{upload_id}"
        self.app.router.add_route("OPTIONS", item, self.options)
        self.app.router.add_route("HEAD", item, self.head)
        self.app.router.add_route("PATCH", item, self.patch)
        self.app.router.add_route("DELETE", item, self.delete)

    # -- plumbing -------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            if request.method != "OPTIONS":
                if request.headers.get("Tus-Resumable") != TUS_VERSION:
                    response: web.StreamResponse = web.Response(
                        status=412, headers={"Tus-Version": TUS_VERSION}
                    )
                    response.headers["Tus-Resumable"] = TUS_VERSION
                    return response
                request[USER] = self._user(request)
            response = await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:  # noqa: BLE001 - every error leaves as a JSON answer
            response = _error(exc)
        response.headers["Tus-Resumable"] = TUS_VERSION
        return response

    def _user(self, request: web.Request) -> str:
        if self.verifier is None:
            user = request.headers.get("x-reels-user")
            if not user:
                raise errors.Unauthenticated("x-reels-user header required when auth is off")
            return user
        try:
            return self.verifier.verify(request.headers.get("Authorization")).user_id
        except AuthError as exc:
            raise errors.Unauthenticated(str(exc)) from exc

    def _location(self, upload_id: str) -> str:
        return f"{BASE_PATH}{upload_id}"

    # -- handlers -------------------------------------------------------------------

    async def options(self, request: web.Request) -> web.Response:
        return web.Response(
            status=204,
            headers={
                "Tus-Version": TUS_VERSION,
                "Tus-Extension": EXTENSIONS,
                "Tus-Max-Size": str(self.core.limits.max_bytes),
                "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
            },
        )

    async def create(self, request: web.Request) -> web.Response:
        raw_length = request.headers.get("Upload-Length")
        if raw_length is None:
            raise errors.InvalidArgument(
                "Upload-Length is required (Upload-Defer-Length is not supported)",
                [("Upload-Length", "required")],
            )
        try:
            length = int(raw_length)
        except ValueError:
            raise errors.InvalidArgument(
                "Upload-Length must be an integer", [("Upload-Length", "not an integer")]
            ) from None
        if length > self.core.limits.max_bytes:
            raise errors.ResourceExhausted(
                f"Upload-Length {length} exceeds the limit of {self.core.limits.max_bytes} bytes"
            )
        meta = parse_metadata(request.headers.get("Upload-Metadata", ""))
        filename = meta.get("filename", "")
        title = meta.get("title") or PurePosixPath(filename).stem
        content = meta.get("content_type", "original").strip().lower()
        view = await self.core.create(
            request[USER],
            NewUpload(
                title=title,
                description=meta.get("description", ""),
                hashtags=normalize_hashtags(meta.get("hashtags", "")),
                content_type=CONTENT_TYPES.get(content, 1),
                audio_attribution=meta.get("audio_attribution", ""),
                declared_size=length,
                sha256_hex=meta.get("sha256") or None,
                filename=filename,
                mime_type=meta.get("filetype") or meta.get("mime_type", ""),
            ),
        )
        return web.Response(
            status=201,
            headers={
                "Location": self._location(view.upload_id),
                "Reels-Video-Id": view.video_id,
                "Upload-Offset": "0",
            },
        )

    async def head(self, request: web.Request) -> web.Response:
        view = await self.core.get(request[USER], request.match_info["upload_id"])
        return web.Response(
            status=200,
            headers={
                "Upload-Offset": str(view.offset),
                "Upload-Length": str(view.size),
                "Cache-Control": "no-store",
                "Reels-Video-Id": view.video_id,
            },
        )

    async def patch(self, request: web.Request) -> web.Response:
        upload_id = request.match_info["upload_id"]
        if request.content_type != "application/offset+octet-stream":
            return web.json_response(
                {"message": "Content-Type must be application/offset+octet-stream"}, status=415
            )
        try:
            offset = int(request.headers["Upload-Offset"])
        except (KeyError, ValueError):
            raise errors.InvalidArgument(
                "Upload-Offset header (an integer) is required", [("Upload-Offset", "required")]
            ) from None
        checksum = self._checksum(request.headers.get("Upload-Checksum"))
        try:
            new_offset = await self.core.write_stream(
                request[USER],
                upload_id,
                offset,
                coalesce(request),
                length=request.content_length,
                checksum=checksum,
            )
        except BodyInterrupted as exc:
            # The client went away mid-body; what arrived is committed (see write_stream).
            log.info("tus PATCH %s interrupted: %s", upload_id, exc)
            return web.json_response({"message": "request body interrupted"}, status=400)
        view = await self.core.get(request[USER], upload_id)
        headers = {"Upload-Offset": str(new_offset), "Reels-Video-Id": view.video_id}
        if new_offset == view.size and view.state == "open":
            try:
                await self.core.complete(request[USER], upload_id)
            except errors.InvalidArgument as exc:
                return _error(exc, 422, **headers)
        return web.Response(status=204, headers=headers)

    def _checksum(self, header: str | None) -> tuple[str, bytes] | None:
        if not header:
            return None
        name, _, value = header.strip().partition(" ")
        algorithm = CHECKSUM_ALGORITHMS.get(name.lower())
        if algorithm is None:
            raise errors.InvalidArgument(
                f"unsupported checksum algorithm '{name}'",
                [("Upload-Checksum", f"one of {', '.join(CHECKSUM_ALGORITHMS)}")],
            )
        try:
            return algorithm, base64.b64decode(value.strip(), validate=True)
        except binascii.Error:
            raise errors.InvalidArgument(
                "Upload-Checksum value is not base64", [("Upload-Checksum", "not base64")]
            ) from None

    async def delete(self, request: web.Request) -> web.Response:
        await self.core.terminate(request[USER], request.match_info["upload_id"])
        return web.Response(status=204)


async def start_http(app: TusApp, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on host:port (0 = a free port); returns the runner and the port."""
    runner = web.AppRunner(app.app, access_log=None, read_bufsize=1024 * 1024)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, int(bound)
