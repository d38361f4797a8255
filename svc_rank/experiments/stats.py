"""Experiment statistics, pure: distributions, Welch intervals, SRM, CUPED, per-arm results.

No I/O and no SciPy (the project's venv has numpy only); the two distribution
functions needed are implemented from their textbook definitions and tested against
published table values:

* Student t: ``t_cdf`` through the regularized incomplete beta function,
  ``P(T <= t) = 1 - I_x(df/2, 1/2) / 2`` for ``t >= 0`` with ``x = df / (df + t^2)``
  (Abramowitz & Stegun 26.7.1 / 26.5.27); ``I_x`` by its continued fraction evaluated
  with the modified Lentz method (Numerical Recipes, 3rd ed., section 6.4). ``t_ppf``
  starts from the Cornish-Fisher expansion of the normal quantile (A&S 26.7.5) and
  polishes with Newton steps on ``t_cdf``.
* Chi-square: ``chi2_sf(x, k) = Q(k/2, x/2)``, the regularized upper incomplete gamma
  function: its power series for ``x < a + 1`` and its continued fraction otherwise
  (Numerical Recipes, section 6.2).

Metrics. The randomisation unit is the user, so every metric is reduced to one value
per exposed user before any variance is computed (no impression-level i.i.d. pretence):

* a **mean** metric (watch seconds per user) uses the user's value ``Y_i``;
* a **ratio** metric (completion rate = completions / impressions, likes per
  impression, watch seconds per impression) is a ratio of sums ``R = sum Y / sum N``
  per arm. Its per-user values are the delta-method linearisation
  ``V_i = R + (Y_i - R N_i) / mean(N)`` (Deng, Knoblich & Lu, "Applying the Delta
  Method in Metric Analytics", KDD 2018): ``mean(V) = R`` exactly and ``var(V)/n``
  is the delta-method variance of ``R``.

Comparison with control (:func:`welch`): ``diff = mean_t - mean_c``,
``se = sqrt(s_t^2/n_t + s_c^2/n_c)``, Welch-Satterthwaite
``df = se^4 / ((s_t^2/n_t)^2/(n_t-1) + (s_c^2/n_c)^2/(n_c-1))``, interval
``diff -+ t_{1-alpha/2, df} * se``, two-sided p from the same t. ``relative`` is
``diff / mean_c`` and its interval is the difference interval divided by ``mean_c``
(control's own noise is in ``se`` but not in the divisor; for a lift of a few percent
the two differ in the third digit).

Sample ratio mismatch (:func:`srm_check`): Pearson's chi-square of the arms'
exposure counts against the configured shares (renormalised to the enrolled total),
``k - 1`` degrees of freedom, flagged when ``p < 0.001``. A flagged experiment's lifts
are not to be trusted: assignment, exposure logging or eligibility differ by arm.

CUPED (:func:`cuped`; Deng, Xu, Kohavi & Walker, WSDM 2013): with ``X_i`` the user's
watch seconds in the 7 days before their first exposure,
``V'_i = V_i - theta (X_i - mean(X))`` with ``theta = cov(V, X) / var(X)`` pooled
within arms (one theta for all arms, so the difference stays unbiased: ``X`` is
pre-treatment). The variance shrinks by the factor ``1 - rho^2``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

SRM_P_THRESHOLD = 0.001
"""SRM is flagged when the chi-square p-value is below this (RECSYS.md)."""

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITER = 20_000

# --- special functions ------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_ITER + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"betacf did not converge for a={a}, b={b}, x={x}")


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function ``I_x(a, b)``."""
    if not (a > 0 and b > 0):
        raise ValueError("a and b must be > 0")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def gammaincc(a: float, x: float) -> float:
    """The regularized upper incomplete gamma function ``Q(a, x) = Gamma(a, x)/Gamma(a)``."""
    if a <= 0:
        raise ValueError("a must be > 0")
    if x <= 0.0:
        return 1.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        # P(a, x) by its series; Q = 1 - P.
        ap, total = a, 1.0 / a
        term = total
        for _ in range(_MAX_ITER):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * _EPS:
                return max(0.0, 1.0 - total * math.exp(log_front))
        raise ArithmeticError(f"gamma series did not converge for a={a}, x={x}")
    # Q(a, x) by its continued fraction (modified Lentz).
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITER + 1):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = b + an / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return math.exp(log_front) * h
    raise ArithmeticError(f"gamma continued fraction did not converge for a={a}, x={x}")


def chi2_sf(x: float, k: float) -> float:
    """``P(X > x)`` for a chi-square variable with ``k`` degrees of freedom."""
    return gammaincc(k / 2.0, x / 2.0)


