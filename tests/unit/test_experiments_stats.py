"""Experiment statistics: distributions, Welch, SRM, CUPED, and the simulator's truths.

Repeated-run tests use a seeded numpy generator (deterministic) and 200 runs each:
a known effect must be found (CI excludes 0) in >= 90 % of runs, the null in at most
10 % (nominal 5 %); a broken split must be flagged by the SRM check.
"""

from __future__ import annotations

import functools
import json
import math
from collections import Counter

import numpy as np
import pytest

from svc_rank.experiments import Arm, Experiment, analyze, assign, srm_check
from svc_rank.experiments.simulate import Effect, simulate
from svc_rank.experiments.stats import (
    METRICS,
    ArmData,
    Results,
    betainc,
    chi2_sf,
    gammaincc,
    per_user_values,
    t_cdf,
    t_ppf,
    welch,
    welch_from_moments,
)

SHARES = {"control": 5000, "treatment": 5000}
RUNS = 200
USERS = 6000

# --- distributions against published tables -----------------------------------------


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [
        (0.975, 1, 12.706204736),
        (0.975, 2, 4.302652730),
        (0.975, 3, 3.182446305),
        (0.975, 5, 2.570581836),
        (0.975, 10, 2.228138852),
        (0.975, 30, 2.042272456),
        (0.975, 100, 1.983971519),
        (0.975, 1000, 1.962339081),
        (0.975, math.inf, 1.959963985),
        (0.995, 10, 3.169272673),
        (0.95, 7.5, 1.875747479),  # fractional df (Welch): by numerical integration
        (0.025, 10, -2.228138852),
    ],
)
def test_t_quantile_matches_tables(p: float, df: float, expected: float) -> None:
    assert t_ppf(p, df) == pytest.approx(expected, abs=1e-8)
    assert t_cdf(t_ppf(p, df), df) == pytest.approx(p, abs=1e-12)


@pytest.mark.parametrize(
    ("x", "k", "p"),
    [
        (3.841458820694124, 1, 0.05),
        (5.991464547107979, 2, 0.05),
        (10.827566170662733, 1, 0.001),
        (13.815510557964274, 2, 0.001),
        (16.26623619623813, 3, 0.001),
        (124.342, 100, 0.05),
        (0.0, 4, 1.0),
    ],
)
def test_chi_square_survival_matches_tables(x: float, k: int, p: float) -> None:
    assert chi2_sf(x, k) == pytest.approx(p, rel=1e-4)


def test_special_functions_identities() -> None:
    for a, b, x in [(0.5, 0.5, 0.3), (2.0, 3.0, 0.7), (50.0, 0.5, 0.99), (1.0, 1.0, 0.25)]:
        assert betainc(a, b, x) + betainc(b, a, 1 - x) == pytest.approx(1.0, abs=1e-12)
    assert betainc(1.0, 1.0, 0.25) == pytest.approx(0.25)
    # Q(1, x) = exp(-x); Q(k, x) for integer k is a Poisson tail.
    assert gammaincc(1.0, 2.5) == pytest.approx(math.exp(-2.5), rel=1e-12)
    poisson = sum(math.exp(-4.0) * 4.0**i / math.factorial(i) for i in range(3))
    assert gammaincc(3.0, 4.0) == pytest.approx(poisson, rel=1e-12)


# --- Welch -------------------------------------------------------------------------


def test_welch_interval_follows_the_welch_satterthwaite_formula() -> None:
    rng = np.random.default_rng(1)
    t, c = rng.normal(10.5, 3.0, 40), rng.normal(10.0, 1.0, 25)
    got = welch(t, c)
    vt, vc = t.var(ddof=1) / t.size, c.var(ddof=1) / c.size
    df = (vt + vc) ** 2 / (vt**2 / (t.size - 1) + vc**2 / (c.size - 1))
    half = t_ppf(0.975, df) * math.sqrt(vt + vc)
    diff = t.mean() - c.mean()
    assert got.df == pytest.approx(df)
    assert (got.ci_low, got.ci_high) == pytest.approx((diff - half, diff + half))
    assert 25 - 1 < got.df < 40 + 25 - 2
    # p < 0.05 exactly when the 95 % interval excludes 0.
    assert (got.p_value < 0.05) == got.significant
    assert math.isnan(welch_from_moments(1.0, 1.0, 1, 0.0, 1.0, 10).ci_low)


