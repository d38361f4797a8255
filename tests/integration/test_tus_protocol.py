"""tus 1.0 edge cases against svc_upload's own tus endpoint (no Envoy; see
tests/e2e/test_tus_edge_cases.py for the same through the front door).

Each test makes its inputs here: long texts in several scripts and normal forms,
metadata with empty values, the headers clients send for extensions we do or do not
support, and the protocol's error cases.
"""

from __future__ import annotations

import base64
import hashlib
import random
import unicodedata
import uuid
from collections.abc import Mapping

import aiohttp
import pytest
from sqlalchemy import text as sql

from reels_dev.keys import mint_token
from svc_upload.limits import UploadLimits
from svc_upload.tus import HEAD_METADATA_MAX, UNTITLED, parse_metadata
from svc_upload.tus_limits import http_field_limit, metadata_header_limit
from tests.integration.test_upload_service import (  # noqa: F401 - fixtures
    MAX_BYTES,
    Service,
    clips,
    svc,
)
from tests.media import MediaFactory
from tests.polling import eventually

LIMITS = UploadLimits()
OCTET = "application/offset+octet-stream"


def user() -> str:
    return f"tus-{uuid.uuid4().hex[:10]}"


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def metadata(**fields: str | None) -> str:
    """``Upload-Metadata``; a None value is a bare key (no space, no value)."""
    return ",".join(k if v is None else f"{k} {b64(v)}" for k, v in fields.items())


