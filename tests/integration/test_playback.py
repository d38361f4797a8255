"""Playback on real media: catalog from Kafka, signed URLs, device ladders, the media origin.

svc_stream's whole App (``svc_stream.app.build``) runs in this process, served by
``reels.server.run_app`` with its media origin on a free port, against a throwaway
migrated Postgres and a real Tansu broker; the media is a generated clip transcoded by
svc_transcode's pipeline and published the way the transcoder publishes it (object
store + ``video.published``). The playback RPCs are called on their group directly.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import pytest
from reels.v1 import common_pb2, events_pb2, stream_pb2

from reels import errors, topics
from reels.cache import delete_prefix, redis_client
from reels.db.engine import create_database, drop_database
from reels.db.migrate import migrate
from reels.media_urls import UrlSigner
from reels.server import run_app
from reels.storage import LocalObjectStore
from reels_dev.infra.process import free_port
from reels_dev.keys import ensure_dev_keys
from svc_stream.app import App, build
from svc_stream.playback.media_store import MediaStore
from svc_stream.playback.origin import MediaOrigin
from svc_stream.playback.rpc import PlaybackRpcs
from svc_transcode.pipeline import TranscodeResult
from tests.fixtures.infra import TansuBroker, _test_database_url
from tests.fixtures.stream import stream_settings
from tests.hls_check import assert_playlist_valid
from tests.polling import eventually
from tests.publishing import publish_to_store, send_published, transcode_ladder

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (scripts/setup.sh)"
)

ALL_RUNGS = ["360p", "480p", "720p", "1080p"]


@dataclass
class Stack:
    app: App
    servicer: PlaybackRpcs
    store_root: Path
    ladder: Path
    result: TranscodeResult
    kafka: TansuBroker
    http: aiohttp.ClientSession
    events: dict[str, events_pb2.VideoPublished] = field(default_factory=dict)

    @property
    def signer(self) -> UrlSigner:
        return self.app.signer

    async def publish(self, *, drop: tuple[str, ...] = ()) -> str:
        """Publish a fresh copy of the ladder; returns once the catalog knows it."""
        video_id = str(uuid.uuid4())
        event = publish_to_store(self.ladder, self.result, self.store_root, video_id, drop=drop)
        await send_published(self.kafka.bootstrap, event)
        self.events[video_id] = event
        catalog = self.app.catalog

        async def known() -> bool:
            return await catalog.get(video_id) is not None

        await eventually(known, 60, f"the catalog did not learn {video_id}", interval=0.2)
        return video_id

    async def playback(self, video_id: str, **kwargs: object) -> stream_pb2.GetPlaybackResponse:
        request = stream_pb2.GetPlaybackRequest(video_id=video_id, **kwargs)  # type: ignore[arg-type]
        return await self.servicer.GetPlayback(request, None)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
async def stack(
    kafka: TansuBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    ensure_dev_keys()
    ladder, result = await transcode_ladder(tmp_path_factory.mktemp("clip"))
    db_url = _test_database_url()
    await create_database(db_url)
    await migrate(db_url)
    store_root = tmp_path_factory.mktemp("store")
    await kafka.create_topics(topics.VIDEO_PUBLISHED.name)
    port = free_port()
    prefix = f"reels-test-{uuid.uuid4().hex[:8]}:"
    settings = stream_settings(
        database_url=db_url,
        kafka_bootstrap=kafka.bootstrap,
        chdb_path=tmp_path_factory.mktemp("chdb") / "store",
        redis_prefix=prefix,
        storage_url=store_root.as_uri(),
        media_port=port,
        media_base_url=f"http://127.0.0.1:{port}/media",
        catalog_negative_ttl_s=1.0,
    )
    settings = replace(
        settings, platform=replace(settings.platform, media_signing_key=secrets.token_hex(32))
    )
    app = build(settings)
    server = await run_app(app, port=0)

    async def origin_listening() -> bool:
        return app.origin.port == port

    try:
        await eventually(origin_listening, 10, "the media origin did not start")
        servicer = PlaybackRpcs(app.catalog, app.signer, app.media)
        async with aiohttp.ClientSession() as http:
            yield Stack(app, servicer, store_root, ladder, result, kafka, http)
    finally:
        await server.stop(1.0)
        redis = redis_client(settings.platform.redis_url)
        await delete_prefix(redis, prefix)
        await redis.aclose()
        await drop_database(db_url)


@pytest.fixture(scope="module")
async def video_id(stack: Stack) -> str:
    return await stack.publish()


def _tamper(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _variant_uris(playlist: str) -> list[str]:
    return [line for line in playlist.splitlines() if line and not line.startswith("#")]


async def _get(stack: Stack, url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    async with stack.http.get(url, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


# --------------------------------------------------------------------------- playback info


async def test_playback_lists_signed_renditions_and_starts_at_480p_for_unknown_device(
    stack: Stack, video_id: str
) -> None:
    info = await stack.playback(video_id)

    assert [r.name for r in info.renditions] == ALL_RUNGS
    assert info.recommended_rendition == "480p"
    assert abs(info.duration.ToNanoseconds() / 1e9 - 2.0) < 0.2
    assert not info.is_live
    assert info.expires_at.seconds >= time.time() + 6 * 3600 - 60
    for rendition in info.renditions:
        assert rendition.playlist_url.startswith(stack.signer.base_url)
        status, headers, body = await _get(stack, rendition.playlist_url)
        assert status == 200, rendition.name
        assert headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
        assert "#EXTINF" in body.decode()
    for url, kind in [
        (info.thumbnail_url, "image/jpeg"),
        (info.preview_url, "video/mp4"),
        (info.storyboard_url, "text/vtt"),
    ]:
        status, headers, _ = await _get(stack, url)
        assert (status, headers["Content-Type"]) == (200, kind)
    # The storyboard track's cues name tiles of the sprite: a player resolves each one
    # against the track's URL (dropping its query), so each carries its own signature.
    _, _, track = await _get(stack, info.storyboard_url)
    cues = [ln for ln in track.decode().splitlines() if "#xywh=" in ln]
    assert cues
    for cue in cues:
        url = info.storyboard_url.split("?")[0].rsplit("/", 1)[0] + "/" + cue.split("#")[0]
        status, headers, _ = await _get(stack, url)
        assert (status, headers["Content-Type"]) == (200, "image/jpeg"), cue

    # The master a player gets: every variant, 480p listed first (players start there).
    status, _, body = await _get(stack, info.master_manifest_url)
    assert status == 200
    variants = _variant_uris(body.decode())
    assert [u.split("/")[0] for u in variants] == ["480p", "720p", "1080p", "360p"]
    assert all("sig=" in u and "exp=" in u for u in variants)


async def test_player_given_only_the_master_url_can_fetch_every_segment(
    stack: Stack, video_id: str
) -> None:
    info = await stack.playback(video_id)
    _, _, master = await _get(stack, info.master_manifest_url)
    base = info.master_manifest_url.rsplit("/", 1)[0] + "/"
    fetched = 0
    for variant in _variant_uris(master.decode()):
        status, _, playlist = await _get(stack, base + variant)
        assert status == 200
        variant_base = (base + variant).split("?")[0].rsplit("/", 1)[0] + "/"
        for segment in _variant_uris(playlist.decode()):
            status, headers, data = await _get(stack, variant_base + segment)
            assert status == 200 and headers["Content-Type"] == "video/mp2t"
            assert data[:1] == b"\x47"  # MPEG-TS sync byte
            fetched += 1
    assert fetched >= len(ALL_RUNGS)


@pytest.mark.parametrize(
    ("kwargs", "offered", "start"),
    [
        ({"device": common_pb2.DEVICE_WEB}, ALL_RUNGS, "720p"),
        ({"device": common_pb2.DEVICE_IOS}, ALL_RUNGS, "720p"),
        ({"device": common_pb2.DEVICE_ANDROID}, ["360p", "480p", "720p"], "480p"),
        (
            {
                "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
                "Chrome/126.0 Mobile Safari/537.36"
            },
            ["360p", "480p", "720p"],
            "480p",
        ),
        (
            {"user_agent": "AppleCoreMedia/1.0.0.21F79 (iPhone; U; CPU OS 17_5 like Mac OS X)"},
            ALL_RUNGS,
            "720p",
        ),
        ({"user_agent": "curl/8.5.0"}, ALL_RUNGS, "480p"),
    ],
)
async def test_device_gets_its_own_ladder_and_start_rendition(
    stack: Stack, video_id: str, kwargs: dict[str, object], offered: list[str], start: str
) -> None:
    info = await stack.playback(video_id, **kwargs)

    assert [r.name for r in info.renditions] == offered
    assert info.recommended_rendition == start
    _, _, master = await _get(stack, info.master_manifest_url)
    variants = [u.split("/")[0] for u in _variant_uris(master.decode())]
    assert variants[0] == start
    assert sorted(variants, key=ALL_RUNGS.index) == offered


async def test_missing_rendition_falls_back_to_the_next_lower_one(stack: Stack) -> None:
    video_id = await stack.publish(drop=("480p",))

    info = await stack.playback(video_id)
    manifest = await stack.servicer.GetManifest(
        stream_pb2.GetManifestRequest(video_id=video_id),
        None,  # type: ignore[arg-type]
    )
    _, _, served = await _get(stack, info.master_manifest_url)

    assert [r.name for r in info.renditions] == ["360p", "720p", "1080p"]
    assert info.recommended_rendition == "360p"
    for master in (manifest.data.decode(), served.decode()):
        rungs = [u.split("?")[0].split("/")[-2] for u in _variant_uris(master)]
        assert rungs[0] == "360p"
        assert "480p" not in rungs and len(rungs) == 3


async def test_get_manifest_returns_master_with_absolute_signed_urls(
    stack: Stack, video_id: str
) -> None:
    body = await stack.servicer.GetManifest(
        stream_pb2.GetManifestRequest(video_id=video_id, device=common_pb2.DEVICE_ANDROID),
        None,  # type: ignore[arg-type]
    )

    assert body.content_type == "application/vnd.apple.mpegurl"
    urls = _variant_uris(body.data.decode())
    assert len(urls) == 3 and "/480p/" in urls[0]
    assert_playlist_valid(body.data.decode(), "GetManifest master")  # RFC 8216, served
    for url in urls:
        status, _, playlist = await _get(stack, url)
        assert status == 200 and "#EXT-X-ENDLIST" in playlist.decode()
        assert_playlist_valid(playlist.decode(), url)


async def test_unknown_video_is_not_found(stack: Stack) -> None:
    with pytest.raises(errors.NotFound):
        await stack.playback("no-such-video")
    with pytest.raises(errors.InvalidArgument):
        await stack.playback("")


# --------------------------------------------------------------------------- origin


async def test_tampered_expired_or_missing_signature_is_forbidden(
    stack: Stack, video_id: str
) -> None:
    info = await stack.playback(video_id)
    url = info.renditions[0].playlist_url
    key = f"videos/{video_id}/360p/index.m3u8"
    sig = dict(parse_qsl(urlsplit(url).query))["sig"]
    tampered_sig = ("A" if sig[0] != "A" else "B") + sig[1:]
    expired = stack.signer.url(key, exp=int(time.time()) - 5)
    other_video = url.replace(video_id, str(uuid.uuid4()))

    for bad in (
        _tamper(url, sig=tampered_sig),
        _tamper(url, exp=str(int(time.time()) + 10 * 24 * 3600)),  # extended expiry
        _tamper(info.master_manifest_url, dev="web"),  # widened device ladder
        expired,
        url.split("?")[0],
        other_video,
    ):
        status, headers, _ = await _get(stack, bad)
        assert status == 403, bad
        assert headers["Cache-Control"] == "no-store"


async def test_unknown_object_is_not_found(stack: Stack, video_id: str) -> None:
    for key in (f"videos/{video_id}/360p/seg_9999.ts", "videos/nope/master.m3u8"):
        status, _, _ = await _get(stack, stack.signer.url(key))
        assert status == 404, key


async def test_range_requests_return_the_exact_bytes(stack: Stack, video_id: str) -> None:
    key = f"videos/{video_id}/720p/seg_0000.ts"
    data = (stack.store_root / key).read_bytes()
    size = len(data)
    url = stack.signer.url(key)

    cases = {
        "bytes=100-199": (100, 200),
        "bytes=-50": (size - 50, size),
        f"bytes={size - 10}-": (size - 10, size),
        f"bytes=0-{size * 2}": (0, size),
    }
    for header, (start, end) in cases.items():
        status, headers, body = await _get(stack, url, Range=header)
        assert status == 206, header
        assert body == data[start:end], header
        assert headers["Content-Range"] == f"bytes {start}-{end - 1}/{size}"
        assert int(headers["Content-Length"]) == end - start

    status, headers, body = await _get(stack, url)
    assert (status, body, headers["Accept-Ranges"]) == (200, data, "bytes")

    status, headers, _ = await _get(stack, url, Range=f"bytes={size}-")
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{size}"


async def test_segments_are_immutable_and_playlists_short_lived(
    stack: Stack, video_id: str
) -> None:
    info = await stack.playback(video_id)
    segment = stack.signer.url(f"videos/{video_id}/360p/seg_0000.ts")

    _, seg_headers, _ = await _get(stack, segment)
    _, thumb_headers, _ = await _get(stack, info.thumbnail_url)
    _, master_headers, _ = await _get(stack, info.master_manifest_url)
    _, variant_headers, _ = await _get(stack, info.renditions[0].playlist_url)

    assert seg_headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert thumb_headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert master_headers["Cache-Control"] == "public, max-age=5"
    assert variant_headers["Cache-Control"] == "public, max-age=5"


async def test_browser_players_get_cors_headers_and_preflight(stack: Stack, video_id: str) -> None:
    segment = stack.signer.url(f"videos/{video_id}/360p/seg_0000.ts")

    _, headers, _ = await _get(stack, segment, Origin="https://app.example", Range="bytes=0-9")
    async with stack.http.options(
        segment.split("?")[0],
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
        },
    ) as preflight:
        pre_status, pre_headers = preflight.status, preflight.headers

    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "Content-Range" in headers["Access-Control-Expose-Headers"]
    assert "Content-Length" in headers["Access-Control-Expose-Headers"]
    assert pre_status == 204
    assert pre_headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in pre_headers["Access-Control-Allow-Methods"]
    assert "range" in pre_headers["Access-Control-Allow-Headers"].lower()


class HangingStore(LocalObjectStore):
    """A store whose reads never answer (a stuck NFS mount, a partitioned S3)."""

    async def size(self, key: str) -> int:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def get_bytes(self, key: str) -> bytes:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


async def _origin(stack: Stack, media: MediaStore) -> tuple[MediaOrigin, str]:
    origin = MediaOrigin(media, stack.signer)
    port = await origin.start("127.0.0.1", 0)
    return origin, f"http://127.0.0.1:{port}/media"


async def test_storage_unavailable_is_503_with_retry_after_never_a_hang(
    stack: Stack, video_id: str, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    shutil.copytree(stack.store_root / "videos" / video_id, root / "videos" / video_id)
    segment_key = f"videos/{video_id}/360p/seg_0000.ts"
    playlist_key = f"videos/{video_id}/360p/index.m3u8"

    gone, gone_base = await _origin(stack, MediaStore(LocalObjectStore(root), timeout_s=1.0))
    hung, hung_base = await _origin(stack, MediaStore(HangingStore(root), timeout_s=0.5))
    try:
        shutil.rmtree(root)  # the store's root vanished (unmounted volume)
        for base, key in [
            (gone_base, segment_key),
            (gone_base, playlist_key),
            (hung_base, segment_key),
            (hung_base, playlist_key),
        ]:
            url = stack.signer.url(key).replace(stack.signer.base_url, base)
            started = time.monotonic()
            status, headers, _ = await _get(stack, url)
            assert status == 503, (base, key)
            assert int(headers["Retry-After"]) > 0
            assert time.monotonic() - started < 3
    finally:
        await gone.stop()
        await hung.stop()


async def test_redelivered_event_is_applied_once(stack: Stack, video_id: str) -> None:
    """A replay of video.published (a memory-only broker restarted) changes nothing."""
    catalog = stack.app.catalog
    consumer = catalog.active_consumer
    assert consumer is not None
    skipped = consumer.skipped
    replay = events_pb2.VideoPublished()
    replay.CopyFrom(stack.events[video_id])
    replay.title = "changed by a replay"

    await send_published(stack.kafka.bootstrap, replay)

    async def skipped_once_more() -> bool:
        return consumer.skipped > skipped

    await eventually(skipped_once_more, 30, "the replayed event was not seen and skipped")

    catalog.forget(video_id)
    video = await catalog.get(video_id)
    assert video is not None and video.title == "a test reel"
