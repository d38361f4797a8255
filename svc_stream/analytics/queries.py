"""Analytics read from ClickHouse: what happened to a video, and to a creator's videos.

Every query reads with ``FINAL`` because the tables are ReplacingMergeTree keyed by
event id: a redelivered event is a duplicate row until a background merge, and
FINAL makes the numbers exact before that merge too.

Definitions (documented here because the numbers are only as good as them):

* view = one ``watch_start`` event (unique by event id);
* completion rate = ``watch_complete`` events / views (capped at 1);
* average watch seconds = sum of reported ``watch_seconds`` / views;
* a *view session* = the events of one (user, session_id) with a watch_start; its
  reach = furthest position / duration, or 1 when it sent ``watch_complete``;
* completion distribution = view sessions by reach in 10 % buckets, [0,10) ...
  [90,100] (100 % falls into the last bucket);
* retention at p % (p = 0, 5, ..., 100) = share of view sessions whose reach >= p %.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from reels.v1 import common_pb2

from reels.analytics import Analytics

ET = common_pb2.EventType
START = ET.EVENT_TYPE_WATCH_START
COMPLETE = ET.EVENT_TYPE_WATCH_COMPLETE
TOP_N = 5
# Positions are reported as floats; a hair of slack keeps 1.5 s of 10 s at exactly 15 %.
EPS = 1e-9


@dataclass
class VideoStats:
    views: int = 0
    completions: int = 0
    watch_seconds: float = 0.0
    distribution: list[tuple[int, int, int]] = field(default_factory=list)
    retention: list[tuple[int, float]] = field(default_factory=list)
    top_countries: list[tuple[str, int]] = field(default_factory=list)
    top_devices: list[tuple[str, int]] = field(default_factory=list)

    @property
    def completion_rate(self) -> float:
        return min(1.0, self.completions / self.views) if self.views else 0.0

    @property
    def average_watch_seconds(self) -> float:
        return self.watch_seconds / self.views if self.views else 0.0


async def video_stats(analytics: Analytics, video_id: str, duration_s: float) -> VideoStats:
    """Every per-video figure of GetVideoAnalytics that comes from watch events."""
    params = {"v": video_id, "start": START, "complete": COMPLETE}
    totals = await analytics.query_rows(
        "SELECT countIf(type = {start:UInt8}), countIf(type = {complete:UInt8}), sum(watch_s) "
        "FROM video_events FINAL WHERE video_id = {v:String}",
        params,
    )
    views, completions, watched = totals[0] if totals else (0, 0, 0.0)
    stats = VideoStats(int(views), int(completions), float(watched or 0.0))
    # Reach of each view session in twentieths (0..20) of the duration.
    steps = await analytics.query_rows(
        "SELECT step, count() FROM ("
        " SELECT if(countIf(type = {complete:UInt8}) > 0 OR {d:Float64} <= 0, 20,"
        "   toUInt8(least(20, floor(max(position_s) * 20 / {d:Float64} + {eps:Float64})))) AS step"
        " FROM video_events FINAL WHERE video_id = {v:String}"
        " GROUP BY user_id, session_id HAVING countIf(type = {start:UInt8}) > 0"
        ") GROUP BY step",
        {**params, "d": float(duration_s), "eps": EPS},
    )
    per_step = [0] * 21
    for step, count in steps:
        per_step[int(step)] += int(count)
    sessions = sum(per_step)
    stats.distribution = [
        (lo, lo + 10, per_step[lo // 5] + per_step[lo // 5 + 1] + (per_step[20] if lo == 90 else 0))
        for lo in range(0, 100, 10)
    ]
    stats.retention = [
        (p, (sum(per_step[p // 5 :]) / sessions) if sessions else 0.0) for p in range(0, 101, 5)
    ]
    stats.top_countries = await _top(analytics, "country", "video_id = {v:String}", params)
    stats.top_devices = await _top(analytics, "device", "video_id = {v:String}", params)
    return stats


async def _top(
    analytics: Analytics, column: str, where: str, params: dict[str, object]
) -> list[tuple[str, int]]:
    """Audience by ``column``: views (watch_start events), most first."""
    rows = await analytics.query_rows(
        f"SELECT {column}, count() AS n FROM video_events FINAL "  # noqa: S608 - fixed column
        f"WHERE {where} AND type = {{start:UInt8}} AND {column} != '' "
        f"GROUP BY {column} ORDER BY n DESC, {column} LIMIT {TOP_N}",
        params,
    )
    return [(str(k), int(n)) for k, n in rows]


@dataclass
class CreatorStats:
    video_ids: list[str] = field(default_factory=list)
    views: int = 0
    completions: int = 0
    watch_seconds: float = 0.0
    top_videos: list[tuple[str, int]] = field(default_factory=list)
    top_countries: list[tuple[str, int]] = field(default_factory=list)


async def creator_videos(analytics: Analytics, creator_id: str) -> list[str]:
    """The creator's published videos, as the video.published events told us."""
    rows = await analytics.query_rows(
        "SELECT video_id FROM videos FINAL WHERE creator_id = {c:String} ORDER BY video_id",
        {"c": creator_id},
    )
    return [str(r[0]) for r in rows]


async def creator_stats(analytics: Analytics, video_ids: Sequence[str]) -> CreatorStats:
    stats = CreatorStats(video_ids=list(video_ids))
    if not video_ids:
        return stats
    params = {"ids": list(video_ids), "start": START, "complete": COMPLETE}
    per_video = await analytics.query_rows(
        "SELECT video_id, countIf(type = {start:UInt8}) AS views,"
        " countIf(type = {complete:UInt8}), sum(watch_s)"
        " FROM video_events FINAL WHERE video_id IN {ids:Array(String)}"
        " GROUP BY video_id ORDER BY views DESC, video_id",
        params,
    )
    for _vid, views, completions, watched in per_video:
        stats.views += int(views)
        stats.completions += int(completions)
        stats.watch_seconds += float(watched or 0.0)
    stats.top_videos = [(str(v), int(n)) for v, n, _, _ in per_video if n][:TOP_N]
    stats.top_countries = await _top(
        analytics, "country", "video_id IN {ids:Array(String)}", params
    )
    return stats