def cjk(n: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    return "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(n))


def nfd_hangul(n: int, seed: int = 2) -> str:
    """``n`` Hangul syllables with a final consonant, decomposed (3 jamo, 9 bytes each)."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        cp = rng.randint(0xAC00, 0xD7A3)
        if (cp - 0xAC00) % 28:
            out.append(chr(cp))
    return unicodedata.normalize("NFD", "".join(out))


def emoji(n: int, seed: int = 3) -> str:
    rng = random.Random(seed)
    return "".join(chr(rng.randint(0x1F600, 0x1F64F)) for _ in range(n))


class Tus:
    """A few raw tus requests as one user (fresh per instance: the quota is per user)."""

    def __init__(self, http: aiohttp.ClientSession, base: str, who: str | None = None) -> None:
        self.http = http
        self.base = base
        self.who = who or user()

    def headers(self, **extra: str) -> dict[str, str]:
        return {
            "Tus-Resumable": "1.0.0",
            "Authorization": f"Bearer {mint_token(self.who)}",
            **extra,
        }

    async def request(
        self, method: str, url: str, headers: dict[str, str], data: bytes | None = None
    ) -> tuple[int, Mapping[str, str], dict]:
        """Status, headers (case-insensitive: Envoy sends them lower-case) and JSON body."""
        async with self.http.request(method, url, headers=headers, data=data) as resp:
            raw = await resp.read()
            body = {}
            if raw and resp.content_type == "application/json":
                body = await resp.json()
            return resp.status, resp.headers, body

    async def create(self, length: int = 1000, meta: str | None = None, **headers: str):
        extra = {"Upload-Length": str(length), **headers}
        if meta is not None:
            extra["Upload-Metadata"] = meta
        return await self.request("POST", self.base, self.headers(**extra))

    def url(self, location: str) -> str:
        return self.base.split("/api/")[0] + location

    async def created_url(self, length: int = 1000, meta: str | None = None) -> str:
        status, headers, body = await self.create(length, meta or metadata(title="t"))
        assert status == 201, body
        return self.url(headers["Location"])

    async def patch(self, url: str, data: bytes, offset: int, **headers: str):
        h = self.headers(**{"Content-Type": OCTET, "Upload-Offset": str(offset), **headers})
        return await self.request("PATCH", url, h, data)

    async def head(self, url: str, **headers: str):
        return await self.request("HEAD", url, self.headers(**headers))


@pytest.fixture
async def tus(svc: Service) -> Tus:  # noqa: F811
    async with aiohttp.ClientSession() as http:
        yield Tus(http, svc.tus_url)


async def stored(svc: Service, video_id: str, column: str) -> object:  # noqa: F811
    return await svc.scalar(f"SELECT {column} FROM videos WHERE id = :v", v=video_id)


# --- Upload-Metadata size: derived from our own field limits --------------------------


@pytest.mark.parametrize(
    "description",
    [
        pytest.param(cjk(LIMITS.description_max), id="cjk-2200"),
        pytest.param(nfd_hangul(LIMITS.description_max), id="nfd-hangul-2200"),
        pytest.param(emoji(LIMITS.description_max), id="emoji-2200"),
    ],
)
async def test_a_description_at_its_limit_in_any_script_is_201_and_stored_intact(
    svc: Service,  # noqa: F811
    tus: Tus,
    description: str,
) -> None:
    header = metadata(filename="clip.mp4", title="長い説明", description=description)
    assert len(header) > 8190  # what aiohttp's default refused ("Got more than 8190 bytes")
    status, headers, body = await tus.create(meta=header)
    assert status == 201, body
    video_id = headers["Reels-Video-Id"]
    assert await stored(svc, video_id, "description") == unicodedata.normalize("NFC", description)
    # HEAD names the metadata, but stays readable by clients with 8 KiB header limits
    # (aiohttp's own client refused it before): the long description is left out.
    _, head, _ = await tus.head(tus.url(headers["Location"]))
    assert len(head["Upload-Metadata"]) <= HEAD_METADATA_MAX
    meta = parse_metadata(head["Upload-Metadata"])
    assert meta["title"] == "長い説明" and meta["filename"] == "clip.mp4"
    assert "description" not in meta


def longest_valid_metadata() -> str:
    """Every field we read at its longest, in the widest bytes a character can take."""
    tags = " ".join("#" + unicodedata.normalize("NFD", nfd_hangul(50, seed=i)) for i in range(30))
    name = nfd_hangul(LIMITS.filename_max - 4, seed=7) + ".mp4"
    return metadata(
        title=nfd_hangul(LIMITS.title_max, seed=4),
        description=nfd_hangul(LIMITS.description_max, seed=5),
        hashtags=tags,
        audio_attribution=nfd_hangul(LIMITS.audio_attribution_max, seed=6),
        filename=name,
        name=name,
        filetype="video/mp4",
        type="video/mp4",
        content_type="original",
        sha256="0" * 64,
    )


async def test_the_longest_valid_metadata_passes_and_one_byte_more_than_the_limit_is_431(
    svc: Service,  # noqa: F811
    tus: Tus,
) -> None:
    limit = metadata_header_limit(LIMITS)
    longest = longest_valid_metadata()
    assert len(longest) <= limit
    status, headers, body = await tus.create(meta=longest)
    assert status == 201, body
    tags = await stored(svc, headers["Reels-Video-Id"], "hashtags")
    assert len(tags) == 30

    # Padding with a key we ignore: a valid upload never needs this much.
    over = longest + ",x " + "A" * (limit - len(longest) - 3 + 1)
    assert len(over) == limit + 1
    status, _, body = await Tus(tus.http, tus.base).create(meta=over)
    assert status == 431, body
    assert f"{limit + 1} bytes" in body["message"] and str(limit) in body["message"]

    # Past what the HTTP parser takes at all: its own refusal, still a 4xx.
    huge = "x " + "A" * http_field_limit(LIMITS)
    status, _, _ = await Tus(tus.http, tus.base).create(meta=huge)
    assert status in (400, 431)


# --- empty values and the title's fallbacks -------------------------------------------


@pytest.mark.parametrize(
    ("fields", "title", "filename"),
    [
        # The listed case: `filetype ` (key, space, no value) and a bare `title`.
        ({"filename": "Holiday clip.mp4", "filetype": "", "title": None}, "Holiday clip", None),
        ({"filename": "beach.mov", "title": "", "filetype": None}, "beach", None),
        ({"title": None, "filetype": ""}, UNTITLED, ""),  # no file name at all
        ({"filename": "", "title": None}, UNTITLED, ""),
        ({"filename": ".mp4", "title": None}, UNTITLED, None),
        ({"filename": "noext", "title": None}, "noext", None),
        ({"filename": "my.trip.2024.mp4", "title": None}, "my.trip.2024", None),
        # Browsers' fake path and Windows paths: the file's own name.
        ({"filename": "C:\\fakepath\\Party.mp4", "title": None}, "Party", "Party.mp4"),
        ({"filename": "/Users/me/Movies/Dive.mov", "title": None}, "Dive", "Dive.mov"),
        # Uppy's `name` and `type`.
        ({"name": "uppy clip.webm", "type": "video/webm", "title": None}, "uppy clip", None),
        # A title of spaces is an empty one.
        ({"filename": "space.mp4", "title": "   "}, "space", None),
        ({"filename": "tab.mp4", "title": "\t\u3000"}, "tab", None),
        # A macOS (NFD) name becomes an NFC title.
        ({"filename": unicodedata.normalize("NFD", "Café.mp4"), "title": None}, "Café", None),
    ],
)
async def test_empty_metadata_values_are_201_and_the_title_falls_back(
    svc: Service,  # noqa: F811
    tus: Tus,
    fields: dict,
    title: str,
    filename: str | None,
) -> None:
    status, headers, body = await tus.create(meta=metadata(**fields))
    assert status == 201, body
    video_id = headers["Reels-Video-Id"]
    assert await stored(svc, video_id, "title") == title
    if filename is not None:
        assert (await stored(svc, video_id, "filename") or "") == filename


async def test_a_long_file_name_gives_a_title_cut_to_the_title_limit(
    svc: Service,  # noqa: F811
    tus: Tus,
) -> None:
    name = cjk(LIMITS.filename_max - 4) + ".mp4"
    status, headers, body = await tus.create(meta=metadata(filename=name, title=None))
    assert status == 201, body
    assert await stored(svc, headers["Reels-Video-Id"], "title") == name[: LIMITS.title_max]


async def test_bad_titles_are_still_refused_by_name(tus: Tus) -> None:
    status, _, body = await tus.create(meta=metadata(filename="a.mp4", title="bad\x00title"))
    assert status == 400 and "title" in body["message"], body
    status, _, body = await tus.create(meta=metadata(title="x" * (LIMITS.title_max + 1)))
    assert status == 400 and "title" in body["message"], body
    # A refused character in an otherwise invisible title is named, not replaced.
    status, _, body = await tus.create(meta=metadata(filename="a.mp4", title="\u200b\x00"))
    assert status == 400 and "title" in body["message"], body


# Review: an invisible title used to be 400 "title is required" over tus (this file said
# so) while one of spaces took the stem. The issue's rule is that invisible is empty, so
# both take the file name's stem, or "Untitled" with no file name, as over gRPC.
INVISIBLE_TITLES = [
    "\u200b",
    "\u3164",
    "\u180e",
    "\ufeff",
    "\u2060",
    "\u115f",
    "\u0301",
    "\U000e0041\U000e0042\U000e007f",  # tag characters
    "\u00a0\u3000",
]


def generated_invisible_titles(n: int, seed: int = 21) -> list[str]:
    """Texts of only invisible code points, picked by classification over all of Unicode
    (reels.text.is_visible), not from a list: spaces, format characters, fillers, marks."""
    from reels import text

    pool = [
        chr(cp)
        for cp in range(0x20, 0x30000)
        if not text.is_visible(chr(cp))
        and unicodedata.category(chr(cp)) not in ("Cc", "Cs", "Cn")
        and not text._refused(chr(cp))
        and not 0x2066 <= cp <= 0x2069
    ]
    rng = random.Random(seed)
    return ["".join(rng.choices(pool, k=rng.randint(1, 5))) for _ in range(n)]


@pytest.mark.parametrize(
    "title",
    INVISIBLE_TITLES + generated_invisible_titles(12),
    ids=lambda t: "+".join(f"{ord(c):04x}" for c in t),
)
async def test_an_invisible_title_is_an_empty_one_over_tus(
    svc: Service,  # noqa: F811
    tus: Tus,
    title: str,
) -> None:
    for filename, expected in [("Beach day.mp4", "Beach day"), (None, UNTITLED)]:
        fields = {"title": title, **({"filename": filename} if filename else {})}
        status, headers, body = await tus.create(meta=metadata(**fields))
        assert status == 201, body
        assert await stored(svc, headers["Reels-Video-Id"], "title") == expected


@pytest.mark.parametrize(
    "header",
    [
        "title " + b64("a") + ",title " + b64("b"),  # keys are unique
        "title not-base64!",
        "title " + base64.b64encode(b"\xff\xfe").decode(),  # not UTF-8
    ],
)
async def test_malformed_metadata_is_400(tus: Tus, header: str) -> None:
    status, _, body = await tus.create(meta=header)
    assert status == 400, body
    assert "Upload-Metadata" in body["message"]


# --- discovery and versions -----------------------------------------------------------


async def test_options_discovery_needs_no_version_and_advertises_only_what_works(
    tus: Tus,
) -> None:
    for url in (tus.base, tus.base + str(uuid.uuid4())):
        for version in (None, "0.2.2"):
            headers = {"Tus-Resumable": version} if version else {}
            status, h, _ = await tus.request("OPTIONS", url, headers)
            assert status == 204
            assert h["Tus-Version"] == "1.0.0" and h["Tus-Resumable"] == "1.0.0"
            assert h["Tus-Max-Size"] == str(MAX_BYTES)
            assert set(h["Tus-Extension"].split(",")) == {
                "creation",
                "creation-with-upload",
                "expiration",
                "checksum",
                "termination",
            }
            assert "sha1" in h["Tus-Checksum-Algorithm"].split(",")


@pytest.mark.parametrize("version", [None, "0.2.2", "1.0", "2.0.0"])
async def test_an_unsupported_tus_version_is_412_with_tus_version_and_not_processed(
    svc: Service,  # noqa: F811
    tus: Tus,
    version: str | None,
) -> None:
    headers = tus.headers(**{"Upload-Length": "10", "Upload-Metadata": metadata(title="v")})
    del headers["Tus-Resumable"]
    if version:
        headers["Tus-Resumable"] = version
    status, h, body = await tus.request("POST", tus.base, headers)
    assert status == 412 and h["Tus-Version"] == "1.0.0", body
    assert await svc.scalar("SELECT count(*) FROM videos WHERE creator_id = :u", u=tus.who) == 0


# --- creation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status", "says"),
    [
        ({"Upload-Defer-Length": "1"}, 400, "creation-defer-length is not supported"),
        ({"Upload-Defer-Length": "2"}, 400, "must be 1"),
        ({"Upload-Defer-Length": "1", "Upload-Length": "10"}, 400, "not both"),
        ({"Upload-Concat": "partial", "Upload-Length": "10"}, 400, "concatenation"),
        ({"Upload-Concat": "final;/a /b"}, 400, "concatenation"),
        ({}, 400, "Upload-Length"),
        ({"Upload-Length": "-1"}, 400, "non-negative integer"),
        ({"Upload-Length": "+10"}, 400, "non-negative integer"),
        ({"Upload-Length": "1_000"}, 400, "non-negative integer"),
        ({"Upload-Length": "１０"}, 400, "non-negative integer"),  # fullwidth digits
        ({"Upload-Length": "0"}, 400, "greater than 0"),  # an empty file is no video
        ({"Upload-Length": str(MAX_BYTES + 1)}, 413, "exceeds"),
    ],
)
async def test_creation_headers_we_do_not_take_are_refused_with_a_reason(
    svc: Service,  # noqa: F811
    tus: Tus,
    headers: dict[str, str],
    status: int,
    says: str,
) -> None:
    h = tus.headers(**{"Upload-Metadata": metadata(title="x"), **headers})
    got, _, body = await tus.request("POST", tus.base, h)
    assert got == status, body
    assert says in body["message"]
    assert await svc.scalar("SELECT count(*) FROM videos WHERE creator_id = :u", u=tus.who) == 0


async def test_creation_answers_location_offset_and_expires(tus: Tus) -> None:
    status, h, body = await tus.create(meta=metadata(title="x"))
    assert status == 201, body
    assert h["Location"].startswith("/api/v1/uploads/tus/")
    assert h["Upload-Offset"] == "0"
    assert h["Upload-Expires"].endswith(" GMT")


async def test_creation_with_upload_takes_the_first_bytes(tus: Tus) -> None:
    data = b"hello"
    h = tus.headers(
        **{
            "Upload-Length": "100",
            "Upload-Metadata": metadata(title="x"),
            "Content-Type": OCTET,
            "Upload-Checksum": "sha1 " + base64.b64encode(hashlib.sha1(data).digest()).decode(),
        }
    )
    status, headers, body = await tus.request("POST", tus.base, h, data)
    assert status == 201, body
    assert headers["Upload-Offset"] == "5" and "Upload-Expires" in headers
    url = tus.url(headers["Location"])
    _, head, _ = await tus.head(url)
    assert head["Upload-Offset"] == "5"
    status, headers, _ = await tus.patch(url, b"world", 5)
    assert (status, headers["Upload-Offset"]) == (204, "10")


async def test_creation_with_upload_of_a_whole_clip_completes_it(
    svc: Service,  # noqa: F811
    tus: Tus,
    clips: MediaFactory,  # noqa: F811
) -> None:
    data = (await clips.get("tiny")).read_bytes()
    h = tus.headers(
        **{
            "Upload-Length": str(len(data)),
            "Upload-Metadata": metadata(filename="whole.mp4", title=None),
            "Content-Type": OCTET,
        }
    )
    status, headers, body = await tus.request("POST", tus.base, h, data)
    assert status == 201, body
    assert headers["Upload-Offset"] == str(len(data))
    assert "Upload-Expires" not in headers  # complete: it no longer expires
    video_id = headers["Reels-Video-Id"]
    assert await stored(svc, video_id, "status") == "processing"
    assert await stored(svc, video_id, "title") == "whole"


async def test_creation_with_upload_refusals(svc: Service, tus: Tus) -> None:  # noqa: F811
    # A body that is not tus's content type: nothing is created.
    h = tus.headers(**{"Upload-Length": "100", "Upload-Metadata": metadata(title="x")})
    status, _, _ = await tus.request(
        "POST", tus.base, {**h, "Content-Type": "application/json"}, b"{}"
    )
    assert status == 415
    # A body longer than the upload: nothing is created.
    status, _, body = await tus.request(
        "POST", tus.base, {**h, "Content-Type": OCTET, "Upload-Length": "3"}, b"hello"
    )
    assert status == 413, body
    assert await svc.scalar("SELECT count(*) FROM videos WHERE creator_id = :u", u=tus.who) == 0
    # A checksum mismatch: the upload exists (Location), its bytes were not kept.
    bad = "sha1 " + base64.b64encode(b"x" * 20).decode()
    status, headers, body = await tus.request(
        "POST", tus.base, {**h, "Content-Type": OCTET, "Upload-Checksum": bad}, b"hello"
    )
    assert status == 460, body
    assert headers["Upload-Offset"] == "0" and headers["Location"]
    status, headers, _ = await tus.patch(tus.url(headers["Location"]), b"hello", 0)
    assert (status, headers["Upload-Offset"]) == (204, "5")


# --- HEAD -----------------------------------------------------------------------------


async def test_head_is_not_cached_and_names_offset_length_expiry_and_metadata(tus: Tus) -> None:
    url = await tus.created_url(
        321, metadata(filename="h.mp4", title="Head", hashtags="#a b", filetype="video/mp4")
    )
    status, h, _ = await tus.head(url)
    assert status == 200
    assert h["Cache-Control"] == "no-store"
    assert (h["Upload-Offset"], h["Upload-Length"]) == ("0", "321")
    assert "Upload-Defer-Length" not in h
    assert h["Upload-Expires"].endswith(" GMT")
    meta = parse_metadata(h["Upload-Metadata"])
    assert meta["title"] == "Head" and meta["filename"] == "h.mp4"
    assert meta["filetype"] == "video/mp4" and meta["hashtags"] == "#a #b"
    # Not found is not cached either, and says nothing of the offset.
    status, h, _ = await tus.head(tus.base + str(uuid.uuid4()))
    assert status == 404 and h["Cache-Control"] == "no-store" and "Upload-Offset" not in h


# --- PATCH ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "status"),
    [(None, 415), ("application/octet-stream", 415), ("text/plain", 415), (OCTET, 204)],
)
async def test_patch_needs_the_offset_octet_stream_type(
    tus: Tus, content_type: str | None, status: int
) -> None:
    url = await tus.created_url(10)
    headers = tus.headers(**{"Upload-Offset": "0"})
    if content_type:
        headers["Content-Type"] = content_type
    got, _, _ = await tus.request("PATCH", url, headers, b"abc")
    assert got == status


@pytest.mark.parametrize("offset", ["-1", "+0", "1_0", " ", "0x0", "٠"])
async def test_a_malformed_upload_offset_is_400(tus: Tus, offset: str) -> None:
    url = await tus.created_url(10)
    status, _, body = await tus.request(
        "PATCH",
        url,
        tus.headers(**{"Content-Type": OCTET, "Upload-Offset": offset}),
        b"abc",
    )
    assert status == 400, body


async def test_offset_conflict_length_change_and_past_the_end(tus: Tus) -> None:
    url = await tus.created_url(10)
    assert (await tus.patch(url, b"abc", 0))[0] == 204
    status, h, _ = await tus.patch(url, b"def", 0)  # not the current offset
    assert status == 409 and h["Upload-Offset"] == "3"
    status, h, _ = await tus.patch(url, b"def", 5)
    assert status == 409 and h["Upload-Offset"] == "3"
    status, _, body = await tus.patch(url, b"def", 3, **{"Upload-Length": "11"})
    assert status == 400 and "cannot change" in body["message"]
    status, h, _ = await tus.patch(url, b"def", 3, **{"Upload-Length": "10"})  # same: fine
    assert (status, h["Upload-Offset"]) == (204, "6")
    status, _, _ = await tus.patch(url, b"x" * 5, 6)  # 6 + 5 > 10
    assert status == 413
    _, h, _ = await tus.head(url)
    assert h["Upload-Offset"] == "6"
    assert "Upload-Expires" in (await tus.patch(url, b"", 6))[1]


async def test_checksums(tus: Tus) -> None:
    url = await tus.created_url(10)
    data = b"abcde"
    _, options, _ = await tus.request("OPTIONS", url, {})
    assert set(options["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "sha256", "sha512", "md5"}
    good = "sha256 " + base64.b64encode(hashlib.sha256(data).digest()).decode()
    bad = "sha1 " + base64.b64encode(hashlib.sha1(b"other").digest()).decode()
    status, _, _ = await tus.patch(url, data, 0, **{"Upload-Checksum": bad})
    assert status == 460
    for header, says in [
        ("crc32 AAAAAA==", "unsupported checksum algorithm"),
        ("sha1", "base64"),
        ("sha1 !!!", "base64"),
    ]:
        status, _, body = await tus.patch(url, data, 0, **{"Upload-Checksum": header})
        assert status == 400 and says in body["message"], (header, body)
    status, _, body = await tus.patch(url, data, 0, Trailer="Upload-Checksum")
    assert status == 400 and "trailer" in body["message"]
    _, h, _ = await tus.head(url)
    assert h["Upload-Offset"] == "0"  # nothing refused was kept
    status, h, _ = await tus.patch(url, data, 0, **{"Upload-Checksum": good})
    assert (status, h["Upload-Offset"]) == (204, "5")


# --- expiration -----------------------------------------------------------------------


async def test_an_expired_upload_is_410(svc: Service, tus: Tus) -> None:  # noqa: F811
    url = await tus.created_url(10)
    upload_id = url.rsplit("/", 1)[1]
    async with svc.engine.begin() as conn:
        await conn.execute(
            sql("UPDATE uploads SET expires_at = now() - interval '1 minute' WHERE id = :u"),
            {"u": upload_id},
        )
    status, h, _ = await tus.head(url)
    assert status == 410 and "Upload-Offset" not in h
    status, _, body = await tus.patch(url, b"abc", 0)
    assert status == 410 and "expired" in body["message"]
    assert (await tus.request("DELETE", url, tus.headers()))[0] == 204  # still removable


# --- termination, methods, X-HTTP-Method-Override -------------------------------------


async def test_termination_then_404(tus: Tus) -> None:
    url = await tus.created_url(10)
    assert (await tus.request("DELETE", url, tus.headers()))[0] == 204
    assert (await tus.head(url))[0] == 404
    assert (await tus.patch(url, b"a", 0))[0] == 404
    assert (await tus.request("DELETE", url, tus.headers()))[0] == 404


async def test_x_http_method_override_is_the_method(tus: Tus) -> None:
    url = await tus.created_url(10)
    override = {"X-HTTP-Method-Override": "PATCH", "Content-Type": OCTET, "Upload-Offset": "0"}
    status, h, _ = await tus.request("POST", url, tus.headers(**override), b"abcd")
    assert (status, h["Upload-Offset"]) == (204, "4")
    status, h, _ = await tus.request("POST", url, tus.headers(**{"X-HTTP-Method-Override": "head"}))
    assert (status, h["Upload-Offset"], h["Cache-Control"]) == (200, "4", "no-store")
    status, _, _ = await tus.request(
        "GET", url, tus.headers(**{"X-HTTP-Method-Override": "DELETE"})
    )
    assert status == 204
    assert (await tus.head(url))[0] == 404


async def test_other_methods_are_405_with_allow(tus: Tus) -> None:
    url = await tus.created_url(10)
    status, h, _ = await tus.request("GET", url, tus.headers())
    assert status == 405 and set(h["Allow"].split(", ")) == {"OPTIONS", "HEAD", "PATCH", "DELETE"}
    status, h, _ = await tus.request("PUT", tus.base, tus.headers())
    assert status == 405 and set(h["Allow"].split(", ")) == {"OPTIONS", "POST"}


# --- review follow-ups: the rest of the core ------------------------------------------


async def test_a_415_has_the_json_shape_of_every_other_error(tus: Tus) -> None:
    h = tus.headers(**{"Upload-Length": "100", "Upload-Metadata": metadata(title="x")})
    for content_type in ["application/json", "text/plain; charset=utf-8"]:
        status, _, body = await tus.request(
            "POST", tus.base, {**h, "Content-Type": content_type}, b"{}"
        )
        assert status == 415
        assert body["code"] == "INVALID_ARGUMENT" and OCTET in body["message"], body
        assert body["field_violations"][0]["field"] == "Content-Type"
    url = await tus.created_url(10)
    status, _, body = await tus.request("PATCH", url, tus.headers(**{"Upload-Offset": "0"}), b"a")
    assert status == 415
    assert body["code"] == "INVALID_ARGUMENT" and OCTET in body["message"], body
    assert [v["field"] for v in body["field_violations"]] == ["Content-Type"]


async def test_upload_length_zero_names_the_header(tus: Tus) -> None:
    status, _, body = await tus.create(length=0, meta=metadata(title="x"))
    assert status == 400, body
    assert [v["field"] for v in body["field_violations"]] == ["Upload-Length"]
    assert "declared_size" not in str(body)


@pytest.mark.parametrize("space", ["\t", " \t", "\t\t", "  "])
async def test_key_and_value_may_be_separated_by_any_http_whitespace(
    svc: Service,  # noqa: F811
    tus: Tus,
    space: str,
) -> None:
    header = f"title{space}{b64('Tabbed')},filename {b64('t.mp4')}, hashtags{space}{b64('#a')}"
    assert parse_metadata(header) == {"title": "Tabbed", "filename": "t.mp4", "hashtags": "#a"}
    status, headers, body = await tus.create(meta=header)
    assert status == 201, body
    assert await stored(svc, headers["Reels-Video-Id"], "title") == "Tabbed"


def non_ascii_keys(n: int, seed: int = 22) -> list[str]:
    rng = random.Random(seed)
    letters = [chr(cp) for cp in range(0x80, 0x3000) if unicodedata.category(chr(cp))[0] == "L"]
    return ["".join(rng.choices(letters, k=rng.randint(1, 4))) for _ in range(n)] + [
        "titlé",
        "タイトル",
        "tit\u200ble",
    ]


@pytest.mark.parametrize("key", non_ascii_keys(5))
async def test_a_key_that_is_not_ascii_is_400_naming_the_pair(
    svc: Service,  # noqa: F811
    tus: Tus,
    key: str,
) -> None:
    # aiohttp sends a header as UTF-8 bytes; the server reads them back as text.
    header = f"{key} {b64('x')},title {b64('t')}"
    status, _, body = await tus.create(meta=header)
    assert status == 400, body
    assert "Upload-Metadata" in body["message"] and "ASCII" in body["message"], body
    assert await svc.scalar("SELECT count(*) FROM videos WHERE creator_id = :u", u=tus.who) == 0


@pytest.mark.parametrize(
    "header",
    [
        "title " + b64("a") + " " + b64("b"),  # three parts
        "title " + b64("a") + "\t" + b64("b"),
    ],
)
async def test_a_pair_that_is_not_key_space_value_is_400(tus: Tus, header: str) -> None:
    status, _, body = await tus.create(meta=header)
    assert status == 400, body
    assert "Upload-Metadata" in body["message"]


def test_keys_are_visible_ascii_without_comma() -> None:
    # HTTP clients refuse to send control characters; the parser refuses them anyway.
    from reels import errors

    for cp in [*range(0x00, 0x21), 0x7F, *range(0x80, 0x100, 7), 0x3000, 0x1F600]:
        if chr(cp) in " \t":
            continue  # separators
        with pytest.raises(errors.InvalidArgument) as info:
            parse_metadata(f"ti{chr(cp)}tle {b64('a')}")
        assert "ASCII" in info.value.message and chr(cp) not in info.value.message.split("'")[0]
    for cp in range(0x21, 0x7F):
        if chr(cp) != ",":
            assert parse_metadata(f"k{chr(cp)} {b64('v')}") == {f"k{chr(cp)}": "v"}


async def test_patch_to_a_completed_upload(
    svc: Service,  # noqa: F811
    tus: Tus,
    clips: MediaFactory,  # noqa: F811
) -> None:
    """HEAD of a completed upload says offset == length. An empty PATCH at that offset
    matches it and has nothing to apply: 204 (the client that lost the answer to its
    last PATCH learns it is done). Bytes there run past the length: 413. Another
    offset: 409 with the offset to use."""
    data = (await clips.get("tiny")).read_bytes()
    url = await tus.created_url(len(data), metadata(filename="done.mp4", title=None))
    status, _, body = await tus.patch(url, data, 0)
    assert status == 204, body
    _, head, _ = await tus.head(url)
    assert head["Upload-Offset"] == head["Upload-Length"] == str(len(data))
    assert "Upload-Expires" not in head

    status, h, body = await tus.patch(url, b"", len(data))
    assert (status, h["Upload-Offset"]) == (204, str(len(data))), body
    empty_sha1 = "sha1 " + base64.b64encode(hashlib.sha1(b"").digest()).decode()
    status, h, _ = await tus.patch(url, b"", len(data), **{"Upload-Checksum": empty_sha1})
    assert (status, h["Upload-Offset"]) == (204, str(len(data)))
    status, _, body = await tus.patch(url, b"x", len(data))
    assert status == 413, body
    for offset in (0, len(data) - 1, len(data) + 1):
        status, h, body = await tus.patch(url, b"", offset)
        assert (status, h["Upload-Offset"]) == (409, str(len(data))), body
    video_id = head["Reels-Video-Id"]
    assert await stored(svc, video_id, "status") == "processing"
    assert await svc.scalar(
        "SELECT received_bytes FROM uploads WHERE id = :u", u=url.rsplit("/", 1)[1]
    ) == len(data)


# --- Under load: the completing PATCH does not wait without bound (issue 14) -----------


async def test_completing_patch_past_the_wait_answers_204_and_the_status_refuses_it(
    svc: Service,  # noqa: F811
    tus: Tus,
) -> None:
    """When the checks of a completed upload are queued longer than
    REELS_UPLOAD_VERIFY_WAIT_S, the PATCH answers 204 and the verdict lands in the
    video's status: a file that is no video is still refused, never published."""
    assert svc.app.tus is not None
    svc.app.tus.verify_wait_s = 0.0
    try:
        data = b"this is not a video at all " * 40
        url = await tus.created_url(len(data), metadata(filename="fake.mp4", title="t"))
        status, headers, body = await tus.patch(url, data, 0)
        assert status == 204, body
        video_id = headers["Reels-Video-Id"]
        await eventually(
            lambda: _status_is(svc, video_id, "failed"), within=30, what="the video failed"
        )
        reason = str(await stored(svc, video_id, "failure_reason"))
        assert "not a video file" in reason, reason
        # The client that asks again (an empty PATCH at the end) is told why.
        status, _, body = await tus.patch(url, b"", len(data))
        assert status == 409 and reason in body["message"], body
    finally:
        svc.app.tus.verify_wait_s = 10.0


async def test_upload_left_open_with_every_byte_in_is_completed_by_the_sweeper(
    svc: Service,  # noqa: F811
    tus: Tus,
    clips: MediaFactory,  # noqa: F811
) -> None:
    """The process stopped after the last PATCH was answered but before its checks
    ended: the upload is open with every byte in. The sweeper completes it."""
    core = svc.app.core
    assert core is not None
    data = (await clips.get("tiny")).read_bytes()
    url = await tus.created_url(len(data), metadata(filename="late.mp4", title="late"))
    upload_id = url.rsplit("/", 1)[1]

    async def pieces():  # type: ignore[no-untyped-def]
        yield data

    # The bytes arrive as a PATCH stores them, and nothing completes the upload.
    assert await core.write_stream(tus.who, upload_id, 0, pieces()) == len(data)
    status, headers, _ = await tus.head(url)
    video_id = headers["Reels-Video-Id"]
    assert (status, headers["Upload-Offset"]) == (200, str(len(data)))
    assert await stored(svc, video_id, "status") == "uploading"

    assert await core.sweep_stranded(older_than_s=0.0) >= 1
    await eventually(
        lambda: _status_is(svc, video_id, "processing"), within=30, what="the upload completed"
    )


async def _status_is(svc: Service, video_id: str, status: str) -> bool:  # noqa: F811
    return await stored(svc, video_id, "status") == status
