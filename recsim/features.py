"""The ranker's feature contract: one ordered list, shared by training and serving.

Both the offline pipeline (``recsim.dataset``, ``models/build_ranker.py``) and the
serving side (svc_rank hydration -> Triton model ``ranker``) build the ranker's
input with :func:`build_features`, so the column order can never drift. The ONNX
model's input is ``float32 [N, F]`` with ``F = len(FEATURE_NAMES)`` in exactly this
order; its output is the predicted expected watch ratio, ``float32 [N]``.

Every input is a plain aggregate of logged events (``video.events``) or of the
video's own metadata; nothing comes from a simulator's hidden parameters. The
aggregates, per candidate row (arrays of shape ``[N]``, broadcasting allowed):

video (all impressions before the cutoff)
    ``video_views`` impressions; ``video_watch_sum`` sum of watch ratios
    (seconds watched / duration, replays push it above 1); ``video_completions``
    impressions with watch ratio >= 1; ``video_skips`` impressions with watch
    ratio < ``SKIP_BELOW``; ``video_engagements`` likes + shares + comments;
    ``video_views_recent`` impressions in the last 24 h; ``video_age_days`` days
    since publish; ``video_duration_s`` seconds.
creator
    ``creator_views``, ``creator_watch_sum`` over all the creator's videos;
    ``creator_followers``.
user
    ``user_views``, ``user_watch_sum`` over everything the user watched.
(user, creator) pair
    ``pair_views``, ``pair_watch_sum``, ``pair_likes``, ``pair_completions``,
    ``pair_skips``; ``pair_follows`` 1 when the user follows the creator.
(user, video content)
    ``topic_affinity``: cosine between the user vector (watch-ratio-weighted
    mean of the content vectors of watched videos) and the candidate's content
    vector, in [-1, 1] (in [0, 1] for non-negative topic vectors).
    ``topic_lift``: ``sum_i (wr_i - user_mean_wr) * <e_i, e_v> / (n + 5)`` over
    the user's watched videos i: positive when videos like this one were watched
    longer than the user's own average (exposure-bias-free taste signal).

Smoothing: every rate is a Bayesian mean with a fixed prior (constants below),
so a video with 0 views gets the prior, not 0 or NaN.
"""

from __future__ import annotations

import numpy as np

FEATURE_NAMES: tuple[str, ...] = (
    "video_log_views",  # log1p(video_views)
    "video_watch_ratio",  # smoothed mean watch ratio (prior PRIOR_WATCH_RATIO, weight 5)
    "video_completion_rate",  # smoothed share of views with watch ratio >= 1
    "video_skip_rate",  # smoothed share of views with watch ratio < SKIP_BELOW
    "video_engagement_rate",  # smoothed (likes + shares + comments) / views
    "video_log_age_days",  # log1p(days since publish)
    "video_log_duration_s",  # log(duration seconds)
    "video_log_views_recent",  # log1p(impressions in the last 24 h)
    "creator_watch_ratio",  # smoothed mean watch ratio over the creator's videos (weight 20)
    "creator_log_followers",  # log1p(followers)
    "user_watch_ratio",  # smoothed mean watch ratio of the user (weight 5)
    "user_log_views",  # log1p(user impressions)
    "pair_follows",  # 1 if the user follows the creator
    "pair_watch_lift",  # smoothed pair mean watch ratio minus the user's mean (weight 3)
    "pair_signal",  # (likes + completions - skips) / (pair_views + 2)
    "pair_log_views",  # log1p(user's impressions of this creator)
    "topic_affinity",  # cosine(user vector, content vector)
    "topic_lift",  # watch-ratio-centred user vector . content vector
)
N_FEATURES = len(FEATURE_NAMES)

PRIOR_WATCH_RATIO = 0.85  # a typical mean watch ratio of short videos
PRIOR_COMPLETION = 0.3
PRIOR_SKIP = 0.2
PRIOR_ENGAGEMENT = 0.05  # likes + shares + comments per view
SKIP_BELOW = 0.2  # watch ratio under which an impression counts as a skip
ENGAGEMENT_SATURATES = 0.25  # engagement per view mapped to 1.0 by the formulas


