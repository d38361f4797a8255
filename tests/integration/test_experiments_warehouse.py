"""Exposures -> ClickHouse (chDB) -> per-user outcomes -> results, on the real engine.

The sink's tables (svc_stream's schema) and ``feed_exposures`` on a temporary chDB
path; rows go in as the sinks write them, and the per-user query feeds ``analyze``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from reels.v1 import common_pb2, events_pb2

from reels.analytics import Analytics
from svc_rank.experiments import Arm, Experiment, build_exposure
from svc_rank.experiments.warehouse import (
    EXPOSURE_COLUMNS,
    EXPOSURES_DDL,
    PER_USER_SQL,
    arm_data,
    exposure_row,
    load_results,
)
from svc_stream.events.sink import ENGAGEMENT_COLUMNS, SCHEMA, VIDEO_EVENT_COLUMNS

EXP = Experiment.start("wh", [Arm("control", 5000), Arm("treatment", 5000)])
T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
START = common_pb2.EventType.EVENT_TYPE_WATCH_START
COMPLETE = common_pb2.EventType.EVENT_TYPE_WATCH_COMPLETE
LIKE = events_pb2.EngagementType.ENGAGEMENT_TYPE_LIKE


@pytest.fixture
async def analytics(tmp_path: Path) -> AsyncIterator[Analytics]:
    store = Analytics(f"chdb://{tmp_path / 'chdb'}")
    try:
        for ddl in (*SCHEMA, EXPOSURES_DDL):
            await store.command(ddl)
        yield store
    finally:
        await store.aclose()


def _event(user: str, video: str, session: str, kind: int, at: datetime, watch: float) -> tuple:
    row = {
        "event_id": uuid.uuid4().hex,
        "video_id": video,
        "user_id": user,
        "session_id": session,
        "client_event_id": uuid.uuid4().hex,
        "type": int(kind),
        "occurred_at": at,
        "received_at": at,
        "position_s": watch,
        "watch_s": watch,
        "rendition": "720p",
        "device": "web",
        "country": "DE",
    }
    return tuple(row[c] for c in VIDEO_EVENT_COLUMNS)


def _like(user: str, video: str, at: datetime) -> tuple:
    row = {
        "event_id": uuid.uuid4().hex,
        "type": int(LIKE),
        "user_id": user,
        "video_id": video,
        "creator_id": "c",
        "comment_id": "",
        "channel": "",
        "occurred_at": at,
    }
    return tuple(row[c] for c in ENGAGEMENT_COLUMNS)


async def test_per_user_outcomes_after_the_first_exposure(analytics: Analytics) -> None:
    control, treatment = EXP.arm("control"), EXP.arm("treatment")
    exposures = [
        build_exposure(EXP, control, "alice", served_at=T0),
        build_exposure(EXP, treatment, "bob", served_at=T0),
        build_exposure(EXP, treatment, "carol", served_at=T0),  # never came back
        # alice re-exposed later (Redis lost her key): the earliest exposure must win.
        build_exposure(EXP, control, "alice", served_at=T0 + timedelta(hours=3)),
    ]
    other = EXP.next_phase()
    exposures.append(build_exposure(other, other.arm("treatment"), "dave", served_at=T0))
    # Two inserts, as two sink batches would (the duplicate lands in its own part).
    rows = [exposure_row(e.meta.event_id, e) for e in exposures]
    await analytics.insert_rows("feed_exposures", rows[:3] + rows[4:], EXPOSURE_COLUMNS)
    await analytics.insert_rows("feed_exposures", rows[3:4], EXPOSURE_COLUMNS)

    h = timedelta(hours=1)
    await analytics.insert_rows(
        "video_events",
        [
            # alice: 2 items after exposure (one completed), one before (pre-period).
            _event("alice", "v1", "s1", START, T0 + h, 0.0),
            _event("alice", "v1", "s1", COMPLETE, T0 + h, 12.0),
            _event("alice", "v1", "s1", START, T0 + h, 0.0),  # re-sent start: same item
            _event("alice", "v2", "s1", START, T0 + 2 * h, 4.0),
            _event("alice", "v9", "s0", START, T0 - 2 * 24 * h, 30.0),  # 2 days before
            _event("alice", "v8", "s0", START, T0 - 9 * 24 * h, 99.0),  # > 7 days: ignored
            # bob: 1 item after exposure, completed; 5 s in the pre-period.
            _event("bob", "v3", "s2", START, T0 + h, 0.0),
            _event("bob", "v3", "s2", COMPLETE, T0 + h, 20.0),
            _event("bob", "v4", "s0", START, T0 - h, 5.0),
            # someone not in the experiment
            _event("erin", "v3", "s3", START, T0 + h, 50.0),
        ],
        VIDEO_EVENT_COLUMNS,
    )
    await analytics.insert_rows(
        "engagement_events",
        [_like("alice", "v1", T0 + h), _like("bob", "v3", T0 - h), _like("bob", "v3", T0 + h)],
        ENGAGEMENT_COLUMNS,
    )

    got = await analytics.query_rows(PER_USER_SQL, {"experiment_id": "wh", "phase": 1})
    table = {r[1]: (r[0], *(float(x) for x in r[2:])) for r in got}
    # arm, impressions, watch s, completions, likes, pre-period watch s
    assert table == {
        "alice": ("control", 2.0, 16.0, 1.0, 1.0, 30.0),
        "bob": ("treatment", 1.0, 20.0, 1.0, 1.0, 5.0),
        "carol": ("treatment", 0.0, 0.0, 0.0, 0.0, 0.0),
    }
    data = arm_data(got)
    assert data["treatment"].exposures == 2 and data["control"].exposures == 1
    assert list(data["treatment"].pre_watch_seconds) == [5.0, 0.0]

    results = await load_results(analytics, EXP, use_cuped=True)
    assert [a.exposures for a in results.arms] == [1, 2]
    assert results.arm("treatment").values["completion_rate"] == pytest.approx(1.0)
    assert results.arm("control").values["watch_seconds_per_impression"] == pytest.approx(8.0)
    phase2 = await load_results(analytics, other)
    assert [a.exposures for a in phase2.arms] == [0, 1]
