"""``make eval-feed``: the offline evaluation of RECSYS.md, on held-out day T+1.

Per world seed: simulate the world and days 1..T of biased logs; train the
learned ranker on days T-6..T-1 (features from the days before each row's day,
label = observed watch ratio) with early stopping on day T; grid-search the
seed formula's weights on days T-6..T; then, for up to ``n_test`` users active
in the logs, recall a candidate set on day T+1 and let every policy rank the
same candidates. Pages pass the guardrails (``recsim.guardrails``) and are
checked again independently.

Metrics per policy (means over test users, then over seeds):

- NDCG@10, gain = true watch ratio, divided by the oracle page's DCG@10;
- expected watch seconds per session (scroll simulation over a 20-item page);
- catalog coverage@10 (share of published videos on any test user's first 10);
- ΔNDCG against the tuned formula with a paired bootstrap 95 % CI over users
  (per seed, and pooled over seeds with users resampled within their seed).

Run: ``python -m recsim.evaluate [--seeds 5] [--small]``. Exit status 1 when the
goal (lower CI bound of learned - tuned > 0 in every seed, and >= 20 % relative
over popularity and recency) is not met, 2 on a guardrail violation.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np

from recsim import policies
from recsim.dataset import LogStats
from recsim.guardrails import Violations, assemble_page, check_page
from recsim.metrics import (
    coverage,
    expected_watch_seconds,
    ndcg_vs_oracle,
    paired_bootstrap_ci,
    pooled_bootstrap_ci,
)
from recsim.ranker import Ranker
from recsim.recall import recall_candidates
from recsim.train import fit
from recsim.world import SMALL, WorldConfig, histogram_line

POLICIES = (
    "learned ranker",
    "tuned formula",
    "seed formula",
    "loops formula",
    "popularity",
    "recency",
    "random",
    "oracle",
)
BASELINE = "tuned formula"


@dataclass
class SeedResult:
    """One world seed's outcome. Per-user arrays are ``[n_test]``, aligned across policies."""

    seed: int
    histogram: str
    density: float
    train_rows: int
    tuned_weights: tuple[float, ...]
    ndcg: dict[str, np.ndarray] = field(default_factory=dict)
    watch_s: dict[str, np.ndarray] = field(default_factory=dict)
    coverage: dict[str, float] = field(default_factory=dict)
    violations: dict[str, Violations] = field(default_factory=dict)
    recall_at_200: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_candidates: float = 0.0
    seconds: float = 0.0
    ranker: Ranker | None = None


