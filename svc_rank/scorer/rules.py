"""The rule scorer: ``0.40·completion + 0.30·engagement + 0.20·affinity + 0.10·deep_model``.

Every input is scaled to 0..1 first, so a weight says how much its term can move the
score and no raw count dominates. Pure functions, no I/O.

* **completion** = smoothed completed plays ÷ plays: a Bayesian mean
  ``(completions + 20·0.35) / (plays + 20)``. A video with no plays scores the prior
  (0.35), one with 2 plays out of 2 completed barely moves (0.41), a thousand plays
  speak for themselves. Capped at 1 (a replay counts as a play, so the ratio cannot
  pass 1 anyway).
* **engagement** = smoothed (likes + shares + comments) per view,
  ``(engagements + 20·0.03) / (views + 20)``, then squashed with
  ``1 - exp(-rate / 0.08)``: the prior (3 %) maps to 0.31, 10 % to 0.71, 20 % and
  more to ≥ 0.92. The squash keeps a viral outlier from flattening everyone else.
* **affinity** (user × creator) = ``0.5 + 0.5·tanh(raw / 4)`` with
  ``raw = 3·follows + 1·net likes + 0.5·completions − 0.5·skips`` of this user on this
  creator's videos (a skip is a view that never reached 25 %). Unknown creators are
  0.5 (neutral), following alone gives 0.82, a run of skips drives it toward 0.
* **deep_model** = ``(1 + cos) / 2`` of the user vector and the video's embedding
  (the two-tower similarity); 0.5 when either is missing.

Also hydrated (for the learned ranker and ExplainFeedItem, not in the formula):
freshness ``2^(−age / 1 day)`` and a duration score ``log1p(s) / log1p(600)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

COMPLETION_PRIOR = 0.35
COMPLETION_PRIOR_WEIGHT = 20.0
ENGAGEMENT_PRIOR = 0.03
ENGAGEMENT_PRIOR_WEIGHT = 20.0
ENGAGEMENT_SCALE = 0.08
AFFINITY_SCALE = 4.0
FRESHNESS_HALF_LIFE_S = 86400.0
DURATION_CAP_S = 600.0

TERMS = ("completion", "engagement", "affinity", "deep_model")


@dataclass(frozen=True, slots=True)
class Weights:
    """Weights of the four 0..1 terms (svc_rank Settings ``w_*``; experiment arms)."""

    completion: float = 0.40
    engagement: float = 0.30
    affinity: float = 0.20
    deep_model: float = 0.10

    @classmethod
    def of(cls, weights: Mapping[str, float]) -> Weights:
        """From a name → weight mapping (an experiment arm's); unknown names ignored."""
        return cls(**{k: float(v) for k, v in weights.items() if k in TERMS})

    def as_dict(self) -> dict[str, float]:
        return {t: getattr(self, t) for t in TERMS}


def completion(completions: float, plays: float) -> float:
    rate = (completions + COMPLETION_PRIOR_WEIGHT * COMPLETION_PRIOR) / (
        max(0.0, plays) + COMPLETION_PRIOR_WEIGHT
    )
    return min(1.0, max(0.0, rate))


def engagement(likes: float, shares: float, comments: float, views: float) -> float:
    rate = (max(0.0, likes + shares + comments) + ENGAGEMENT_PRIOR_WEIGHT * ENGAGEMENT_PRIOR) / (
        max(0.0, views) + ENGAGEMENT_PRIOR_WEIGHT
    )
    return 1.0 - math.exp(-rate / ENGAGEMENT_SCALE)


def affinity_raw(follows: float, likes: float, completions: float, skips: float) -> float:
    return 3.0 * min(1.0, max(0.0, follows)) + likes + 0.5 * completions - 0.5 * max(0.0, skips)


def affinity(raw: float) -> float:
    return 0.5 + 0.5 * math.tanh(raw / AFFINITY_SCALE)


def deep_model(cosine: float | None) -> float:
    if cosine is None or math.isnan(cosine):
        return 0.5
    return min(1.0, max(0.0, (1.0 + cosine) / 2.0))


def freshness(age_s: float) -> float:
    return 2.0 ** (-max(0.0, age_s) / FRESHNESS_HALF_LIFE_S)


def duration_score(duration_s: float) -> float:
    return min(1.0, math.log1p(max(0.0, duration_s)) / math.log1p(DURATION_CAP_S))


def rule_score(terms: Mapping[str, float], weights: Weights) -> float:
    """The weighted sum of the four terms (each already 0..1)."""
    return sum(getattr(weights, t) * terms[t] for t in TERMS)
