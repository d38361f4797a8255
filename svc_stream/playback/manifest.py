"""Text media rewriting: every URI inside gets a signature, the master the device's ladder.

Stored playlists (written by svc_transcode) use relative URIs (``720p/index.m3u8``,
``seg_0000.ts``). A relative URI loses the query string of the playlist it came from,
so a player handed one signed master URL could not fetch anything else; we rewrite
each URI to carry its own signature. Two shapes:

* served by the media origin: URIs stay relative (``seg_0000.ts?exp=..&sig=..``) so the
  playlist works unchanged behind Envoy, a CDN or any host name;
* returned by GetManifest (served under ``/api/...``, not ``/media/``): absolute URLs
  under the media base URL.

The same holds for every text object the origin serves that names other objects
(:func:`sign_text`): a WebVTT thumbnails track (``storyboard.jpg#xywh=0,0,160,90`` cue
payloads; a player resolves them against the VTT's URL and loses its query) and the
storyboard's JSON index (its ``image``). A fragment (``#xywh=..``) is kept after the
signed query. In playlists every URI is covered: segment lines, and every ``URI=``
attribute (EXT-X-MAP, EXT-X-KEY, EXT-X-MEDIA renditions such as subtitles and audio,
EXT-X-I-FRAME-STREAM-INF, EXT-X-SESSION-DATA/-KEY, LL-HLS parts and hints); the
subtitle playlists' ``.vtt`` segments are then rewritten like any WebVTT (their cue
text is not a URI, so it is left alone).

Pure functions on text: no I/O here, so the origin and the RPCs share them and the
benchmark measures exactly what the service runs.
"""

from __future__ import annotations

import json
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


def sign_uri(base_key: str, uri: str, sign: UriSigner) -> str:
    """``uri`` with its signed query, fragment (``#xywh=..``) kept after the query; URIs
    that do not point inside the video's folder (:func:`resolve_key`) are left as they are."""
    path, hash_, fragment = uri.partition("#")
    key = resolve_key(base_key, path)
    return uri if key is None else f"{sign(key, path)}{hash_}{fragment}"


def _sign_attr(line: str, base_key: str, sign: UriSigner) -> str:
    def repl(m: re.Match[str]) -> str:
        signed = sign_uri(base_key, m.group(1), sign)
        return m.group(0) if signed == m.group(1) else f'URI="{signed}"'

    return _URI_ATTR.sub(repl, line)


def sign_media_playlist(text: str, key: str, sign: UriSigner) -> str:
    """A variant playlist with every segment (and map/key) URI signed."""
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            out.append(_sign_attr(line, key, sign) if 'URI="' in line else line)
        elif line.strip():
            out.append(sign_uri(key, line.strip(), sign))
        else:
            out.append(line)
    return "\n".join(out) + "\n"


# A cue payload that is a reference to one of our objects, not text to show: one token
# naming a file of a kind the origin serves (the thumbnails-track convention of JW
# Player, Video.js, Vidstack, hls.js' storyboard plugins), optionally with a fragment.
_OBJECT_REF = re.compile(
    r"^[^\s#?]+\.(?:jpe?g|png|webp|gif|avif|vtt|m3u8|ts|m4s|mp4|json)(?:#\S*)?$",
    re.IGNORECASE,
)
_VTT_TIMING = "-->"


def sign_webvtt(text: str, key: str, sign: UriSigner) -> str:
    """A WebVTT file with every cue payload that references one of our objects signed.

    Cue text that is not an object reference (subtitles, captions, chapters) and every
    other block (header, NOTE, STYLE, REGION) are kept byte for byte, line endings too.
    """
    out: list[str] = []
    in_cue = False
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        if not body.strip():
            in_cue = False
        elif _VTT_TIMING in body and not in_cue:
            in_cue = True  # the timing line; the payload follows until a blank line
        elif in_cue and _OBJECT_REF.match(body.strip()):
            ending = line[len(body) :]
            lead = body[: len(body) - len(body.lstrip())]
            out.append(f"{lead}{sign_uri(key, body.strip(), sign)}{ending}")
            continue
        out.append(line)
    return "".join(out)


# Fields of a JSON index (the storyboard's) that name objects next to it.
JSON_URI_FIELDS = ("image", "uri", "url")


def sign_json_index(text: str, key: str, sign: UriSigner) -> str:
    """A JSON object with its top-level ``image``/``uri``/``url`` references signed;
    anything else (or JSON that does not parse) is returned unchanged."""
    try:
        doc = json.loads(text)
    except ValueError:
        return text
    if not isinstance(doc, dict):
        return text
    changed = False
    for name in JSON_URI_FIELDS:
        value = doc.get(name)
        if isinstance(value, str) and _OBJECT_REF.match(value):
            signed = sign_uri(key, value, sign)
            changed |= signed != value
            doc[name] = signed
    return json.dumps(doc, indent=1) if changed else text


def rewrites(key: str) -> bool:
    """Whether the origin serves ``key`` rewritten (its URIs signed) rather than as stored."""
    return posixpath.splitext(key)[1].lower() in (".m3u8", ".vtt", ".json")


def sign_text(text: str, key: str, sign: UriSigner) -> str:
    """The URIs inside a non-playlist text object (WebVTT, JSON index) signed."""
    ext = posixpath.splitext(key)[1].lower()
    if ext == ".vtt":
        return sign_webvtt(text, key, sign)
    if ext == ".json":
        return sign_json_index(text, key, sign)
    return text


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
