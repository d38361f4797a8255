"""Signed media URLs through the real front door, as browser players use them.

Players add their own query parameters to every URL they fetch (CMCD in query mode,
hls.js's ``_`` cache buster, LL-HLS ``_HLS_msn``/``_HLS_part``) and, in CMCD header
mode, ``CMCD-*`` request headers that need a CORS preflight. Through Envoy: those
requests are served (200) and the preflight allows the headers, from any page's origin;
a change to one of our parameters (``exp``, ``dev``, ``sig``, the key) is still 403.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import aiohttp
import pytest

from reels_dev.infra.envoy import EnvoySettings
from reels_dev.keys import mint_token
from tests.fixtures.mesh import Mesh
from tests.publishing import publish_to_store, send_published, transcode_ladder

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (scripts/setup.sh)"
)

CMCD = "br%3D3200%2Cot%3Dv"  # what hls.js appends: &CMCD=br%3D3200%2Cot%3Dv
CMCD_HEADERS = "cmcd-request,cmcd-object,cmcd-status,cmcd-session"
PAGE_ORIGINS = ["http://127.0.0.1:5173", "http://127.0.0.1:47001", "https://player.example"]
# Query arguments players add, in the form they add them (already encoded).
PLAYER_ARGS = {
    "cmcd": f"CMCD={CMCD}",
    "cmcd-full": "CMCD=bl%3D21300%2Cbr%3D3200%2Cbs%2Ccid%3D%22v%22%2Cd%3D4004%2Cot%3Dv"
    "%2Csid%3D%226e2f%22%2Ctb%3D6000",
    "cache-buster": "_=1712345678901",
    "ll-hls": "_HLS_msn=3&_HLS_part=1",
    "all": f"CMCD={CMCD}&_=1&_HLS_msn=3&_HLS_part=1&_HLS_skip=YES",
}


@dataclass
class Urls:
    master: str
    variant: str
    segment: str
    storyboard: str


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@pytest.fixture(scope="module")
async def urls(
    mesh: Mesh,
    envoy: EnvoySettings,
    http: aiohttp.ClientSession,
    tmp_path_factory: pytest.TempPathFactory,
) -> Urls:
    """A published video's signed master, one variant and one segment, as served."""
    assert mesh.backends.storage_root is not None
    ladder, result = await transcode_ladder(tmp_path_factory.mktemp("signed-media-clip"))
    video_id = str(uuid.uuid4())
    event = publish_to_store(ladder, result, mesh.backends.storage_root, video_id)
    await send_published(mesh.backends.kafka_bootstrap, event)
    api = f"http://127.0.0.1:{envoy.listen_port}/api/v1/reels/{video_id}/playback"
    auth = {"authorization": f"Bearer {mint_token('viewer-cmcd')}"}
    async with asyncio.timeout(60):
        while True:
            async with http.get(api, headers=auth) as resp:
                if resp.status == 200:
                    info = await resp.json()
                    master = str(info["masterManifestUrl"])
                    storyboard = str(info["storyboardUrl"])
                    break
                assert resp.status == 404, await resp.text()
            await asyncio.sleep(0.3)
    variant = urljoin(master, _first_uri(await _text(http, master)))
    segment = urljoin(variant, _first_uri(await _text(http, variant)))
    return Urls(master, variant, segment, storyboard)


