"""The ``feed_exposures`` ClickHouse table: the contract between its writer and its reader.

svc_stream owns analytics storage: its sink writes ``feed.exposures`` records here and
its ``GetExperimentData`` RPC runs :data:`PER_USER_SQL` for svc_rank, which owns the
experiments and their analysis (svc_rank/experiments). Both sides import this module,
the shared runtime package, rather than each other (one owner per store; no service
imports another service's package).

``feed.exposures`` -> ClickHouse ``feed_exposures``: the analytics sink (svc_stream's
consumer group, which owns analytics storage) decodes each record with
:func:`exposure_row` and inserts :data:`EXPOSURE_COLUMNS` into the table
:data:`EXPOSURES_DDL` creates. It is a ``ReplacingMergeTree`` ordered by
``(experiment_id, phase, user_id)``: one row per exposed user and phase whatever was
re-sent. Its version is ``2^62 - exposed_at in ms``, so the *earliest* exposure wins
(ReplacingMergeTree keeps the highest version); queries read with ``FINAL``.

:data:`PER_USER_SQL` turns one phase into one row per exposed user, joined with the
tables svc_stream's sink already writes (``video_events``, ``engagement_events``):

* ``impressions``: the user's view sessions (distinct ``(video_id, session_id)`` with
  a ``watch_start``) at or after their exposure: a feed item counts once it played
  (the feed autoplays, so that is the item shown);
* ``watch_seconds``: the sum of reported ``watch_s`` at or after the exposure (the
  platform's definition of watch seconds, svc_stream/analytics/queries.py);
* ``completions``: view sessions with a ``watch_complete`` at or after the exposure;
* ``likes``: LIKE engagement events at or after the exposure;
* ``pre_watch_seconds``: watch seconds in the 7 days before the exposure (CUPED).

Users with no activity after exposure stay in (zeros): dropping them would bias any
arm that changes whether users come back. svc_rank's ``experiments.warehouse`` turns
the rows into its analysis input.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from reels.v1 import common_pb2, events_pb2

PRE_PERIOD_DAYS = 7
_VERSION_BASE = 1 << 62
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

EXPOSURES_DDL = """CREATE TABLE IF NOT EXISTS feed_exposures (
    experiment_id String, phase UInt32, user_id String, arm LowCardinality(String),
    bucket UInt16, salt String, ranker_model_version LowCardinality(String),
    request_id String, event_id String, exposed_at DateTime64(3, 'UTC'), version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (experiment_id, phase, user_id)"""

EXPOSURE_COLUMNS = (
    "experiment_id",
    "phase",
    "user_id",
    "arm",
    "bucket",
    "salt",
    "ranker_model_version",
    "request_id",
    "event_id",
    "exposed_at",
    "version",
)


def exposure_row(event_id: str, message: events_pb2.FeedExposure) -> tuple[Any, ...]:
    """The ``feed_exposures`` row of one consumed exposure (columns: EXPOSURE_COLUMNS)."""
    ts = message.exposed_at
    exposed = _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)
    ms = ts.seconds * 1000 + ts.nanos // 1_000_000
    return (
        message.experiment_id,
        message.phase,
        message.user_id,
        message.arm,
        message.bucket,
        message.salt,
        message.ranker_model_version,
        message.request_id,
        event_id,
        exposed,
        _VERSION_BASE - ms,
    )


_START = int(common_pb2.EventType.EVENT_TYPE_WATCH_START)
_COMPLETE = int(common_pb2.EventType.EVENT_TYPE_WATCH_COMPLETE)
_LIKE = int(events_pb2.EngagementType.ENGAGEMENT_TYPE_LIKE)

PER_USER_SQL = f"""
SELECT e.arm, e.user_id,
    v.impressions, v.watch_seconds, v.completions, l.likes, v.pre_watch_seconds
FROM (
    SELECT user_id, arm, exposed_at FROM feed_exposures FINAL
    WHERE experiment_id = {{experiment_id:String}} AND phase = {{phase:UInt32}}
) AS e
LEFT JOIN (
    SELECT x.user_id AS user_id,
        uniqExactIf((ve.video_id, ve.session_id),
                    ve.type = {_START} AND ve.occurred_at >= x.exposed_at) AS impressions,
        sumIf(ve.watch_s, ve.occurred_at >= x.exposed_at) AS watch_seconds,
        uniqExactIf((ve.video_id, ve.session_id),
                    ve.type = {_COMPLETE} AND ve.occurred_at >= x.exposed_at) AS completions,
        sumIf(ve.watch_s, ve.occurred_at < x.exposed_at) AS pre_watch_seconds
    FROM video_events AS ve FINAL
    INNER JOIN (
        SELECT user_id, exposed_at FROM feed_exposures FINAL
        WHERE experiment_id = {{experiment_id:String}} AND phase = {{phase:UInt32}}
    ) AS x ON ve.user_id = x.user_id
    WHERE ve.occurred_at >= x.exposed_at - INTERVAL {PRE_PERIOD_DAYS} DAY
    GROUP BY x.user_id
) AS v ON v.user_id = e.user_id
LEFT JOIN (
    SELECT x.user_id AS user_id, count() AS likes
    FROM engagement_events AS g FINAL
    INNER JOIN (
        SELECT user_id, exposed_at FROM feed_exposures FINAL
        WHERE experiment_id = {{experiment_id:String}} AND phase = {{phase:UInt32}}
    ) AS x ON g.user_id = x.user_id
    WHERE g.type = {_LIKE} AND g.occurred_at >= x.exposed_at
    GROUP BY x.user_id
) AS l ON l.user_id = e.user_id
ORDER BY e.arm, e.user_id
"""
"""One row per exposed user of a phase: arm, user, impressions, watch seconds,
completions, likes, pre-period watch seconds (missing activity reads as 0)."""
