"""The serving feature list of the learned ranker: one row per candidate, in this order.

The Triton model ``ranker`` takes ``features`` float32 ``[N, F]`` with the columns
below and answers ``scores`` float32 ``[N]`` (expected watch ratio; higher is better).
Every column is already 0..1 (or 0/1) as hydrated for the rule scorer, so the model
sees the same inputs the formula does plus what the formula leaves out.

This list is svc_rank's until the offline pipeline's shared feature module lands;
then both must import one list (a model trained on another order would rank
nonsense without any error).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

FEATURE_NAMES: tuple[str, ...] = (
    "completion",  # smoothed completion rate (rules.completion)
    "engagement",  # squashed smoothed engagement per view (rules.engagement)
    "affinity",  # user × creator affinity (rules.affinity)
    "deep_model",  # (1 + cos(user vector, video vector)) / 2
    "freshness",  # 2^(-age / 1 day)
    "duration",  # log1p(seconds) / log1p(600)
    "log_views",  # log1p(views) / log1p(1e6), capped at 1
    "follows_creator",  # 1 if the user follows the creator
    "is_similar",  # source flags (a video may have several)
    "is_followee",
    "is_trending",
    "is_fresh",
    "is_exploration",
)
N_FEATURES = len(FEATURE_NAMES)


def matrix(rows: Sequence[Mapping[str, float]]) -> np.ndarray:
    """``float32 [len(rows), N_FEATURES]`` in :data:`FEATURE_NAMES` order (missing → 0)."""
    out = np.zeros((len(rows), N_FEATURES), dtype=np.float32)
    for i, row in enumerate(rows):
        out[i] = [float(row.get(name, 0.0)) for name in FEATURE_NAMES]
    return out
