"""The rule scorer: ``0.40·completion + 0.30·engagement + 0.20·affinity + 0.10·deep_model``.

Every input is scaled to 0..1 first, so a weight says how much its term can move the
score and no raw count dominates. The four inputs are
``recsim.features.formula_inputs`` of the ranker's feature rows, so the rule scorer
serving the feed and the offline evaluation's "seed formula" are one formula
(``make eval-feed`` measures exactly what serves when the ranker cannot):

* **completion** = the smoothed share of views watched to the end,
  ``(completions + 5·0.3) / (views + 5)``: a video with no views scores the prior.
* **engagement** = smoothed (likes + shares + comments) per view,
  ``(engagements + 5·0.05) / (views + 5)``, ÷ 0.25 and capped at 1 (a quarter of
  viewers engaging is the top).
* **affinity** (user × creator) = ``0.5·follows + 0.5·clip((signal + 1) / 2, 0, 1)``
  with ``signal = (likes + completions − skips) / (views of the creator + 2)``:
  unknown creators 0.25, following alone 0.75, a run of skips drives it to 0.
* **deep_model** = the cosine of the user's taste vector and the video's embedding
  (the two-tower similarity, ``topic_affinity``), clipped to 0..1; 0 when either is
  missing.

Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from recsim.features import SEED_WEIGHTS, formula_inputs

TERMS = ("completion", "engagement", "affinity", "deep_model")


@dataclass(frozen=True, slots=True)
class Weights:
    """Weights of the four 0..1 terms (svc_rank Settings ``w_*``; experiment arms)."""

    completion: float = SEED_WEIGHTS[0]
    engagement: float = SEED_WEIGHTS[1]
    affinity: float = SEED_WEIGHTS[2]
    deep_model: float = SEED_WEIGHTS[3]

    @classmethod
    def of(cls, weights: Mapping[str, float]) -> Weights:
        """From a name → weight mapping (an experiment arm's); unknown names ignored."""
        return cls(**{k: float(v) for k, v in weights.items() if k in TERMS})

    def as_dict(self) -> dict[str, float]:
        return {t: getattr(self, t) for t in TERMS}


def terms(x: np.ndarray) -> list[dict[str, float]]:
    """The four 0..1 inputs of each feature row (``x``: ``[N, N_FEATURES]``)."""
    if x.shape[0] == 0:
        return []
    return [dict(zip(TERMS, row, strict=True)) for row in np.asarray(formula_inputs(x)).tolist()]


def rule_score(parts: Mapping[str, float], weights: Weights) -> float:
    """The weighted sum of the four terms (each already 0..1)."""
    return sum(getattr(weights, t) * parts[t] for t in TERMS)
