"""Experiment results from the exposures table (reels/exposures.py has the table, the
sink row and the per-user query): rows grouped by arm, then the analysis."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from reels.analytics import Analytics
from reels.exposures import (  # noqa: F401 - re-exported for callers of this module
    EXPOSURE_COLUMNS,
    EXPOSURES_DDL,
    PER_USER_SQL,
    PRE_PERIOD_DAYS,
    exposure_row,
)
from svc_rank.experiments.model import Experiment
from svc_rank.experiments.stats import ArmData, Results, analyze


def arm_data(rows: Iterable[Sequence[Any]]) -> dict[str, ArmData]:
    """Group :data:`PER_USER_SQL` rows by arm into ArmData (pre-period included)."""
    cols: dict[str, list[list[float]]] = defaultdict(lambda: [[], [], [], [], []])
    for arm, _user, impressions, watch, completions, likes, pre in rows:
        c = cols[arm]
        for i, value in enumerate((impressions, watch, completions, likes, pre)):
            c[i].append(float(value or 0))
    return {arm: ArmData.of(*c) for arm, c in cols.items()}


async def load_results(
    analytics: Analytics, experiment: Experiment, *, use_cuped: bool = False
) -> Results:
    """The results of one phase, read from ClickHouse (what the results RPC returns)."""
    rows = await analytics.query_rows(
        PER_USER_SQL,
        {"experiment_id": experiment.experiment_id, "phase": experiment.phase},
    )
    return analyze(experiment.shares, experiment.control, arm_data(rows), use_cuped=use_cuped)
