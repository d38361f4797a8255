"""tus edge cases through the real front door: Envoy passes what svc_upload takes.

Header limits are the point here: Envoy's ``max_request_headers_kb`` and aiohttp's
``max_field_size`` both follow from our field limits (svc_upload/tus_limits.py), so a
valid Upload-Metadata of any script passes both, and only a larger one is refused (431).
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator

import aiohttp
import pytest
from sqlalchemy import text as sql

from reels.db.engine import make_engine
from reels_dev.infra.envoy import EnvoySettings
from svc_upload.limits import UploadLimits
from svc_upload.tus_limits import metadata_header_limit, request_headers_kb
from tests.fixtures.mesh import Mesh
from tests.integration.test_tus_protocol import (
    OCTET,
    Tus,
    cjk,
    longest_valid_metadata,
    metadata,
    nfd_hangul,
)

LIMITS = UploadLimits()


@pytest.fixture
async def tus(envoy: EnvoySettings) -> AsyncIterator[Tus]:
    async with aiohttp.ClientSession() as http:
        yield Tus(http, f"http://127.0.0.1:{envoy.listen_port}/api/v1/uploads/tus/")


async def stored(mesh: Mesh, video_id: str, column: str) -> object:
    engine = make_engine(mesh.backends.database_url)
    try:
        async with engine.connect() as conn:
            return await conn.scalar(
                sql(f"SELECT {column} FROM videos WHERE id = :v"), {"v": video_id}
            )
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "description",
    [
        pytest.param(cjk(LIMITS.description_max), id="cjk-2200"),
        pytest.param(nfd_hangul(LIMITS.description_max), id="nfd-hangul-2200"),
    ],
)
async def test_a_2200_character_description_passes_envoy_and_is_stored_intact(
    mesh: Mesh, tus: Tus, description: str
) -> None:
    header = metadata(filename="clip.mp4", filetype="video/mp4", description=description)
    assert len(header) > 8190
    status, headers, body = await tus.create(meta=header)
    assert status == 201, body
    video_id = headers["Reels-Video-Id"]
    assert await stored(mesh, video_id, "description") == unicodedata.normalize("NFC", description)
    assert await stored(mesh, video_id, "title") == "clip"


async def test_the_limit_through_envoy_longest_valid_passes_then_431(tus: Tus) -> None:
    limit = metadata_header_limit(LIMITS)
    status, _, body = await tus.create(meta=longest_valid_metadata())
    assert status == 201, body
    # One byte over our limit reaches the service (Envoy's is larger): its reason.
    over = "x " + "A" * (limit - 1)
    status, _, body = await Tus(tus.http, tus.base).create(meta=over)
    assert status == 431, body
    assert str(limit) in body["message"]
    # Past Envoy's own limit: Envoy refuses it, with the same status.
    huge = "x " + "A" * (request_headers_kb(LIMITS) * 1024)
    status, _, _ = await Tus(tus.http, tus.base).create(meta=huge)
    assert status == 431


async def test_empty_valued_keys_through_envoy(mesh: Mesh, tus: Tus) -> None:
    header = metadata(filename="Sunset walk.mp4", filetype="", title=None)
    assert header.endswith("filetype ,title")
    status, headers, body = await tus.create(meta=header)
    assert status == 201, body
    assert await stored(mesh, headers["Reels-Video-Id"], "title") == "Sunset walk"


async def test_discovery_needs_no_token_and_protocol_headers_pass_envoy(tus: Tus) -> None:
    status, h, _ = await tus.request("OPTIONS", tus.base, {})
    assert status == 204, h
    assert h["Tus-Version"] == "1.0.0" and "creation" in h["Tus-Extension"].split(",")
    assert "concatenation" not in h["Tus-Extension"]
    assert "creation-defer-length" not in h["Tus-Extension"]

    # Version mismatch: 412 with Tus-Version, from the service.
    headers = tus.headers(**{"Upload-Length": "10"})
    headers["Tus-Resumable"] = "0.2.2"
    status, h, _ = await tus.request("POST", tus.base, headers)
    assert status == 412 and h["Tus-Version"] == "1.0.0"

    url = await tus.created_url(10)
    status, h, _ = await tus.head(url)
    assert status == 200 and h["Cache-Control"] == "no-store" and h["Upload-Length"] == "10"
    # X-HTTP-Method-Override through Envoy (clients behind proxies that drop PATCH).
    override = {"X-HTTP-Method-Override": "PATCH", "Content-Type": OCTET, "Upload-Offset": "0"}
    status, h, _ = await tus.request("POST", url, tus.headers(**override), b"abc")
    assert (status, h["Upload-Offset"]) == (204, "3")
    assert h["Upload-Expires"].endswith(" GMT")
    deferred = tus.headers(**{"Upload-Defer-Length": "1", "Upload-Metadata": metadata(title="x")})
    status, _, body = await tus.request("POST", tus.base, deferred)
    assert status == 400 and "not supported" in body["message"]


async def test_browser_preflight_allows_the_tus_headers_clients_send(tus: Tus) -> None:
    origin = "http://localhost:8080"
    asked = {"x-http-method-override", "upload-defer-length", "upload-concat", "upload-metadata"}
    status, pre, _ = await tus.request(
        "OPTIONS",
        tus.base,
        {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": ", ".join(sorted(asked)),
        },
    )
    assert status in (200, 204)
    assert pre["access-control-allow-origin"] == origin
    assert asked <= {h.strip() for h in pre["access-control-allow-headers"].split(",")}
    # The answer's tus headers are readable by the page.
    status, h, _ = await tus.create(meta=metadata(title="cors"), Origin=origin)
    assert status == 201
    exposed = {x.strip() for x in h["access-control-expose-headers"].split(",")}
    assert {"location", "upload-offset", "upload-expires", "tus-resumable"} <= exposed


async def test_review_follow_ups_through_envoy(mesh: Mesh, tus: Tus) -> None:
    """415 has the JSON shape of other errors; Upload-Length 0 names the header; a tab
    separates a key from its value; an invisible title takes the file name's stem."""
    h = tus.headers(**{"Upload-Length": "100", "Upload-Metadata": metadata(title="x")})
    status, _, body = await tus.request("POST", tus.base, {**h, "Content-Type": "text/plain"}, b"x")
    assert status == 415 and body["code"] == "INVALID_ARGUMENT", body
    status, _, body = await tus.create(length=0, meta=metadata(title="x"))
    assert status == 400 and body["field_violations"][0]["field"] == "Upload-Length", body
    header = metadata(filename="Tabbed.mp4").replace(" ", "\t") + ",title\t" + "4oCL"  # U+200B
    status, headers, body = await tus.create(meta=header)
    assert status == 201, body
    assert await stored(mesh, headers["Reels-Video-Id"], "title") == "Tabbed"
