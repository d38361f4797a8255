"""The exposure event and its ClickHouse row, without I/O."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from reels.v1 import events_pb2

from reels import cache, topics
from svc_rank.experiments import Arm, Experiment, RankingConfig, bucket, build_exposure
from svc_rank.experiments.exposure import FEED_EXPOSURES, dedup_key, exposure_event_id
from svc_rank.experiments.warehouse import EXPOSURE_COLUMNS, exposure_row

EXP = Experiment.start(
    "ranker-v2",
    [Arm("control", 5000), Arm("treatment", 5000, RankingConfig.of(ranker_model_version="2"))],
)
T0 = datetime(2025, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)


def test_the_topic_is_svc_ranks_and_keyed_by_user() -> None:
    assert topics.produced_by("svc_rank") == [FEED_EXPOSURES]
    assert FEED_EXPOSURES.message is events_pb2.FeedExposure
    assert FEED_EXPOSURES.key_field == "user_id"


def test_the_event_names_the_scorer_that_served_not_the_arms_pin() -> None:
    """GetFeed passes its ``scorer``: the version Triton answered with, or rules after a
    fallback; the arm (which pins "2") stays in ``arm``."""
    treatment, control = EXP.arm("treatment"), EXP.arm("control")
    fell_back = build_exposure(EXP, treatment, "u-1", served_at=T0, served="rules")
    assert (fell_back.arm, fell_back.ranker_model_version) == ("treatment", "rules")
    latest = build_exposure(EXP, control, "u-2", served_at=T0, served="ranker:3")
    assert (latest.arm, latest.ranker_model_version) == ("control", "ranker:3")
    # A caller that does not say what served: the arm's pin, as before.
    assert build_exposure(EXP, control, "u-3", served_at=T0).ranker_model_version == ""


def test_the_event_carries_the_arm_and_a_derived_id() -> None:
    arm = EXP.arm("treatment")
    event = build_exposure(EXP, arm, "user-7", served_at=T0, request_id="req-1")
    assert (event.experiment_id, event.phase, event.salt) == ("ranker-v2", 1, "ranker-v2/p1")
    assert (event.arm, event.user_id, event.ranker_model_version) == ("treatment", "user-7", "2")
    assert event.bucket == bucket(EXP.salt, "user-7")
    assert event.request_id == "req-1" and event.meta.producer == "svc_rank"
    assert event.exposed_at.ToDatetime(tzinfo=UTC) == T0
    assert FEED_EXPOSURES.key(event) == "user-7"
    # Same (experiment, phase, user): same id, whenever and however often it is built.
    again = build_exposure(EXP, arm, "user-7", served_at=T0 + timedelta(hours=1))
    assert (
        event.meta.event_id
        == again.meta.event_id
        == str(exposure_event_id("ranker-v2", 1, "user-7"))
    )
    assert uuid.UUID(event.meta.event_id).version == 5
    nxt = EXP.next_phase()
    other = build_exposure(nxt, nxt.arm("treatment"), "user-7", served_at=T0)
    assert other.meta.event_id != event.meta.event_id  # a new phase is a new exposure
    assert build_exposure(EXP, arm, "user-8", served_at=T0).meta.event_id != event.meta.event_id
    with pytest.raises(ValueError):
        build_exposure(EXP, Arm("treatment", 4000), "u", served_at=T0)


def test_dedup_key_is_prefixed_and_per_phase() -> None:
    cache.set_key_prefix("t:")
    try:
        assert dedup_key("ranker-v2", 1, "user-7") == "t:exp:exposed:ranker-v2:1:user-7"
        assert dedup_key("ranker-v2", 2, "user-7") != dedup_key("ranker-v2", 1, "user-7")
    finally:
        cache.set_key_prefix(None)


def test_the_clickhouse_row_keeps_the_earliest_exposure() -> None:
    arm = EXP.arm("control")
    first = build_exposure(EXP, arm, "u1", served_at=T0)
    later = build_exposure(EXP, arm, "u1", served_at=T0 + timedelta(minutes=5))
    row_first = dict(zip(EXPOSURE_COLUMNS, exposure_row(first.meta.event_id, first), strict=True))
    row_later = dict(zip(EXPOSURE_COLUMNS, exposure_row(later.meta.event_id, later), strict=True))
    assert row_first["exposed_at"] == T0
    assert row_first["version"] > row_later["version"]  # ReplacingMergeTree keeps the max
    assert row_first["event_id"] == row_later["event_id"]
