"""HLS playlist rewriting: every URI gets a signature, the master gets the device's ladder.

Stored playlists (written by svc_transcode) use relative URIs (``720p/index.m3u8``,
``seg_0000.ts``). A relative URI loses the query string of the playlist it came from,
so a player handed one signed master URL could not fetch anything else; we rewrite
each URI to carry its own signature. Two shapes:

* served by the media origin: URIs stay relative (``seg_0000.ts?exp=..&sig=..``) so the
  playlist works unchanged behind Envoy, a CDN or any host name;
* returned by GetManifest (served under ``/api/...``, not ``/media/``): absolute URLs
  under the media base URL.

Pure functions on text: no I/O here, so the origin and the RPCs share them and the
benchmark measures exactly what the service runs.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from urllib.parse import quote

from svc_stream.playback.devices import DeviceClass, choose_ladder

CONTENT_TYPE = "application/vnd.apple.mpegurl"
_URI_ATTR = re.compile(r'URI="([^"]*)"')
_RESOLUTION = re.compile(r"RESOLUTION=(\d+)x(\d+)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")

# (key of the referenced object, the URI as written) -> the URI to write instead.
UriSigner = Callable[[str, str], str]


def is_master(text: str) -> bool:
    return "#EXT-X-STREAM-INF" in text


def resolve_key(base_key: str, uri: str) -> str | None:
    """Object key a playlist URI points at, or None for URIs we must not touch.

    Absolute URLs, query-carrying URIs and anything escaping the playlist's video
    folder are left alone (and so cannot be used to sign other videos' objects).
    """
    if not uri or _SCHEME.match(uri) or uri.startswith("/") or "?" in uri or "#" in uri:
        return None
    base_dir = posixpath.dirname(base_key)
    key = posixpath.normpath(posixpath.join(base_dir, uri))
    root = base_key.split("/", 2)
    video_root = "/".join(root[:2]) + "/" if len(root) > 2 else base_dir + "/"
    if not key.startswith(video_root) or ".." in key.split("/"):
        return None
    return key


def relative_signed(query_for: Callable[[str], str]) -> UriSigner:
    """URIs kept as written, plus the signed query of the object they point at."""
    return lambda key, uri: f"{uri}?{query_for(key)}"


def absolute_signed(url_for: Callable[[str], str]) -> UriSigner:
    """URIs replaced by absolute signed URLs (for playlists served outside /media/)."""
    return lambda key, uri: url_for(key)


def _sign_attr(line: str, base_key: str, sign: UriSigner) -> str:
    def repl(m: re.Match[str]) -> str:
        key = resolve_key(base_key, m.group(1))
        return m.group(0) if key is None else f'URI="{sign(key, m.group(1))}"'

    return _URI_ATTR.sub(repl, line)


def sign_media_playlist(text: str, key: str, sign: UriSigner) -> str:
    """A variant playlist with every segment (and map/key) URI signed."""
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            out.append(_sign_attr(line, key, sign) if 'URI="' in line else line)
        elif line.strip():
            target = resolve_key(key, line.strip())
            out.append(line if target is None else sign(target, line.strip()))
        else:
            out.append(line)
    return "\n".join(out) + "\n"


@dataclass
class Variant:
    tags: list[str]
    uri: str
    key: str | None
    short_side: int


def parse_master(text: str, key: str) -> tuple[list[str], list[Variant]]:
    """(header lines, variants in stored order)."""
    header: list[str] = []
    variants: list[Variant] = []
    pending: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("#EXT-X-STREAM-INF"):
            pending = [line]
        elif pending is not None and line.startswith("#"):
            pending.append(line)
        elif pending is not None and line.strip():
            m = _RESOLUTION.search(pending[0])
            short = min(int(m.group(1)), int(m.group(2))) if m else 0
            uri = line.strip()
            variants.append(Variant(pending, uri, resolve_key(key, uri), short))
            pending = None
        elif line.strip():
            header.append(line)
    return header, variants


def variant_keys(text: str, key: str) -> list[str]:
    return [v.key for v in parse_master(text, key)[1] if v.key is not None]


def render_master(
    text: str, key: str, device: DeviceClass, present: Collection[str], sign: UriSigner
) -> str:
    """The master for ``device``: missing variants dropped, ladder capped, start first.

    ``present`` holds the variant keys that exist in the store (the caller checks; this
    stays pure). Header tags (I-frame and media renditions included) keep their order
    and get their URIs signed.
    """
    header, variants = parse_master(text, key)
    available = [v for v in variants if v.key is None or v.key in present]
    offered, start = choose_ladder(available, device, lambda v: v.short_side)
    if start is not None:
        # Players start on the first variant listed; the rest keep their stored order.
        offered = [start, *(v for v in variants if v in offered and v is not start)]
    out = [_sign_attr(h, key, sign) if 'URI="' in h else h for h in header]
    for v in offered:
        out.extend(v.tags)
        out.append(v.uri if v.key is None else sign(v.key, v.uri))
    return "\n".join(out) + "\n"


def quote_key(key: str) -> str:
    return quote(key, safe="/")
