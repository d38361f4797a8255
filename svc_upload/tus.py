"""tus 1.0 over HTTP on the upload core.

Served by svc_upload itself on ``REELS_UPLOAD_HTTP_PORT`` (default 50061) behind
Envoy's ``/api/v1/uploads/tus/`` route, so tus-js-client, Uppy and tuspy work
unmodified. The JWT is verified here again, as every service does.

Supported (advertised in ``Tus-Extension``): core, ``creation``,
``creation-with-upload``, ``expiration``, ``checksum`` (sha1, sha256, sha512, md5) and
``termination``; ``X-HTTP-Method-Override`` is honoured. Not supported, so not
advertised, and refused with 400 and a reason: ``creation-defer-length``
(``Upload-Defer-Length``; every upload's size is checked before a byte is stored),
``concatenation`` (``Upload-Concat``) and ``checksum-trailer`` (an ``Upload-Checksum``
announced in ``Trailer``). docs/DECISIONS.md ("tus") lists each rule.

HTTP answers (beyond the tus spec's own 201/204/409/412/415/460):

* 410 for an upload that expired unfinished (``Upload-Expires`` passed); 404 for an
  unknown upload, someone else's (ids never leak existence) or a terminated one;
* 413 when ``Upload-Length`` exceeds the size limit (before any byte is stored)
  and when a body would run past ``Upload-Length``;
* 431 when ``Upload-Metadata`` is longer than every field at its longest could need
  (:mod:`svc_upload.tus_limits`, which also sizes aiohttp's and Envoy's header limits);
* 429 + ``Retry-After`` (seconds to UTC midnight) for the daily quota;
* 422 when the last PATCH completes an upload whose content is not a usable video
  (or whose declared sha256 does not match): the bytes arrived fine, the content
  is what is wrong; the JSON body says why and the video's status is ``failed``.
  The PATCH waits for those checks at most ``REELS_UPLOAD_VERIFY_WAIT_S``, and not at
  all while they queue behind others' (a burst); then it answers 204 and the verdict
  is the video's status (``failed`` with the reason, or on to transcoding);
* 400 for bad metadata (the field violations in the JSON body), malformed tus
  headers, and the extensions above that we do not support;
* 405 + ``Allow`` for a method the URL does not take;
* 415 for a body that is not ``application/offset+octet-stream``, with the same JSON
  body as every other error (``code``, ``message``, ``field_violations``);
* for a PATCH to a completed upload: 204 when it is empty and at ``Upload-Length`` (the
  offsets match, nothing to apply), 413 for bytes there, 409 at any other offset;
* 503 + ``Retry-After`` when a dependency (database, Redis, ...) is down.

Errors are answered by the shared mapper (``reels.http_errors``), with tus's own
statuses where the protocol has them (:func:`tus_status`).

Bodies are read in pieces and written as they arrive; a PATCH of any size never
sits in memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime

import grpc
import sqlalchemy.exc
from aiohttp import web

from reels import errors, text
from reels.auth import AuthError, TokenVerifier
from reels.config import AuthConfig
from reels.http_errors import http_error
from reels.telemetry import http_server_middleware
from svc_upload.limits import (  # noqa: F401 - file_stem, UNTITLED: re-exported
    UNTITLED,
    NewUpload,
    file_stem,
    normalize_hashtags,
)
from svc_upload.models import Upload, Video
from svc_upload.tus_limits import http_field_limit, metadata_header_limit
from svc_upload.uploads import (
    ChecksumMismatch,
    OffsetMismatch,
    OutOfRange,
    UploadCore,
    UploadView,
)

log = logging.getLogger(__name__)

BASE_PATH = "/api/v1/uploads/tus/"
TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,expiration,checksum,termination"
CHECKSUM_ALGORITHMS = {"sha1": "sha1", "sha256": "sha256", "sha512": "sha512", "md5": "md5"}
OFFSET_STREAM = "application/offset+octet-stream"
# Pieces are gathered to this size before a write: one thread hop and one hash
# update per MiB instead of per 64 KiB socket read.
WRITE_PIECE = 1024 * 1024
USER = web.RequestKey("user", str)
METHOD = web.RequestKey("method", str)
CONTENT_TYPES = {"original": 1, "challenge": 2, "duet": 3, "reaction": 4}
COLLECTION_METHODS = ("OPTIONS", "POST")
ITEM_METHODS = ("OPTIONS", "HEAD", "PATCH", "DELETE")
# The longest Upload-Metadata a HEAD answer carries (TusApp._stored_metadata).
HEAD_METADATA_MAX = 8000
_DIGITS = re.compile(r"[0-9]+")
_METADATA_SPACE = re.compile(r"[ \t]+")
_METADATA_KEY = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # visible ASCII but ','
_PATH_SEPARATORS = re.compile(r"[/\\]")


# Waiting too long for a pooled database connection is the database being slow or
# saturated: 503 + Retry-After like any outage (it is not a builtin TimeoutError, so
# the shared mapping, reels.interceptors.TRANSIENT_ERRORS, does not know it).
OUTAGES: tuple[type[BaseException], ...] = (sqlalchemy.exc.TimeoutError,)


class UploadGone(errors.NotFound):
    """The upload expired unfinished (tus expiration: 410, we keep track of it)."""


class UnusableUpload(errors.InvalidArgument):
    """All bytes arrived, but the content is not a usable video (422)."""


class MetadataTooLarge(errors.InvalidArgument):
    """``Upload-Metadata`` is longer than any valid upload needs (431)."""


class UnsupportedContentType(errors.InvalidArgument):
    """A body that is not ``application/offset+octet-stream`` (415, tus core)."""

    def __init__(self, what: str, got: str) -> None:
        super().__init__(
            f"{what} needs Content-Type: {OFFSET_STREAM} (got '{text.shown(got) or 'none'}')",
            [("Content-Type", f"must be {OFFSET_STREAM}")],
        )


class _AlreadyComplete(Exception):
    """A PATCH found its upload complete (answered by ``TusApp._patch_completed``)."""

    def __init__(self, view: UploadView) -> None:
        super().__init__(view.upload_id)
        self.view = view


def _check_live(view: UploadView) -> None:
    """:class:`UploadGone` (410) for an upload that expired unfinished."""
    if view.state == "open" and view.expires_at < datetime.now(UTC):
        raise UploadGone(
            "upload",
            view.upload_id,
            f"upload {view.upload_id} expired at {http_date(view.expires_at)} before it was "
            "finished; start a new upload",
        )


class BodyInterrupted(Exception):
    """The client's PATCH body broke off mid-way (not a server or dependency failure)."""


