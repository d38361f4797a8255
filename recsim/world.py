"""A seeded short-video world shaped like KuaiRec, with the true watch ratio known.

Entities: U users, V videos, C creators, K topics (see ``../shared/RECSYS.md``).

- user: sparse topic interests ``Dirichlet(0.12)``, a home region, an
  activity level (daily chance of opening the app) and a watch-time bias;
- creator: a topic profile ``Dirichlet(0.3)`` and a quality level ``Beta(2, 2)``;
- video: a topic mix drawn around its creator's profile, a quality
  ``q ~ Beta(2 + 4 c, 2 + 4 (1 - c))`` (c = its creator's level), a duration
  ``lognormal(ln 20 s, 0.6)`` clipped to 3..180 s, and a publish time in days;
- (user, creator): a low-rank affinity ``P_u . Q_c`` (rank 4).

True expected watch ratio (watched seconds / duration, replays push it past 1)::

    log w(u, v, t) = b0 + 1.6 m(u, v) + 1.4 (q_v - 0.5) + 0.4 a(u, c_v)
                     - 0.3 ln(d_v / 20) + bias_u + eps(u, v) - 0.06 ln(1 + age_v(t))

with ``m`` the cosine between interests and topic mix, ``eps ~ N(0, 0.3)`` a
pair-specific taste nobody observes, and a small staleness term. ``w`` is
capped at ``W_MAX``. The world also exposes a noisy observation of each video's
content (``tags``: three hashtags drawn from its topic mix, standing in for the
content embedding the real path computes from frames and titles).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

W_MAX = 6.0
STALENESS = 0.06


@dataclass(frozen=True)
class WorldConfig:
    """Sizes and horizon. ``days`` = T logged days; day T+1 is held out."""

    n_users: int = 2000
    n_videos: int = 6000
    n_creators: int = 400
    n_topics: int = 20
    n_regions: int = 4
    rank: int = 4
    days: int = 14
    history_days: float = 21.0  # videos are published in (-history_days, T + 1)
    session_mean: float = 14.0  # impressions per active user-day (logging policy)
    seed: int = 0


SMALL = WorldConfig(n_users=300, n_videos=900, n_creators=90, n_topics=12, days=10)
"""A world small enough for the unit tests (about a second to simulate)."""


@dataclass
class World:
    """The simulator's ground truth. Only ``recsim.logs`` and the oracle read it.

    Arrays (index = entity id): ``interest [U, K]``, ``region [U]`` int,
    ``activity [U]`` daily open probability, ``user_bias [U]``, ``creator [V]``
    int, ``topics [V, K]``, ``quality [V]``, ``duration_s [V]`` seconds,
    ``publish_day [V]`` days (float; day t's sessions happen at ``t - 0.5``),
    ``tags [V, K]`` the observable content vector (L2-normalised),
    ``affinity [U, C]``, ``w_base [U, V]`` float32 true watch ratio at age 0.
    """

    config: WorldConfig
    interest: np.ndarray
    region: np.ndarray
    activity: np.ndarray
    user_bias: np.ndarray
    creator: np.ndarray
    topics: np.ndarray
    quality: np.ndarray
    duration_s: np.ndarray
    publish_day: np.ndarray
    tags: np.ndarray
    affinity: np.ndarray
    w_base: np.ndarray

    def watch_ratio(self, users: np.ndarray, videos: np.ndarray, t: float) -> np.ndarray:
        """True expected watch ratio of ``users[i]`` on ``videos[i]`` at time ``t`` (days).

        Shapes: ``users``, ``videos`` int arrays broadcastable together; result float64.
        """
        age = np.maximum(t - self.publish_day[videos], 0.0)
        w = self.w_base[users, videos].astype(np.float64) * (1.0 + age) ** (-STALENESS)
        return np.minimum(w, W_MAX)

    def watch_matrix(self, t: float) -> np.ndarray:
        """True watch ratio of every user on every video at time ``t``: float32 ``[U, V]``."""
        age = np.maximum(t - self.publish_day, 0.0)
        return np.minimum(self.w_base * ((1.0 + age) ** (-STALENESS)).astype(np.float32), W_MAX)


def make_world(config: WorldConfig) -> World:
    """Draw a world from ``config`` (same config and seed -> identical arrays)."""
    rng = np.random.default_rng([config.seed, 7919])
    U, V, C, K = config.n_users, config.n_videos, config.n_creators, config.n_topics
    interest = rng.dirichlet(np.full(K, 0.12), size=U)
    region = rng.integers(0, config.n_regions, size=U)
    activity = rng.beta(2.0, 2.5, size=U)
    user_bias = rng.normal(0.0, 0.15, size=U)

    creator_profile = rng.dirichlet(np.full(K, 0.3), size=C)
    creator_level = rng.beta(2.0, 2.0, size=C)
    # Creator popularity: a few creators publish a lot (Zipf-like).
    creator_weight = rng.pareto(1.5, size=C) + 1.0
    creator = rng.choice(C, size=V, p=creator_weight / creator_weight.sum())
    g = rng.gamma(0.05 + 4.0 * creator_profile[creator])  # Dirichlet draws, vectorised
    topics = g / g.sum(axis=1, keepdims=True)
    cl = creator_level[creator]
    quality = rng.beta(2.0 + 4.0 * cl, 2.0 + 4.0 * (1.0 - cl))
    duration_s = np.clip(np.exp(rng.normal(np.log(20.0), 0.6, size=V)), 3.0, 180.0)
    publish_day = rng.uniform(-config.history_days, config.days + 1.0, size=V)

    # Observable content: 3 hashtags from the topic mix, each 15 % of the time a
    # random topic instead (mislabelled), as a normalised count vector.
    tags = np.zeros((V, K))
    for _ in range(3):
        drawn = (np.cumsum(topics, axis=1) < rng.random((V, 1))).sum(axis=1).clip(0, K - 1)
        noise = rng.random(V) < 0.15
        drawn[noise] = rng.integers(0, K, size=int(noise.sum()))
        tags[np.arange(V), drawn] += 1.0
    tags /= np.linalg.norm(tags, axis=1, keepdims=True)

    P = rng.normal(0.0, 1.0 / np.sqrt(config.rank), size=(U, config.rank))
    Q = rng.normal(0.0, 1.0, size=(C, config.rank))
    affinity = P @ Q.T

    ni = interest / np.linalg.norm(interest, axis=1, keepdims=True)
    nt = topics / np.linalg.norm(topics, axis=1, keepdims=True)
    match = (ni @ nt.T).astype(np.float32)  # [U, V] cosine in [0, 1]
    z = (
        -0.55
        + 1.6 * match
        + (1.4 * (quality - 0.5) - 0.3 * np.log(duration_s / 20.0)).astype(np.float32)[None, :]
        + (0.4 * affinity[:, creator]).astype(np.float32)
        + user_bias.astype(np.float32)[:, None]
        + 0.3 * rng.standard_normal((U, V), dtype=np.float32)
    )
    w_base = np.minimum(np.exp(z), W_MAX).astype(np.float32)
    return World(
        config=config,
        interest=interest,
        region=region,
        activity=activity,
        user_bias=user_bias,
        creator=creator,
        topics=topics,
        quality=quality,
        duration_s=duration_s,
        publish_day=publish_day,
        tags=tags,
        affinity=affinity,
        w_base=w_base,
    )


def histogram(w: np.ndarray) -> dict[str, float]:
    """Summary of watch ratios ``w`` (any shape): mean, p50, p90, p99, share >= 1."""
    flat = np.asarray(w, dtype=np.float64).ravel()
    p50, p90, p99 = np.percentile(flat, [50, 90, 99])
    return {
        "mean": float(flat.mean()),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "share_ge_1": float((flat >= 1.0).mean()),
    }


def histogram_line(w: np.ndarray, label: str = "true watch ratio") -> str:
    """One printable line plus a 10-bin text histogram of ``w`` (0..3, last bin 3+)."""
    h = histogram(w)
    edges = np.array([0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, np.inf])
    counts, _ = np.histogram(np.asarray(w).ravel(), bins=edges)
    share = counts / max(counts.sum(), 1)
    bars = " ".join(
        f"{lo:g}-{'' if np.isinf(hi) else f'{hi:g}'}:{s * 100:.0f}%"
        for lo, hi, s in zip(edges[:-1], edges[1:], share, strict=True)
    )
    return (
        f"{label}: mean {h['mean']:.2f}, p50 {h['p50']:.2f}, p90 {h['p90']:.2f}, "
        f"p99 {h['p99']:.2f}, share >= 1 {h['share_ge_1'] * 100:.1f}%\n    {bars}"
    )
