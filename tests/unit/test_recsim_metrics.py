"""recsim's building blocks: NDCG, the bootstrap, the guardrails, the feature contract."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from recsim.features import FEATURE_NAMES, N_FEATURES, build_features, formula_inputs
from recsim.guardrails import assemble_page, check_page
from recsim.metrics import (
    coverage,
    dcg,
    expected_watch_seconds,
    ndcg_vs_oracle,
    paired_bootstrap_ci,
    pooled_bootstrap_ci,
)
from recsim.policies import session_ndcg, weight_grid

ROOT = Path(__file__).resolve().parents[2]


def test_dcg_by_hand() -> None:
    assert dcg([3.0, 2.0, 1.0]) == pytest.approx(3 + 2 / np.log2(3) + 1 / 2)
    assert dcg(np.arange(20, dtype=float), k=1) == 0.0  # only the first position counts
    assert dcg([]) == 0.0


def test_ndcg_vs_oracle_is_one_for_the_oracle_and_less_otherwise() -> None:
    gains = np.array([0.2, 1.5, 0.7, 3.0])
    best = np.sort(gains)[::-1]
    assert ndcg_vs_oracle(best, best) == pytest.approx(1.0)
    assert ndcg_vs_oracle(gains, best) < 1.0
    assert ndcg_vs_oracle(np.zeros(3), np.zeros(3)) == 1.0


def test_session_ndcg_matches_a_per_session_loop() -> None:
    rng = np.random.default_rng(3)
    group = rng.integers(0, 40, 600)
    gains, scores = rng.random(600) * 2, rng.random(600)
    want = []
    for g in np.unique(group):
        m = group == g
        want.append(ndcg_vs_oracle(gains[m][np.argsort(-scores[m])], np.sort(gains[m])[::-1]))
    assert session_ndcg(scores, gains, group) == pytest.approx(np.mean(want))
    assert session_ndcg(gains, gains, group) == pytest.approx(1.0)


def test_weight_grid_covers_the_simplex() -> None:
    grid = weight_grid(0.1)
    assert grid.shape == (286, 4)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    assert any(np.allclose(w, [0.4, 0.3, 0.2, 0.1]) for w in grid)


def test_paired_bootstrap_ci_covers_a_known_difference() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.2, 2000)
    better = base + 0.03 + rng.normal(0, 0.05, 2000)
    m, lo, hi = paired_bootstrap_ci(better, base, n_boot=1000)
    assert lo < 0.03 < hi and lo > 0
    assert m == pytest.approx(np.mean(better - base))
    # No difference: the interval straddles 0.
    _, lo0, hi0 = paired_bootstrap_ci(base + rng.normal(0, 0.05, 2000), base, n_boot=1000)
    assert lo0 < 0 < hi0
    # Deterministic given the seed.
    assert paired_bootstrap_ci(better, base, seed=5) == paired_bootstrap_ci(better, base, seed=5)


def test_pooled_bootstrap_averages_strata() -> None:
    m, lo, hi = pooled_bootstrap_ci([np.full(10, 1.0), np.full(1000, 3.0)], n_boot=200)
    assert m == pytest.approx(2.0) and lo == pytest.approx(2.0) and hi == pytest.approx(2.0)


def test_expected_watch_seconds_and_coverage() -> None:
    # One item: watched fully whatever the stop chance after it.
    assert expected_watch_seconds(np.array([0.5]), np.array([20.0])) == pytest.approx(10.0)
    good = expected_watch_seconds(np.full(10, 1.2), np.full(10, 20.0))
    bad = expected_watch_seconds(np.full(10, 0.2), np.full(10, 20.0))
    assert good > 6 * bad  # low watch ratios also end the session sooner
    assert coverage([np.array([1, 2]), np.array([2, 3])], 10) == pytest.approx(0.3)


def test_assemble_page_enforces_the_guardrails() -> None:
    n = 40
    videos = np.arange(100, 100 + n)
    creators = np.repeat(np.arange(8), 5)  # creator c owns candidates 5c..5c+4
    blocked = np.zeros(n, dtype=bool)
    blocked[[0, 1]] = True  # already served
    blocked[creators == 7] = True  # "see fewer" of creator 7
    order = np.arange(n)  # best first: the five of creator 0, then creator 1, ...
    page = assemble_page(order, videos, creators, blocked, length=20)
    assert len(page) == 14  # creators 0..6 fill at most 2 per window of 10
    assert 0 not in page and 1 not in page
    v = check_page(videos[page], creators[page], served={100, 101}, fewer={7})
    assert v.clean and v.pages == 1
    # The first 10 are the best allowed items: 2 per creator in score order.
    assert list(page[:4]) == [2, 3, 5, 6]


def test_check_page_counts_each_broken_rule() -> None:
    v = check_page([1, 2, 3, 3], [9, 9, 9, 4], served={1}, fewer={4})
    assert v.repeats == 2  # 1 was served, 3 appears twice
    assert v.creator_cap == 1  # three of creator 9 in one window
    assert v.see_fewer == 1
    assert not v.clean


def test_feature_contract_priors_and_order() -> None:
    assert len(FEATURE_NAMES) == N_FEATURES == len(set(FEATURE_NAMES))
    zero = dict.fromkeys(
        [
            "video_views",
            "video_watch_sum",
            "video_completions",
            "video_skips",
            "video_engagements",
            "video_views_recent",
            "creator_views",
            "creator_watch_sum",
            "creator_followers",
            "user_views",
            "user_watch_sum",
            "pair_views",
            "pair_watch_sum",
            "pair_likes",
            "pair_completions",
            "pair_skips",
            "pair_follows",
            "topic_affinity",
            "topic_lift",
        ],
        np.zeros(3),
    )
    x = build_features(
        **zero,
        video_age_days=np.array([0.0, 1.0, 30.0]),
        video_duration_s=np.array([20.0, 20.0, 20.0]),
    )
    assert x.shape == (3, N_FEATURES) and x.dtype == np.float32
    assert np.isfinite(x).all()  # a brand-new video and user get priors, not NaN
    f = formula_inputs(x)
    assert ((f >= 0) & (f <= 1)).all()


def test_triton_config_matches_the_feature_count() -> None:
    config = (ROOT / "models/repository/ranker/config.pbtxt").read_text()
    dims = re.search(r'name: "features".*?dims: \[ -1, (\d+) \]', config, re.S)
    assert dims and int(dims.group(1)) == N_FEATURES
