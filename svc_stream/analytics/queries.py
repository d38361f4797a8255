"""Analytics read from ClickHouse: what happened to a video, and to a creator's videos.

Every query reads with ``FINAL`` because the tables are ReplacingMergeTree keyed by
event id: a redelivered event is a duplicate row until a background merge, and
FINAL makes the numbers exact before that merge too.

Definitions (documented here because the numbers are only as good as them; see also
docs/DECISIONS.md, "Counting views"):

* a *view session* = the watch events (watch_start, progress, watch_complete) of one
  (user, session_id) of a video (events without a session id got one from the sink,
  per 30-minute window); view = one view session, however often the player re-sent
  watch_start (stalls, rebuffering) within it. A session whose watch_start was lost
  (only progress or watch_complete arrived: a dropped request, a player that starts
  reporting late) is still a view: its start is inferred before its first event, so
  someone who finished is a completed view, never a completion without a view;
* plays = playthroughs: per session, the first (possibly inferred) watch_start plus
  every watch_start that follows a watch_complete (a replay), the session's
  start/complete events taken in the order of their established time (then position,
  type, event id);
* completions = completed plays: a watch_complete that does not follow another one;
* completion rate = view sessions that completed at least once / views;
* watch seconds of a view session = the sum of its events' ``watch_seconds``, bounded
  by duration x max(plays, replay allowance) (a session cannot watch more than its
  plays hold; the allowance, 3 by default, covers players that loop without reporting
  each loop; an unknown duration leaves it unbounded). The Redis ``watch_ms`` counter
  applies the same bound (events/counters.py);
* average watch seconds = sum of the view sessions' watch seconds / views;
* reach of a view session = furthest position / duration, or 1 when it sent
  ``watch_complete``;
* completion distribution = view sessions by reach in 10 % buckets, [0,10) ...
  [90,100] (100 % falls into the last bucket);
* retention at p % (p = 0, 5, ..., 100) = share of view sessions whose reach >= p %.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from reels.v1 import common_pb2

from reels.analytics import Analytics
from svc_stream.events.counters import DEFAULT_REPLAY_ALLOWANCE

ET = common_pb2.EventType
START = ET.EVENT_TYPE_WATCH_START
COMPLETE = ET.EVENT_TYPE_WATCH_COMPLETE
# The event types of watching; player-reported like/share/comment are telemetry only.
WATCH = [
    int(t)
    for t in (
        START,
        ET.EVENT_TYPE_PROGRESS_25,
        ET.EVENT_TYPE_PROGRESS_50,
        ET.EVENT_TYPE_PROGRESS_75,
        COMPLETE,
    )
]
TOP_N = 5
# Positions are reported as floats; a hair of slack keeps 1.5 s of 10 s at exactly 15 %.
EPS = 1e-9


# One row per view session (video, user, session): its plays, completions and the
# watch seconds it reported. ``seq`` is the session's starts (1) and completes (5) in
# the order they happened, with an inferred start first when the session's first one
# was lost. Every row is a view (``viewed`` is kept for readers of the old shape).
_SESSIONS = """
SELECT video_id, user_id, session_id, seq, watch_s, 1 AS viewed,
    arrayCount((t, i) -> t = 1 AND (i = 1 OR seq[i - 1] = 5),
               seq, arrayEnumerate(seq)) AS plays,
    arrayCount((t, i) -> t = 5 AND (i = 1 OR seq[i - 1] != 5),
               seq, arrayEnumerate(seq)) AS completions
