"""Live delivery through svc_stream: ``streams.events`` -> GetPlayback -> the signed origin.

svc_stream's whole App (``svc_stream.app.build``) runs in this process on a throwaway
migrated Postgres, Redis under its own prefix and the module's Tansu broker, its media
origin on a free port. No RTMP here (tests/integration/test_live_ingest.py covers the
ingest): a live HLS ladder is written straight into the object store under
``live/{stream_id}/`` by real ffmpeg, in the shape svc_chat's ingest writes (master +
``<rung>/index.m3u8`` + 1 s MPEG-TS segments, no ``#EXT-X-ENDLIST``), and the
``stream.started`` / ``stream.ended`` events are sent as svc_chat's outbox relay sends them.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import aiohttp
import pytest
from google.protobuf import timestamp_pb2
from reels.v1 import common_pb2, events_pb2, stream_pb2
from sqlalchemy import text

from reels import errors, topics
from reels.cache import delete_prefix, redis_client
from reels.db.engine import create_database, drop_database
from reels.db.migrate import migrate
from reels.events import EVENT_ID_HEADER, EventProducer
from reels.server import run_app
from reels_dev.infra.process import free_port
from reels_dev.keys import ensure_dev_keys
from svc_stream.app import App, build
from svc_stream.playback import live
from svc_stream.playback.origin import IMMUTABLE_CACHE, LIVE_PLAYLIST_CACHE
from svc_stream.playback.rpc import PlaybackRpcs
from tests.fixtures.infra import TansuBroker, _test_database_url
from tests.fixtures.stream import stream_settings
from tests.polling import eventually

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg/ffprobe are not installed (scripts/setup.sh)",
)

S = common_pb2.LiveStreamState
SEGMENTS = 4


async def _run(*argv: str, limit_s: float = 60) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    assert proc.returncode == 0, f"{argv[0]} failed: {err.decode(errors='replace')[-2000:]}"
    return out


async def make_live_ladder(out: Path) -> Path:
    """A 4 s two-rung live-shaped HLS set (360p + 240p, 1 s segments, no ENDLIST)."""
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    graph = "[0:v]split=2[a][b];[a]scale=640:360[v0];[b]scale=426:240[v1]"
    await _run(
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
        "-f", "lavfi", "-i", "sine", "-t", str(SEGMENTS),
        "-filter_complex", graph,
        "-map", "[v0]", "-map", "[v1]", "-map", "1:a", "-map", "1:a",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-keyint_min", "30",
        "-sc_threshold", "0", "-b:v:0", "800k", "-b:v:1", "400k",
        "-c:a", "aac", "-b:a", "64k",
        "-f", "hls", "-hls_time", "1", "-hls_list_size", "0",
        "-hls_flags", "independent_segments+omit_endlist",
        "-hls_segment_type", "mpegts",
        "-hls_segment_filename", str(out / "%v" / "seg_%06d.ts"),
        "-master_pl_name", "master.m3u8",
        "-var_stream_map", "v:0,a:0,name:360p v:1,a:1,name:240p",
        str(out / "%v" / "index.m3u8"),
    )  # fmt: skip
    assert (out / "master.m3u8").exists()
    return out


def _uris(playlist: str) -> list[str]:
    return [line for line in playlist.splitlines() if line and not line.startswith("#")]


def _tamper(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _truncate_media_playlist(text: str, keep: int) -> str:
    """The playlist as it stood when only the first ``keep`` segments were written."""
    out: list[str] = []
    seen = 0
    pending: list[str] = []
    for line in text.splitlines():
        if line.startswith("#EXTINF") or line.startswith("#EXT-X-PROGRAM-DATE-TIME"):
            pending.append(line)
        elif line and not line.startswith("#"):
            if seen < keep:
                out.extend(pending)
                out.append(line)
            seen += 1
            pending = []
        elif seen < keep or line.startswith("#EXTM3U"):
            out.append(line)
    return "\n".join(out) + "\n"


@dataclass
class Stack:
    app: App
    servicer: PlaybackRpcs
    store_root: Path
    ladder: Path
    kafka: TansuBroker
    http: aiohttp.ClientSession

    def live_dir(self, stream_id: str) -> Path:
        return self.store_root / "live" / stream_id

    def go_on_air(self, stream_id: str, *, first_segments: int | None = None) -> None:
        """Copy the ladder into the store as the ingest would have written it; with
        ``first_segments``, only that many segments per rung (the rest come later)."""
        dest = self.live_dir(stream_id)
        shutil.copytree(self.ladder, dest)
        if first_segments is None:
            return
        for playlist in dest.glob("*/index.m3u8"):
            text = playlist.read_text()
            for uri in _uris(text)[first_segments:]:
                (playlist.parent / uri).unlink()
            playlist.write_text(_truncate_media_playlist(text, first_segments))

    def write_more_segments(self, stream_id: str) -> None:
        """The rest of the stream's segments and playlists, as later ingest writes them."""
        shutil.copytree(self.ladder, self.live_dir(stream_id), dirs_exist_ok=True)

    async def send(self, stream_id: str, state: int, creator: str = "creator-1") -> str:
        """Send a lifecycle event as svc_chat's outbox relay does; returns its event id."""
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        ended = state == S.LIVE_STREAM_STATE_ENDED
        event = events_pb2.StreamLifecycleEvent(
            meta=events_pb2.EventMeta(event_id=str(uuid.uuid4()), producer="tests"),
            stream_id=stream_id,
            creator_id=creator,
            title="on air",
            state=state,  # type: ignore[arg-type]
            previous_state=S.LIVE_STREAM_STATE_LIVE if ended else S.LIVE_STREAM_STATE_CREATED,
            event_type="stream.ended" if ended else "stream.started",
            started_at=now,
        )
        if ended:
            event.ended_at.CopyFrom(now)
        async with EventProducer(self.kafka.bootstrap) as producer:
            await producer.send(
                topics.STREAMS_EVENTS,
                stream_id,
                event.SerializeToString(),
                {EVENT_ID_HEADER: event.meta.event_id},
            )
        return event.meta.event_id

    async def wait_processed(self, event_id: str) -> None:
        """Until the live consumer has recorded ``event_id`` (applied or found stale)."""

        async def processed() -> bool:
            async with self.app.sessionmaker() as session:
                found = await session.scalar(
                    text(
                        "SELECT 1 FROM processed_events"
                        " WHERE consumer_group = :group AND event_id = :event_id"
                    ),
                    {"group": live.CONSUMER_GROUP, "event_id": event_id},
                )
                return found is not None

        await eventually(processed, 30, f"event {event_id} was never consumed", interval=0.1)

    async def wait_state(self, stream_id: str, state: int) -> None:
        live = self.app.live

        async def reached() -> bool:
            stream = await live.get(stream_id)
            return stream is not None and stream.state == state

        await eventually(reached, 30, f"{stream_id} never reached state {state}", interval=0.1)

    async def start(self, **kwargs: int) -> str:
        stream_id = str(uuid.uuid4())
        self.go_on_air(stream_id, **kwargs)
        await self.send(stream_id, S.LIVE_STREAM_STATE_LIVE)
        await self.wait_state(stream_id, S.LIVE_STREAM_STATE_LIVE)
        return stream_id

    async def playback(self, stream_id: str, **kwargs: object) -> stream_pb2.GetPlaybackResponse:
        request = stream_pb2.GetPlaybackRequest(video_id=stream_id, **kwargs)  # type: ignore[arg-type]
        return await self.servicer.GetPlayback(request, None)  # type: ignore[arg-type]

    async def get(self, url: str) -> tuple[int, dict[str, str], bytes]:
        async with self.http.get(url) as resp:
            return resp.status, dict(resp.headers), await resp.read()


