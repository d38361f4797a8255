"""The ranker's data builder: event logs -> aggregates -> feature rows and labels.

Inputs are only what the platform observes: the catalog (each video's creator,
publish time, duration and content vector) and the event log. The simulator's
hidden parameters never enter here. ``models/build_ranker.py`` and
``recsim.evaluate`` both build their training data with :func:`training_set`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsim.features import PRIOR_WATCH_RATIO, SKIP_BELOW, build_features
from recsim.logs import EventLog
from recsim.world import World


@dataclass(frozen=True)
class Catalog:
    """Observable video metadata, index = video id.

    ``creator [V]`` int, ``publish_day [V]`` days, ``duration_s [V]`` seconds,
    ``tags [V, K]`` L2-normalised content vectors (the embedding's stand-in),
    ``n_creators``, ``n_users``.
    """

    creator: np.ndarray
    publish_day: np.ndarray
    duration_s: np.ndarray
    tags: np.ndarray
    n_creators: int
    n_users: int

    @classmethod
    def of(cls, world: World) -> Catalog:
        """The part of ``world`` the platform can see."""
        return cls(
            creator=world.creator,
            publish_day=world.publish_day,
            duration_s=world.duration_s,
            tags=world.tags,
            n_creators=world.config.n_creators,
            n_users=world.config.n_users,
        )


class LogStats:
    """Aggregates of ``log`` (everything it holds), as hydration would read them.

    ``cutoff_day``: the first day *not* in ``log``; "recent" = day ``cutoff_day - 1``.
    Dense arrays: per video ``[V]``, per creator ``[C]``, per user ``[U]``, per
    (user, creator) ``[U, C]``, user vectors ``[U, K]``.
    """

    def __init__(self, catalog: Catalog, log: EventLog, cutoff_day: int) -> None:
        self.catalog = catalog
        self.cutoff_day = cutoff_day
        V = catalog.creator.size
        C, U = catalog.n_creators, catalog.n_users
        u, v, wr = log.user, log.video, log.watch_ratio
        c = catalog.creator[v]
        comp = (wr >= 1.0).astype(np.float64)
        skip = (wr < SKIP_BELOW).astype(np.float64)
        eng = log.like.astype(np.float64) + log.share + log.comment

        def vb(weights: np.ndarray | None = None) -> np.ndarray:
            return np.bincount(v, weights=weights, minlength=V).astype(np.float64)

        self.video_views = vb()
        self.video_watch_sum = vb(wr)
        self.video_completions = vb(comp)
        self.video_skips = vb(skip)
        self.video_engagements = vb(eng)
        self.video_views_recent = vb((log.day == cutoff_day - 1).astype(np.float64))
        self.creator_views = np.bincount(c, minlength=C).astype(np.float64)
        self.creator_watch_sum = np.bincount(c, weights=wr, minlength=C)
        self.user_views = np.bincount(u, minlength=U).astype(np.float64)
        self.user_watch_sum = np.bincount(u, weights=wr, minlength=U)

        pc = u * C + c
        self.pair_views = np.bincount(pc, minlength=U * C).reshape(U, C).astype(np.float64)
        self.pair_watch_sum = np.bincount(pc, weights=wr, minlength=U * C).reshape(U, C)
        self.pair_likes = np.bincount(pc, weights=log.like, minlength=U * C).reshape(U, C)
        self.pair_completions = np.bincount(pc, weights=comp, minlength=U * C).reshape(U, C)
        self.pair_skips = np.bincount(pc, weights=skip, minlength=U * C).reshape(U, C)
        self.follows = np.zeros((U, C), dtype=bool)
        if log.initial_follows.size:
            self.follows[log.initial_follows[:, 0], log.initial_follows[:, 1]] = True
        self.follows[u[log.follow], c[log.follow]] = True
        self.see_fewer = np.zeros((U, C), dtype=bool)
        self.see_fewer[u[log.see_fewer], c[log.see_fewer]] = True
        self.creator_followers = self.follows.sum(axis=0).astype(np.float64)

        tags = catalog.tags
        user_mean = (self.user_watch_sum + 5 * PRIOR_WATCH_RATIO) / (self.user_views + 5)
        K = tags.shape[1]
        self.user_vec = np.zeros((U, K))
        np.add.at(self.user_vec, u, wr[:, None] * tags[v])
        self.user_lift = np.zeros((U, K))
        np.add.at(self.user_lift, u, (wr - user_mean[u])[:, None] * tags[v])
        self.user_lift /= (self.user_views + 5)[:, None]
        norm = np.linalg.norm(self.user_vec, axis=1, keepdims=True)
        self.user_unit = np.divide(
            self.user_vec, norm, out=np.zeros_like(self.user_vec), where=norm > 0
        )
        self._log = log

    def served(self) -> np.ndarray:
        """Already-served matrix ``bool [U, V]`` (every logged impression)."""
        m = np.zeros((self.catalog.n_users, self.catalog.creator.size), dtype=bool)
        m[self._log.user, self._log.video] = True
        return m

    def topic_affinity(self, users: np.ndarray, videos: np.ndarray) -> np.ndarray:
        """Cosine(user vector, content vector) per row, ``[N]`` in [0, 1]."""
        return np.einsum("nk,nk->n", self.user_unit[users], self.catalog.tags[videos])

    def features(self, users: np.ndarray, videos: np.ndarray, t: float) -> np.ndarray:
        """Feature rows for (``users[i]``, ``videos[i]``) at ``t`` days: float32 ``[N, F]``."""
        cat = self.catalog
        c = cat.creator[videos]
        return build_features(
            video_views=self.video_views[videos],
            video_watch_sum=self.video_watch_sum[videos],
            video_completions=self.video_completions[videos],
            video_skips=self.video_skips[videos],
            video_engagements=self.video_engagements[videos],
            video_views_recent=self.video_views_recent[videos],
            video_age_days=t - cat.publish_day[videos],
            video_duration_s=cat.duration_s[videos],
            creator_views=self.creator_views[c],
            creator_watch_sum=self.creator_watch_sum[c],
            creator_followers=self.creator_followers[c],
            user_views=self.user_views[users],
            user_watch_sum=self.user_watch_sum[users],
            pair_views=self.pair_views[users, c],
            pair_watch_sum=self.pair_watch_sum[users, c],
            pair_likes=self.pair_likes[users, c],
            pair_completions=self.pair_completions[users, c],
            pair_skips=self.pair_skips[users, c],
            pair_follows=self.follows[users, c],
            topic_affinity=self.topic_affinity(users, videos),
            topic_lift=np.einsum("nk,nk->n", self.user_lift[users], cat.tags[videos]),
        )


@dataclass
class TrainingSet:
    """Rows = logged impressions of the label days.

    ``x`` float32 ``[N, F]`` (features from the days before the row's day),
    ``y`` float64 ``[N]`` observed watch ratio, ``group`` int ``[N]`` one id per
    (user, day) session, ``day`` int ``[N]``.
    """

    x: np.ndarray
    y: np.ndarray
    group: np.ndarray
    day: np.ndarray

    def subset(self, keep: np.ndarray) -> TrainingSet:
        """The rows where ``keep`` (bool ``[N]``) holds."""
        return TrainingSet(self.x[keep], self.y[keep], self.group[keep], self.day[keep])


def training_set(catalog: Catalog, log: EventLog, label_days: range) -> TrainingSet:
    """For each day d in ``label_days``: features from days < d, labels = day d's watch ratios."""
    xs, ys, gs, ds = [], [], [], []
    for d in label_days:
        rows = log.day == d
        if not rows.any():
            continue
        stats = LogStats(catalog, log.until(d), cutoff_day=d)
        u, v = log.user[rows], log.video[rows]
        xs.append(stats.features(u, v, d - 0.5))
        ys.append(log.watch_ratio[rows])
        gs.append(d * catalog.n_users + u)
        ds.append(np.full(u.size, d))
    return TrainingSet(
        np.concatenate(xs), np.concatenate(ys), np.concatenate(gs), np.concatenate(ds)
    )
