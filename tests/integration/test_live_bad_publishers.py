"""Publishers that are not what the ingest expects (the breaker's list for issue 11).

Each case is a kind: publishes racing past the creator's limit, a returning publisher
with another picture size, no onMetaData, no video at all, a picture too small to be a
video, garbage or silence on the RTMP port, EndStream during the grace period. Real
svc_chat on the short-timer harness of test_live_grace.py, real ffmpeg publishers.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from reels.v1 import chat_pb2, common_pb2

from svc_chat.ingest import rtmp
from tests.integration import test_live_grace
from tests.integration.test_live_grace import (
    GRACE_S,
    PUBLISHER_TIMEOUT_S,
    TOLERANCE_S,
    accepted,
    final_events,
    stop_process,
    variants,
    wait_segments,
)
from tests.integration.test_live_ingest import Live, new_stream
from tests.polling import eventually

S = common_pb2
live = test_live_grace.live  # the module-scoped harness with short timers (a fixture)


async def encoder(
    url: str, *, size: str = "640x360", seconds: float = 30, extra=()
) -> asyncio.subprocess.Process:  # noqa: ANN001, E501
    """ffmpeg publishing a test picture (``size``) and a tone in real time."""
    return await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-re", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30",
        "-f", "lavfi", "-i", "sine", "-t", f"{seconds:g}",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-c:a", "aac",
        *extra, "-f", "flv", url,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def state(live: Live, stream_id: str) -> int:
    return (await live.harness.get(stream_id)).state


async def test_publishes_racing_past_the_creators_limit_put_at_most_one_stream_live(
    live: Live,
) -> None:
    streams = [await new_stream(live, "racer") for _ in range(3)]
    procs = await asyncio.gather(*(encoder(live.url(key), seconds=8) for _, key in streams))
    try:

        async def settled() -> bool:
            live_now = [
                sid for sid, _ in streams if await state(live, sid) == S.LIVE_STREAM_STATE_LIVE
            ]
            return len(live_now) >= 1 and sum(p.returncode is not None for p in procs) >= 2

        await eventually(settled, 20, "one stream live and the other publishers refused")
        states = [await state(live, sid) for sid, _ in streams]
        assert states.count(S.LIVE_STREAM_STATE_LIVE) == 1, states
    finally:
        for proc in procs:
            await stop_process(proc)


async def test_a_publisher_back_with_another_picture_size_gets_a_ladder_cut_for_it(
    live: Live,
) -> None:
    stream_id, key = await new_stream(live, "resizer")
    first = await encoder(live.url(key), size="640x360")
    second = None
    try:
        await accepted(live, stream_id)
        await wait_segments(live, stream_id, 1, "segments at 640x360")
        assert set(variants(live, stream_id)) == {"360p", "240p"}
        first.kill()
        await first.wait()

        async def in_grace() -> bool:
            return stream_id in live.ingest.grace

        await eventually(in_grace, 10, "the publisher to leave")
        second = await encoder(live.url(key), size="320x240")
        await accepted(live, stream_id)

        async def new_ladder() -> bool:
            master = live.live_dir(stream_id) / "master.m3u8"
            return master.exists() and "RESOLUTION=320x240" in master.read_text()

        await eventually(new_ladder, 15, "a ladder cut for the 320x240 source")
        master = (live.live_dir(stream_id) / "master.m3u8").read_text()
        assert "640x360" not in master, "no rung above the new source"
        assert await state(live, stream_id) == S.LIVE_STREAM_STATE_LIVE
    finally:
        await stop_process(first)
        if second is not None:
            await stop_process(second)


async def test_a_publisher_without_onmetadata_goes_live_with_the_size_read_from_the_stream(
    live: Live,
) -> None:
    stream_id, key = await new_stream(live, "no-metadata")
    proc = await encoder(live.url(key), extra=("-flvflags", "no_metadata"))
    try:
        await accepted(live, stream_id)
        await wait_segments(live, stream_id, 1, "segments from a publisher without onMetaData")
        assert set(variants(live, stream_id)) == {"360p", "240p"}
    finally:
        await stop_process(proc)


@pytest.mark.parametrize(
    ("inputs", "why"),
    [
        (("-f", "lavfi", "-i", "sine", "-vn", "-c:a", "aac"), "sent no video"),
        (
            ("-f", "lavfi", "-i", "testsrc2=size=64x64:rate=30", "-c:v", "libx264"),
            "short edge must be at least 144",
        ),
    ],
    ids=["audio-only", "too-small"],
)
async def test_a_publisher_with_no_playable_picture_never_makes_the_stream_live(
    live: Live, caplog: pytest.LogCaptureFixture, inputs: tuple[str, ...], why: str
) -> None:
    stream_id, key = await new_stream(live, "no-picture")
    caplog.set_level(logging.INFO, logger="svc_chat.ingest")
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re", *inputs,
        "-t", "20", "-f", "flv", live.url(key),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await asyncio.wait_for(proc.wait(), PUBLISHER_TIMEOUT_S + 10)
        assert proc.returncode != 0, "the publisher is dropped"
        assert await state(live, stream_id) == S.LIVE_STREAM_STATE_CREATED
        assert not list(live.live_dir(stream_id).glob("*/seg_*.ts"))
        assert any(why in r.getMessage() + str(getattr(r, "fields", "")) for r in caplog.records)
        assert stream_id not in live.ingest.grace and stream_id not in live.ingest.broadcasts
    finally:
        await stop_process(proc)


async def test_garbage_and_silence_on_the_rtmp_port_are_closed_without_error_logs(
    live: Live, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rtmp, "PUBLISH_TIMEOUT_S", 1.0)
    caplog.set_level(logging.WARNING)
    port = live.ingest.port
    # Garbage after a plausible handshake byte.
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x03" + bytes(range(256)) * 40)
    await writer.drain()
    # Silence: a connection that never says anything.
    reader, idle = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 10) == b""  # EOF: the server closed it
    assert time.monotonic() - started < 5
    writer.close()
    idle.close()
    await asyncio.sleep(0.2)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


async def test_end_stream_during_the_grace_counts_to_the_leave_and_hands_over_at_once(
    live: Live,
) -> None:
    stream_id, key = await new_stream(live, "ender")
    proc = await encoder(live.url(key))
    try:
        accepted_at = await accepted(live, stream_id)
        await wait_segments(live, stream_id, 1, "two segments")
        proc.kill()
        await proc.wait()
        left = time.monotonic()

        async def in_grace() -> bool:
            return stream_id in live.ingest.grace

        await eventually(in_grace, 10, "the publisher to leave")
        await asyncio.sleep(min(1.0, GRACE_S / 2))
        await live.harness.call(
            live.instance, "EndStream", "ender", chat_pb2.EndStreamRequest(stream_id=stream_id)
        )
        assert stream_id not in live.ingest.grace
        assert await final_events(live, stream_id) == ["stream.started", "stream.ended"]
        ended = live.harness.events_of(stream_id)[-1]
        assert abs(ended.duration_seconds - (left - accepted_at)) < TOLERANCE_S

        async def handed_over() -> bool:
            return bool((await live.harness.get(stream_id)).recording_video_id)

        await eventually(handed_over, GRACE_S, "the recording, before the grace would end")
    finally:
        await stop_process(proc)
