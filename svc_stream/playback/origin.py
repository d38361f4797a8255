"""The media origin: ``GET /media/<key>?exp=..&sig=..`` straight from the object store.

Envoy routes ``/media/`` here without a JWT (players and CDNs cannot attach one); the
signed URL is the credential. What a player gets:

* playlists rewritten on the fly so every URI inside carries its own signature (same
  expiry as the URL that fetched it), the master filtered to the device's ladder and
  to variants that exist, start rendition first; ``Cache-Control: public, max-age=5``
  (short: rewritten per signature bucket, and a republish must show up quickly). The
  other text media that name objects are rewritten the same way (manifest.sign_text):
  WebVTT tracks (the storyboard's ``storyboard.jpg#xywh=..`` cues, subtitle segments)
  and the storyboard's JSON index, so whatever a player derives from a signed URL is
  signed too;
* live playlists (keys under ``live/``, written by svc_chat's ingest every 1 s segment):
  ``Cache-Control: public, max-age=0, s-maxage=1`` (:data:`LIVE_PLAYLIST_CACHE`). The issue
  asks for "about half a segment", and HTTP ages are whole seconds: ``max-age=1`` lets a
  browser reuse a playlist for a whole segment (a player would then ask for it, get the
  same list and fall a segment behind). So browsers never reuse one (``max-age=0``), and
  a shared cache (CDN) may serve one copy for at most 1 s (``s-maxage=1``): its viewers
  collapse into at most one origin fetch per playlist per second, at an average extra
  staleness of half a segment. Live segments are immutable like VOD ones (ffmpeg writes
  each under a temporary name and renames it; numbering continues across a resume).
  Nothing is signed per folder: a live master URL reaches variants and segments that
  did not exist when it was signed because every playlist is re-read and re-signed on
  each fetch (same expiry as the URL that fetched it), exactly as for VOD;
* segments, images, preview: streamed in chunks (never whole in memory), single
  ``Range`` requests (206 + Content-Range; 416 + ``Content-Range: bytes */size`` when
  unsatisfiable), ``Cache-Control: public, max-age=31536000, immutable`` (an object
  key never changes content: a republish writes new segments);
* CORS for browser players (hls.js, dash.js, Shaka) on any page's origin (the signed
  URL is the credential, no cookies): ``Access-Control-Allow-Origin: *``,
  Content-Range/Content-Length/Accept-Ranges exposed, an OPTIONS preflight answered
  without a signature, allowing ``Range`` and the CMCD headers (``CMCD-Request``,
  ``-Object``, ``-Status``, ``-Session``, CTA-5004) plus whatever else the player asks
  for. Envoy leaves ``/media/`` CORS to this origin (as a CDN would leave it to S3's);
* parameters a player adds to the URL (CMCD, cache busters, LL-HLS directives) are
  ignored: only the key, the expiry and our own parameters are signed (reels/media_urls.py);
* a request target longer than :data:`MAX_TARGET_BYTES` (8 KiB, what most servers and
  CDNs accept; our URLs are a few hundred bytes) is 414, and a request aiohttp cannot
  parse at all is 400: both JSON bodies in the shared error shape
  (``reels.http_errors``) that never echo the request back (aiohttp's own answer
  quoted the request line); Envoy passes request lines up to its header limit, so the
  parser's line limit follows it (:data:`MAX_LINE_BYTES`);
* 403 for a missing, wrong or expired signature, or any of our parameters changed,
  added or repeated; 404 for an unknown key; 503 with
  ``Retry-After`` when the store is unreachable or too slow (every store call has a
  deadline, so nothing hangs). Error responses are ``no-store``.

Production: this origin is swapped for S3 + a CDN by configuration alone. Point
``REELS_MEDIA_BASE_URL`` at the CDN and give the CDN the signing secret
(``REELS_MEDIA_SIGNING_KEY``) in an edge function that performs :meth:`UrlSigner.verify`
(or switch ``UrlSigner`` to the CDN's native signed-URL format); the playlist rewrite
runs at the edge or in this origin kept as the CDN's origin for ``*.m3u8`` only, while
segments come straight from the bucket.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import re
from urllib.parse import unquote

import grpc
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from reels.http_errors import HttpError, http_error
from reels.media_urls import SignatureError, UrlSigner
from reels.storage import validate_key
from svc_stream.playback import manifest
from svc_stream.playback.devices import parse_device
from svc_stream.playback.live import is_live_key
from svc_stream.playback.media_store import MediaStore, StorageUnavailable

log = logging.getLogger(__name__)

DEFAULT_PORT = 8090
DEFAULT_HOST = "127.0.0.1"
RETRY_AFTER_S = 2
PLAYLIST_CACHE = "public, max-age=5"
LIVE_PLAYLIST_CACHE = "public, max-age=0, s-maxage=1"
IMMUTABLE_CACHE = "public, max-age=31536000, immutable"
CONTENT_TYPES = {
    ".m3u8": manifest.CONTENT_TYPE,
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".vtt": "text/vtt",
    ".json": "application/json",
}
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Range, Content-Length, Accept-Ranges, ETag",
}
# Request headers a browser player sends to media: byte ranges, and CMCD in header mode
# (CTA-5004: hls.js `cmcd: {useHeaders: true}`, dash.js, Shaka). Always allowed; any
# other header a preflight asks for is allowed too (no credentials ride on these URLs).
PLAYER_REQUEST_HEADERS = ("Range", "CMCD-Request", "CMCD-Object", "CMCD-Status", "CMCD-Session")
# The longest request target (path + query) we answer; longer is 414. The parser itself
# accepts lines up to MAX_LINE_BYTES (Envoy's max_request_headers_kb is 75 KiB, and
# the request line counts toward it), so what Envoy forwards gets a clean 414 from us
# rather than the parser's own 400.
MAX_TARGET_BYTES = 8192
MAX_LINE_BYTES = 80 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")  # an RFC 9110 field name


class Unsatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``[start, end)`` of a single byte range, None to serve the whole object.

    Malformed or multi-range headers are ignored (RFC 9110 allows serving 200);
    a well-formed range outside the object raises :class:`Unsatisfiable`.
    """
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - n), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if start >= size or (last != "" and int(last) < start):
        raise Unsatisfiable
    return start, end


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.Response(
        status=status,
        text=message + "\n",
        headers={**CORS_HEADERS, "Cache-Control": "no-store", **headers},
    )


