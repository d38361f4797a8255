"""A small simulated world end to end: the learned ranker must beat random and popularity."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from recsim.dataset import Catalog, LogStats
from recsim.evaluate import BASELINE, SeedResult, report, run_seed
from recsim.logs import simulate_logs
from recsim.metrics import paired_bootstrap_ci
from recsim.train import fit
from recsim.world import SMALL, histogram, make_world


@pytest.fixture(scope="module")
def result() -> SeedResult:
    return run_seed(SMALL, n_test=300)


def test_world_watch_ratio_is_kuairec_shaped() -> None:
    world = make_world(SMALL)
    h = histogram(world.watch_matrix(SMALL.days + 0.5))
    assert 0.6 < h["mean"] < 1.2  # mostly below 1 ...
    assert h["p50"] < 1.0
    assert 0.1 < h["share_ge_1"] < 0.45  # ... with a tail of replays
    assert h["p90"] > 1.0


def test_logs_are_sparse_and_biased() -> None:
    world = make_world(SMALL)
    log = simulate_logs(world)
    density = len(log) / (SMALL.n_users * SMALL.n_videos)
    assert 0.01 < density < 0.10
    assert log.day.min() >= 1 and log.day.max() <= SMALL.days
    # No video is served to the same user twice.
    pairs = log.user.astype(np.int64) * SMALL.n_videos + log.video
    assert np.unique(pairs).size == pairs.size
    # Biased: the most-shown 10 % of videos get over twice their share of impressions,
    # and what is served is much fresher than what is published.
    views = np.sort(np.bincount(log.video, minlength=SMALL.n_videos))[::-1]
    assert views[: SMALL.n_videos // 10].sum() > 0.2 * views.sum()
    served_age = np.mean(log.day - 0.5 - world.publish_day[log.video])
    catalog_age = np.mean(
        [np.mean(d - 0.5 - world.publish_day[world.publish_day < d - 0.5]) for d in log.day]
    )
    assert served_age < 0.8 * catalog_age
    # Aggregates never see the future: stats at day d only count earlier days.
    stats = LogStats(Catalog.of(world), log.until(5), cutoff_day=5)
    assert stats.video_views.sum() == (log.day < 5).sum()


def test_ranker_beats_random_and_popularity(result: SeedResult) -> None:
    learned = result.ndcg["learned ranker"]
    for other in ("random", "popularity"):
        _, lo, _ = paired_bootstrap_ci(learned, result.ndcg[other], n_boot=500)
        assert lo > 0, other
    assert learned.mean() > result.ndcg[BASELINE].mean()
    np.testing.assert_allclose(result.ndcg["oracle"], 1.0)
    assert (result.ndcg["learned ranker"] <= 1.0 + 1e-9).all()


def test_every_page_passes_the_guardrails(result: SeedResult) -> None:
    for policy, v in result.violations.items():
        assert v.pages == result.ndcg[policy].size
        assert v.clean, (policy, v)


def test_report_prints_the_table_and_the_claim(result: SeedResult) -> None:
    text, _ = report([result], n_boot=200)
    for policy in result.ndcg:
        assert policy in text
    assert "Claim: on 1 seed, the learned ranker raises oracle-normalised NDCG@10 by" in text
    assert "0 repeats" in text


def test_same_seed_same_model_and_outputs() -> None:
    a, b = fit(SMALL), fit(SMALL)
    for (wa, ba), (wb, bb) in zip(a.ranker.layers, b.ranker.layers, strict=True):
        np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(ba, bb)
    assert a.tuned_weights == b.tuned_weights
    x = LogStats(a.catalog, a.log, SMALL.days + 1).features(
        np.arange(20), np.arange(20), SMALL.days + 0.5
    )
    np.testing.assert_array_equal(a.ranker.predict(x), b.ranker.predict(x))
    other = fit(replace(SMALL, seed=1))
    assert not np.array_equal(other.ranker.layers[0][0], a.ranker.layers[0][0])
