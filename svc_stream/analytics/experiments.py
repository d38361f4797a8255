"""Experiment data for svc_rank's GetExperimentResults: per-user outcomes of one phase.

svc_rank owns the experiments (arms, shares, control) and their statistics; only
svc_stream opens the analytics store (chDB: one process per path). So svc_stream
answers the narrowest thing the statistics need: one row per exposed user of the
phase (``feed_exposures`` joined with ``video_events`` and ``engagement_events``
after that user's first exposure), as packed columns grouped by arm. The query and
the table are the data contract in :mod:`svc_rank.experiments.warehouse` (the
sink writes ``feed_exposures`` with its ``exposure_row``).
"""

from __future__ import annotations

from reels.v1 import stream_pb2

from reels.analytics import Analytics
from reels.exposures import PER_USER_SQL


async def experiment_data(
    store: Analytics, experiment_id: str, phase: int
) -> stream_pb2.GetExperimentDataResponse:
    """The exposed users of ``experiment_id``'s ``phase``, by arm (missing activity = 0)."""
    rows = await store.query_rows(PER_USER_SQL, {"experiment_id": experiment_id, "phase": phase})
    arms: dict[str, stream_pb2.ExperimentArmData] = {}
    for arm, _user, impressions, watch, completions, likes, pre in rows:
        a = arms.get(arm)
        if a is None:
            a = arms[arm] = stream_pb2.ExperimentArmData(arm=arm)
        a.impressions.append(int(impressions or 0))
        a.watch_seconds.append(float(watch or 0.0))
        a.completions.append(int(completions or 0))
        a.likes.append(int(likes or 0))
        a.pre_watch_seconds.append(float(pre or 0.0))
    return stream_pb2.GetExperimentDataResponse(arms=list(arms.values()))
