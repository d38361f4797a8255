"""Ranking metrics and the paired bootstrap.

Gains are true watch ratios (unitless); DCG uses ``1 / log2(position + 2)``
discounts with 0-based positions. NDCG here is normalised by the oracle's DCG
on the same candidates and guardrails (the oracle ranks by true watch ratio).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def dcg(gains: np.ndarray, k: int = 10) -> float:
    """DCG@k of ``gains`` ``[n]`` in served order (n may be < k)."""
    g = np.asarray(gains, dtype=np.float64)[:k]
    return float(np.sum(g / np.log2(np.arange(g.size) + 2.0)))


def ndcg_vs_oracle(gains: np.ndarray, oracle_gains: np.ndarray, k: int = 10) -> float:
    """DCG@k of a served page divided by the oracle page's DCG@k (1.0 when both are 0)."""
    ideal = dcg(oracle_gains, k)
    return dcg(gains, k) / ideal if ideal > 0 else 1.0


def expected_watch_seconds(
    w: np.ndarray,
    duration_s: np.ndarray,
    *,
    base: float = 0.05,
    low_watch: float = 0.35,
    fatigue: float = 0.02,
) -> float:
    """Expected seconds watched while scrolling a page in order.

    Item i (0-based) with true watch ratio ``w[i]`` and ``duration_s[i]`` seconds is
    watched for ``w[i] * duration_s[i]`` s if reached; after it the user stops with
    chance ``clip(base + low_watch * max(0, 1 - w[i]) + fatigue * i, 0, 1)``.
    """
    w = np.asarray(w, dtype=np.float64)
    secs = w * np.asarray(duration_s, dtype=np.float64)
    stop = np.clip(base + low_watch * np.maximum(0.0, 1.0 - w) + fatigue * np.arange(w.size), 0, 1)
    reach = np.concatenate([[1.0], np.cumprod(1.0 - stop)[:-1]])
    return float(np.sum(reach * secs))


def paired_bootstrap_ci(
    a: np.ndarray, b: np.ndarray, *, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over paired units (users) and its percentile bootstrap CI.

    ``a``, ``b``: ``[n]`` per-user values of two policies on the same users.
    Returns ``(mean, lo, hi)``.
    """
    return pooled_bootstrap_ci(
        [np.asarray(a) - np.asarray(b)], n_boot=n_boot, seed=seed, alpha=alpha
    )


def pooled_bootstrap_ci(
    samples: Sequence[np.ndarray], *, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    """Mean over strata (seeds) of each stratum's mean, with a stratified bootstrap CI.

    ``samples``: one ``[n_s]`` array of per-user values (e.g. paired differences)
    per stratum; users are resampled within their stratum. Returns ``(mean, lo, hi)``.
    """
    rng = np.random.default_rng(seed)
    means = np.zeros(n_boot)
    point = 0.0
    for x in samples:
        x = np.asarray(x, dtype=np.float64)
        point += x.mean()
        idx = rng.integers(0, x.size, size=(n_boot, x.size))
        means += x[idx].mean(axis=1)
    k = len(samples)
    lo, hi = np.percentile(means / k, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(point / k), float(lo), float(hi)


def coverage(pages: Sequence[np.ndarray], catalog_size: int) -> float:
    """Share of the catalog that appears on at least one page (pages of video ids)."""
    if catalog_size <= 0:
        return 0.0
    seen = np.unique(np.concatenate([np.asarray(p) for p in pages])) if pages else []
    return len(seen) / catalog_size
