"""One feature contract for training and serving: svc_rank builds the ranker's rows
with ``recsim.features.build_features`` from the platform's aggregates, and its rule
scorer is the offline evaluation's seed formula (``formula_inputs`` · ``SEED_WEIGHTS``)."""

from __future__ import annotations

import numpy as np
import pytest

from recsim import features as contract
from svc_rank.feature_hydrator.aggregates import Aggregates, UserAggregates
from svc_rank.index.catalog import VideoInfo
from svc_rank.index.user_state import watch_ratio
from svc_rank.scorer import features, rules

NOW = 1_700_000_000.0


def video(
    vid: str,
    creator: str,
    *,
    age_days: float = 1.0,
    duration: float = 20.0,
    embedding: np.ndarray | None = None,
) -> VideoInfo:
    return VideoInfo(
        vid, creator, "t", duration, ("tag",), NOW - age_days * 86400, "", "", embedding
    )


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_serving_uses_recsims_feature_list() -> None:
    assert features.FEATURE_NAMES is contract.FEATURE_NAMES
    assert features.N_FEATURES == 18


def test_unwatched_video_and_new_user_get_recsims_priors() -> None:
    x = features.matrix([video("v", "c")], Aggregates(), [False], now=NOW)
    assert x.shape == (1, 18) and x.dtype == np.float32
    row = dict(zip(contract.FEATURE_NAMES, x[0], strict=True))
    assert row["video_watch_ratio"] == pytest.approx(contract.PRIOR_WATCH_RATIO)
    assert row["video_completion_rate"] == pytest.approx(contract.PRIOR_COMPLETION)
    assert row["video_skip_rate"] == pytest.approx(contract.PRIOR_SKIP)
    assert row["video_engagement_rate"] == pytest.approx(contract.PRIOR_ENGAGEMENT)
    assert row["video_log_age_days"] == pytest.approx(np.log1p(1.0))
    assert row["video_log_duration_s"] == pytest.approx(np.log(20.0))
    assert row["topic_affinity"] == 0.0 and row["topic_lift"] == 0.0
    terms = rules.terms(x)[0]
    assert terms["completion"] == pytest.approx(contract.PRIOR_COMPLETION)
    assert terms["affinity"] == pytest.approx(0.25)  # not followed, neutral signal
    assert terms["deep_model"] == 0.0


def test_platform_aggregates_map_to_recsims_raw_aggregates() -> None:
    rng = np.random.default_rng(1)
    e1, e2, e3 = (unit(rng.normal(size=8)) for _ in range(3))
    # The user watched e1 twice (ratios 1.2 and 0.9) and e2 once (0.1).
    tw = 1.2 * e1 + 0.9 * e1 + 0.1 * e2
    te = e1 + e1 + e2
    agg = Aggregates(
        video={
            "a": {
                "views": 10,
                "watch_ms": 150_000,
                "completions": 12,
                "likes": 2,
                "shares": 1,
                "comments": 1,
                "s": 11,
                "q": 7,
                "c": 12,  # never more than views (a stale or raced counter)
                "recent": 4,
            },
        },
        creator={"c": {"n": 40, "w": 30.5, "followers": 9}},
        pair={"c": {"f": 1, "l": 3, "s": 5, "q": 3, "c": 2, "w": 3.5}},
        user=UserAggregates(3, 2.2, tw.astype(np.float64), te.astype(np.float64)),
    )
    vids = [video("a", "c", age_days=2.0, embedding=e1), video("b", "other", embedding=e3)]
    raw = features.raw_aggregates(vids, agg, [True, False], now=NOW)
    assert raw["video_views"].tolist() == [10, 0]
    assert raw["video_watch_sum"][0] == pytest.approx(150 / 20)
    assert raw["video_completions"][0] == 10  # at most one completed view per view
    assert raw["video_skips"][0] == 4  # started, never reached 25 %
    assert raw["video_engagements"][0] == 4
    assert raw["video_views_recent"][0] == 4
    assert raw["video_age_days"].tolist() == pytest.approx([2.0, 1.0])
    assert raw["creator_followers"].tolist() == [9, 0]
    assert raw["pair_skips"][0] == 2 and raw["pair_likes"][0] == 3
    assert raw["pair_follows"].tolist() == [1.0, 0.0]
    # recsim's definitions, computed from the individual watches.
    user_mean = (2.2 + 5 * contract.PRIOR_WATCH_RATIO) / (3 + 5)
    watches = [(1.2, e1), (0.9, e1), (0.1, e2)]
    for i, v in enumerate(vids):
        assert v.embedding is not None
        lift = sum((wr - user_mean) * float(e @ v.embedding) for wr, e in watches) / (3 + 5)
        assert raw["topic_lift"][i] == pytest.approx(lift, rel=1e-5)
        assert raw["topic_affinity"][i] == pytest.approx(float(unit(tw) @ v.embedding), abs=1e-6)
    x = features.matrix(vids, agg, [True, False], now=NOW)
    np.testing.assert_array_equal(x, contract.build_features(**raw))


def test_rule_scorer_is_the_evaluations_seed_formula() -> None:
    x = np.random.default_rng(0).normal(0.5, 0.5, size=(7, contract.N_FEATURES))
    follows = contract.col("pair_follows")
    x[:, follows] = x[:, follows] > 0.5  # 0/1, as build_features makes it
    seed = contract.formula_inputs(x) @ np.asarray(contract.SEED_WEIGHTS)
    got = [rules.rule_score(t, rules.Weights()) for t in rules.terms(x)]
    np.testing.assert_allclose(got, seed, rtol=1e-12)
    assert rules.Weights().as_dict() == dict(zip(rules.TERMS, contract.SEED_WEIGHTS, strict=True))
    assert all(0.0 <= v <= 1.0 for t in rules.terms(x) for v in t.values())


def test_seed_formula_weights() -> None:
    terms = {"completion": 1.0, "engagement": 0.0, "affinity": 0.0, "deep_model": 0.0}
    assert rules.rule_score(terms, rules.Weights()) == pytest.approx(0.40)
    terms = dict.fromkeys(rules.TERMS, 1.0)
    assert rules.rule_score(terms, rules.Weights()) == pytest.approx(1.0)
    assert rules.Weights.of({"completion": 1, "bogus": 3}).completion == 1.0


def test_an_events_watch_ratio_is_capped_at_one_duration() -> None:
    assert watch_ratio(5.0, 20.0) == 0.25
    assert watch_ratio(60.0, 20.0) == 1.0
    assert watch_ratio(5.0, 0.0) == 0.0 and watch_ratio(-1.0, 20.0) == 0.0
