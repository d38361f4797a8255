"""The ranking policies compared on day T+1, and the formula's weight search.

Every policy maps the same candidate rows (features ``x [N, F]`` from the logs)
to scores ``[N]``; higher is served first. Only the oracle reads the true
watch ratio.
"""

from __future__ import annotations

import itertools

import numpy as np

from recsim.dataset import TrainingSet
from recsim.features import LOOPS_WEIGHTS, SEED_WEIGHTS, col, formula_inputs, loops_inputs
from recsim.ranker import Y_CAP, Ranker


def formula_scores(x: np.ndarray, weights: tuple[float, ...] = SEED_WEIGHTS) -> np.ndarray:
    """``w . [completion, engagement, affinity, deep_model]`` (inputs 0..1): ``[N]``."""
    return formula_inputs(x) @ np.asarray(weights, dtype=np.float64)


def loops_scores(x: np.ndarray) -> np.ndarray:
    """0.25 freshness + 0.35 engagement/ln(age+2) + 0.30 personalisation + 0.10 creator: ``[N]``."""
    return loops_inputs(x) @ np.asarray(LOOPS_WEIGHTS, dtype=np.float64)


def popularity_scores(x: np.ndarray) -> np.ndarray:
    """Logged impressions of the video (log1p): ``[N]``."""
    return x[:, col("video_log_views")].astype(np.float64)


def recency_scores(x: np.ndarray) -> np.ndarray:
    """Newest first (minus log1p of age in days): ``[N]``."""
    return -x[:, col("video_log_age_days")].astype(np.float64)


def learned_scores(ranker: Ranker, x: np.ndarray) -> np.ndarray:
    """The learned ranker's predicted expected watch ratio: ``[N]``."""
    return ranker.predict(x)


class SessionNDCG:
    """Mean per-session NDCG@k of any scores against fixed ``gains``; ``group`` ids sessions.

    ``gains``, ``group``: ``[N]``. The grouping and the ideal DCG are computed
    once, so scoring many weight vectors (the grid search) stays cheap.
    """

    def __init__(self, gains: np.ndarray, group: np.ndarray, k: int = 10) -> None:
        _, gid = np.unique(group, return_inverse=True)
        order = np.argsort(gid, kind="stable")
        self.gid = gid.astype(np.float64)
        sizes = np.bincount(gid)
        starts = np.r_[0, np.cumsum(sizes)[:-1]]
        pos = np.arange(gid.size) - np.repeat(starts, sizes)
        self.disc = np.where(pos < k, 1.0 / np.log2(pos + 2.0), 0.0)
        self.sorted_gid = gid[order]
        self.gains = np.asarray(gains, dtype=np.float64)
        ideal = self.gains[self._order(self.gains)]
        self.idcg = np.bincount(self.sorted_gid, weights=ideal * self.disc)
        self.ok = self.idcg > 0

    def _order(self, scores: np.ndarray) -> np.ndarray:
        # Sessions ascending, each session's scores descending: one float sort key.
        s = np.asarray(scores, dtype=np.float64)
        span = s.max() - s.min() if s.size else 0.0
        unit = (s - s.min()) / span if span > 0 else np.zeros_like(s)
        return np.argsort(self.gid * 2.0 + (1.0 - unit))

    def __call__(self, scores: np.ndarray) -> float:
        """Mean NDCG@k over sessions with a positive ideal DCG."""
        dcg = np.bincount(self.sorted_gid, weights=self.gains[self._order(scores)] * self.disc)
        return float(np.mean(dcg[self.ok] / self.idcg[self.ok]))


def session_ndcg(scores: np.ndarray, gains: np.ndarray, group: np.ndarray, k: int = 10) -> float:
    """Mean over groups (sessions) of NDCG@k of ``scores`` against ``gains`` (all ``[N]``)."""
    return SessionNDCG(gains, group, k)(scores)


def weight_grid(step: float = 0.1) -> np.ndarray:
    """All 4-weight vectors on the simplex with the given step: ``[G, 4]``."""
    n = round(1 / step)
    rows = [
        (a, b, c, n - a - b - c)
        for a, b, c in itertools.product(range(n + 1), repeat=3)
        if a + b + c <= n
    ]
    return np.asarray(rows, dtype=np.float64) / n


def tune_formula(train: TrainingSet, step: float = 0.1) -> tuple[tuple[float, ...], float]:
    """Grid-search the seed formula's weights on logged sessions of the training days.

    Objective: mean per-session NDCG@10 of the formula's order, gain = observed
    watch ratio (capped at ``Y_CAP``). Returns ``(weights, objective)``; ties go
    to the first grid point, so the result is deterministic.
    """
    inputs = formula_inputs(train.x)
    objective = SessionNDCG(np.minimum(train.y, Y_CAP), train.group)
    best_w, best = None, -np.inf
    for w in weight_grid(step):
        score = objective(inputs @ w)
        if score > best + 1e-12:
            best_w, best = w, score
    assert best_w is not None
    return tuple(float(v) for v in best_w), best