def tus_status(exc: errors.ReelsError) -> int | None:
    """tus's own status for ``exc``, or None for the shared mapping (reels.http_errors)."""
    if isinstance(exc, ChecksumMismatch):
        return 460
    if isinstance(exc, UploadGone):
        return 410
    if isinstance(exc, UnusableUpload):
        return 422
    if isinstance(exc, MetadataTooLarge):
        return 431
    if isinstance(exc, UnsupportedContentType):
        return 415
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
    return http_error(exc, status=status, outages=OUTAGES).json_response(**headers)


def parse_metadata(header: str) -> dict[str, str]:
    """``key base64,key2 base64`` -> dict; a key without a value (``filetype ``, a bare
    ``title``) maps to "". A repeated key, or a value that is not base64 of UTF-8, is 400.

    tus: "The key and value MUST be separated by a space. The key MUST NOT contain
    spaces and commas and MUST NOT be empty. The key SHOULD be ASCII encoded". The
    separator is read as HTTP's whitespace (one or more SP or HTAB): neither can be part
    of a key or of base64, so a client that writes a tab is understood, not misread as
    a junk key. A key is visible ASCII (``!``-``~``, no comma); any other key, and a
    pair with more than a key and a value, is 400 naming the pair.
    """
    out: dict[str, str] = {}
    for pair in filter(None, (p.strip(" \t") for p in header.split(","))):
        parts = _METADATA_SPACE.split(pair)
        name, value = parts[0], parts[1] if len(parts) > 1 else ""
        if len(parts) > 2 or not _METADATA_KEY.fullmatch(name):
            shown = text.shown(pair)
            problem = (
                "a key and a value separated by a space"
                if len(parts) > 2
                else "a key of visible ASCII characters (tus)"
            )
            raise errors.InvalidArgument(
                f"Upload-Metadata pair '{shown}' is not {problem}",
                [(f"Upload-Metadata.{text.shown(name, 20)}", f"must be {problem}")],
            )
        if name in out:
            raise errors.InvalidArgument(
                f"Upload-Metadata names '{name}' twice (tus: every key is unique)",
                [(f"Upload-Metadata.{name}", "repeated")],
            )
        try:
            out[name] = base64.b64decode(value, validate=True).decode() if value else ""
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise errors.InvalidArgument(
                f"Upload-Metadata value of '{name}' is not base64 UTF-8",
                [(f"Upload-Metadata.{name}", "must be base64 of UTF-8 text")],
            ) from exc
    return out


