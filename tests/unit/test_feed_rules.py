"""The rule scorer's scaling (svc_rank/scorer/rules.py): every term 0..1, priors for
videos nobody has watched yet, the seed formula's weights."""

from __future__ import annotations

import pytest

from svc_rank.scorer import rules


def test_unwatched_video_gets_the_priors_not_zero() -> None:
    assert rules.completion(0, 0) == pytest.approx(rules.COMPLETION_PRIOR)
    assert 0.2 < rules.engagement(0, 0, 0, 0) < 0.4
    assert rules.affinity(0.0) == 0.5
    assert rules.deep_model(None) == 0.5


def test_two_completed_plays_barely_move_a_thousand_do() -> None:
    few = rules.completion(2, 2)
    many = rules.completion(1000, 1000)
    assert few < 0.45
    assert many > 0.98


@pytest.mark.parametrize("rate", [0.0, 0.03, 0.1, 0.2, 1.0, 50.0])
def test_engagement_is_squashed_into_zero_one(rate: float) -> None:
    value = rules.engagement(rate * 10_000, 0, 0, 10_000)
    assert 0.0 <= value <= 1.0


def test_affinity_follow_counts_and_skips_pull_down() -> None:
    followed = rules.affinity(rules.affinity_raw(1, 0, 0, 0))
    assert followed == pytest.approx(0.5 + 0.5 * 0.6351, abs=1e-3)
    assert rules.affinity(rules.affinity_raw(0, 0, 0, 20)) < 0.1


def test_seed_formula_weights() -> None:
    terms = {"completion": 1.0, "engagement": 0.0, "affinity": 0.0, "deep_model": 0.0}
    assert rules.rule_score(terms, rules.Weights()) == pytest.approx(0.40)
    terms = dict.fromkeys(rules.TERMS, 1.0)
    assert rules.rule_score(terms, rules.Weights()) == pytest.approx(1.0)
    assert rules.Weights.of({"completion": 1, "bogus": 3}).completion == 1.0


def test_deep_model_maps_cosine_to_zero_one() -> None:
    assert rules.deep_model(1.0) == 1.0
    assert rules.deep_model(-1.0) == 0.0
    assert rules.deep_model(0.0) == 0.5