async def _text(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as resp:
        assert resp.status == 200, (url, await resp.text())
        return await resp.text()


def _first_uri(playlist: str) -> str:
    return next(ln for ln in playlist.splitlines() if ln and not ln.startswith("#"))


def _append(url: str, args: str) -> str:
    return f"{url}&{args}"


def _replace(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = [(k, changes.pop(k)) if k in changes else (k, v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query + list(changes.items()), safe=",")))


def _split(value: str | None) -> set[str]:
    return {part.strip().lower() for part in (value or "").split(",") if part.strip()}


async def _status(http: aiohttp.ClientSession, url: str, **headers: str) -> int:
    async with http.get(url, headers=headers) as resp:
        await resp.read()
        return resp.status


def test_served_urls_sign_only_our_parameters(urls: Urls) -> None:
    for url in (urls.master, urls.variant, urls.segment):
        query = dict(parse_qsl(urlsplit(url).query))
        assert set(query) <= {"dev", "exp", "sp", "sig"}, url
        assert query["sp"].split(",") == sorted(k for k in query if k not in ("sp", "sig"))


@pytest.mark.parametrize("args", list(PLAYER_ARGS.values()), ids=list(PLAYER_ARGS))
async def test_player_query_arguments_are_served(
    http: aiohttp.ClientSession, urls: Urls, args: str
) -> None:
    for url in (urls.master, urls.variant, urls.segment):
        assert await _status(http, _append(url, args)) == 200, _append(url, args)
    # A playlist fetched with CMCD still signs its children (without the player's args).
    body = await _text(http, _append(urls.variant, args))
    child = _first_uri(body)
    assert "CMCD" not in child and "_HLS" not in child
    assert await _status(http, _append(urljoin(urls.variant, child), args)) == 200


async def test_tampering_with_our_parameters_is_forbidden_cmcd_or_not(
    http: aiohttp.ClientSession, urls: Urls
) -> None:
    for url in (urls.variant, urls.segment, urls.master):
        exp = int(dict(parse_qsl(urlsplit(url).query))["exp"])
        sig = dict(parse_qsl(urlsplit(url).query))["sig"]
        bad = [
            _replace(url, exp=str(exp + 86_400)),  # extended expiry
            _replace(url, exp=str(exp - 300)),
            _replace(url, sig=("A" if sig[0] != "A" else "B") + sig[1:]),
            _replace(url, dev="tv"),  # one of ours, added unsigned (or changed)
            f"{url}&exp={exp + 86_400}",  # ours, repeated
            url.replace("/media/videos/", "/media/videos/x", 1),  # another key
            url.split("?")[0],
        ]
        other_rendition = url.replace("/360p/", "/720p/").replace("/480p/", "/720p/")
        if other_rendition != url:
            bad.append(other_rendition)
        for tampered in bad:
            for with_cmcd in (tampered, _append(tampered, f"CMCD={CMCD}")):
                assert await _status(http, with_cmcd) in (403, 404), with_cmcd
                if "/media/videos/x" not in tampered:
                    assert await _status(http, with_cmcd) == 403, with_cmcd


@pytest.mark.parametrize("origin", PAGE_ORIGINS)
async def test_preflight_allows_cmcd_headers_from_any_page(
    http: aiohttp.ClientSession, envoy: EnvoySettings, urls: Urls, origin: str
) -> None:
    for url in (urls.master, urls.variant, urls.segment):
        async with http.options(
            url,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": f"{CMCD_HEADERS},range",
            },
        ) as pre:
            assert pre.status in (200, 204), await pre.text()
            assert pre.headers.get("Access-Control-Allow-Origin") in ("*", origin)
            assert "GET" in pre.headers.get("Access-Control-Allow-Methods", "")
            allowed = _split(pre.headers.get("Access-Control-Allow-Headers"))
            assert set(CMCD_HEADERS.split(",")) | {"range"} <= allowed, allowed
        # The request itself, CMCD in headers (hls.js `cmcd: {useHeaders: true}`).
        cmcd_headers = {
            "Origin": origin,
            "CMCD-Request": "bl=21300,mtp=25400",
            "CMCD-Object": "br=3200,d=4004,ot=v,tb=6000",
            "CMCD-Status": "bs",
            "CMCD-Session": 'cid="v",sid="6e2f"',
        }
        async with http.get(url, headers=cmcd_headers) as resp:
            await resp.read()
            assert resp.status == 200
            assert resp.headers.get("Access-Control-Allow-Origin") in ("*", origin)
            assert "content-range" in resp.headers.get("Access-Control-Expose-Headers", "").lower()


async def test_api_preflight_allows_cmcd_headers(
    http: aiohttp.ClientSession, envoy: EnvoySettings
) -> None:
    origin = "http://localhost:5173"  # the web client's origin (DEFAULT_CORS_ORIGINS)
    async with http.options(
        f"http://127.0.0.1:{envoy.listen_port}/api/v1/reels",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": f"authorization,{CMCD_HEADERS}",
        },
    ) as pre:
        assert pre.status in (200, 204), await pre.text()
        assert pre.headers.get("Access-Control-Allow-Origin") == origin
        allowed = _split(pre.headers.get("Access-Control-Allow-Headers"))
        assert set(CMCD_HEADERS.split(",")) | {"authorization"} <= allowed


async def test_storyboard_tiles_load_from_the_signed_track_as_a_player_resolves_them(
    http: aiohttp.ClientSession, urls: Urls
) -> None:
    """The storyboard track's cues (``storyboard.jpg#xywh=..``) resolved against the
    track's URL, as players do (its query is dropped), still load: each cue is signed."""
    track = await _text(http, _append(urls.storyboard, f"CMCD={CMCD}"))
    cues = [ln for ln in track.splitlines() if "#xywh=" in ln]
    assert cues, track
    for cue in cues:
        image = urljoin(urls.storyboard, cue).split("#")[0]
        async with http.get(image) as resp:
            await resp.read()
            assert (resp.status, resp.headers["Content-Type"]) == (200, "image/jpeg"), cue


async def test_an_oversized_media_url_is_a_json_414_that_echoes_nothing(
    http: aiohttp.ClientSession, urls: Urls
) -> None:
    marker = f"ECHO{uuid.uuid4().hex[:8]}"
    url = _append(urls.segment, f"{marker}={'x' * 9000}")
    async with http.get(url) as resp:
        body = await resp.read()
        assert resp.status == 414, body[:300]
        assert resp.headers["Content-Type"].startswith("application/json")
    assert marker.encode() not in body and b"xxxx" not in body