_NORMAL = NormalDist()


def t_sf(t: float, df: float) -> float:
    """``P(T > t)`` for Student's t with ``df`` degrees of freedom (``inf``: normal)."""
    if math.isinf(df):
        return 1.0 - _NORMAL.cdf(t)
    if df <= 0:
        raise ValueError("df must be > 0")
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_cdf(t: float, df: float) -> float:
    """``P(T <= t)`` for Student's t."""
    return t_sf(-t, df)


def _t_pdf(t: float, df: float) -> float:
    log_pdf = (
        math.lgamma((df + 1) / 2)
        - math.lgamma(df / 2)
        - 0.5 * math.log(df * math.pi)
        - (df + 1) / 2 * math.log1p(t * t / df)
    )
    return math.exp(log_pdf)


def t_ppf(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (``t_ppf(0.975, 10) = 2.2281...``)."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    if math.isinf(df) or df > 1e7:
        return _NORMAL.inv_cdf(p)
    if df <= 0:
        raise ValueError("df must be > 0")
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    z = _NORMAL.inv_cdf(p)
    z2 = z * z
    g1 = (z2 + 1) * z / 4
    g2 = ((5 * z2 + 16) * z2 + 3) * z / 96
    g3 = (((3 * z2 + 19) * z2 + 17) * z2 - 15) * z / 384
    g4 = ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) * z / 92160
    t = z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4
    for _ in range(50):
        step = (t_cdf(t, df) - p) / _t_pdf(t, df)
        t -= step
        if abs(step) < 1e-12 * max(1.0, abs(t)):
            break
    return t


# --- comparisons ------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """Treatment minus control for one metric, with a Welch interval."""

    treatment_mean: float
    control_mean: float
    diff: float
    ci_low: float
    ci_high: float
    se: float
    df: float
    p_value: float
    level: float = 0.95

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.ci_low > 0 or self.ci_high < 0

    @property
    def relative(self) -> float:
        """``diff / control_mean`` (NaN when control's mean is 0)."""
        return self.diff / self.control_mean if self.control_mean else math.nan

    @property
    def relative_ci(self) -> tuple[float, float]:
        if not self.control_mean:
            return (math.nan, math.nan)
        lo, hi = self.ci_low / self.control_mean, self.ci_high / self.control_mean
        return (min(lo, hi), max(lo, hi))

    def to_dict(self) -> dict[str, Any]:
        lo, hi = self.relative_ci
        return {
            "treatment_mean": self.treatment_mean,
            "control_mean": self.control_mean,
            "diff": self.diff,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "se": self.se,
            "df": self.df,
            "p_value": self.p_value,
            "level": self.level,
            "significant": self.significant,
            "relative": self.relative,
            "relative_ci_low": lo,
            "relative_ci_high": hi,
        }


def welch_from_moments(
    mean_t: float,
    var_t: float,
    n_t: int,
    mean_c: float,
    var_c: float,
    n_c: int,
    level: float = 0.95,
) -> Comparison:
    """Welch's interval for ``mean_t - mean_c`` from sample means and variances (ddof=1)."""
    diff = mean_t - mean_c
    if n_t < 2 or n_c < 2:
        nan = math.nan
        return Comparison(mean_t, mean_c, diff, nan, nan, nan, nan, nan, level)
    vt, vc = var_t / n_t, var_c / n_c
    se2 = vt + vc
    se = math.sqrt(se2)
    if se2 <= 0:
        p = 1.0 if diff == 0 else 0.0
        return Comparison(mean_t, mean_c, diff, diff, diff, 0.0, math.inf, p, level)
    df = se2 * se2 / (vt * vt / (n_t - 1) + vc * vc / (n_c - 1))
    q = t_ppf(0.5 + level / 2.0, df)
    p_value = min(1.0, 2.0 * t_sf(abs(diff) / se, df))
    return Comparison(mean_t, mean_c, diff, diff - q * se, diff + q * se, se, df, p_value, level)


def welch(treatment: ArrayLike, control: ArrayLike, level: float = 0.95) -> Comparison:
    """Welch's interval for ``mean(treatment) - mean(control)`` over per-user values."""
    t = np.asarray(treatment, dtype=float)
    c = np.asarray(control, dtype=float)
    var_t = float(t.var(ddof=1)) if t.size > 1 else math.nan
    var_c = float(c.var(ddof=1)) if c.size > 1 else math.nan
    mean_t = float(t.mean()) if t.size else math.nan
    mean_c = float(c.mean()) if c.size else math.nan
    return welch_from_moments(mean_t, var_t, t.size, mean_c, var_c, c.size, level)


