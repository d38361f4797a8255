"""A simulated recall stage: the candidate set every policy ranks on day T+1.

Sources, in this order, de-duplicated (RECSYS.md / issue 9, section 2):

- similar: the ``n_similar`` (100) videos closest to the user vector
  (cosine with content vectors), not yet served;
- followees: the ``n_followee`` (20) newest videos (<= 14 days) of followed creators;
- trending: the ``n_trending`` (20) most-viewed videos of the last logged day,
  plus the ``n_regional`` (10) most-viewed by users of the user's home region;
- fresh: ``n_fresh`` (20) random videos published in the last 2 days with < 20 views;
- exploration: ``n_explore`` (30) random published videos.

Trending, followee and fresh items are injected without a served filter, so
the page guardrails have real work to do. Everything here reads only the logs
and the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsim.dataset import LogStats


@dataclass(frozen=True)
class RecallConfig:
    """How many candidates each source contributes (≈ 200 in all)."""

    n_similar: int = 100
    n_followee: int = 20
    n_trending: int = 20
    n_regional: int = 10
    n_fresh: int = 20
    n_explore: int = 30


def recall_candidates(
    stats: LogStats,
    users: np.ndarray,
    user_region: np.ndarray,
    served: np.ndarray,
    t: float,
    rng: np.random.Generator,
    config: RecallConfig = RecallConfig(),
) -> list[np.ndarray]:
    """Candidate video ids per user in ``users`` (list of int arrays).

    ``user_region [U]`` home regions; ``served [U, V]`` already-served matrix;
    ``t`` the serving time in days.
    """
    cat = stats.catalog
    avail = cat.publish_day < t
    avail_ids = np.flatnonzero(avail)
    log = stats._log
    last = log.day == stats.cutoff_day - 1
    trending = np.argsort(-stats.video_views_recent, kind="stable")[: config.n_trending]
    regional = {}
    for r in np.unique(user_region):
        views = np.bincount(
            log.video[last & (user_region[log.user] == r)], minlength=cat.creator.size
        )
        regional[int(r)] = np.argsort(-views, kind="stable")[: config.n_regional]
    fresh_pool = np.flatnonzero(avail & (cat.publish_day >= t - 2) & (stats.video_views < 20))
    recent = avail & (cat.publish_day >= t - 14)
    sims = stats.user_unit[users] @ cat.tags.T  # [n, V]
    out = []
    for i, u in enumerate(users):
        s = np.where(avail & ~served[u], sims[i], -np.inf)
        similar = np.argpartition(-s, config.n_similar)[: config.n_similar]
        similar = similar[np.isfinite(s[similar])]
        similar = similar[np.argsort(-s[similar], kind="stable")]
        followed = np.flatnonzero(stats.follows[u])
        fol = np.flatnonzero(recent & np.isin(cat.creator, followed))
        fol = fol[np.argsort(-cat.publish_day[fol], kind="stable")][: config.n_followee]
        fresh = rng.choice(fresh_pool, size=min(config.n_fresh, fresh_pool.size), replace=False)
        explore = rng.choice(avail_ids, size=min(config.n_explore, avail_ids.size), replace=False)
        merged = np.concatenate(
            [similar, fol, trending, regional[int(user_region[u])], fresh, explore]
        ).astype(np.int64)
        _, first = np.unique(merged, return_index=True)
        out.append(merged[np.sort(first)])
    return out
