"""How large a tus request's headers may be, derived from our own field limits.

``Upload-Metadata`` carries every text field of an upload in one header, base64 of
UTF-8. HTTP servers cap a header at 8 KiB by default (aiohttp: "Got more than 8190
bytes"), which a description within our 2,200-character limit overruns as soon as it
is CJK (3 bytes a character, 4/3 for base64: ~8.8 KB). So the cap is computed here
from the limits in :class:`svc_upload.limits.UploadLimits`, and both svc_upload's tus
endpoint (aiohttp ``max_field_size``) and Envoy (``max_request_headers_kb``) are
configured from it; only a header above it is refused (431).

The worst case per character is 9 bytes, not UTF-8's 4: a limit counts characters
*after* NFC, and one NFC character can arrive as up to four code points (macOS and
iOS send file names, and sometimes text, decomposed). The longest is 9 bytes (Hangul
syllables, Kannada U+0CCB in NFD; tests check the bound against ``unicodedata``).
Machine tokens (MIME types, the content type, sha256 hex) are ASCII.

Light on purpose (no aiohttp, no database): ``reels_dev.infra.envoy`` imports it.
"""

from __future__ import annotations

import math

from reels.text import HASHTAG_MAX_CHARS
from svc_upload.limits import MIME_TYPE_MAX, UploadLimits

# UTF-8 bytes one character (as counted after NFC) can take on the wire.
WORST_BYTES_PER_CHAR = 9
# Separators between hashtags in the one `hashtags` string: "#tag, #tag".
HASHTAG_SEPARATOR_CHARS = 3
# Keys we do not read but clients send anyway (Uppy: relativePath; app-specific keys).
OTHER_KEYS_BYTES = 4096
# Everything else in a request through Envoy: Authorization (a JWT), traceparent,
# x-forwarded-*, x-request-id, user agent, the other tus headers.
OTHER_HEADERS_KB = 16
CONTENT_TYPE_MAX = len("reaction")  # the longest content_type value (tus.CONTENT_TYPES)


def metadata_value_bytes(limits: UploadLimits) -> dict[str, int]:
    """The largest decoded value of each ``Upload-Metadata`` key we read, in bytes.

    Aliases count separately: Uppy sends both ``name`` and ``filename``, ``type`` and
    ``filetype``.
    """
    text = WORST_BYTES_PER_CHAR
    name = limits.filename_max * text
    return {
        "title": limits.title_max * text,
        "description": limits.description_max * text,
        "hashtags": limits.hashtags_max * (HASHTAG_MAX_CHARS * text + HASHTAG_SEPARATOR_CHARS),
        "audio_attribution": limits.audio_attribution_max * text,
        "filename": name,
        "name": name,
        "filetype": MIME_TYPE_MAX,
        "type": MIME_TYPE_MAX,
        "mime_type": MIME_TYPE_MAX,
        "content_type": CONTENT_TYPE_MAX,
        "sha256": 64,
    }


def base64_len(n: int) -> int:
    return 4 * math.ceil(n / 3)


def metadata_header_limit(limits: UploadLimits | None = None) -> int:
    """The largest ``Upload-Metadata`` value (bytes) a valid upload can need.

    Every key we read with its value at its longest, ``key base64,`` each, plus room
    for keys we ignore.
    """
    values = metadata_value_bytes(limits or UploadLimits())
    pairs = sum(len(key) + 1 + base64_len(size) for key, size in values.items())
    return pairs + len(values) - 1 + OTHER_KEYS_BYTES


def request_headers_kb(limits: UploadLimits | None = None) -> int:
    """Envoy's ``max_request_headers_kb``: the largest metadata plus every other header."""
    return math.ceil(metadata_header_limit(limits) / 1024) + OTHER_HEADERS_KB


def http_field_limit(limits: UploadLimits | None = None) -> int:
    """aiohttp's ``max_field_size`` (one header line): whatever Envoy lets through, so a
    header over :func:`metadata_header_limit` gets our 431 with a reason, not the
    parser's bare 400."""
    return request_headers_kb(limits) * 1024