def test_ratio_metrics_use_the_delta_method_per_user() -> None:
    data = ArmData.of([2, 4, 0, 10], [30, 50, 0, 200], [1, 3, 0, 6], [0, 1, 0, 2])
    completion = next(m for m in METRICS if m.name == "completion_rate")
    values = per_user_values(data, completion)
    assert values.mean() == pytest.approx(10 / 16)  # the ratio of sums, not a mean of ratios
    # var(values)/n is the delta-method variance of sum(Y)/sum(N).
    y, n = data.completions, data.impressions
    r, nbar = y.sum() / n.sum(), n.mean()
    delta_var = ((y - r * n) ** 2).sum() / (len(y) - 1) / nbar**2
    assert values.var(ddof=1) == pytest.approx(delta_var)


# --- SRM ---------------------------------------------------------------------------


def test_srm_is_quiet_for_a_correct_split() -> None:
    rng = np.random.default_rng(11)
    flagged = 0
    for _ in range(1000):
        control, treatment = rng.multinomial(20_000, [0.5, 0.5])
        flagged += srm_check({"control": control, "treatment": treatment}, SHARES).flagged
    assert flagged <= 4  # nominal 0.1 % of 1000 runs


def test_a_broken_split_is_flagged() -> None:
    # Treatment's exposures are partly lost (4 % of its users, e.g. a logging bug on
    # one code path): assignment is right, the data is not.
    exp = Experiment.start("broken", [Arm("control", 5000), Arm("treatment", 5000)])
    counts: Counter[str] = Counter()
    for i in range(100_000):
        arm = assign(exp, f"user-{i}")
        assert arm is not None
        if arm.name == "treatment" and i % 25 == 0:
            continue  # exposure never logged
        counts[arm.name] += 1
    srm = srm_check(counts, exp.shares)
    assert srm.flagged and srm.p_value < 1e-3, srm
    assert not srm_check(
        {"control": counts["control"], "treatment": counts["control"]}, exp.shares
    ).flagged

    # A split configured 50/50 but served 52/48 (a wrong share in one client).
    rng = np.random.default_rng(5)
    arms = simulate(rng, 100_000, SHARES, split={"control": 5200, "treatment": 4800})
    results = analyze(SHARES, "control", arms)
    assert results.srm.flagged
    # Three arms, one of them starved.
    three = {"control": 3334, "b": 3333, "c": 3333}
    arms = simulate(rng, 30_000, three, split={"control": 3334, "b": 3333, "c": 3100})
    assert analyze(three, "control", arms).srm.flagged
    assert not analyze(three, "control", simulate(rng, 30_000, three)).srm.flagged


# --- detecting a known effect, and not detecting a null ------------------------------


@functools.cache
def _rates(effect: Effect, seed: int) -> dict[tuple[bool, str], float]:
    """(use_cuped, metric) -> share of RUNS whose 95 % CI excludes 0 (same data for both)."""
    rng = np.random.default_rng(seed)
    hits: Counter[tuple[bool, str]] = Counter()
    for _ in range(RUNS):
        arms = simulate(rng, USERS, SHARES, effect)
        for use_cuped in (False, True):
            results = analyze(SHARES, "control", arms, use_cuped=use_cuped)
            for metric, comparison in results.arm("treatment").vs_control.items():
                hits[use_cuped, metric] += comparison.significant
    return {(c, m.name): hits[c, m.name] / RUNS for c in (False, True) for m in METRICS}


EFFECT = Effect("treatment", watch_lift=0.10, completion_lift=0.035)


