"""Days 1..T of events, served by a deliberately biased logging policy.

Each day every user opens the app with probability ``activity_u``; an active
user's session is ``1 + Poisson(session_mean - 1)`` impressions (at most 40),
picked by the logging policy from all published videos the user was never
served::

    score = 0.6 ln(1 + views) - age_days / 10 + ln(early formula) + 1.5 Gumbel

i.e. popularity x recency x an early non-personal formula
(``0.2 + 0.5 completion + 0.5 engagement + 0.3 follows``, inputs from the logs
so far), sampled with Gumbel noise so that the logs are biased but not
deterministic. Sessions of day t happen at time ``t - 0.5`` days.

Per impression the observed watch ratio is the true one times mean-one
lognormal noise (sigma 0.35). Likes, shares, comments and follows are
Bernoulli draws whose chance rises with the observed watch ratio; a skip is a
watch ratio under ``features.SKIP_BELOW``; "see fewer of this creator" is
asked 5 % of the time after a watch ratio under 0.15.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsim.features import PRIOR_COMPLETION, PRIOR_ENGAGEMENT, SKIP_BELOW
from recsim.world import W_MAX, World

MAX_SESSION = 40


@dataclass
class EventLog:
    """Impressions, one row each (arrays of shape ``[E]``), plus follow state.

    ``day`` is 1..T; ``watch_ratio`` observed seconds watched / duration;
    ``like``/``share``/``comment``/``follow``/``skip``/``see_fewer`` bool.
    ``initial_follows`` is ``[F0, 2]`` (user, creator) followed before day 1.
    ``session_rank`` is the impression's 0-based position in its session.
    """

    user: np.ndarray
    video: np.ndarray
    day: np.ndarray
    session_rank: np.ndarray
    watch_ratio: np.ndarray
    like: np.ndarray
    share: np.ndarray
    comment: np.ndarray
    follow: np.ndarray
    skip: np.ndarray
    see_fewer: np.ndarray
    initial_follows: np.ndarray

    def __len__(self) -> int:
        return int(self.user.size)

    def until(self, day: int) -> EventLog:
        """The events of days strictly before ``day``."""
        keep = self.day < day
        return EventLog(
            **{k: (v[keep] if k != "initial_follows" else v) for k, v in self.__dict__.items()}
        )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def simulate_logs(world: World) -> EventLog:
    """Run the logging policy over days 1..T of ``world`` (seeded by its config)."""
    cfg = world.config
    rng = np.random.default_rng([cfg.seed, 104729])
    U, V, C = cfg.n_users, cfg.n_videos, cfg.n_creators
    creator = world.creator

    # Onboarding follows: 1 + Poisson(1.5) creators per user, drawn by affinity.
    n_videos_c = np.bincount(creator, minlength=C).astype(np.float64)
    follows = np.zeros((U, C), dtype=bool)
    logits = 1.5 * world.affinity + np.log(n_videos_c + 0.5)[None, :]
    keys = logits + rng.gumbel(size=(U, C))
    order = np.argsort(-keys, axis=1)
    n_follow = 1 + rng.poisson(1.5, size=U)
    for u in range(U):
        follows[u, order[u, : n_follow[u]]] = True
    initial = np.argwhere(follows)
    see_fewer = np.zeros((U, C), dtype=bool)
    served = np.zeros((U, V), dtype=bool)

    views = np.zeros(V)
    completions = np.zeros(V)
    engagements = np.zeros(V)
    parts: list[dict[str, np.ndarray]] = []
    for day in range(1, cfg.days + 1):
        t = day - 0.5
        active = np.flatnonzero(rng.random(U) < world.activity)
        avail = np.flatnonzero(world.publish_day < t)
        if active.size == 0 or avail.size == 0:
            continue
        age = t - world.publish_day[avail]
        comp = (completions[avail] + 5 * PRIOR_COMPLETION) / (views[avail] + 5)
        eng = np.minimum((engagements[avail] + 5 * PRIOR_ENGAGEMENT) / (views[avail] + 5) / 0.25, 1)
        base = 0.6 * np.log1p(views[avail]) - age / 10.0
        ca = creator[avail]
        early = 0.2 + 0.5 * comp + 0.5 * eng + 0.3 * follows[np.ix_(active, ca)]
        score = base[None, :] + np.log(early) + 1.5 * rng.gumbel(size=(active.size, avail.size))
        score[served[np.ix_(active, avail)]] = -np.inf
        score[see_fewer[np.ix_(active, ca)]] = -np.inf
        k = min(MAX_SESSION, avail.size)
        top = np.argpartition(-score, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(score, top, 1), 1), 1)
        n_items = np.minimum(1 + rng.poisson(cfg.session_mean - 1, size=active.size), k)
        rows = np.repeat(np.arange(active.size), n_items)
        ranks = np.concatenate([np.arange(n) for n in n_items])
        pick = top[rows, ranks]
        ok = np.isfinite(score[rows, pick])
        rows, ranks, pick = rows[ok], ranks[ok], pick[ok]
        u = active[rows]
        v = avail[pick]
        c = creator[v]
        w = world.watch_ratio(u, v, t)
        obs = np.clip(w * np.exp(rng.normal(-(0.35**2) / 2, 0.35, size=w.size)), 0.0, 1.5 * W_MAX)
        wc = np.minimum(obs, 3.0)
        like = rng.random(w.size) < _sigmoid(-4.0 + 1.6 * wc)
        share = rng.random(w.size) < _sigmoid(-5.5 + 1.4 * wc)
        comment = rng.random(w.size) < _sigmoid(-5.2 + 1.2 * wc)
        follow = (~follows[u, c]) & (
            rng.random(w.size) < _sigmoid(-5.5 + 1.2 * wc + 0.8 * world.affinity[u, c])
        )
        skip = obs < SKIP_BELOW
        fewer = (obs < 0.15) & (rng.random(w.size) < 0.05)
        parts.append(
            dict(
                user=u,
                video=v,
                day=np.full(u.size, day),
                session_rank=ranks,
                watch_ratio=obs,
                like=like,
                share=share,
                comment=comment,
                follow=follow,
                skip=skip,
                see_fewer=fewer,
            )
        )
        # End of day: state the next day's policy sees.
        served[u, v] = True
        follows[u[follow], c[follow]] = True
        see_fewer[u[fewer], c[fewer]] = True
        np.add.at(views, v, 1.0)
        np.add.at(completions, v, (obs >= 1.0).astype(float))
        np.add.at(engagements, v, like.astype(float) + share + comment)
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return EventLog(**cat, initial_follows=initial)