def _a(x: object) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def build_features(
    *,
    video_views,
    video_watch_sum,
    video_completions,
    video_skips,
    video_engagements,
    video_views_recent,
    video_age_days,
    video_duration_s,
    creator_views,
    creator_watch_sum,
    creator_followers,
    user_views,
    user_watch_sum,
    pair_views,
    pair_watch_sum,
    pair_likes,
    pair_completions,
    pair_skips,
    pair_follows,
    topic_affinity,
    topic_lift,
) -> np.ndarray:
    """The ranker input for N candidate rows: ``float32 [N, N_FEATURES]``.

    Arguments are the raw aggregates described in the module docstring, each an
    array of shape ``[N]`` (or a scalar that broadcasts). Counts are plain
    counts, ages in days, durations in seconds.
    """
    vv = _a(video_views)
    user_wr = (_a(user_watch_sum) + 5 * PRIOR_WATCH_RATIO) / (_a(user_views) + 5)
    pv = _a(pair_views)
    pair_wr = (_a(pair_watch_sum) + 3 * user_wr) / (pv + 3)
    cols = [
        np.log1p(vv),
        (_a(video_watch_sum) + 5 * PRIOR_WATCH_RATIO) / (vv + 5),
        (_a(video_completions) + 5 * PRIOR_COMPLETION) / (vv + 5),
        (_a(video_skips) + 5 * PRIOR_SKIP) / (vv + 5),
        (_a(video_engagements) + 5 * PRIOR_ENGAGEMENT) / (vv + 5),
        np.log1p(np.maximum(_a(video_age_days), 0.0)),
        np.log(np.maximum(_a(video_duration_s), 1.0)),
        np.log1p(_a(video_views_recent)),
        (_a(creator_watch_sum) + 20 * PRIOR_WATCH_RATIO) / (_a(creator_views) + 20),
        np.log1p(_a(creator_followers)),
        user_wr,
        np.log1p(_a(user_views)),
        (_a(pair_follows) > 0).astype(np.float64),
        pair_wr - user_wr,
        (_a(pair_likes) + _a(pair_completions) - _a(pair_skips)) / (pv + 2),
        np.log1p(pv),
        _a(topic_affinity),
        _a(topic_lift),
    ]
    n = max(np.size(c) for c in cols)
    out = np.empty((n, N_FEATURES), dtype=np.float32)
    for j, c in enumerate(cols):
        out[:, j] = np.broadcast_to(c, (n,))
    return out


def col(name: str) -> int:
    """The column index of feature ``name`` in :data:`FEATURE_NAMES`."""
    return FEATURE_NAMES.index(name)


def formula_inputs(x: np.ndarray) -> np.ndarray:
    """The seed formula's four inputs, each scaled to 0..1: ``float64 [N, 4]``.

    Columns (``x`` is ``[N, N_FEATURES]`` from :func:`build_features`):

    - completion: the smoothed completion rate (already 0..1);
    - engagement: smoothed engagement per view / ``ENGAGEMENT_SATURATES``, capped at 1;
    - affinity: ``0.5 * follows + 0.5 * clip((pair_signal + 1) / 2, 0, 1)``;
    - deep_model: the topic affinity (cosine) clipped to 0..1.
    """
    completion = np.clip(x[:, col("video_completion_rate")], 0.0, 1.0)
    engagement = np.clip(x[:, col("video_engagement_rate")] / ENGAGEMENT_SATURATES, 0.0, 1.0)
    affinity = 0.5 * x[:, col("pair_follows")] + 0.5 * np.clip(
        (x[:, col("pair_signal")] + 1.0) / 2.0, 0.0, 1.0
    )
    deep = np.clip(x[:, col("topic_affinity")], 0.0, 1.0)
    return np.stack([completion, engagement, affinity, deep], axis=1).astype(np.float64)


SEED_WEIGHTS: tuple[float, float, float, float] = (0.4, 0.3, 0.2, 0.1)
"""The seed formula: 0.40 completion + 0.30 engagement + 0.20 affinity + 0.10 deep model."""


def loops_inputs(x: np.ndarray) -> np.ndarray:
    """The Loops-style formula's four inputs, each 0..1: ``float64 [N, 4]``.

    freshness ``exp(-age_days / 3)``; engagement ÷ ``ln(age_days + 2)`` scaled by
    ``ENGAGEMENT_SATURATES``; personalisation = mean of the formula's affinity
    and deep-model inputs; creator quality = creator watch ratio / 1.5, capped.
    """
    age = np.expm1(x[:, col("video_log_age_days")])
    fresh = np.exp(-age / 3.0)
    eng = x[:, col("video_engagement_rate")] / np.log(age + 2.0)
    eng = np.clip(eng / ENGAGEMENT_SATURATES, 0.0, 1.0)
    f = formula_inputs(x)
    personal = 0.5 * f[:, 2] + 0.5 * f[:, 3]
    creator = np.clip(x[:, col("creator_watch_ratio")] / 1.5, 0.0, 1.0)
    return np.stack([fresh, eng, personal, creator], axis=1)


LOOPS_WEIGHTS: tuple[float, float, float, float] = (0.25, 0.35, 0.30, 0.10)