@pytest.mark.parametrize("use_cuped", [False, True])
def test_an_injected_effect_is_detected_in_at_least_90_percent_of_runs(use_cuped: bool) -> None:
    rates = {m: r for (c, m), r in _rates(EFFECT, 2024).items() if c == use_cuped}
    assert rates["watch_seconds_per_user"] >= 0.90, rates
    assert rates["watch_seconds_per_impression"] >= 0.90, rates
    assert rates["completion_rate"] >= 0.90, rates
    assert rates["likes_per_impression"] <= 0.10, rates  # untouched by the effect


@pytest.mark.parametrize("use_cuped", [False, True])
def test_a_null_effect_is_not_detected(use_cuped: bool) -> None:
    rates = {m: r for (c, m), r in _rates(Effect(), 99).items() if c == use_cuped}
    assert all(rate <= 0.10 for rate in rates.values()), rates


def test_the_interval_covers_the_true_lift() -> None:
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(RUNS):
        arms = simulate(rng, USERS, SHARES, Effect("treatment", watch_lift=0.10))
        lo, hi = (
            analyze(SHARES, "control", arms)
            .arm("treatment")
            .vs_control["watch_seconds_per_user"]
            .relative_ci
        )
        covered += lo <= 0.10 <= hi
    assert covered / RUNS >= 0.88  # nominal 95 %


# --- CUPED -------------------------------------------------------------------------


def test_cuped_reduces_variance_when_the_pre_period_correlates() -> None:
    rng = np.random.default_rng(3)
    arms = simulate(rng, 20_000, SHARES, Effect("treatment", watch_lift=0.05))
    raw = analyze(SHARES, "control", arms)
    adj = analyze(SHARES, "control", arms, use_cuped=True)
    metric = "watch_seconds_per_user"
    assert adj.variance_reduction[metric] > 0.5, adj.variance_reduction
    assert adj.cuped_theta[metric] > 0
    r, a = raw.arm("treatment").vs_control[metric], adj.arm("treatment").vs_control[metric]
    assert a.se < 0.75 * r.se
    assert a.ci_high - a.ci_low < 0.75 * (r.ci_high - r.ci_low)
    assert abs(a.diff - r.diff) < 2 * r.se  # same estimand, less noise

    # A pre-period that is pure noise changes (almost) nothing.
    noise = {
        k: ArmData.of(
            v.impressions, v.watch_seconds, v.completions, v.likes, rng.normal(0, 1, v.exposures)
        )
        for k, v in arms.items()
    }
    assert abs(analyze(SHARES, "control", noise, use_cuped=True).variance_reduction[metric]) < 0.01


def test_cuped_finds_a_small_effect_more_often() -> None:
    rates = _rates(Effect("treatment", watch_lift=0.05), 8)
    plain = rates[False, "watch_seconds_per_user"]
    with_cuped = rates[True, "watch_seconds_per_user"]
    assert with_cuped >= plain + 0.2, (plain, with_cuped)


# --- results shape -----------------------------------------------------------------


def test_results_carry_every_arm_and_serialise() -> None:
    three = {"control": 3334, "b": 3333, "c": 3333}
    arms = simulate(np.random.default_rng(4), 9000, three, Effect("c", watch_lift=0.2))
    arms.pop("b")  # an arm without exposures is still reported (0), and SRM sees it
    results = analyze(three, "control", arms, use_cuped=True)
    assert isinstance(results, Results)
    assert [a.name for a in results.arms] == ["control", "b", "c"]
    assert results.arm("b").exposures == 0 and results.srm.flagged
    assert results.arm("control").vs_control == {}
    assert results.arm("c").vs_control["watch_seconds_per_user"].significant
    doc = json.loads(json.dumps(results.to_dict()))
    assert doc["arms"][2]["vs_control"]["completion_rate"]["level"] == 0.95
    assert set(doc["arms"][0]["values"]) == {m.name for m in METRICS}
    with pytest.raises(ValueError):
        analyze(three, "nope", arms)
    with pytest.raises(ValueError):
        analyze(three, "control", {"control": ArmData.of([1], [1], [1], [1])}, use_cuped=True)
