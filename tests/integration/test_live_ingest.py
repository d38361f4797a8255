"""RTMP ingest on real components: one svc_chat App (built by ``svc_chat.app.build``,
served by ``reels.server.run_app``) on a fresh Postgres database, Redis and the
module's Tansu broker, its RTMP listener on a free port, and real ffmpeg as the
publisher (``-re``: real time, as an encoder sends).

Objects go to a temporary ``file://`` store; ``streams.events`` is read back from Kafka
by the harness of tests/integration/test_live_streams.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from reels.v1 import chat_pb2, common_pb2

from reels import topics
from reels.cache import delete_prefix, redis_client
from reels.db.engine import create_database, drop_database
from reels.db.migrate import migrate
from reels.server import run_app
from reels_dev.keys import ensure_dev_keys
from svc_chat.app import build
from tests.fixtures.infra import _test_database_url
from tests.integration.test_live_streams import Harness, Instance, _consume, chat_settings
from tests.polling import eventually

if TYPE_CHECKING:
    from tests.fixtures.infra import TansuBroker

S = common_pb2
PUBLISH_S = 4.0
GRACE_S = 0.5


@dataclasses.dataclass
class Live:
    harness: Harness
    instance: Instance
    objects: Path

    @property
    def ingest(self):  # noqa: ANN201 - svc_chat.ingest.IngestPart
        assert self.instance.app.ctx is not None
        return self.instance.app.ctx.ingest

    def url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.ingest.port}/live/{key}"

    def live_dir(self, stream_id: str = "") -> Path:
        return self.objects / "live" / stream_id if stream_id else self.objects / "live"


@contextlib.asynccontextmanager
async def running_live(kafka: TansuBroker, objects: Path, **ingest: object) -> AsyncIterator[Live]:
    """One svc_chat App with its RTMP ingest on a fresh database, Redis prefix and
    ``objects`` store; ``ingest`` overrides IngestSettings fields (timers, grace)."""
    ensure_dev_keys()
    url = _test_database_url()
    await create_database(url)
    await migrate(url)
    prefix = f"reels-test-{uuid.uuid4().hex[:8]}:"
    await kafka.create_topics(topics.STREAMS_EVENTS.name)
    base = chat_settings(database_url=url, kafka_bootstrap=kafka.bootstrap, redis_prefix=prefix)
    settings = dataclasses.replace(
        base,
        platform=dataclasses.replace(base.platform, storage_url=objects.as_uri()),
        ingest=dataclasses.replace(base.ingest, port=0, **ingest),  # type: ignore[arg-type]
    )
    app = build(settings)
    server = await run_app(app, port=0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    instance = Instance(app, server, channel)
    harness = Harness(instance, instance)
    consumer = asyncio.create_task(_consume(kafka.bootstrap, harness.events))
    try:
        yield Live(harness, instance, objects)
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await consumer
        await channel.close()
        await server.stop(1.0)
        redis = redis_client()
        await delete_prefix(redis, prefix)
        await redis.aclose()
        await drop_database(url)


@pytest.fixture(scope="module")
async def live(kafka: TansuBroker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    async with running_live(kafka, tmp_path_factory.mktemp("objects"), grace_s=GRACE_S) as got:
        yield got


async def publisher(url: str, seconds: float = PUBLISH_S) -> asyncio.subprocess.Process:
    """ffmpeg publishing a 640x360 30 fps test picture with a tone, in real time."""
    return await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
        "-f", "lavfi", "-i", "sine", "-t", f"{seconds:g}",
        "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-c:a", "aac",
        "-f", "flv", url,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def new_stream(live: Live, user: str) -> tuple[str, str]:
    reply = await live.harness.call(
        live.instance, "CreateStream", user, chat_pb2.CreateStreamRequest(title="on air")
    )
    return reply.stream.stream_id, reply.stream.stream_key


async def test_a_wrong_stream_key_is_refused_and_writes_nothing(live: Live) -> None:
    stream_id, _key = await new_stream(live, "mallory")
    proc = await publisher(live.url("not-the-key-" + uuid.uuid4().hex), seconds=2)
    _, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode != 0, "ffmpeg should fail to publish with a wrong key"
    assert not live.live_dir().exists() or not any(live.live_dir().iterdir())
    assert (await live.harness.get(stream_id)).state == S.LIVE_STREAM_STATE_CREATED
    assert live.ingest.broadcasts == {}


async def test_a_creator_past_the_concurrent_stream_limit_is_refused(live: Live) -> None:
    """REELS_LIVE_MAX_PER_CREATOR (1 by default): a creator already on air cannot go
    live on a second stream; nothing is written for it."""
    on_air, _ = await new_stream(live, "busy-creator")
    await live.harness.call(
        live.instance, "StartStream", "busy-creator", chat_pb2.StartStreamRequest(stream_id=on_air)
    )
    second, key = await new_stream(live, "busy-creator")
    try:
        proc = await publisher(live.url(key), seconds=2)
        _, err = await asyncio.wait_for(proc.communicate(), 10)
        assert proc.returncode != 0, "ffmpeg should fail to publish past the limit"
        assert not live.live_dir(second).exists()
        assert (await live.harness.get(second)).state == S.LIVE_STREAM_STATE_CREATED
        assert second not in live.ingest.broadcasts
    finally:
        await live.harness.call(
            live.instance, "EndStream", "busy-creator", chat_pb2.EndStreamRequest(stream_id=on_air)
        )


async def test_publishing_goes_live_writes_a_playable_ladder_and_ends_with_the_true_duration(
    live: Live,
) -> None:
    stream_id, key = await new_stream(live, "alice")
    proc = await publisher(live.url(key))

    async def is_live() -> bool:
        return stream_id in live.ingest.broadcasts

    await eventually(is_live, 10, "the publish to be accepted", interval=0.01)
    accepted = live.ingest.broadcasts[stream_id].accepted_at
    out = live.live_dir(stream_id)

    async def first_segment() -> bool:
        return any(out.glob("*/seg_*.ts"))

    await eventually(first_segment, 10, "the first live segment", interval=0.02)
    first_segment_s = time.monotonic() - accepted
    print(f"\nfirst segment {first_segment_s:.2f} s after the publish was accepted")
    assert first_segment_s < 3.0

    # LIVE at once, stream.started on Kafka (through the outbox).
    got = await live.harness.get(stream_id)
    assert got.state == S.LIVE_STREAM_STATE_LIVE
    (started,) = await live.harness.wait_events(stream_id, 1)
    assert started.event_type == "stream.started"

    # A second publisher on the same key is refused while the first one is on air.
    second = await publisher(live.url(key), seconds=1)
    await asyncio.wait_for(second.communicate(), 10)
    assert second.returncode != 0

    async def master() -> bool:
        return (out / "master.m3u8").exists()

    await eventually(master, 10, "the master playlist")
    probe = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-show_streams", "-of", "json", str(out / "master.m3u8"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(probe.communicate(), 20)
    assert probe.returncode == 0, stderr.decode()
    kinds = {(s["codec_type"], s.get("height")) for s in json.loads(stdout)["streams"]}
    assert ("video", 360) in kinds and any(k == "audio" for k, _ in kinds)

    _, err = await asyncio.wait_for(proc.communicate(), 20)
    left = time.monotonic()
    assert proc.returncode == 0, err.decode()
    on_air = left - accepted

    started_ev, ended_ev = await live.harness.wait_events(stream_id, 2, within=15)
    assert ended_ev.event_type == "stream.ended"
    print(f"duration {ended_ev.duration_seconds:.2f} s, measured on air {on_air:.2f} s")
    assert abs(ended_ev.duration_seconds - on_air) < 0.5
    ended = await live.harness.get(stream_id)
    assert ended.state == S.LIVE_STREAM_STATE_ENDED
    playlist = (out / "360p" / "index.m3u8").read_text()
    assert playlist.rstrip().endswith("#EXT-X-ENDLIST")
    assert "#EXT-X-TARGETDURATION:1" in playlist

    # An ENDED stream is refused.
    again = await publisher(live.url(key), seconds=1)
    await asyncio.wait_for(again.communicate(), 10)
    assert again.returncode != 0
