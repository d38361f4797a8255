"""Progress: ffmpeg's `-progress` stream turned into throttled (stage, percent) reports.

Job progress ends up in Postgres and in the uploader's status screen; ffmpeg emits a
block every ~0.5 s per output and a report per block would hammer the database for no
visible gain. So reports are throttled, never go backwards, and the last one of a stage
is always delivered (a UI stuck at 89 % looks like a hang).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

ProgressCallback = Callable[[str, float], Awaitable[None] | None]

MIN_INTERVAL_S = 0.5


class ProgressReporter:
    """Delivers (stage, percent) to a sync or async callback, throttled and monotonic."""

    def __init__(
        self, callback: ProgressCallback | None, *, min_interval_s: float = MIN_INTERVAL_S
    ) -> None:
        self._callback = callback
        self._min_interval_s = min_interval_s
        self._last_sent_at = float("-inf")
        self._last_percent = -1.0
        self._last_stage: str | None = None

    @property
    def percent(self) -> float:
        return max(0.0, self._last_percent)

    async def report(self, stage: str, percent: float, *, force: bool = False) -> None:
        if self._callback is None:
            return
        percent = max(self._last_percent, min(100.0, round(percent, 2)))
        now = time.monotonic()
        stage_changed = stage != self._last_stage
        if not (force or stage_changed) and now - self._last_sent_at < self._min_interval_s:
            return
        if percent == self._last_percent and not stage_changed and not force:
            return
        self._last_sent_at, self._last_percent, self._last_stage = now, percent, stage
        result = self._callback(stage, percent)
        if inspect.isawaitable(result):
            await result


def parse_out_time_s(block: dict[str, str]) -> float | None:
    """Seconds of output written, from whichever key this ffmpeg provides.

    `out_time_us` is the reliable one; ffmpeg ≤ 6 also prints `out_time_ms` which is
    (despite its name) microseconds too; `out_time` is HH:MM:SS.micro.
    """
    for key in ("out_time_us", "out_time_ms"):
        value = block.get(key, "")
        if value.lstrip("-").isdigit():
            return max(0.0, int(value) / 1_000_000)
    text = block.get("out_time", "")
    parts = text.split(":")
    if len(parts) == 3:
        try:
            return max(0.0, int(parts[0]) * 3600 + int(parts[1]) * 60 + float(parts[2]))
        except ValueError:
            return None
    return None


async def follow_ffmpeg_progress(
    stream: asyncio.StreamReader,
    duration_s: float,
    on_fraction: Callable[[float, bool], Awaitable[None]],
) -> float:
    """Read `-progress pipe:1` blocks until `progress=end`; returns the last out_time.

    `on_fraction(fraction_of_source, is_end)` is called once per block; throttling is the
    reporter's job, so this stays a pure parser of the key=value protocol.
    """
    block: dict[str, str] = {}
    last_time = 0.0
    while line := await stream.readline():
        key, sep, value = line.decode("utf-8", "replace").strip().partition("=")
        if not sep:
            continue
        block[key] = value
        if key != "progress":
            continue
        out_time = parse_out_time_s(block)
        if out_time is not None:
            last_time = max(last_time, out_time)
        is_end = value == "end"
        fraction = 1.0 if is_end else min(1.0, last_time / duration_s) if duration_s > 0 else 0
        await on_fraction(fraction, is_end)
        block = {}
        if is_end:
            break
    return last_time