@pytest.fixture(scope="module")
async def stack(
    kafka: TansuBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    ensure_dev_keys()
    ladder = await make_live_ladder(tmp_path_factory.mktemp("live-ladder") / "ladder")
    db_url = _test_database_url()
    await create_database(db_url)
    await migrate(db_url)
    store_root = tmp_path_factory.mktemp("store")
    await kafka.create_topics(topics.STREAMS_EVENTS.name, topics.VIDEO_PUBLISHED.name)
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
    )
    settings = replace(
        settings, platform=replace(settings.platform, media_signing_key=secrets.token_hex(32))
    )
    app = build(settings)
    server = await run_app(app, port=0)

    async def ready() -> bool:
        return app.origin.port == port and app.live.active_consumer is not None

    try:
        await eventually(ready, 30, "the media origin or the live consumer did not start")
        servicer = PlaybackRpcs(app.catalog, app.signer, app.media, app.live)
        async with aiohttp.ClientSession() as http:
            yield Stack(app, servicer, store_root, ladder, kafka, http)
    finally:
        await server.stop(1.0)
        redis = redis_client(settings.platform.redis_url)
        await delete_prefix(redis, prefix)
        await redis.aclose()
        await drop_database(db_url)


async def test_a_started_stream_plays_through_the_signed_origin_with_live_caching(
    stack: Stack,
) -> None:
    stream_id = await stack.start()
    reply = await stack.playback(stream_id)
    master_url = reply.master_manifest_url
    assert urlsplit(master_url).path == f"/media/live/{stream_id}/master.m3u8"
    assert reply.video_id == stream_id
    assert reply.is_live and not reply.HasField("duration")  # live: refreshed, no duration

    status, headers, body = await stack.get(master_url)
    assert status == 200
    assert headers["Cache-Control"] == LIVE_PLAYLIST_CACHE
    variants = _uris(body.decode())
    assert {urlsplit(v).path for v in variants} == {"360p/index.m3u8", "240p/index.m3u8"}

    variant_url = urljoin(master_url, variants[0])
    status, headers, body = await stack.get(variant_url)
    assert status == 200
    assert headers["Cache-Control"] == LIVE_PLAYLIST_CACHE
    assert "#EXT-X-ENDLIST" not in body.decode()
    segments = _uris(body.decode())
    assert len(segments) == SEGMENTS
    assert all("sig=" in s for s in segments)

    status, headers, data = await stack.get(urljoin(variant_url, segments[-1]))
    assert status == 200
    assert headers["Cache-Control"] == IMMUTABLE_CACHE
    assert headers["Content-Type"] == "video/mp2t"
    assert data[:1] == b"\x47"  # an MPEG-TS sync byte

    # A real player's view: ffprobe follows the signed master to variants and segments.
    out = await _run(
        "ffprobe", "-v", "error", "-show_entries", "stream=codec_type,width,height",
        "-of", "json", master_url,
    )  # fmt: skip
    streams = json.loads(out)["streams"]
    assert {s["codec_type"] for s in streams} >= {"video", "audio"}
    assert max(s.get("height", 0) for s in streams) == 360