def run_seed(config: WorldConfig, *, n_test: int = 1000, page: int = 20) -> SeedResult:
    """Simulate, train, and evaluate every policy on day T+1 of ``config``'s world."""
    start = time.perf_counter()
    fitted = fit(config)
    world, log, catalog, ranker = fitted.world, fitted.log, fitted.catalog, fitted.ranker
    weights = fitted.tuned_weights
    train_rows = fitted.train_rows + fitted.valid_rows
    T = config.days
    t = T + 0.5
    stats = LogStats(catalog, log, cutoff_day=T + 1)
    served = stats.served()
    rng = np.random.default_rng([config.seed, 2038074743])
    active = np.flatnonzero(stats.user_views >= 5)
    users = np.sort(rng.choice(active, size=min(n_test, active.size), replace=False))
    cands = recall_candidates(stats, users, world.region, served, t, rng)
    sizes = np.array([c.size for c in cands])
    row_user = np.repeat(users, sizes)
    row_video = np.concatenate(cands)
    x = stats.features(row_user, row_video, t)
    w_true = world.watch_ratio(row_user, row_video, t)
    tiebreak = rng.random(row_video.size)
    scores = {
        "learned ranker": policies.learned_scores(ranker, x),
        "tuned formula": policies.formula_scores(x, weights),
        "seed formula": policies.formula_scores(x),
        "loops formula": policies.loops_scores(x),
        "popularity": policies.popularity_scores(x),
        "recency": policies.recency_scores(x),
        "random": rng.random(row_video.size),
        "oracle": w_true,
    }
    res = SeedResult(
        seed=config.seed,
        histogram=histogram_line(world.watch_matrix(t)),
        density=len(log) / (config.n_users * config.n_videos),
        train_rows=train_rows,
        tuned_weights=weights,
        n_candidates=float(sizes.mean()),
        ranker=ranker,
    )
    n = users.size
    for p in POLICIES:
        res.ndcg[p] = np.zeros(n)
        res.watch_s[p] = np.zeros(n)
        res.violations[p] = Violations()
    tops: dict[str, list[np.ndarray]] = {p: [] for p in POLICIES}
    creators = catalog.creator
    available = catalog.publish_day < t
    res.recall_at_200 = np.zeros(n)
    bounds = np.r_[0, np.cumsum(sizes)]
    for i, u in enumerate(users):
        sl = slice(bounds[i], bounds[i + 1])
        vids = row_video[sl]
        cres = creators[vids]
        blocked = served[u, vids] | stats.see_fewer[u, cres]
        served_set = set(np.flatnonzero(served[u]).tolist())
        fewer_set = set(np.flatnonzero(stats.see_fewer[u]).tolist())
        gains = w_true[sl]
        pages = {}
        for p in POLICIES:
            order = np.lexsort((tiebreak[sl], -scores[p][sl]))
            pages[p] = assemble_page(order, vids, cres, blocked, length=page)
        oracle_gains = gains[pages["oracle"]]
        for p in POLICIES:
            pg = pages[p]
            res.ndcg[p][i] = ndcg_vs_oracle(gains[pg], oracle_gains)
            res.watch_s[p][i] = expected_watch_seconds(gains[pg], catalog.duration_s[vids[pg]])
            res.violations[p].add(check_page(vids[pg], cres[pg], served_set, fewer_set))
            tops[p].append(vids[pg[:10]])
        # Recall, reported apart: the oracle's top 10 over everything eligible.
        eligible = np.flatnonzero(available & ~served[u] & ~stats.see_fewer[u, creators])
        w_all = world.watch_ratio(np.full(eligible.size, u), eligible, t)
        best = eligible[np.argsort(-w_all, kind="stable")[:10]]
        res.recall_at_200[i] = np.isin(best, vids).mean()
    n_avail = int(available.sum())
    for p in POLICIES:
        res.coverage[p] = coverage(tops[p], n_avail)
    res.seconds = time.perf_counter() - start
    return res