# --- sample ratio mismatch --------------------------------------------------------


@dataclass(frozen=True)
class SrmCheck:
    """Observed exposures per arm against the configured shares."""

    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float
    df: int
    p_value: float
    threshold: float = SRM_P_THRESHOLD

    @property
    def flagged(self) -> bool:
        return self.p_value < self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {
            "observed": self.observed,
            "expected": self.expected,
            "chi2": self.chi2,
            "df": self.df,
            "p_value": self.p_value,
            "threshold": self.threshold,
            "flagged": self.flagged,
        }


def srm_check(
    observed: Mapping[str, int],
    shares: Mapping[str, float],
    threshold: float = SRM_P_THRESHOLD,
) -> SrmCheck:
    """Pearson chi-square of ``observed`` counts against ``shares`` (any positive scale)."""
    names = list(shares)
    if set(observed) - set(names):
        raise ValueError(f"observed arms {sorted(set(observed) - set(names))} have no share")
    total_share = float(sum(shares[n] for n in names))
    if total_share <= 0 or any(shares[n] <= 0 for n in names):
        raise ValueError("shares must be positive")
    n = sum(int(observed.get(name, 0)) for name in names)
    obs = {name: int(observed.get(name, 0)) for name in names}
    expected = {name: n * shares[name] / total_share for name in names}
    if n == 0:
        return SrmCheck(obs, expected, 0.0, len(names) - 1, 1.0, threshold)
    chi2 = sum((obs[k] - expected[k]) ** 2 / expected[k] for k in names)
    df = len(names) - 1
    return SrmCheck(obs, expected, chi2, df, chi2_sf(chi2, df), threshold)


# --- CUPED ------------------------------------------------------------------------


def cuped_theta(values: Sequence[NDArray[np.float64]], pre: Sequence[NDArray[np.float64]]) -> float:
    """``theta = cov(V, X) / var(X)``, pooled within groups (0 when X is constant)."""
    sxy = 0.0
    sxx = 0.0
    for v, x in zip(values, pre, strict=True):
        if v.size == 0:
            continue
        xc = x - x.mean()
        sxy += float(np.dot(v - v.mean(), xc))
        sxx += float(np.dot(xc, xc))
    return sxy / sxx if sxx > 0 else 0.0


def cuped(
    values: Sequence[NDArray[np.float64]], pre: Sequence[NDArray[np.float64]]
) -> tuple[list[NDArray[np.float64]], float]:
    """CUPED-adjusted per-user values for each group, and the theta used."""
    theta = cuped_theta(values, pre)
    all_pre = np.concatenate([np.asarray(x, dtype=float) for x in pre])
    grand = float(all_pre.mean()) if all_pre.size else 0.0
    return [v - theta * (x - grand) for v, x in zip(values, pre, strict=True)], theta


# --- per-arm results --------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """A metric over per-user columns: ``numerator`` per user, or ratio of sums."""

    name: str
    numerator: str
    denominator: str | None = None


METRICS: tuple[Metric, ...] = (
    Metric("watch_seconds_per_user", "watch_seconds"),
    Metric("watch_seconds_per_impression", "watch_seconds", "impressions"),
    Metric("completion_rate", "completions", "impressions"),
    Metric("likes_per_impression", "likes", "impressions"),
)
"""The metrics every result carries (columns of :class:`ArmData`)."""


@dataclass(frozen=True)
class ArmData:
    """One arm's exposed users, one row per user, over the phase after exposure.

    ``pre_watch_seconds``: the user's watch seconds in the 7 days before their first
    exposure (for CUPED); None when not loaded.
    """

    impressions: NDArray[np.float64]
    watch_seconds: NDArray[np.float64]
    completions: NDArray[np.float64]
    likes: NDArray[np.float64]
    pre_watch_seconds: NDArray[np.float64] | None = None

    @classmethod
    def of(
        cls,
        impressions: ArrayLike,
        watch_seconds: ArrayLike,
        completions: ArrayLike,
        likes: ArrayLike,
        pre_watch_seconds: ArrayLike | None = None,
    ) -> ArmData:
        given = (impressions, watch_seconds, completions, likes)
        cols = [np.asarray(c, dtype=float) for c in given]
        pre = None if pre_watch_seconds is None else np.asarray(pre_watch_seconds, dtype=float)
        n = cols[0].shape[0]
        if any(c.shape != (n,) for c in cols) or (pre is not None and pre.shape != (n,)):
            raise ValueError("every column needs one value per exposed user")
        return cls(cols[0], cols[1], cols[2], cols[3], pre)

    @property
    def exposures(self) -> int:
        return int(self.impressions.shape[0])

    def column(self, name: str) -> NDArray[np.float64]:
        return getattr(self, name)  # type: ignore[no-any-return]