def _json_error(err: HttpError, **headers: str) -> web.Response:
    return err.json_response(**CORS_HEADERS, **{"Cache-Control": "no-store"}, **headers)


class _QuietRequestHandler(RequestHandler):
    """aiohttp's connection handler, minus its habit of echoing unparsable requests.

    aiohttp answers a request it cannot parse (a line over the limit, a bad method, a
    malformed header) with a text/plain 400 quoting the offending bytes. Ours is the
    shared JSON shape with a fixed message; errors past the parser are unchanged.
    """

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500 or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        log.info("origin: unparsable request refused (%s)", type(exc).__name__)
        err = HttpError(
            status,
            grpc.StatusCode.INVALID_ARGUMENT,
            "malformed or oversized request (request line or a header too long?)",
        )
        response = _json_error(err)
        response.force_close()
        return response


class _QuietServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class _OriginRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _QuietServer  # same state, our handler class per connection
        return server


class MediaOrigin:
    """aiohttp application serving signed media from a :class:`MediaStore`."""

    def __init__(self, store: MediaStore, signer: UrlSigner) -> None:
        self.store = store
        self.signer = signer
        self.app = web.Application()
        self.app.router.add_route("GET", "/media/{key:.+}", self.get)
        self.app.router.add_route("HEAD", "/media/{key:.+}", self.get)
        self.app.router.add_route("OPTIONS", "/media/{key:.+}", self.options)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> int:
        """Listen (port 0 picks a free one); returns the bound port."""
        runner = _OriginRunner(
            self.app,
            access_log=None,
            handler_cancellation=True,
            max_line_size=MAX_LINE_BYTES,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server  # noqa: SLF001 - aiohttp exposes no public bound address
        self.port = server.sockets[0].getsockname()[1] if server and server.sockets else port
        return int(self.port or 0)

    async def serve(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        """Listen until cancelled, then close (a supervised loop of svc_stream's App)."""
        bound = await self.start(host, port)
        log.info("media origin on port %d, URLs under %s", bound, self.signer.base_url)
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def options(self, request: web.Request) -> web.Response:
        allowed = {h.lower(): h for h in PLAYER_REQUEST_HEADERS}
        asked = request.headers.get("Access-Control-Request-Headers", "")
        for name in asked.split(","):
            name = name.strip()
            if _TOKEN.match(name):
                allowed.setdefault(name.lower(), name)
        return web.Response(
            status=204,
            headers={
                **CORS_HEADERS,
                "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
                "Access-Control-Allow-Headers": ", ".join(allowed.values()),
                "Access-Control-Max-Age": "86400",
                # The answer depends on what was asked: a cache must not hand it to others.
                "Vary": "Access-Control-Request-Headers",
            },
        )

    async def get(self, request: web.Request) -> web.StreamResponse:
        if len(request.raw_path) > MAX_TARGET_BYTES:
            return _json_error(
                HttpError(
                    414,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"request URL too long (at most {MAX_TARGET_BYTES} bytes)",
                )
            )
        try:
            key = validate_key(unquote(request.match_info["key"]))
        except ValueError:
            return _error(404, "no such object")
        try:
            # The multidict itself: a repeated parameter of ours must be seen (and refused).
            signed = self.signer.verify(key, request.query)
        except SignatureError as exc:
            return _error(403, f"forbidden: {exc.reason}")
        try:
            if key.endswith(".m3u8"):
                return await self._playlist(key, signed)
            if manifest.rewrites(key):
                return await self._text(key, signed)
            return await self._object(request, key)
        except FileNotFoundError:
            return _error(404, "no such object")
        except StorageUnavailable as exc:
            # The shared HTTP mapper (reels.http_errors): an outage is 503 + Retry-After.
            err = http_error(exc, outages=(StorageUnavailable,), retry_after_s=RETRY_AFTER_S)
            return _error(err.status, err.message, **err.headers)

    async def _playlist(self, key: str, signed: dict[str, str]) -> web.Response:
        text = (await self.store.read_small(key)).decode("utf-8", errors="replace")
        exp = int(signed["exp"])
        sign = manifest.relative_signed(lambda k: self.signer.query(k, exp))
        if manifest.is_master(text):
            present = await self.present_variants(text, key)
            body = manifest.render_master(text, key, parse_device(signed.get("dev")), present, sign)
        else:
            body = manifest.sign_media_playlist(text, key, sign)
        return web.Response(
            body=body.encode(),
            headers={
                **CORS_HEADERS,
                "Content-Type": manifest.CONTENT_TYPE,
                "Cache-Control": LIVE_PLAYLIST_CACHE if is_live_key(key) else PLAYLIST_CACHE,
            },
        )

    async def _text(self, key: str, signed: dict[str, str]) -> web.Response:
        """A WebVTT track or JSON index with the URIs inside signed (as playlists are)."""
        raw = await self.store.read_small(key)
        exp = int(signed["exp"])
        sign = manifest.relative_signed(lambda k: self.signer.query(k, exp))
        body = manifest.sign_text(raw.decode("utf-8", errors="replace"), key, sign)
        return web.Response(
            body=body.encode(),
            headers={
                **CORS_HEADERS,
                "Content-Type": CONTENT_TYPES.get(posixpath.splitext(key)[1].lower(), "text/plain"),
                "Cache-Control": PLAYLIST_CACHE,
            },
        )

    async def present_variants(self, text: str, key: str) -> set[str]:
        keys = manifest.variant_keys(text, key)
        return {k for k in keys if await self.store.exists(k)}

    async def _object(self, request: web.Request, key: str) -> web.StreamResponse:
        size = await self.store.size(key)
        headers = {
            **CORS_HEADERS,
            "Content-Type": CONTENT_TYPES.get(
                posixpath.splitext(key)[1].lower(), "application/octet-stream"
            ),
            "Cache-Control": IMMUTABLE_CACHE,
            "Accept-Ranges": "bytes",
        }
        try:
            wanted = parse_range(request.headers.get("Range"), size)
        except Unsatisfiable:
            return _error(416, "range not satisfiable", **{"Content-Range": f"bytes */{size}"})
        start, end = wanted if wanted is not None else (0, size)
        response = web.StreamResponse(status=206 if wanted is not None else 200, headers=headers)
        if wanted is not None:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        response.content_length = end - start
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        try:
            async for chunk in self.store.stream(key, start, end):
                await response.write(chunk)
        except StorageUnavailable as exc:
            # Headers are out: the only honest signal left is a short body, so cut the
            # connection; the player retries the segment (with a Range if it likes).
            log.warning("origin: storage failed mid-body for %s: %s", key, exc)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response
