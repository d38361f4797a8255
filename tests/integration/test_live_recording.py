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
from svc_chat.ingest.recording import recording_key, recording_prefix, recording_video_id
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


async def _ffprobe(path: Path) -> dict:
    proc = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-show_entries",
        "format=duration:stream=codec_type,width,height", "-of", "json", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


async def _ffmpeg(*args: str) -> bytes:
    """Run ffmpeg (errors only on stderr); its stdout."""
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert not err.strip(), err.decode()
    return out


async def _write_part(path: Path, size: str | None, seconds: float = 2.0) -> None:
    """A recording part as the live ffmpeg writes one (H.264/AAC in MPEG-TS); ``size``
    None: audio only, what a publish cut off before its first picture leaves."""
    path.parent.mkdir(parents=True, exist_ok=True)
    video = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30"] if size else []
    codecs = ["-c:v", "libx264", "-preset", "veryfast", "-g", "30"] if size else []
    await _ffmpeg(
        *video, "-f", "lavfi", "-i", "sine", "-t", f"{seconds:g}",
        *codecs, "-c:a", "aac", "-f", "mpegts", str(path),
    )  # fmt: skip


async def _picture_md5s(*inputs: str) -> list[str]:
    """The MD5 of every decoded picture of ``inputs`` (ffmpeg arguments), in order."""
    out = await _ffmpeg(*inputs, "-map", "0:v:0", "-f", "framemd5", "-")
    return [line.rsplit(",", 1)[1].strip() for line in out.decode().splitlines() if line[:1] != "#"]


async def _picture_sizes(path: Path) -> set[str]:
    """Every size ("WxH") a decoder gives the pictures of ``path`` in."""
    proc = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-select_streams", "v:0",
        "-show_entries", "frame=width,height", "-of", "json", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    frames = json.loads(out)["frames"]
    assert frames, f"no picture decoded from {path}"
    return {f"{frame['width']}x{frame['height']}" for frame in frames}


async def _ended_stream(live: Live, user: str) -> str:
    """A stream started and ended by RPC (no publisher: nothing records it on its own)."""
    stream_id, _ = await new_stream(live, user)
    await live.harness.start(stream_id, user)
    await live.harness.end(stream_id, user)
    return stream_id


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

    # The recording: one MP4 holding the media the encoder sent (3 s; wall-clock time on
    # air is longer on a loaded machine, where -re falls behind); the parts are gone.
    mp4 = live.objects / recording_key(stream_id)
    recorded_s = await _duration(mp4)
    print(f"\nrecording {recorded_s:.2f} s of 3 s sent, on air {on_air:.2f} s")
    assert abs(recorded_s - 3.0) < 0.5
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


async def _handle_failed(live: Live, stream_id: str) -> Video:
    """Run svc_upload's handler on the stream's queued event; the FAILED video it made."""
    (row,) = await _outbox(live, topics.STREAMS_RECORDINGS.name, stream_id)
    async with live.instance.app.sessionmaker() as session, session.begin():
        await _recordings(live).handle(session, _received(row))
    video_id = recording_video_id(stream_id)
    async with live.instance.app.sessionmaker() as session:
        video = await session.get(Video, uuid.UUID(video_id))
    assert video is not None and video.status == "failed", video and video.status
    assert await _outbox(live, topics.VIDEO_UPLOADED.name, video_id) == []
    return video


async def test_a_one_second_publish_becomes_a_failed_video_with_the_reason(live: Live) -> None:
    """Too short for a picture: the hand-over still happens (the stream names its video,
    the parts are gone, no sweep retries it) and the creator sees a FAILED video."""
    stream_id, key = await new_stream(live, "rec-dave")
    proc = await publisher(live.url(key), seconds=1)
    await asyncio.wait_for(proc.wait(), 20)

    stream = await _wait_handed_over(live, stream_id)
    assert stream.recording_video_id == recording_video_id(stream_id)
    assert not list((live.objects / recording_prefix(stream_id)).glob("part_*.ts"))
    video = await _handle_failed(live, stream_id)
    assert video.creator_id == "rec-dave"
    assert "the live recording could not be made" in (video.failure_reason or "")