def encode_metadata(values: dict[str, str]) -> str:
    """The ``Upload-Metadata`` form of ``values``; empty values are left out."""
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}"
        for key, value in values.items()
        if value
    )


def parse_count(headers: Mapping[str, str], name: str) -> int | None:
    """A tus integer header (``Upload-Offset``, ``Upload-Length``): ASCII digits only
    (no sign, spaces inside, ``_`` or other scripts' digits); None when absent."""
    raw = headers.get(name)
    if raw is None:
        return None
    if not _DIGITS.fullmatch(raw.strip()):
        raise errors.InvalidArgument(
            f"{name} must be a non-negative integer (got '{text.shown(raw)}')",
            [(name, "not a non-negative integer")],
        )
    return int(raw.strip())


def http_date(when: datetime) -> str:
    """RFC 9110 IMF-fixdate, as ``Upload-Expires`` takes it."""
    return format_datetime(when.astimezone(UTC), usegmt=True)


async def coalesce(request: web.Request, size: int = WRITE_PIECE) -> AsyncIterator[memoryview]:
    """The request body in pieces of about ``size`` bytes.

    Socket reads are copied once, into a preallocated buffer (no regrowing); each full
    buffer is handed over as a view and a fresh one collects the next piece while the
    consumer writes this one.
    """
    if request.content_length is not None:
        # A small body gets a buffer its size, not a whole piece: 1,000 PATCHes of a
        # 40 KB clip in flight would otherwise hold 1 GiB of buffers.
        size = max(1, min(size, request.content_length))
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

    def __init__(
        self, core: UploadCore, auth: AuthConfig | None = None, *, verify_wait_s: float = 10.0
    ) -> None:
        self.core = core
        self.verify_wait_s = verify_wait_s
        """How long the completing PATCH waits for the upload's checks (scan, probe)
        before answering 204 anyway (UploadCore.complete_within)."""
        auth = auth or AuthConfig()
        self.verifier = TokenVerifier(auth) if auth.required else None
        self.metadata_limit = metadata_header_limit(core.limits)
        # OpenTelemetry first: its SERVER span (child of Envoy's, via traceparent) is
        # current while the request runs, so the outbox event of a completing PATCH
        # carries this trace on (reels.telemetry).
        self.app = web.Application(middlewares=[http_server_middleware(), self._middleware])
        # Every method reaches one handler per URL, which dispatches on the method the
        # request stands for (X-HTTP-Method-Override first): 405 + Allow for the rest.
        base = BASE_PATH.rstrip("/")
        for path in (base, base + "/"):
            self.app.router.add_route("*", path, self._collection)
        self.app.router.add_route("*", base + "/{upload_id}", self._item)

    # -- plumbing -------------------------------------------------------------------

    @staticmethod
    def method_of(request: web.Request) -> str:
        """tus core: ``X-HTTP-Method-Override``, when present, is the request's method."""
        override = request.headers.get("X-HTTP-Method-Override", "").strip()
        return override.upper() if override else request.method

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        method = request[METHOD] = self.method_of(request)
        try:
            if method != "OPTIONS":  # OPTIONS ignores Tus-Resumable (tus core)
                version = request.headers.get("Tus-Resumable")
                if version != TUS_VERSION:
                    got = f"Tus-Resumable {version}" if version else "no Tus-Resumable header"
                    response: web.StreamResponse = web.json_response(
                        {
                            "code": "FAILED_PRECONDITION",
                            "message": f"{got}: this server speaks tus {TUS_VERSION}",
                        },
                        status=412,
                        headers={"Tus-Version": TUS_VERSION},
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
        if method == "HEAD":
            response.headers["Cache-Control"] = "no-store"  # never a cached offset
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

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        return await self._dispatch(
            request, COLLECTION_METHODS, {"OPTIONS": self.options, "POST": self.create}
        )

    async def _item(self, request: web.Request) -> web.StreamResponse:
        handlers = {
            "OPTIONS": self.options,
            "HEAD": self.head,
            "PATCH": self.patch,
            "DELETE": self.delete,
        }
        return await self._dispatch(request, ITEM_METHODS, handlers)

    @staticmethod
    async def _dispatch(
        request: web.Request,
        allowed: tuple[str, ...],
        handlers: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]],
    ) -> web.StreamResponse:
        handler = handlers.get(request[METHOD])
        if handler is None:
            return web.json_response(
                {
                    "code": "UNIMPLEMENTED",
                    "message": f"{request[METHOD]} is not a tus method for this URL",
                },
                status=405,
                headers={"Allow": ", ".join(allowed)},
            )
        return await handler(request)

    async def _live(self, request: web.Request, upload_id: str) -> UploadView:
        """The caller's upload; :class:`UploadGone` (410) once it expired unfinished."""
        view = await self.core.get(request[USER], upload_id)
        _check_live(view)
        return view

    def _checksum(self, request: web.Request) -> tuple[str, bytes] | None:
        """``Upload-Checksum: <algorithm> <base64>``; 400 for an algorithm we lack or a
        malformed value, and for a checksum sent as a trailer (checksum-trailer)."""
        trailer = request.headers.get("Trailer", "").lower()
        if "upload-checksum" in trailer:
            raise errors.InvalidArgument(
                "Upload-Checksum as a trailer (checksum-trailer) is not supported; "
                "send it as a header",
                [("Trailer", "Upload-Checksum trailers are not supported")],
            )
        header = request.headers.get("Upload-Checksum")
        if header is None:
            return None
        name, _, value = header.strip().partition(" ")
        algorithm = CHECKSUM_ALGORITHMS.get(name.lower())
        if algorithm is None:
            raise errors.InvalidArgument(
                f"unsupported checksum algorithm '{text.shown(name)}'",
                [("Upload-Checksum", f"one of {', '.join(CHECKSUM_ALGORITHMS)}")],
            )
        try:
            digest = base64.b64decode(value.strip(), validate=True)
        except binascii.Error:
            digest = b""
        if not digest:
            raise errors.InvalidArgument(
                "Upload-Checksum must be '<algorithm> <base64 digest>'",
                [("Upload-Checksum", "no base64 digest")],
            )
        return algorithm, digest

    async def _receive(
        self,
        request: web.Request,
        upload_id: str,
        offset: int,
        checksum: tuple[str, bytes] | None,
        admit: Callable[[UploadView], None] | None = None,
    ) -> dict[str, str]:
        """Write the body at ``offset`` and, when it was the last byte, complete the
        upload. Returns the success headers; raises for every failure."""
        user = request[USER]
        try:
            view = await self.core.receive_stream(
                user,
                upload_id,
                offset,
                coalesce(request),
                length=request.content_length,
                checksum=checksum,
                admit=admit,
            )
        except BodyInterrupted as exc:
            # The client went away mid-body; what arrived is committed (see write_stream).
            log.info("tus body for %s interrupted: %s", upload_id, exc)
            raise errors.InvalidArgument(
                "the request body broke off; HEAD gives the offset to resume at"
            ) from exc
        new_offset = view.offset
        headers = {"Upload-Offset": str(new_offset), "Reels-Video-Id": view.video_id}
        if new_offset == view.size and view.state == "open":
            try:
                await self.core.complete_within(user, upload_id, self.verify_wait_s)
            except errors.InvalidArgument as exc:
                raise UnusableUpload(str(exc), exc.violations) from exc
        elif view.state == "open":
            headers["Upload-Expires"] = http_date(view.expires_at)
        return headers

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

    def _length(self, request: web.Request) -> int:
        """``Upload-Length`` of a creation; the extensions we lack are refused by name."""
        headers = request.headers
        if "Upload-Concat" in headers:
            raise errors.InvalidArgument(
                "Upload-Concat: the concatenation extension is not supported "
                "(Tus-Extension lists what is); upload the file as one upload",
                [("Upload-Concat", "concatenation is not supported")],
            )
        length = parse_count(headers, "Upload-Length")
        deferred = headers.get("Upload-Defer-Length")
        if deferred is not None:
            if deferred.strip() != "1":
                raise errors.InvalidArgument(
                    "Upload-Defer-Length must be 1", [("Upload-Defer-Length", "must be 1")]
                )
            if length is not None:
                raise errors.InvalidArgument(
                    "send Upload-Length or Upload-Defer-Length, not both",
                    [("Upload-Defer-Length", "not with Upload-Length")],
                )
            raise errors.InvalidArgument(
                "Upload-Defer-Length: creation-defer-length is not supported; send "
                "Upload-Length with the file's size (it is checked before any byte is stored)",
                [("Upload-Defer-Length", "deferred length is not supported")],
            )
        if length is None:
            raise errors.InvalidArgument(
                "Upload-Length (the file's size in bytes) is required",
                [("Upload-Length", "required")],
            )
        if length == 0:
            raise errors.InvalidArgument(
                "Upload-Length must be greater than 0: an empty file is no video",
                [("Upload-Length", "must be greater than 0")],
            )
        if length > self.core.limits.max_bytes:
            raise errors.ResourceExhausted(
                f"Upload-Length {length} exceeds the limit of {self.core.limits.max_bytes} bytes"
            )
        return length

    def _metadata(self, request: web.Request, length: int) -> NewUpload:
        raw = request.headers.get("Upload-Metadata", "")
        size = len(raw.encode("utf-8", "surrogateescape"))
        if size > self.metadata_limit:
            raise MetadataTooLarge(
                f"Upload-Metadata is {size} bytes; the most any valid upload needs is "
                f"{self.metadata_limit} (every field at its longest limit)",
                [("Upload-Metadata", f"at most {self.metadata_limit} bytes")],
            )
        meta = parse_metadata(raw)
        # tus-js-client sends filename/filetype; Uppy also name/type; gRPC names mime_type.
        path = meta.get("filename") or meta.get("name") or ""
        filename = _PATH_SEPARATORS.split(path)[-1].strip()
        content = meta.get("content_type", "original").strip().lower()
        return NewUpload(
            # An absent, empty or invisible title becomes the file's stem or "Untitled"
            # in limits.validate, as over gRPC.
            title=meta.get("title", ""),
            description=meta.get("description", ""),
            hashtags=normalize_hashtags(meta.get("hashtags", "")),
            content_type=CONTENT_TYPES.get(content, 1),
            audio_attribution=meta.get("audio_attribution", ""),
            declared_size=length,
            sha256_hex=meta.get("sha256") or None,
            filename=filename,
            mime_type=meta.get("filetype") or meta.get("type") or meta.get("mime_type", ""),
        )

    async def create(self, request: web.Request) -> web.Response:
        """creation, and creation-with-upload when the POST carries bytes.

        Everything that can be refused is checked before the upload exists; a body that
        then fails (checksum, broken off, unusable video) is answered with its own status
        plus ``Location`` and ``Upload-Offset``, so the client can resume the upload.
        """
        length = self._length(request)
        meta = self._metadata(request, length)
        has_body = request.body_exists and request.content_length != 0
        checksum = self._checksum(request) if has_body else None
        if has_body and request.content_type != OFFSET_STREAM:
            raise UnsupportedContentType("a creation body", request.headers.get("Content-Type", ""))
        if has_body and (request.content_length or 0) > length:
            raise OutOfRange(
                f"the body is {request.content_length} bytes, more than Upload-Length {length}"
            )
        view = await self.core.create(request[USER], meta)
        headers = {
            "Location": self._location(view.upload_id),
            "Reels-Video-Id": view.video_id,
            "Upload-Offset": "0",
            "Upload-Expires": http_date(view.expires_at),
        }
        if has_body:
            try:
                headers.update(await self._receive(request, view.upload_id, 0, checksum))
            except errors.ReelsError as exc:
                now = await self.core.get(request[USER], view.upload_id)
                headers["Upload-Offset"] = str(now.offset)
                return _error(exc, **headers)
            if headers["Upload-Offset"] == str(length):
                headers.pop("Upload-Expires", None)  # complete: it no longer expires
        return web.Response(status=201, headers=headers)

    async def head(self, request: web.Request) -> web.Response:
        upload_id = request.match_info["upload_id"]
        view = await self._live(request, upload_id)
        headers = {
            "Upload-Offset": str(view.offset),
            "Upload-Length": str(view.size),
            "Reels-Video-Id": view.video_id,
        }
        if view.state == "open":
            headers["Upload-Expires"] = http_date(view.expires_at)
        metadata = await self._stored_metadata(view)
        if metadata:
            headers["Upload-Metadata"] = metadata
        return web.Response(status=200, headers=headers)

    async def _stored_metadata(self, view: UploadView) -> str:
        """The upload's metadata as stored (after normalising), in tus's own form.

        Kept within :data:`HEAD_METADATA_MAX`: a response header past 8 KiB breaks
        common clients on resume (aiohttp's parser, Node's 16 KiB for all headers), so
        the long texts (description, then hashtags, then audio attribution) are left
        out of a HEAD answer that would otherwise exceed it; the status API has them.
        """
        async with self.core.autocommit() as session:
            video = await session.get(Video, uuid.UUID(view.video_id))
            upload = await session.get(Upload, uuid.UUID(view.upload_id))
        if video is None:
            return ""
        values = {
            "filename": video.filename or "",
            "filetype": video.mime_type or "",
            "title": video.title,
            "description": video.description,
            "hashtags": " ".join(f"#{tag}" for tag in video.hashtags or []),
            "content_type": video.content_type or "",
            "audio_attribution": video.audio_attribution or "",
            "sha256": (upload.expected_sha256 if upload else None) or "",
        }
        encoded = encode_metadata(values)
        for long_text in ("description", "hashtags", "audio_attribution"):
            if len(encoded) <= HEAD_METADATA_MAX:
                break
            values.pop(long_text)
            encoded = encode_metadata(values)
        return encoded

    async def patch(self, request: web.Request) -> web.Response:
        upload_id = request.match_info["upload_id"]
        if request.content_type != OFFSET_STREAM:
            raise UnsupportedContentType("a PATCH", request.headers.get("Content-Type", ""))
        offset = parse_count(request.headers, "Upload-Offset")
        if offset is None:
            raise errors.InvalidArgument(
                "Upload-Offset header (an integer) is required", [("Upload-Offset", "required")]
            )
        checksum = self._checksum(request)
        length = parse_count(request.headers, "Upload-Length")

        def admit(view: UploadView) -> None:
            # Under the upload's lock, on the row the write goes on with (one read).
            _check_live(view)
            if length is not None and length != view.size:
                raise errors.InvalidArgument(
                    f"Upload-Length cannot change: this upload is {view.size} bytes (got {length})",
                    [("Upload-Length", f"must be {view.size}, as at creation")],
                )
            if view.state == "completed":
                raise _AlreadyComplete(view)

        try:
            headers = await self._receive(request, upload_id, offset, checksum, admit)
        except _AlreadyComplete as done:
            return await self._patch_completed(request, done.view, offset, checksum)
        return web.Response(status=204, headers=headers)

    @staticmethod
    async def _patch_completed(
        request: web.Request, view: UploadView, offset: int, checksum: tuple[str, bytes] | None
    ) -> web.Response:
        """A PATCH to an upload that is already complete (HEAD: offset == length).

        tus core: the offsets must match (409 otherwise) and the bytes are applied at the
        offset. At ``Upload-Offset == Upload-Length`` with an empty body the offsets match
        and there is nothing to apply, so it is 204 with the same ``Upload-Offset``: a
        client that lost the answer to its last PATCH, or that finishes with an empty
        one, is told the upload is done, not that it conflicts. At that offset any byte
        runs past the length (413); at another offset it is 409 with the offset to use,
        as for an open upload.
        """
        if offset != view.size:
            raise OffsetMismatch(view.size, offset, "the upload is already complete")
        body = b""
        if request.content_length is None and request.body_exists:
            body = await request.content.readany()
        if request.content_length or body:
            raise OutOfRange(
                f"the upload is complete at {view.size} bytes; a body at that offset runs past it"
            )
        if checksum is not None and hashlib.new(checksum[0], b"").digest() != checksum[1]:
            raise ChecksumMismatch("Upload-Checksum does not match the empty body")
        return web.Response(
            status=204,
            headers={"Upload-Offset": str(view.size), "Reels-Video-Id": view.video_id},
        )

    async def delete(self, request: web.Request) -> web.Response:
        await self.core.terminate(request[USER], request.match_info["upload_id"])
        return web.Response(status=204)


async def start_http(
    app: TusApp, host: str, port: int, *, backlog: int = 1024
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on host:port (0 = a free port); returns the runner and the port.

    A header may be as long as the longest valid ``Upload-Metadata`` needs (aiohttp's
    default 8190 bytes refuses a CJK description within our limit; tus_limits).
    ``backlog``: aiohttp's default of 128 overflowed when Envoy opened a few hundred
    connections at once; the kernel then drops SYNs, the client retries after 1 s, and
    Envoy's connect timeout answered 503 (issue 14).
    """
    runner = web.AppRunner(
        app.app,
        access_log=None,
        read_bufsize=1024 * 1024,
        max_field_size=http_field_limit(app.core.limits),
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, backlog=backlog)
    await site.start()
    sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, int(bound)
