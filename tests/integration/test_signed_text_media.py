"""Every URL a player derives from a signed one is signed too; the origin never echoes input.

The media origin (svc_stream/playback/origin.py) over a real local object store, with
objects generated here: a storyboard exactly as svc_transcode writes it (WebVTT cues
``storyboard.jpg#xywh=...`` and a JSON index), and an HLS ladder using every tag that
carries a URI (EXT-X-MAP, EXT-X-KEY, EXT-X-MEDIA audio and subtitle renditions whose
segments are WebVTT, EXT-X-I-FRAME-STREAM-INF, EXT-X-SESSION-DATA). A crawler resolves
each URI the way a player does (relative to the URL of the text it came from, which
drops that URL's query) and fetches it: every one answers 200 with the object's bytes.

Also: a request target over 8 KiB is a JSON 414, an unparsable request a JSON 400, and
neither echoes the request back (aiohttp's own 400 quoted the request line).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import aiohttp
import pytest

from reels.media_urls import UrlSigner
from reels.storage import LocalObjectStore
from svc_stream.playback.media_store import MediaStore
from svc_stream.playback.origin import MAX_TARGET_BYTES, MediaOrigin
from svc_transcode.artifacts import STORYBOARD_IMAGE, storyboard_layout, storyboard_vtt

_URI_ATTR = re.compile(r'URI="([^"]*)"')


@dataclass
class Origin:
    base: str
    signer: UrlSigner
    root: Path
    http: aiohttp.ClientSession
    port: int


@pytest.fixture
async def origin(tmp_path: Path) -> AsyncIterator[Origin]:
    root = tmp_path / "store"
    root.mkdir()
    signer = UrlSigner(secrets.token_bytes(32), base_url="http://placeholder/media")
    server = MediaOrigin(MediaStore(LocalObjectStore(root)), signer)
    port = await server.start("127.0.0.1", 0)
    signer.base_url = f"http://127.0.0.1:{port}/media"
    try:
        async with aiohttp.ClientSession() as http:
            yield Origin(signer.base_url, signer, root, http, port)
    finally:
        await server.stop()


def _put(root: Path, key: str, data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return raw


def _references(content_type: str, text: str) -> list[str]:
    """The URIs a player takes from a text object (as written in it)."""
    if content_type.startswith("application/vnd.apple.mpegurl"):
        out = []
        for line in text.splitlines():
            if line.startswith("#"):
                out += _URI_ATTR.findall(line)
            elif line.strip():
                out.append(line.strip())
        return out
    if content_type.startswith("text/vtt"):
        # A thumbnails track's cue payload is a URL (players resolve every one of them).
        blocks = re.split(r"\r?\n\r?\n", text)
        return [
            lines[1].strip()
            for lines in (b.splitlines() for b in blocks)
            if len(lines) == 2 and "-->" in lines[0] and " " not in lines[1].strip()
        ]
    if content_type.startswith("application/json"):
        return [json.loads(text)["image"]]
    return []


async def _crawl(o: Origin, url: str) -> dict[str, bytes]:
    """Fetch ``url`` and everything reachable from it as a player would; path -> bytes."""
    fetched: dict[str, bytes] = {}
    queue = [url]
    while queue:
        current = queue.pop()
        request_url, _fragment = urldefrag(current)  # players never send the fragment
        async with o.http.get(request_url) as resp:
            body = await resp.read()
            assert resp.status == 200, (current, resp.status, body[:200])
            kind = resp.headers["Content-Type"]
        path = urlsplit(request_url).path
        if path in fetched:
            continue
        fetched[path] = body
        for ref in _references(kind, body.decode("utf-8", "replace")):
            assert "sig=" in ref and "exp=" in ref, (current, ref)
            queue.append(urljoin(request_url, ref))
    return fetched


async def test_a_storyboard_vtt_from_a_signed_url_loads_every_image(origin: Origin) -> None:
    video = f"videos/{uuid.uuid4()}"
    duration = 37.4
    layout = storyboard_layout(duration, 1080, 1920)
    vtt = storyboard_vtt(layout, STORYBOARD_IMAGE, duration)
    _put(origin.root, f"{video}/storyboard.vtt", vtt)
    image = _put(origin.root, f"{video}/{STORYBOARD_IMAGE}", secrets.token_bytes(4096))
    _put(origin.root, f"{video}/storyboard.json", json.dumps({"image": STORYBOARD_IMAGE}))

    async with origin.http.get(origin.signer.url(f"{video}/storyboard.vtt")) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/vtt")
        served = await resp.text()
    cues = _references("text/vtt", served)
    assert len(cues) == layout.count == vtt.count("#xywh=")
    stored_fragments = re.findall(r"#xywh=[0-9,]+", vtt)
    for cue, fragment in zip(cues, stored_fragments, strict=True):
        # Signed, with the tile's fragment kept after the query.
        assert cue.startswith(f"{STORYBOARD_IMAGE}?") and cue.endswith(fragment), cue
        async with origin.http.get(urldefrag(urljoin(origin.signer.url(
            f"{video}/storyboard.vtt"), cue))[0]) as resp:  # fmt: skip
            assert resp.status == 200, cue
            assert resp.headers["Content-Type"] == "image/jpeg"
            assert await resp.read() == image
    # The timings and everything else are as stored.
    assert re.sub(r"\?[^#\n]*", "", served) == vtt

    # The JSON index names the same sprite: signed as well.
    fetched = await _crawl(origin, origin.signer.url(f"{video}/storyboard.json"))
    assert fetched[f"/media/{video}/{STORYBOARD_IMAGE}"] == image

    # Unsigned, the derived URL is still refused: the signature is what opens it.
    base = origin.signer.url(f"{video}/storyboard.vtt").split("?")[0]
    async with origin.http.get(urljoin(base, STORYBOARD_IMAGE)) as resp:
        assert resp.status == 403


async def test_every_uri_in_every_hls_tag_is_signed_for_the_player(origin: Origin) -> None:
    video = f"videos/{uuid.uuid4()}"
    seg = [f"seg_{i:04d}.m4s" for i in range(3)]
    subs = [f"en_{i:04d}.vtt" for i in range(3)]
    stored: dict[str, bytes] = {}

    def put(key: str, data: bytes | str) -> None:
        stored[f"/media/{video}/{key}"] = _put(origin.root, f"{video}/{key}", data)

    put(
        "master.m3u8",
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-SESSION-DATA:DATA-ID="com.reels.storyboard",URI="storyboard.json"\n'
        '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="en",'
        'DEFAULT=YES,AUTOSELECT=YES,URI="subs/en/index.m3u8"\n'
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="Main",DEFAULT=YES,URI="audio/index.m3u8"\n'
        '#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI="720p/iframes.m3u8"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=720x1280,AUDIO="aud",SUBTITLES="subs"\n'
        "720p/index.m3u8\n",
    )
    put(
        "720p/index.m3u8",
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n"
        '#EXT-X-MAP:URI="init.mp4"\n'
        '#EXT-X-KEY:METHOD=AES-128,URI="../keys/k0.bin",IV=0x0123456789abcdef0123456789abcdef\n'
        + "".join(f"#EXTINF:2.0,\n{s}\n" for s in seg)
        + "#EXT-X-ENDLIST\n",
    )
    put(
        "720p/iframes.m3u8",
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-I-FRAMES-ONLY\n"
        '#EXT-X-MAP:URI="init.mp4"\n'
        + "".join(f"#EXTINF:2.0,\n#EXT-X-BYTERANGE:100@0\n{s}\n" for s in seg)
        + "#EXT-X-ENDLIST\n",
    )
    put(
        "audio/index.m3u8",
        '#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI="init.mp4"\n'
        "#EXTINF:2.0,\na_0000.m4s\n#EXT-X-ENDLIST\n",
    )
    put(
        "subs/en/index.m3u8",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n"
        + "".join(f"#EXTINF:2.0,\n{s}\n" for s in subs)
        + "#EXT-X-ENDLIST\n",
    )
    for i, name in enumerate(subs):
        # Subtitle cues are text, kept byte for byte (CRLF endings included).
        put(
            f"subs/en/{name}",
            f"WEBVTT\r\nX-TIMESTAMP-MAP=MPEGTS:900000,LOCAL:00:00:00.000\r\n\r\n"
            f"{i}\r\n00:00:0{2 * i}.000 --> 00:00:0{2 * i + 1}.500\r\nline {i}: see the map\r\n",
        )
    for name in [*seg, "init.mp4"]:
        put(f"720p/{name}", secrets.token_bytes(300))
    put("audio/init.mp4", secrets.token_bytes(64))
    put("audio/a_0000.m4s", secrets.token_bytes(64))
    put("keys/k0.bin", secrets.token_bytes(16))
    put("storyboard.json", json.dumps({"image": STORYBOARD_IMAGE, "count": 1}))
    put(STORYBOARD_IMAGE, secrets.token_bytes(512))

    fetched = await _crawl(origin, origin.signer.url(f"{video}/master.m3u8"))

    # Every stored object was reached; binaries and subtitle text arrive unchanged.
    assert set(fetched) == set(stored)
    for path, data in fetched.items():
        if not path.endswith((".m3u8", ".json")):
            assert data == stored[path], path


async def test_text_cues_that_are_not_object_references_are_left_alone(origin: Origin) -> None:
    video = f"videos/{uuid.uuid4()}"
    chapters = (
        "WEBVTT\n\nNOTE storyboard.jpg is not a cue\n\n"
        "intro\n00:00:00.000 --> 00:00:05.000\nIntro: storyboard.jpg explained\n\n"
        "00:00:05.000 --> 00:00:09.000\nhttps://elsewhere.example/x.jpg#xywh=0,0,1,1\n\n"
        "00:00:09.000 --> 00:00:12.000\n../../other-video/storyboard.jpg#xywh=0,0,1,1\n"
    )
    _put(origin.root, f"{video}/chapters.vtt", chapters)
    async with origin.http.get(origin.signer.url(f"{video}/chapters.vtt")) as resp:
        assert resp.status == 200
        assert await resp.text() == chapters


async def _raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize(
    ("query_bytes", "status"),
    [(MAX_TARGET_BYTES + 1, 414), (9 * 1024, 414), (64 * 1024, 414), (200 * 1024, 400)],
)
async def test_an_oversized_url_is_a_clean_json_answer_that_echoes_nothing(
    origin: Origin, query_bytes: int, status: int
) -> None:
    marker = f"ECHO{secrets.token_hex(6)}"
    url = origin.signer.url(f"videos/{uuid.uuid4()}/720p/seg_0000.ts")
    target = urlsplit(url)._replace(scheme="", netloc="").geturl()
    pad = "x" * max(0, query_bytes - len(target) - len(marker) - 2)
    assert len(f"{target}&{marker}={pad}") == max(query_bytes, len(target) + len(marker) + 2)
    got, headers, body = await _raw(
        origin.port,
        f"GET {target}&{marker}={pad} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
    )
    assert got == status
    assert headers["content-type"].startswith("application/json")
    assert headers["cache-control"] == "no-store"
    assert marker.encode() not in body and b"xxxx" not in body
    doc = json.loads(body)
    assert doc["code"] == "INVALID_ARGUMENT" and doc["message"]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"G\x01T /media/videos/a/b.ts HTTP/1.1\r\nHost: x\r\n\r\n",  # control byte in method
        b"GET /media/videos/a/b.ts HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 100_000 + b"\r\n\r\n",
        b"GET /media/videos/a/b.ts?<script>ECHO HTTP/9.9\r\nHost: x\r\n\r\n",
    ],
    ids=["bad-method", "huge-header", "bad-version"],
)
async def test_an_unparsable_request_is_json_400_without_echo(
    origin: Origin, request_bytes: bytes
) -> None:
    got, headers, body = await _raw(origin.port, request_bytes)
    assert got == 400
    assert headers["content-type"].startswith("application/json")
    assert b"ECHO" not in body and b"yyyy" not in body and b"script" not in body
    assert json.loads(body)["code"] == "INVALID_ARGUMENT"


async def test_a_normal_long_player_url_is_still_served(origin: Origin) -> None:
    """CMCD and friends make URLs longer, nowhere near the limit: served."""
    key = f"videos/{uuid.uuid4()}/720p/seg_0000.ts"
    data = _put(origin.root, key, secrets.token_bytes(100))
    url = origin.signer.url(key) + "&CMCD=" + "br%3D3200%2Cot%3Dv%2C" * 100
    assert len(urlsplit(url).path) + len(urlsplit(url).query) < MAX_TARGET_BYTES
    async with origin.http.get(url) as resp:
        assert resp.status == 200 and await resp.read() == data