@pytest.mark.parametrize(
    ("writes", "reason"),
    [("audio only", "the stream sent no decodable video"), ("empty", "the stream sent no media")],
    ids=["audio-only", "empty"],
)
async def test_parts_that_make_no_recording_become_a_failed_video(
    live: Live, writes: str, reason: str
) -> None:
    stream_id = await _ended_stream(live, "rec-erin")
    part = live.objects / recording_prefix(stream_id) / "part_000.ts"
    if writes == "empty":
        part.parent.mkdir(parents=True, exist_ok=True)
        part.touch()
    else:
        await _write_part(part, None, seconds=0.7)

    assert await live.ingest.recorder.finish(stream_id) == recording_video_id(stream_id)
    assert (await live.harness.get(stream_id)).recording_video_id == recording_video_id(stream_id)
    assert not part.exists(), "the parts are dropped once the failure is handed over"
    (row,) = await _outbox(live, topics.STREAMS_RECORDINGS.name, stream_id)
    event = topics.STREAMS_RECORDINGS.parse(row.payload)
    assert (event.failure_reason, event.recording_key) == (reason, "")

    video = await _handle_failed(live, stream_id)
    assert video.failure_reason == f"the live recording could not be made: {reason}"
    # Finishing again (the start-up sweep) hands nothing over twice.
    assert await live.ingest.recorder.finish(stream_id) == recording_video_id(stream_id)
    assert len(await _outbox(live, topics.STREAMS_RECORDINGS.name, stream_id)) == 1


async def test_parts_of_different_sizes_are_joined_at_the_first_size(live: Live) -> None:
    """A publisher that came back at another resolution: one decodable MP4, the first
    part's size, as long as both parts; svc_upload makes it a video of that size."""
    stream_id = await _ended_stream(live, "rec-frank")
    directory = live.objects / recording_prefix(stream_id)
    await _write_part(directory / "part_000.ts", "640x360")
    await _write_part(directory / "part_001.ts", "320x240")

    assert await live.ingest.recorder.finish(stream_id) == recording_video_id(stream_id)
    mp4 = live.objects / recording_key(stream_id)
    info = await _ffprobe(mp4)
    (video,) = [s for s in info["streams"] if s["codec_type"] == "video"]
    assert (video["width"], video["height"]) == (640, 360)
    assert abs(float(info["format"]["duration"]) - 4.0) < 0.3
    await _ffmpeg("-i", str(mp4), "-f", "null", "-")  # decodes with no error at all
    # One picture size throughout: the second part letterboxed into the first's size,
    # not 320x240 pictures under a 640x360 header (what copying them gives).
    assert await _picture_sizes(mp4) == {"640x360"}
    assert not list(directory.glob("part_*.ts"))

    (row,) = await _outbox(live, topics.STREAMS_RECORDINGS.name, stream_id)
    async with live.instance.app.sessionmaker() as session, session.begin():
        await _recordings(live).handle(session, _received(row))
    async with live.instance.app.sessionmaker() as session:
        made = await session.get(Video, uuid.UUID(recording_video_id(stream_id)))
    assert made is not None and made.status == "processing"
    assert (made.width, made.height) == (640, 360)


async def test_parts_of_one_size_are_joined_losslessly_leaving_out_parts_without_video(
    live: Live,
) -> None:
    """Same size: the parts are copied, not re-encoded (every decoded picture is the
    publisher's own); an audio-only part between them (a publish cut off at once) is
    left out."""
    stream_id = await _ended_stream(live, "rec-grace")
    directory = live.objects / recording_prefix(stream_id)
    await _write_part(directory / "part_000.ts", "640x360")
    await _write_part(directory / "part_001.ts", None, seconds=0.7)
    await _write_part(directory / "part_002.ts", "640x360")
    listing = directory.parent / f"{stream_id}-parts.txt"
    listing.write_text(
        "".join(f"file '{directory / name}'\n" for name in ("part_000.ts", "part_002.ts"))
    )
    published = await _picture_md5s("-f", "concat", "-safe", "0", "-i", str(listing))

    assert await live.ingest.recorder.finish(stream_id) == recording_video_id(stream_id)
    mp4 = live.objects / recording_key(stream_id)
    info = await _ffprobe(mp4)
    (video,) = [s for s in info["streams"] if s["codec_type"] == "video"]
    assert (video["width"], video["height"]) == (640, 360)
    assert abs(float(info["format"]["duration"]) - 4.0) < 0.3
    assert await _picture_md5s("-i", str(mp4)) == published
    assert await _picture_sizes(mp4) == {"640x360"}
    assert not list(directory.glob("part_*.ts"))