FROM (
    SELECT video_id, user_id, session_id, sum(watch_s) AS watch_s,
        arrayMap(x -> x.4, arraySort(groupArrayIf((occurred_at, position_s, event_id, type),
            type IN ({start:UInt8}, {complete:UInt8})))) AS raw,
        if(empty(raw) OR raw[1] != {start:UInt8}, arrayPushFront(raw, {start:UInt8}), raw) AS seq
    FROM video_events FINAL
    WHERE (%(where)s) AND has({watch:Array(UInt8)}, type)
    GROUP BY video_id, user_id, session_id
)
"""
# A session's watch seconds, bounded by what its plays can hold (``d`` = duration).
_BOUNDED_WATCH = "if(d > 0, least(watch_s, d * greatest(plays, {allow:Float64})), watch_s)"


def sessions_sql(where: str) -> str:
    """The per-view-session subquery over the video events matching ``where``."""
    return _SESSIONS % {"where": where}


@dataclass
class VideoStats:
    views: int = 0
    completions: int = 0
    watch_seconds: float = 0.0
    plays: int = 0
    completed_views: int = 0
    distribution: list[tuple[int, int, int]] = field(default_factory=list)
    retention: list[tuple[int, float]] = field(default_factory=list)
    top_countries: list[tuple[str, int]] = field(default_factory=list)
    top_devices: list[tuple[str, int]] = field(default_factory=list)

    @property
    def completion_rate(self) -> float:
        return min(1.0, self.completed_views / self.views) if self.views else 0.0

    @property
    def average_watch_seconds(self) -> float:
        return self.watch_seconds / self.views if self.views else 0.0


async def video_stats(
    analytics: Analytics,
    video_id: str,
    duration_s: float,
    replay_allowance: float = DEFAULT_REPLAY_ALLOWANCE,
) -> VideoStats:
    """Every per-video figure of GetVideoAnalytics that comes from watch events."""
    params = {
        "v": video_id,
        "start": START,
        "complete": COMPLETE,
        "watch": WATCH,
        "d": float(duration_s),
        "allow": float(replay_allowance),
    }
    totals = await analytics.query_rows(
        "SELECT count(), sum(plays), sum(completions), countIf(completions > 0),"
        f" sum({_BOUNDED_WATCH})"
        f" FROM (SELECT *, {{d:Float64}} AS d FROM ({sessions_sql('video_id = {v:String}')}))",
        params,
    )
    views, plays, completions, completed_views, watched = totals[0] if totals else (0, 0, 0, 0, 0.0)
    stats = VideoStats(
        int(views),
        int(completions or 0),
        float(watched or 0.0),
        int(plays or 0),
        int(completed_views or 0),
    )
    # Reach of each view session in twentieths (0..20) of the duration.
    steps = await analytics.query_rows(
        "SELECT step, count() FROM ("
        " SELECT if(countIf(type = {complete:UInt8}) > 0 OR {d:Float64} <= 0, 20,"
        "   toUInt8(least(20, floor(max(position_s) * 20 / {d:Float64} + {eps:Float64})))) AS step"
        " FROM video_events FINAL WHERE video_id = {v:String} AND has({watch:Array(UInt8)}, type)"
        " GROUP BY user_id, session_id"
        ") GROUP BY step",
        {**params, "eps": EPS},
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
    """Audience by ``column``: views (distinct view sessions), most first.

    A session's key is the one of its first watch event (a phone that roams mid-session
    is still one view)."""
    rows = await analytics.query_rows(
        f"SELECT k, count() AS n FROM ("  # noqa: S608 - fixed column
        f" SELECT argMin({column}, (occurred_at, event_id)) AS k FROM video_events FINAL"
        f" WHERE {where} AND has({{watch:Array(UInt8)}}, type)"
        f" GROUP BY video_id, user_id, session_id"
        f") WHERE k != '' GROUP BY k ORDER BY n DESC, k LIMIT {TOP_N}",
        params,
    )
    return [(str(k), int(n)) for k, n in rows]


@dataclass
class CreatorStats:
    video_ids: list[str] = field(default_factory=list)
    views: int = 0
    plays: int = 0
    completions: int = 0
    completed_views: int = 0
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


async def creator_stats(
    analytics: Analytics,
    video_ids: Sequence[str],
    replay_allowance: float = DEFAULT_REPLAY_ALLOWANCE,
) -> CreatorStats:
    stats = CreatorStats(video_ids=list(video_ids))
    if not video_ids:
        return stats
    params = {
        "ids": list(video_ids),
        "start": START,
        "complete": COMPLETE,
        "watch": WATCH,
        "allow": float(replay_allowance),
    }
    # Each video's duration (as video.published told the sink) bounds its sessions.
    per_video = await analytics.query_rows(
        "SELECT video_id, count() AS views, sum(plays), sum(completions),"
        f" countIf(completions > 0), sum({_BOUNDED_WATCH})"
        f" FROM ({sessions_sql('video_id IN {ids:Array(String)}')}) AS s"
        " LEFT JOIN (SELECT video_id, argMax(duration_s, version) AS d FROM videos"
        "   WHERE video_id IN {ids:Array(String)} GROUP BY video_id) AS v USING video_id"
        " GROUP BY video_id ORDER BY views DESC, video_id",
        params,
    )
    for _vid, views, plays, completions, completed_views, watched in per_video:
        stats.views += int(views)
        stats.plays += int(plays)
        stats.completions += int(completions)
        stats.completed_views += int(completed_views)
        stats.watch_seconds += float(watched or 0.0)
    stats.top_videos = [(str(row[0]), int(row[1])) for row in per_video if row[1]][:TOP_N]
    stats.top_countries = await _top(
        analytics, "country", "video_id IN {ids:Array(String)}", params
    )
    return stats