def _fmt_ci(m: float, lo: float, hi: float, digits: int = 3) -> str:
    return f"{m:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def report(results: list[SeedResult], *, n_boot: int = 2000) -> tuple[str, bool]:
    """The printable table, per-seed lines, goal checks and claim; and whether the goal holds."""
    lines = []
    k = len(results)
    lines.append(
        f"{'policy':<16} {'NDCG@10/oracle [95% CI]':<26} {'Δ vs tuned formula [95% CI]':<30} "
        f"{'watch s/session':>15} {'coverage@10':>11}"
    )
    mean_ndcg = {}
    for p in POLICIES:
        m, lo, hi = pooled_bootstrap_ci([r.ndcg[p] for r in results], n_boot=n_boot)
        mean_ndcg[p] = m
        if p == BASELINE:
            delta = "(baseline)"
        else:
            delta = _fmt_ci(
                *pooled_bootstrap_ci([r.ndcg[p] - r.ndcg[BASELINE] for r in results], n_boot=n_boot)
            )
        watch = np.mean([r.watch_s[p].mean() for r in results])
        cov = np.mean([r.coverage[p] for r in results])
        lines.append(
            f"{p:<16} {m:.3f} [{lo:.3f}, {hi:.3f}]{'':<6} {delta:<30} {watch:>15.1f} "
            f"{cov * 100:>10.1f}%"
        )
    lines.append("")
    lines.append("learned ranker - tuned formula, ΔNDCG@10 per seed (paired bootstrap over users):")
    per_seed_ok = True
    for r in results:
        m, lo, hi = paired_bootstrap_ci(
            r.ndcg["learned ranker"], r.ndcg[BASELINE], n_boot=n_boot, seed=r.seed
        )
        per_seed_ok &= lo > 0
        w = "/".join(f"{v:.1f}" for v in r.tuned_weights)
        lines.append(
            f"  seed {r.seed}: {_fmt_ci(m, lo, hi)}  users {r.ndcg[BASELINE].size}, "
            f"candidates/user {r.n_candidates:.0f}, log density {r.density * 100:.1f}%, "
            f"train rows {r.train_rows}, tuned weights {w}, {r.seconds:.0f}s"
        )
    rec = np.mean([r.recall_at_200.mean() for r in results])
    lines.append(f"recall@200 of the oracle's top 10 (recall stage, apart): {rec:.3f}")
    viol = Violations()
    for r in results:
        for v in r.violations.values():
            viol.add(v)
    lines.append(
        f"guardrails over {viol.pages} served pages (all policies): repeats {viol.repeats}, "
        f"windows with > 2 items of one creator {viol.creator_cap}, "
        f"see-fewer creators shown {viol.see_fewer}"
    )
    lines.append(f"world seed {results[0].seed}: {results[0].histogram}")
    learned = mean_ndcg["learned ranker"]
    rel_pop = learned / mean_ndcg["popularity"] - 1
    rel_rec = learned / mean_ndcg["recency"] - 1
    lines.append(
        f"learned ranker vs popularity: {rel_pop * 100:+.1f}% relative; "
        f"vs recency: {rel_rec * 100:+.1f}% relative (goal >= +20%)"
    )
    goal = per_seed_ok and rel_pop >= 0.2 and rel_rec >= 0.2 and viol.clean
    m, lo, hi = pooled_bootstrap_ci(
        [r.ndcg["learned ranker"] - r.ndcg[BASELINE] for r in results], n_boot=n_boot
    )
    lines.append(
        f"lower CI bound > 0 in every seed: {'yes' if per_seed_ok else 'NO'}; "
        f"goal {'MET' if goal else 'NOT MET'}"
    )
    lines.append("")
    lines.append(
        f"Claim: on {k} seed{'s' if k != 1 else ''}, the learned ranker raises oracle-normalised "
        f"NDCG@10 by {m:+.3f} (95 % CI [{lo:+.3f}, {hi:+.3f}]) over the tuned formula on the "
        f"same candidates, with {viol.repeats} repeats and "
        f"{'≤ 2' if viol.creator_cap == 0 else 'MORE THAN 2'} items per creator in 10."
    )
    return "\n".join(lines), goal


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 goal met, 1 not met, 2 guardrail broken)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="number of world seeds (0..n-1)")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--users", type=int, default=1000, help="test users per seed")
    ap.add_argument("--small", action="store_true", help="the unit-test world (fast)")
    args = ap.parse_args(argv)
    base = SMALL if args.small else WorldConfig()
    print(
        f"recsim: {args.seeds} seeds, U={base.n_users} V={base.n_videos} C={base.n_creators} "
        f"K={base.n_topics}, logged days 1..{base.days}, held-out day {base.days + 1}",
        flush=True,
    )
    results = []
    for s in range(args.first_seed, args.first_seed + args.seeds):
        r = run_seed(replace(base, seed=s), n_test=args.users)
        print(
            f"  seed {s}: done in {r.seconds:.0f}s (learned {r.ndcg['learned ranker'].mean():.3f},"
            f" tuned {r.ndcg[BASELINE].mean():.3f})",
            flush=True,
        )
        print(f"    {r.histogram}", flush=True)
        results.append(r)
    text, goal = report(results)
    print()
    print(text)
    viol = Violations()
    for r in results:
        for v in r.violations.values():
            viol.add(v)
    if not viol.clean:
        return 2
    return 0 if goal else 1


if __name__ == "__main__":
    sys.exit(main())
