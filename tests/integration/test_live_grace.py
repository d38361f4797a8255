"""A publisher that drops, stalls or is doubled, on real components: the grace period
of svc_chat.ingest (``REELS_LIVE_PUBLISHER_TIMEOUT_S``, ``REELS_LIVE_GRACE_S``).

The harness is test_live_ingest.py's (its :class:`Live`, real ffmpeg publishers over
RTMP, ``streams.events`` read back from Kafka), built here with short timers: a
publisher silent for 1.5 s is dropped, and a stream whose publisher left ends 2.5 s
later unless a publisher comes back on its key. (Its module fixture has a 0.5 s grace
and the default 5 s publisher timeout, hence this module's own fixture.) Times are
``time.monotonic()``, the clock the ingest itself uses (the App runs in this process).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from reels.v1 import common_pb2

from tests.hls_check import media_problems
from tests.integration.test_live_ingest import Live, new_stream, publisher, running_live
from tests.polling import eventually

if TYPE_CHECKING:
    from tests.fixtures.infra import TansuBroker

S = common_pb2
PUBLISHER_TIMEOUT_S = 1.5
"""Short, yet above the 0.5 s an encoder under load may go quiet at its start."""
GRACE_S = 2.5
LONG_S = 60.0
"""How long a publisher would publish if nothing stopped it (each test stops it)."""
TOLERANCE_S = 0.5


@pytest.fixture(scope="module")
async def live(kafka: TansuBroker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    """test_live_ingest.py's harness with the short timers."""
    async with running_live(
        kafka,
        tmp_path_factory.mktemp("objects"),
        publisher_timeout_s=PUBLISHER_TIMEOUT_S,
        grace_s=GRACE_S,
    ) as got:
        yield got


# ---------------------------------------------------------------------- helpers


@dataclasses.dataclass(frozen=True)
class Playlist:
    """A live variant playlist, as far as these tests look at it."""

    media_sequence: int
    segments: list[int]
    """Segment numbers (``seg_000012.ts`` -> 12), in playlist order."""
    discontinuities: list[int]
    """Indexes into ``segments`` of the segments that follow an ``#EXT-X-DISCONTINUITY``."""
    ended: bool
    text: str

    @staticmethod
    def read(path: Path) -> Playlist:
        sequence, segments, discontinuities, ended = -1, [], [], False
        text = path.read_text()
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
                sequence = int(line.split(":", 1)[1])
            elif line == "#EXT-X-DISCONTINUITY":
                discontinuities.append(len(segments))
            elif line == "#EXT-X-ENDLIST":
                ended = True
            elif match := re.fullmatch(r"seg_(\d+)\.ts", line):
                segments.append(int(match.group(1)))
        return Playlist(sequence, segments, discontinuities, ended, text)


def variants(live: Live, stream_id: str) -> dict[str, Playlist]:
    """Every variant playlist of the stream, by rung."""
    return {
        p.parent.name: Playlist.read(p)
        for p in sorted(live.live_dir(stream_id).glob("*/index.m3u8"))
    }


async def wait_segments(live: Live, stream_id: str, newest_at_least: int, what: str) -> None:
    """Until every variant lists a segment numbered ``newest_at_least`` or more."""

    async def there() -> bool:
        got = variants(live, stream_id)
        return bool(got) and all(
            p.segments and p.segments[-1] >= newest_at_least for p in got.values()
        )

    await eventually(there, 15, what, interval=0.05)


def newest_segment(live: Live, stream_id: str) -> int:
    """The lowest, across variants, of each variant's newest segment number."""
    return min(p.segments[-1] for p in variants(live, stream_id).values())


async def accepted(live: Live, stream_id: str, unlike: object = None) -> float:
    """Wait for the stream's publish (a Broadcast other than ``unlike``) to be
    accepted: claimed, its grace timer (if any) gone, the stream LIVE; its
    ``accepted_at``."""

    async def on_air() -> bool:
        return (
            live.ingest.broadcasts.get(stream_id) not in (None, unlike)
            and stream_id not in live.ingest.grace
            and (await live.harness.get(stream_id)).state == S.LIVE_STREAM_STATE_LIVE
        )

    await eventually(on_air, 10, "the publish to be accepted", interval=0.01)
    return live.ingest.broadcasts[stream_id].accepted_at


