"""The tus header limits follow from the field limits, and Envoy's config carries them."""

from __future__ import annotations

import sys
import unicodedata

from reels_dev.infra.envoy import EnvoySettings, render
from svc_upload.limits import UploadLimits
from svc_upload.tus import file_stem, parse_count, parse_metadata
from svc_upload.tus_limits import (
    WORST_BYTES_PER_CHAR,
    http_field_limit,
    metadata_header_limit,
    request_headers_kb,
)


def test_worst_bytes_per_char_bounds_every_composed_character() -> None:
    """A limit counts NFC characters; the widest canonical spelling of one is 9 bytes."""
    widest = 4  # UTF-8's widest code point
    for cp in range(sys.maxunicode + 1):
        if 0xD800 <= cp <= 0xDFFF or not unicodedata.decomposition(chr(cp)):
            continue
        ch = chr(cp)
        decomposed = unicodedata.normalize("NFD", ch)
        if unicodedata.normalize("NFC", decomposed) == ch:
            widest = max(widest, len(decomposed.encode()))
    assert widest == WORST_BYTES_PER_CHAR


def test_the_limit_grows_with_the_field_limits_and_stays_within_envoy_and_aiohttp() -> None:
    default = metadata_header_limit()
    assert default > 8190  # aiohttp's default, which a CJK description overran
    longer = metadata_header_limit(UploadLimits(description_max=5000))
    assert longer - default >= 4 * (5000 - 2200) * WORST_BYTES_PER_CHAR // 3
    assert request_headers_kb() * 1024 > default
    assert http_field_limit() >= request_headers_kb() * 1024


def test_envoy_is_rendered_with_the_derived_header_limit() -> None:
    config = render(EnvoySettings())
    listener = config["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["max_request_headers_kb"] == request_headers_kb()
    assert hcm["max_request_headers_kb"] > 60  # Envoy's default would not pass it


def test_metadata_and_count_parsing() -> None:
    assert parse_metadata("filetype ,title,filename Y2xpcC5tcDQ=") == {
        "filetype": "",
        "title": "",
        "filename": "clip.mp4",
    }
    assert parse_count({"Upload-Offset": "007"}, "Upload-Offset") == 7
    assert parse_count({}, "Upload-Offset") is None
    assert file_stem("C:\\fakepath\\a.b.mp4") == "a.b"
    assert file_stem(".mp4") == ""
