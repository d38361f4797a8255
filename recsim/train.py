"""One training run: world -> biased logs -> learned ranker + tuned formula weights.

Shared by ``recsim.evaluate`` (per world seed) and ``models/build_ranker.py``
(the model Triton serves), so both train exactly the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from recsim import policies
from recsim.dataset import Catalog, training_set
from recsim.logs import EventLog, simulate_logs
from recsim.ranker import Ranker, train_ranker
from recsim.world import World, WorldConfig, make_world

LABEL_WINDOW = 7
"""Label days T-6..T: days T-6..T-1 train the ranker, day T stops it early; the
formula's weights are grid-searched on all seven."""


@dataclass
class Fitted:
    """A trained world: ground truth (for evaluation only), logs and both scorers."""

    world: World
    log: EventLog
    catalog: Catalog
    ranker: Ranker
    tuned_weights: tuple[float, ...]
    tuned_objective: float
    train_rows: int
    valid_rows: int


def fit(config: WorldConfig) -> Fitted:
    """Simulate ``config``'s world and logs, then train the ranker and tune the formula.

    Same config (seed included) -> same logs, same ranker weights, same weights.
    """
    world = make_world(config)
    log = simulate_logs(world)
    catalog = Catalog.of(world)
    T = config.days
    data = training_set(catalog, log, range(max(2, T - LABEL_WINDOW + 1), T + 1))
    train = data.subset(data.day < T)
    valid = data.subset(data.day == T)
    ranker = train_ranker(train, valid, seed=config.seed)
    weights, objective = policies.tune_formula(data)
    return Fitted(world, log, catalog, ranker, weights, objective, len(train.y), len(valid.y))