async def still_publishing(proc: asyncio.subprocess.Process) -> None:
    """Fail, with the publisher's own words, if it is no longer running."""
    if proc.returncode is None:
        return
    err = b""
    if proc.stderr is not None:
        with contextlib.suppress(Exception):
            err = await asyncio.wait_for(proc.stderr.read(), 5)
    raise AssertionError(f"the publisher exited {proc.returncode}: {err.decode()}")


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    """Kill a publisher this test started (resumed first if it was frozen)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(proc.communicate(), 10)


@contextlib.asynccontextmanager
async def states_seen(live: Live, stream_id: str) -> AsyncIterator[list[int]]:
    """The stream's state, read through GetStream every 0.1 s while the block runs."""
    seen: list[int] = []

    async def poll() -> None:
        while True:
            seen.append((await live.harness.get(stream_id)).state)
            await asyncio.sleep(0.1)

    task = asyncio.create_task(poll())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def final_events(live: Live, stream_id: str) -> list[str]:
    """The stream's streams.events once stream.ended arrived, by type; and checks that
    the outbox holds no more than Kafka delivered."""
    await live.harness.wait_events(stream_id, 2, within=GRACE_S + 15)
    events = live.harness.events_of(stream_id)
    assert await live.harness.outbox_rows(stream_id) == len(events)
    return [e.event_type for e in events]


# ---------------------------------------------------------------------- tests


async def test_a_publisher_back_within_the_grace_continues_the_same_stream(live: Live) -> None:
    stream_id, key = await new_stream(live, "grace-returner")
    first = await publisher(live.url(key), seconds=LONG_S)
    second: asyncio.subprocess.Process | None = None
    try:
        accepted_at = await accepted(live, stream_id)
        dropped = live.ingest.broadcasts[stream_id]
        async with states_seen(live, stream_id) as states:
            await wait_segments(live, stream_id, 1, "two segments from the first publisher")

            # The first publisher drops (killed: its TCP connection closes).
            await still_publishing(first)
            assert live.ingest.broadcasts[stream_id] is dropped
            first.kill()
            await first.wait()

            async def in_grace() -> bool:
                return stream_id in live.ingest.grace and stream_id not in live.ingest.broadcasts

            await eventually(in_grace, 10, "the ingest to see the publisher leave")
            timer = live.ingest.grace[stream_id]
            before = variants(live, stream_id)
            assert before and not any(p.ended for p in before.values()), before

            # A new publisher on the same key within the grace: the same stream goes on,
            # into the same ladder (its ffmpeg was kept through the grace period).
            assert live.ingest.paused[stream_id] is dropped
            second = await publisher(live.url(key), seconds=3)
            await accepted(live, stream_id)
            await asyncio.sleep(0)  # the cancelled timer's task finishes
            assert timer.cancelled(), "the returning publish cancels the grace timer"
            assert live.ingest.broadcasts[stream_id] is dropped
            assert stream_id not in live.ingest.paused
            await wait_segments(
                live,
                stream_id,
                max(p.segments[-1] for p in before.values()) + 2,
                "two segments from the returning publisher",
            )
            after = variants(live, stream_id)

            _, err = await asyncio.wait_for(second.communicate(), 20)
            left = time.monotonic()
            assert second.returncode == 0, err.decode()

        assert states and set(states) == {S.LIVE_STREAM_STATE_LIVE}, states

        # The playlists continue: same files, numbers going on, and no discontinuity at
        # all (one encoder throughout; timestamps moved on past the gap).
        assert after.keys() == before.keys()
        for rung, now in after.items():
            then = before[rung]
            assert now.media_sequence >= then.media_sequence, (rung, then, now)
            assert now.segments == list(
                range(now.segments[0], now.segments[0] + len(now.segments))
            ), (rung, now)
            assert now.media_sequence == now.segments[0], (rung, now)
            assert then.segments[-1] in now.segments, (rung, then, now)
            join = now.segments.index(then.segments[-1]) + 1
            assert join < len(now.segments), (rung, now)
            assert now.discontinuities == [], f"a discontinuity in one encode: {now.text}"
            assert not now.ended
            assert not media_problems(now.text, rung, vod=False)

        # One stream: one stream.started, one stream.ended counting first accept to last leave.
        assert await final_events(live, stream_id) == ["stream.started", "stream.ended"]
        ended = live.harness.events_of(stream_id)[-1]
        on_air = left - accepted_at
        print(f"\nduration {ended.duration_seconds:.2f} s, measured on air {on_air:.2f} s")
        assert abs(ended.duration_seconds - on_air) < TOLERANCE_S
        assert (await live.harness.get(stream_id)).state == S.LIVE_STREAM_STATE_ENDED

        async def closed() -> bool:
            return all(p.ended for p in variants(live, stream_id).values())

        await eventually(closed, 10, "#EXT-X-ENDLIST on every variant playlist")
    finally:
        await stop_process(first)
        if second is not None:
            await stop_process(second)


