"""What GetFeed asks: which experiment arm (ranking config) serves this user, if any.

:class:`Experiments` holds the running experiment phases in priority order and is
immutable; a config change is a new ``Experiments`` (and, for a running experiment,
a new phase: :meth:`Experiment.next_phase`). A user is served by the first experiment
that enrolls them (each experiment's own buckets decide); users enrolled in none get
the production ranking. Each experiment's salt is independent, so within every
experiment the arms stay randomised; an experiment lower in the list simply sees the
users the ones above it did not enroll.

JSON form (a file or a string; ``{"experiments": [...]}``; YAML files alike)::

    {"experiments": [{"experiment_id": "ranker-v2", "phase": 1,
                      "salt": "ranker-v2/p1", "control": "control",
                      "arms": [{"name": "control", "share_bp": 500},
                               {"name": "treatment", "share_bp": 500,
                                "config": {"ranker_model_version": "2",
                                           "exploration_share": 0.1,
                                           "weights": {"completion": 0.4, ...}}}]}]}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from svc_rank.experiments.assignment import arm_for_bucket, bucket
from svc_rank.experiments.model import Arm, Experiment, ExperimentConfigError, RankingConfig


@dataclass(frozen=True)
class Assignment:
    """A user's arm in one experiment phase."""

    experiment: Experiment
    arm: Arm
    bucket: int

    @property
    def config(self) -> RankingConfig:
        """The ranking configuration to serve this user with."""
        return self.arm.config


@dataclass(frozen=True)
class Experiments:
    """The running experiment phases, in priority order."""

    running: tuple[Experiment, ...] = ()

    def __post_init__(self) -> None:
        ids = [e.experiment_id for e in self.running]
        if len(set(ids)) != len(ids):
            raise ExperimentConfigError(f"an experiment runs one phase at a time: {ids}")

    def assignment(self, user_id: str) -> Assignment | None:
        """The arm that serves ``user_id``, or None (production ranking, no exposure)."""
        if not user_id:
            return None
        for exp in self.running:
            b = bucket(exp.salt, user_id)
            arm = arm_for_bucket(exp, b)
            if arm is not None:
                return Assignment(exp, arm, b)
        return None

    def get(self, experiment_id: str) -> Experiment:
        for e in self.running:
            if e.experiment_id == experiment_id:
                return e
        raise KeyError(f"no running experiment {experiment_id!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Experiments:
        return cls(tuple(Experiment.from_dict(e) for e in d.get("experiments", [])))

    @classmethod
    def from_json(cls, text: str) -> Experiments:
        return cls.from_dict(json.loads(text) if text.strip() else {})

    @classmethod
    def from_yaml(cls, text: str) -> Experiments:
        import yaml  # only config files need it

        data = yaml.safe_load(text) if text.strip() else {}
        if not isinstance(data, dict):
            raise ExperimentConfigError("an experiments file holds a mapping {experiments: [...]}")
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> Experiments:
        """A JSON file, or YAML when the name ends in ``.yaml`` / ``.yml``."""
        p = Path(path)
        text = p.read_text()
        if p.suffix.lower() in (".yaml", ".yml"):
            return cls.from_yaml(text)
        return cls.from_json(text)

    @classmethod
    def of(cls, experiments: Sequence[Experiment]) -> Experiments:
        return cls(tuple(experiments))

    def to_dict(self) -> dict[str, Any]:
        return {"experiments": [e.to_dict() for e in self.running]}
