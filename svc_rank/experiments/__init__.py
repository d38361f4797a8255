"""A/B experiments on the feed's ranking (RECSYS.md, "Experiments (A/B)").

What GetFeed needs is one object, :class:`ExperimentArms` (svc_rank's ``ArmChooser``)::

    experiments = Experiments.load(path)                 # immutable; or Experiments.of([...])
    arms = ExperimentArms(experiments, ExposureRecorder(sessionmaker, redis),
                          default_weights=pipeline.default_weights)

    label, params = arms(user_id, forced)                # pure, before ranking
    ... rank with params (None: production ranking), build the page ...
    if page:                                             # the arm SERVED: log the exposure
        arms.served(user_id, label, request_id=request_id)   # background, never raises

Lower level: ``experiments.assignment(user_id) -> Assignment | None`` and
``recorder.record(experiment, arm, user_id, request_id=...) -> Outcome``.

Modules: ``model`` (Experiment, Arm, RankingConfig; next_phase), ``assignment`` (the
bucket function), ``vectors`` (its committed test vectors), ``serving`` (Experiments,
Assignment), ``arms`` (the pipeline hook), ``exposure`` (de-dup + FeedExposure via the
outbox), ``stats`` (Welch, SRM, CUPED, analyze), ``warehouse`` (ClickHouse table, sink
row, per-user query, load_results), ``results`` (GetExperimentResults: svc_stream's
per-user data -> analyze -> the RPC's answer), ``simulate`` (seeded outcome simulator with an
injectable effect).
"""

from svc_rank.experiments.arms import ExperimentArms
from svc_rank.experiments.assignment import arm_for_bucket, assign, bucket
from svc_rank.experiments.exposure import ExposureRecorder, Outcome, build_exposure
from svc_rank.experiments.model import (
    BUCKETS,
    Arm,
    Experiment,
    ExperimentConfigError,
    RankingConfig,
)
from svc_rank.experiments.serving import Assignment, Experiments
from svc_rank.experiments.stats import ArmData, Results, analyze, srm_check, welch

__all__ = [
    "BUCKETS",
    "Arm",
    "ArmData",
    "Assignment",
    "Experiment",
    "ExperimentArms",
    "ExperimentConfigError",
    "Experiments",
    "ExposureRecorder",
    "Outcome",
    "RankingConfig",
    "Results",
    "analyze",
    "arm_for_bucket",
    "assign",
    "bucket",
    "build_exposure",
    "srm_check",
    "welch",
]