async def test_a_stalled_publisher_is_dropped_and_the_stream_ends_at_its_last_media(
    live: Live,
) -> None:
    stream_id, key = await new_stream(live, "grace-staller")
    proc = await publisher(live.url(key), seconds=LONG_S)
    try:
        accepted_at = await accepted(live, stream_id)
        await wait_segments(live, stream_id, 1, "two live segments")

        # Frozen: the TCP connection stays open, no media comes.
        await still_publishing(proc)
        os.kill(proc.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()

        async def dropped() -> bool:
            return stream_id not in live.ingest.broadcasts

        await eventually(dropped, PUBLISHER_TIMEOUT_S + 5, "the stalled publisher to be dropped")
        dropped_after = time.monotonic() - frozen_at
        print(f"\ndropped {dropped_after:.2f} s after the publisher froze")
        assert PUBLISHER_TIMEOUT_S - 0.2 <= dropped_after < PUBLISHER_TIMEOUT_S + 1.5
        assert (await live.harness.get(stream_id)).state == S.LIVE_STREAM_STATE_LIVE

        assert await final_events(live, stream_id) == ["stream.started", "stream.ended"]
        ended = live.harness.events_of(stream_id)[-1]
        on_air = frozen_at - accepted_at
        print(f"duration {ended.duration_seconds:.2f} s, on air until frozen {on_air:.2f} s")
        assert abs(ended.duration_seconds - on_air) < TOLERANCE_S
        assert (await live.harness.get(stream_id)).state == S.LIVE_STREAM_STATE_ENDED

        async def closed() -> bool:
            got = variants(live, stream_id)
            return bool(got) and all(p.ended for p in got.values())

        await eventually(closed, 10, "#EXT-X-ENDLIST on every variant playlist")
        for path in live.live_dir(stream_id).glob("*/index.m3u8"):
            assert path.read_text().rstrip().endswith("#EXT-X-ENDLIST"), path
    finally:
        await stop_process(proc)


async def test_a_stalled_publisher_gets_the_whole_grace_after_its_drop(live: Live) -> None:
    """REELS_LIVE_GRACE_S starts when the stalled publisher is dropped (the module
    docstring of svc_chat.ingest): the stream stays LIVE that long after the drop."""
    stream_id, key = await new_stream(live, "grace-late-staller")
    proc = await publisher(live.url(key), seconds=LONG_S)
    try:
        await accepted(live, stream_id)
        await wait_segments(live, stream_id, 0, "the first live segment")
        await still_publishing(proc)
        os.kill(proc.pid, signal.SIGSTOP)

        async def dropped() -> bool:
            return stream_id not in live.ingest.broadcasts

        await eventually(dropped, PUBLISHER_TIMEOUT_S + 5, "the stalled publisher to be dropped")
        dropped_at = time.monotonic()

        async def is_ended() -> bool:
            return (await live.harness.get(stream_id)).state == S.LIVE_STREAM_STATE_ENDED

        await eventually(is_ended, GRACE_S + 10, "the stream to end", interval=0.05)
        ended_after = time.monotonic() - dropped_at
        print(f"\nended {ended_after:.2f} s after the drop; the grace is {GRACE_S:g} s")
        assert ended_after >= GRACE_S - 0.3
    finally:
        await stop_process(proc)


async def test_a_second_publisher_on_a_key_on_air_is_refused_and_the_first_goes_on(
    live: Live,
) -> None:
    stream_id, key = await new_stream(live, "grace-holder")
    first = await publisher(live.url(key), seconds=LONG_S)
    try:
        await accepted(live, stream_id)
        on_air = live.ingest.broadcasts[stream_id]
        await wait_segments(live, stream_id, 0, "the first live segment")

        started = time.monotonic()
        second = await publisher(live.url(key), seconds=20)
        try:
            _, err = await asyncio.wait_for(second.communicate(), 10)
        finally:
            await stop_process(second)
        refused_in = time.monotonic() - started
        print(f"\nsecond publisher refused in {refused_in:.2f} s: {err.decode().strip()}")
        assert second.returncode != 0
        assert refused_in < 5, "a refused publish ends at once, not after publishing"

        # The first publisher is untouched: same publish, its segments keep coming.
        assert live.ingest.broadcasts.get(stream_id) is on_air
        await still_publishing(first)
        seen = newest_segment(live, stream_id)
        await wait_segments(live, stream_id, seen + 2, "two more segments from the first")
        assert live.ingest.broadcasts.get(stream_id) is on_air
        assert (await live.harness.get(stream_id)).state == S.LIVE_STREAM_STATE_LIVE
        assert [e.event_type for e in live.harness.events_of(stream_id)] in (
            [],
            ["stream.started"],
        )
        assert await live.harness.outbox_rows(stream_id) == 1
    finally:
        await stop_process(first)
