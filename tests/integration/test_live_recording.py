"""A live stream's recording goes to the VOD pipeline (svc_chat.ingest.recording ->
``streams.recordings`` -> svc_upload.recordings -> ``video.uploaded``).

Real svc_chat (the ``live`` harness of test_live_ingest.py: Postgres, Redis, Tansu,
real ffmpeg publishing over RTMP) and svc_upload's real consumer handler on the same
database and ``file://`` store. The full path to a published video through Envoy is in
tests/e2e/test_live_e2e.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from pathlib import Path

import pytest
from reels.v1 import chat_pb2, common_pb2
from sqlalchemy import select

from reels import topics
from reels.db.engine import make_engine, make_sessionmaker
from reels.db.models import Outbox
from reels.events import ReceivedEvent
from reels.storage import LocalObjectStore
from svc_chat.ingest.recording import recording_key, recording_video_id
from svc_upload.limits import UploadLimits
from svc_upload.models import Video
from svc_upload.recordings import Recordings
from tests.integration import test_live_ingest
from tests.integration.test_live_ingest import Live, new_stream, publisher
from tests.polling import eventually

S = common_pb2
live = test_live_ingest.live  # the module-scoped svc_chat + RTMP harness (a fixture)


async def _duration(path: Path) -> float:
    proc = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    return float(json.loads(out)["format"]["duration"])


async def _outbox(live: Live, topic: str, key: str) -> list[Outbox]:
    async with live.instance.app.sessionmaker() as session:
        rows = await session.scalars(
            select(Outbox).where(Outbox.topic == topic, Outbox.key == key.encode())
        )
        return list(rows)


def _received(row: Outbox) -> ReceivedEvent:
    return ReceivedEvent(
        topic=row.topic,
        partition=0,
        offset=row.id,
        key=row.key,
        value=row.payload,
        event_id=str(row.event_id),
        headers={},
    )


def _recordings(live: Live) -> Recordings:
    return Recordings(
        live.instance.app.sessionmaker,
        LocalObjectStore(live.objects),
        live.objects.parent / f"scratch-{uuid.uuid4().hex[:6]}",
        UploadLimits(),
    )


async def _wait_handed_over(live: Live, stream_id: str) -> chat_pb2.LiveStream:
    async def handed_over() -> bool:
        return bool((await live.harness.get(stream_id)).recording_video_id)

    await eventually(handed_over, 30, "the recording to be handed over")
    return await live.harness.get(stream_id)


async def test_an_ended_stream_becomes_a_video_of_its_creator(live: Live) -> None:
    stream_id, key = await new_stream(live, "rec-alice")
    proc = await publisher(live.url(key), seconds=3)

    async def accepted() -> bool:
        return stream_id in live.ingest.broadcasts

    await eventually(accepted, 10, "the publish to be accepted", interval=0.01)
    accepted_at = live.ingest.broadcasts[stream_id].accepted_at
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    on_air = time.monotonic() - accepted_at

    stream = await _wait_handed_over(live, stream_id)
    assert stream.state == S.LIVE_STREAM_STATE_ENDED
    video_id = stream.recording_video_id
    assert video_id == recording_video_id(stream_id)

    # The recording: one MP4 as long as the stream was on air; the parts are gone.
    mp4 = live.objects / recording_key(stream_id)
    recorded_s = await _duration(mp4)
    print(f"\nrecording {recorded_s:.2f} s, on air {on_air:.2f} s")
    assert abs(recorded_s - on_air) < 1.0
    assert not list(mp4.parent.glob("part_*.ts"))

    (row,) = await _outbox(live, topics.STREAMS_RECORDINGS.name, stream_id)
    event = topics.STREAMS_RECORDINGS.parse(row.payload)
    assert (event.video_id, event.creator_id, event.title) == (video_id, "rec-alice", "on air")
    assert event.recording_key == recording_key(stream_id)

    # svc_upload makes it a video: PROCESSING, its original in place, video.uploaded queued.
    recordings = _recordings(live)
    async with live.instance.app.sessionmaker() as session, session.begin():
        await recordings.handle(session, _received(row))
    async with live.instance.app.sessionmaker() as session:
        video = await session.get(Video, uuid.UUID(video_id))
    assert video is not None
    assert (video.creator_id, video.status, video.title) == ("rec-alice", "processing", "on air")
    assert video.original_key and (live.objects / video.original_key).exists()
    assert abs((video.duration_s or 0) - recorded_s) < 0.2
    assert not mp4.exists(), "the recording was moved to the video's original"
    (uploaded_row,) = await _outbox(live, topics.VIDEO_UPLOADED.name, video_id)
    uploaded = topics.VIDEO_UPLOADED.parse(uploaded_row.payload)
    assert (uploaded.creator_id, uploaded.original_key) == ("rec-alice", video.original_key)
    assert uploaded.probe.height == 360

    # The same event again (another event id): still one video, one video.uploaded.
    again = dataclasses.replace(_received(row), event_id=str(uuid.uuid4()))
    async with live.instance.app.sessionmaker() as session, session.begin():
        await recordings.handle(session, again)
    assert len(await _outbox(live, topics.VIDEO_UPLOADED.name, video_id)) == 1


async def test_ending_the_stream_drops_its_publisher_and_hands_the_recording_over_at_once(
    live: Live,
) -> None:
    stream_id, key = await new_stream(live, "rec-bob")
    proc = await publisher(live.url(key), seconds=30)
    try:

        async def segments() -> bool:
            return any(live.live_dir(stream_id).glob("*/seg_*.ts"))

        await eventually(segments, 15, "the first live segment")
        await live.harness.call(
            live.instance, "EndStream", "rec-bob", chat_pb2.EndStreamRequest(stream_id=stream_id)
        )
        await asyncio.wait_for(proc.wait(), 5)  # dropped, not at the end of its 30 s
        stream = await _wait_handed_over(live, stream_id)
        assert stream.recording_video_id == recording_video_id(stream_id)
        assert (live.objects / recording_key(stream_id)).exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"not a video at all" * 100, "not a usable video"), (None, "the recording is missing")],
    ids=["garbage", "missing"],
)
async def test_an_unusable_recording_becomes_a_failed_video_with_the_reason(
    live: Live, content: bytes | None, reason: str
) -> None:
    """The creator sees why (GetVideoStatus: FAILED + reason); nothing is queued."""
    stream_id = f"st_{uuid.uuid4().hex[:16]}"
    video_id = str(uuid.uuid4())
    key = recording_key(stream_id)
    if content is not None:
        path = live.objects / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    event = topics.STREAMS_RECORDINGS.message(
        stream_id=stream_id, creator_id="rec-carol", video_id=video_id, recording_key=key,
        title="broken", tags=["not a #valid tag!"],
    )  # fmt: skip
    received = ReceivedEvent(
        topic=topics.STREAMS_RECORDINGS.name,
        partition=0,
        offset=0,
        key=stream_id.encode(),
        value=event.SerializeToString(),
        event_id=str(uuid.uuid4()),
        headers={},
    )
    engine = make_engine(live.instance.app.settings.platform.database_url)
    try:
        sessionmaker = make_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            await _recordings(live).handle(session, received)
        async with sessionmaker() as session:
            video = await session.get(Video, uuid.UUID(video_id))
    finally:
        await engine.dispose()
    assert video is not None and video.status == "failed"
    assert reason in (video.failure_reason or "")
    assert await _outbox(live, topics.VIDEO_UPLOADED.name, video_id) == []
