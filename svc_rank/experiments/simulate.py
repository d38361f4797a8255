"""A seeded per-user outcome simulator for experiments: inject a known effect, or none.

Every user has a latent activity level ``a ~ LogNormal(0, 0.8)`` and taste
(``p_complete ~ Beta(2, 3)``, ``p_like ~ Beta(1, 30)``). Over the 7-day pre-period and
the experiment period alike the user gets ``impressions ~ Poisson(8 a)`` items and
watches each for ``Gamma(2, 6 (0.5 + p_complete))`` seconds, completes it with
``p_complete`` and likes it with ``p_like``. The pre-period watch time shares ``a``
and ``p_complete`` with the experiment period, so it correlates with the outcome the
way real history does (CUPED's premise).

An :class:`Effect` multiplies one arm's watch seconds by ``1 + watch_lift`` and adds
``completion_lift`` (absolute) to its users' completion probability: a known truth
that a correct analysis must find, and ``Effect()`` (all zero) is the null.

Arms are drawn with their configured shares (``Generator.choice``); ``split`` can be
given to simulate a broken split (e.g. an arm whose exposures are partly lost).
Vectorised numpy, no I/O: 100k users take a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from svc_rank.experiments.stats import ArmData


@dataclass(frozen=True)
class Effect:
    """The true effect injected into ``arm`` (zero: the null)."""

    arm: str = ""
    watch_lift: float = 0.0
    completion_lift: float = 0.0


def simulate(
    rng: np.random.Generator,
    n_users: int,
    shares: Mapping[str, float],
    effect: Effect = Effect(),  # noqa: B008 - frozen, immutable default
    *,
    split: Mapping[str, float] | None = None,
) -> dict[str, ArmData]:
    """Per-arm outcomes of ``n_users`` users assigned by ``split`` (default ``shares``)."""
    names = list(shares)
    weights = np.array([float((split or shares)[n]) for n in names])
    arm_index = rng.choice(len(names), size=n_users, p=weights / weights.sum())

    activity = rng.lognormal(0.0, 0.8, n_users)
    p_complete = rng.beta(2.0, 3.0, n_users)
    p_like = rng.beta(1.0, 30.0, n_users)

    def period(p_c: np.ndarray, watch_mult: np.ndarray) -> tuple[np.ndarray, ...]:
        impressions = rng.poisson(8.0 * activity)
        # Sum of k Gamma(2, s) is Gamma(2k, s); k = 0 gives 0.
        scale = 6.0 * (0.5 + p_c) * watch_mult
        watch = np.where(impressions > 0, rng.gamma(np.maximum(2.0 * impressions, 1e-9), scale), 0)
        completions = rng.binomial(impressions, np.clip(p_c, 0.0, 1.0))
        likes = rng.binomial(impressions, p_like)
        return impressions, watch, completions, likes

    ones = np.ones(n_users)
    _, pre_watch, _, _ = period(p_complete, ones)

    treated = np.zeros(n_users, dtype=bool)
    if effect.arm:
        treated = arm_index == names.index(effect.arm)
    p_c = p_complete + np.where(treated, effect.completion_lift, 0.0)
    mult = np.where(treated, 1.0 + effect.watch_lift, 1.0)
    impressions, watch, completions, likes = period(p_c, mult)

    out: dict[str, ArmData] = {}
    for i, name in enumerate(names):
        m = arm_index == i
        out[name] = ArmData.of(impressions[m], watch[m], completions[m], likes[m], pre_watch[m])
    return out
