"""The feed pipeline's hook: choose the arm for a request, log the exposure when it serves.

:class:`ExperimentArms` is svc_rank's ``ArmChooser`` (``svc_rank/server.py``:
``(user, forced arm or None) -> (label, RankingParams | None)``) plus ``served``::

    arms = ExperimentArms(experiments, ExposureRecorder(sessionmaker, redis),
                          default_weights=pipeline.default_weights)
    label, params = arms(user, forced)          # before ranking (pure, no I/O)
    ... build and return the page ...
    arms.served(user, label, request_id=..., scorer=...)  # after a non-empty page

The label names the arm: ``"<experiment_id>:<phase>:<arm>"`` ("" when the user is in
no experiment). A forced arm (``GetFeedRequest.experiment``: the full label,
``"<experiment_id>:<arm>"``, or a bare arm name that one running experiment has) is
served but never logged as an exposure unless it is the user's own assignment: forced
traffic is not randomised and must not enter the analysis. A label from a cached list
built under an earlier phase is not logged either (that phase no longer runs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from svc_rank.experiments.exposure import ExposureRecorder, Outcome
from svc_rank.experiments.model import Arm, Experiment, RankingConfig
from svc_rank.experiments.serving import Experiments


def label(experiment: Experiment, arm: Arm) -> str:
    """``"<experiment_id>:<phase>:<arm>"`` (ids and arm names never contain ':')."""
    return f"{experiment.experiment_id}:{experiment.phase}:{arm.name}"


def ranking_params(config: RankingConfig, default_weights: Any = None) -> Any:
    """svc_rank.feed.RankingParams for an arm's config (weights merged over the defaults).

    ``default_weights``: the service's ``rules.Weights`` (the pipeline's
    ``default_weights``); None: the seed weights. Imported lazily so the experiments
    package stays importable without the pipeline.
    """
    from svc_rank.feed import RankingParams
    from svc_rank.scorer import rules

    base = default_weights if default_weights is not None else rules.Weights()
    weights = rules.Weights.of({**base.as_dict(), **config.weights_map})
    return RankingParams(
        weights=weights,
        ranker_version=config.ranker_model_version,
        exploration_share=config.exploration_share,
    )


class ExperimentArms:
    """Arm choice for GetFeed / ExplainFeedItem, and exposure logging after a serve."""

    def __init__(
        self,
        experiments: Experiments,
        recorder: ExposureRecorder | None = None,
        *,
        default_weights: Any = None,
        to_params: Callable[[RankingConfig], Any] | None = None,
    ) -> None:
        self.experiments = experiments
        self.recorder = recorder
        self._to_params = to_params or (lambda c: ranking_params(c, default_weights))
        self._params: dict[RankingConfig, Any] = {}

    def params(self, config: RankingConfig) -> Any:
        """The pipeline's params for ``config`` (None for production ranking; cached)."""
        if config == RankingConfig():
            return None
        if config not in self._params:
            self._params[config] = self._to_params(config)
        return self._params[config]

    def resolve(self, forced: str) -> tuple[Experiment, Arm] | None:
        """The running experiment and arm a forced label names, or None."""
        parts = forced.split(":")
        found: list[tuple[Experiment, Arm]] = []
        for exp in self.experiments.running:
            for arm in exp.arms:
                if parts in (
                    [exp.experiment_id, str(exp.phase), arm.name],
                    [exp.experiment_id, arm.name],
                    [arm.name],
                ):
                    found.append((exp, arm))
        return found[0] if len(found) == 1 else None

    def __call__(self, user: str, forced: str | None) -> tuple[str, Any]:
        if forced:
            hit = self.resolve(forced)
            if hit is not None:
                return label(*hit), self.params(hit[1].config)
        a = self.experiments.assignment(user)
        if a is None:
            return "", None
        return label(a.experiment, a.arm), self.params(a.config)

    def exposure_for(self, user: str, served_label: str) -> tuple[Experiment, Arm] | None:
        """What to log for a page served under ``served_label``: the user's own
        assignment in a running phase, else None (not in an experiment, forced, stale)."""
        if not served_label:
            return None
        a = self.experiments.assignment(user)
        if a is None or label(a.experiment, a.arm) != served_label:
            return None
        return a.experiment, a.arm

    def served(
        self, user: str, served_label: str, *, request_id: str = "", scorer: str = ""
    ) -> asyncio.Task[Outcome] | None:
        """Log the exposure of a page that was served (in the background; never raises).
        ``scorer``: what ranked the page, as GetFeed's ``scorer`` (``"ranker:2"``,
        ``"rules"``); the event's ``ranker_model_version`` (exposure module docstring)."""
        hit = self.exposure_for(user, served_label)
        if hit is None or self.recorder is None:
            return None
        return self.recorder.record_soon(hit[0], hit[1], user, request_id=request_id, served=scorer)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], recorder: ExposureRecorder | None = None, **kwargs: Any
    ) -> ExperimentArms:
        return cls(Experiments.from_dict(dict(config)), recorder, **kwargs)