async def test_segments_written_after_the_url_was_signed_are_reachable(stack: Stack) -> None:
    stream_id = await stack.start(first_segments=2)
    master_url = (await stack.playback(stream_id)).master_manifest_url
    _, _, body = await stack.get(master_url)
    variant_url = urljoin(master_url, _uris(body.decode())[0])
    _, _, body = await stack.get(variant_url)
    assert len(_uris(body.decode())) == 2

    stack.write_more_segments(stream_id)  # the ingest keeps writing; no cache holds us back
    status, headers, body = await stack.get(variant_url)
    assert status == 200
    segments = _uris(body.decode())
    assert len(segments) == SEGMENTS
    status, headers, _ = await stack.get(urljoin(variant_url, segments[-1]))
    assert status == 200
    assert headers["Cache-Control"] == IMMUTABLE_CACHE


async def test_unsigned_or_tampered_live_urls_are_refused(stack: Stack) -> None:
    stream_id = await stack.start()
    master_url = (await stack.playback(stream_id)).master_manifest_url
    _, _, body = await stack.get(master_url)
    variant_url = urljoin(master_url, _uris(body.decode())[0])
    _, _, body = await stack.get(variant_url)
    segment_url = urljoin(variant_url, _uris(body.decode())[0])

    for url in (master_url, variant_url, segment_url):
        bare = urlunsplit(urlsplit(url)._replace(query=""))
        assert (await stack.get(bare))[0] == 403
        assert (await stack.get(_tamper(url, sig="A" * 43)))[0] == 403
        assert (await stack.get(_tamper(url, exp="9999999999")))[0] == 403
    # A signature for one stream's master does not open another stream's objects.
    other = await stack.start()
    stolen = master_url.replace(f"/live/{stream_id}/", f"/live/{other}/")
    status, headers, _ = await stack.get(stolen)
    assert status == 403
    assert headers["Cache-Control"] == "no-store"


async def test_an_ended_stream_is_no_longer_live(stack: Stack) -> None:
    stream_id = await stack.start()
    await stack.playback(stream_id)
    await stack.send(stream_id, S.LIVE_STREAM_STATE_ENDED)
    await stack.wait_state(stream_id, S.LIVE_STREAM_STATE_ENDED)
    with pytest.raises(errors.FailedPrecondition, match="ended"):
        await stack.playback(stream_id)

    # A stream.started delivered late (reordered or replayed) never puts it back on air.
    late = await stack.send(stream_id, S.LIVE_STREAM_STATE_LIVE)
    await stack.wait_processed(late)
    stream = await stack.app.live.get(stream_id)
    assert stream is not None and stream.state == S.LIVE_STREAM_STATE_ENDED


async def test_a_stream_without_segments_yet_asks_the_player_to_retry(stack: Stack) -> None:
    stream_id = str(uuid.uuid4())
    await stack.send(stream_id, S.LIVE_STREAM_STATE_LIVE)
    await stack.wait_state(stream_id, S.LIVE_STREAM_STATE_LIVE)
    with pytest.raises(errors.Unavailable) as caught:
        await stack.playback(stream_id)
    assert caught.value.retry_after_seconds == 1.0

    stack.go_on_air(stream_id)  # the first segments land: no remembered miss hides them
    reply = await stack.playback(stream_id)
    assert (await stack.get(reply.master_manifest_url))[0] == 200


async def test_unknown_ids_are_still_not_found(stack: Stack) -> None:
    with pytest.raises(errors.NotFound):
        await stack.playback(str(uuid.uuid4()))