def per_user_values(data: ArmData, metric: Metric) -> NDArray[np.float64]:
    """The per-user values whose mean is the arm's metric (delta-method for ratios)."""
    y = data.column(metric.numerator)
    if metric.denominator is None:
        return y
    n = data.column(metric.denominator)
    total_n = float(n.sum())
    if total_n <= 0:
        return np.full(y.shape, math.nan)
    ratio = float(y.sum()) / total_n
    return ratio + (y - ratio * n) / (total_n / n.shape[0])


@dataclass(frozen=True)
class ArmResult:
    name: str
    exposures: int
    share_bp: int
    values: dict[str, float]
    """Metric name -> the arm's value (CUPED-adjusted when ``cuped`` was asked for)."""
    vs_control: dict[str, Comparison] = field(default_factory=dict)
    """Metric name -> comparison with control (empty for the control arm)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "exposures": self.exposures,
            "share_bp": self.share_bp,
            "values": self.values,
            "vs_control": {k: c.to_dict() for k, c in self.vs_control.items()},
        }


@dataclass(frozen=True)
class Results:
    """What the results RPC returns: per arm, and the split's health."""

    control: str
    arms: tuple[ArmResult, ...]
    srm: SrmCheck
    cuped: bool
    cuped_theta: dict[str, float]
    variance_reduction: dict[str, float]
    """Metric -> 1 - var(adjusted)/var(raw), pooled over arms (CUPED only)."""
    level: float = 0.95

    def arm(self, name: str) -> ArmResult:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "control": self.control,
            "level": self.level,
            "arms": [a.to_dict() for a in self.arms],
            "srm": self.srm.to_dict(),
            "cuped": self.cuped,
            "cuped_theta": self.cuped_theta,
            "variance_reduction": self.variance_reduction,
        }


def _pooled_within_var(groups: Sequence[NDArray[np.float64]]) -> float:
    ss = sum(float(((g - g.mean()) ** 2).sum()) for g in groups if g.size > 1)
    dof = sum(g.size - 1 for g in groups if g.size > 1)
    return ss / dof if dof > 0 else math.nan


def analyze(
    shares: Mapping[str, int],
    control: str,
    data: Mapping[str, ArmData],
    *,
    use_cuped: bool = False,
    level: float = 0.95,
    metrics: Sequence[Metric] = METRICS,
) -> Results:
    """Per-arm metrics, Welch intervals against ``control``, the SRM check, optional CUPED.

    ``shares``: arm -> configured share (basis points), in arm order (an experiment's
    ``shares``); ``data``: arm -> its exposed users (an arm missing from ``data`` had
    no exposures). With ``use_cuped`` every arm needs ``pre_watch_seconds``.
    """
    if control not in shares:
        raise ValueError(f"control {control!r} is not among the arms {list(shares)}")
    names = list(shares)
    empty = ArmData.of([], [], [], [], [])
    arms = {n: data.get(n, empty) for n in names}
    srm = srm_check({n: arms[n].exposures for n in names}, shares)
    if use_cuped and any(arms[n].pre_watch_seconds is None for n in names):
        raise ValueError("CUPED needs pre_watch_seconds for every arm")

    values: dict[str, dict[str, NDArray[np.float64]]] = {n: {} for n in names}
    thetas: dict[str, float] = {}
    reduction: dict[str, float] = {}
    for metric in metrics:
        raw = [per_user_values(arms[n], metric) for n in names]
        if use_cuped:
            pre = [arms[n].pre_watch_seconds for n in names]
            adjusted, theta = cuped(raw, [p for p in pre if p is not None])
            thetas[metric.name] = theta
            before, after = _pooled_within_var(raw), _pooled_within_var(adjusted)
            reduction[metric.name] = 1.0 - after / before if before and before > 0 else 0.0
            raw = adjusted
        for n, v in zip(names, raw, strict=True):
            values[n][metric.name] = v

    results = []
    for n in names:
        means = {m: float(v.mean()) if v.size else math.nan for m, v in values[n].items()}
        comparisons = (
            {}
            if n == control
            else {m: welch(values[n][m], values[control][m], level) for m in values[n]}
        )
        results.append(ArmResult(n, arms[n].exposures, int(shares[n]), means, comparisons))
    return Results(control, tuple(results), srm, use_cuped, thetas, reduction, level)
