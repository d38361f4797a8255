"""The learned ranker's input, served: exactly ``recsim.features``' contract.

The model Triton serves as ``ranker`` is trained by ``models/build_ranker.py`` on rows
that ``recsim.features.build_features`` makes from the simulator's event logs. Serving
builds its rows with the *same function* from the platform's real aggregates
(:mod:`svc_rank.feature_hydrator.aggregates` documents where each one comes from), so
names, order, priors and transforms cannot drift: one list, one implementation.

The rule scorer's four 0..1 inputs are ``recsim.features.formula_inputs`` of the same
rows — the rule scorer and the offline evaluation's "seed formula" are one thing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recsim.features import FEATURE_NAMES, N_FEATURES, PRIOR_WATCH_RATIO, build_features
from svc_rank.feature_hydrator.aggregates import Aggregates
from svc_rank.index.catalog import VideoInfo

__all__ = ["FEATURE_NAMES", "N_FEATURES", "raw_aggregates", "matrix"]

DAY_S = 86400.0


def _unit(v: np.ndarray | None) -> np.ndarray | None:
    if v is None:
        return None
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 and np.isfinite(norm) else None


def raw_aggregates(
    videos: Sequence[VideoInfo],
    agg: Aggregates,
    follows: Sequence[bool],
    *,
    now: float,
) -> dict[str, np.ndarray]:
    """The keyword arguments of ``build_features`` for one user and ``videos``."""
    n = len(videos)
    cols: dict[str, np.ndarray] = {}

    def put(name: str, values: Sequence[float]) -> None:
        cols[name] = np.asarray(values, dtype=np.float64).reshape(n)

    vrows = [agg.video.get(v.video_id, {}) for v in videos]
    views = [r.get("views", 0.0) for r in vrows]
    put("video_views", views)
    put(
        "video_watch_sum",
        [
            r.get("watch_ms", 0.0) / 1000.0 / v.duration_s if v.duration_s > 0 else 0.0
            for r, v in zip(vrows, videos, strict=True)
        ],
    )
    put(
        "video_completions",
        [min(r.get("c", 0.0), vw) for r, vw in zip(vrows, views, strict=True)],
    )
    put(
        "video_skips",
        [
            min(max(0.0, r.get("s", 0.0) - r.get("q", 0.0)), vw)
            for r, vw in zip(vrows, views, strict=True)
        ],
    )
    put(
        "video_engagements",
        [r.get("likes", 0.0) + r.get("shares", 0.0) + r.get("comments", 0.0) for r in vrows],
    )
    put("video_views_recent", [r.get("recent", 0.0) for r in vrows])
    put("video_age_days", [max(0.0, now - v.published_at) / DAY_S for v in videos])
    put("video_duration_s", [v.duration_s for v in videos])
    crows = [agg.creator.get(v.creator_id, {}) for v in videos]
    put("creator_views", [r.get("n", 0.0) for r in crows])
    put("creator_watch_sum", [r.get("w", 0.0) for r in crows])
    put("creator_followers", [r.get("followers", 0.0) for r in crows])
    user = agg.user
    put("user_views", [user.views] * n)
    put("user_watch_sum", [user.watch_sum] * n)
    prows = [agg.pair.get(v.creator_id, {}) for v in videos]
    put("pair_views", [r.get("s", 0.0) for r in prows])
    put("pair_watch_sum", [r.get("w", 0.0) for r in prows])
    put("pair_likes", [max(0.0, r.get("l", 0.0)) for r in prows])
    put("pair_completions", [r.get("c", 0.0) for r in prows])
    put("pair_skips", [max(0.0, r.get("s", 0.0) - r.get("q", 0.0)) for r in prows])
    put("pair_follows", [1.0 if f else 0.0 for f in follows])

    affinity, lift = np.zeros(n), np.zeros(n)
    tw = user.topic_watch
    user_unit = _unit(tw)
    lift_vec = None
    if tw is not None and user.topic_count is not None and tw.shape == user.topic_count.shape:
        mean = (user.watch_sum + 5 * PRIOR_WATCH_RATIO) / (user.views + 5)
        lift_vec = (tw - mean * user.topic_count) / (user.views + 5)
    for i, v in enumerate(videos):
        e = v.embedding
        if e is None:
            continue
        if user_unit is not None and user_unit.shape == e.shape:
            affinity[i] = float(user_unit @ e)
        if lift_vec is not None and lift_vec.shape == e.shape:
            lift[i] = float(lift_vec @ e)
    cols["topic_affinity"] = affinity
    cols["topic_lift"] = lift
    return cols


def matrix(
    videos: Sequence[VideoInfo], agg: Aggregates, follows: Sequence[bool], *, now: float
) -> np.ndarray:
    """``float32 [len(videos), N_FEATURES]`` in ``FEATURE_NAMES`` order."""
    if not videos:
        return np.zeros((0, N_FEATURES), dtype=np.float32)
    return build_features(**raw_aggregates(videos, agg, follows, now=now))
