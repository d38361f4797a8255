"""Experiments as values: an immutable experiment, its arms and their ranking configs.

An :class:`Experiment` is ``(experiment_id, phase, salt, arms, control)`` and never
changes while it runs: every field is frozen, and arms are a tuple. Changing anything
that affects who sees what (an arm's ranking config, a share, adding or removing an
arm) is :meth:`Experiment.next_phase`, which returns a *new* experiment with
``phase + 1`` and a new salt. The new salt re-randomises users, so the exposures and
outcomes of one phase are never mixed with another's (a phase is analysed alone).

Shares are in basis points (1 bp = 0.01 % of traffic, 10000 = everyone). Arms take
consecutive bucket ranges in their declared order; buckets past the sum of shares are
not enrolled (they get the production ranking and log no exposure). See
:mod:`svc_rank.experiments.assignment` for the bucket function.

An arm is a *ranking configuration* (:class:`RankingConfig`): overrides of the rule
scorer's weights, the learned ranker's model version ("" = rule scorer only) and the
exploration share of each page; whatever it leaves None is the service's setting.
svc_rank's pipeline reads it from the assigned arm (:mod:`svc_rank.experiments.arms`).

Pure: no I/O. ``Experiment.from_dict`` / ``to_dict`` are the JSON form (config files,
test vectors).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

BUCKETS = 10_000
"""Buckets per experiment: shares are basis points of traffic."""

WEIGHT_TERMS = ("completion", "engagement", "affinity", "deep_model")
"""The rule scorer's terms (the seed formula, RECSYS.md "Feed") an arm may re-weight."""


class ExperimentConfigError(ValueError):
    """An experiment, arm or ranking configuration that cannot run as given."""


@dataclass(frozen=True)
class RankingConfig:
    """What an arm changes in ranking: overrides of the service's settings. Immutable.

    Every field left at None is the service's own setting, so the default
    ``RankingConfig()`` is production ranking (the usual control arm).

    * ``weights``: rule-scorer weights as sorted ``(term, weight)`` pairs, terms among
      :data:`WEIGHT_TERMS`; a partial set overrides only those terms
      (``weights_map`` gives a dict copy);
    * ``ranker_model_version``: the learned ranker's version in Triton to call;
      ``""`` pins the rule scorer alone;
    * ``exploration_share``: fraction of each page from outside the user's interests,
      in [0, 1).
    """

    weights: tuple[tuple[str, float], ...] | None = None
    ranker_model_version: str | None = None
    exploration_share: float | None = None

    def __post_init__(self) -> None:
        if self.weights is not None:
            given = list(
                self.weights.items() if isinstance(self.weights, Mapping) else self.weights
            )
            pairs = tuple(sorted((str(k), float(v)) for k, v in given))
            names = [k for k, _ in pairs]
            if len(set(names)) != len(names):
                raise ExperimentConfigError(f"duplicate weight names in {given!r}")
            unknown = set(names) - set(WEIGHT_TERMS)
            if unknown:
                raise ExperimentConfigError(f"unknown weight terms {sorted(unknown)}")
            if any(not v >= 0 for _, v in pairs):
                raise ExperimentConfigError(f"weights must be >= 0: {dict(pairs)}")
            object.__setattr__(self, "weights", pairs)
        if self.exploration_share is not None and not 0.0 <= self.exploration_share < 1.0:
            raise ExperimentConfigError(
                f"exploration_share must be in [0, 1), got {self.exploration_share}"
            )

    @classmethod
    def of(
        cls,
        weights: Mapping[str, float] | None = None,
        ranker_model_version: str | None = None,
        exploration_share: float | None = None,
    ) -> RankingConfig:
        """Build from a mapping of weights (None everywhere: the service's settings)."""
        w = tuple(weights.items()) if weights is not None else None
        return cls(w, ranker_model_version, exploration_share)

    @property
    def weights_map(self) -> dict[str, float]:
        """The overridden weights as a fresh dict ({} when none are)."""
        return dict(self.weights or ())

    @property
    def ranker_label(self) -> str:
        """What the arm pins, for the exposure event: "" (the service's ranker setting),
        ``"rules"`` (rule scorer alone) or the model version."""
        if self.ranker_model_version is None:
            return ""
        return self.ranker_model_version or "rules"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.weights is not None:
            out["weights"] = self.weights_map
        if self.ranker_model_version is not None:
            out["ranker_model_version"] = self.ranker_model_version
        if self.exploration_share is not None:
            out["exploration_share"] = self.exploration_share
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RankingConfig:
        version = d.get("ranker_model_version")
        share = d.get("exploration_share")
        return cls.of(
            d.get("weights"),
            None if version is None else str(version),
            None if share is None else float(share),
        )


@dataclass(frozen=True)
class Arm:
    """One arm: a name, its share of traffic in basis points, its ranking config."""

    name: str
    share_bp: int
    config: RankingConfig = field(default_factory=RankingConfig)

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name:
            raise ExperimentConfigError(f"arm name must be non-empty without ':': {self.name!r}")
        if isinstance(self.share_bp, bool) or not isinstance(self.share_bp, int):
            raise ExperimentConfigError(f"share_bp must be an int (basis points): {self.share_bp}")
        if not 0 < self.share_bp <= BUCKETS:
            raise ExperimentConfigError(f"arm {self.name}: share_bp must be in 1..{BUCKETS}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "share_bp": self.share_bp, "config": self.config.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Arm:
        return cls(str(d["name"]), int(d["share_bp"]), RankingConfig.from_dict(d.get("config", {})))


def default_salt(experiment_id: str, phase: int) -> str:
    """The salt of a phase unless one is given: ``"<experiment_id>/p<phase>"``.

    Deterministic, so every client derives it from the config; different per phase,
    so each phase re-randomises users."""
    return f"{experiment_id}/p{phase}"


@dataclass(frozen=True)
class Experiment:
    """An immutable experiment phase. ``control`` defaults to the first arm."""

    experiment_id: str
    phase: int
    salt: str
    arms: tuple[Arm, ...]
    control: str = ""

    def __post_init__(self) -> None:
        arms = tuple(self.arms)
        object.__setattr__(self, "arms", arms)
        if not self.experiment_id or ":" in self.experiment_id:
            raise ExperimentConfigError(
                f"experiment_id must be non-empty without ':': {self.experiment_id!r}"
            )
        if self.phase < 1:
            raise ExperimentConfigError(f"phase starts at 1, got {self.phase}")
        if not self.salt:
            raise ExperimentConfigError("salt must not be empty")
        if len(arms) < 2:
            raise ExperimentConfigError("an experiment needs at least two arms (control + one)")
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise ExperimentConfigError(f"duplicate arm names: {names}")
        total = sum(a.share_bp for a in arms)
        if total > BUCKETS:
            raise ExperimentConfigError(f"shares sum to {total} bp > {BUCKETS}")
        control = self.control or arms[0].name
        if control not in names:
            raise ExperimentConfigError(f"control {control!r} is not an arm ({names})")
        object.__setattr__(self, "control", control)

    @classmethod
    def start(
        cls, experiment_id: str, arms: Sequence[Arm], *, control: str = "", salt: str = ""
    ) -> Experiment:
        """Phase 1 of a new experiment (salt: :func:`default_salt` unless given)."""
        return cls(experiment_id, 1, salt or default_salt(experiment_id, 1), tuple(arms), control)

    @property
    def enrolled_bp(self) -> int:
        """Basis points of traffic in the experiment (the sum of the arms' shares)."""
        return sum(a.share_bp for a in self.arms)

    @property
    def shares(self) -> dict[str, int]:
        """``{arm name: share_bp}`` in arm order."""
        return {a.name: a.share_bp for a in self.arms}

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(f"{self.experiment_id} has no arm {name!r}")

    def next_phase(
        self,
        *,
        configs: Mapping[str, RankingConfig] | None = None,
        shares: Mapping[str, int] | None = None,
        add: Sequence[Arm] = (),
        remove: Sequence[str] = (),
        control: str | None = None,
        salt: str | None = None,
    ) -> Experiment:
        """The next phase with the changes applied; ``self`` is untouched.

        ``configs``/``shares`` replace an existing arm's ranking config / share,
        ``add`` appends arms, ``remove`` drops arms by name. With no change at all the
        next phase only re-randomises (a new salt), e.g. after a broken split was fixed.
        """
        by_name = {a.name: a for a in self.arms}
        unknown = (set(configs or ()) | set(shares or ()) | set(remove)) - set(by_name)
        if unknown:
            raise ExperimentConfigError(f"no such arms in {self.experiment_id}: {sorted(unknown)}")
        arms: list[Arm] = []
        for a in self.arms:
            if a.name in remove:
                continue
            if configs and a.name in configs:
                a = replace(a, config=configs[a.name])
            if shares and a.name in shares:
                a = replace(a, share_bp=int(shares[a.name]))
            arms.append(a)
        arms.extend(add)
        new_control = control if control is not None else self.control
        if new_control in remove and control is None:
            new_control = ""
        phase = self.phase + 1
        new_salt = salt or default_salt(self.experiment_id, phase)
        if new_salt == self.salt:
            raise ExperimentConfigError("a new phase needs a new salt")
        return Experiment(
            self.experiment_id,
            phase,
            new_salt,
            tuple(arms),
            new_control,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment_id": self.experiment_id,
            "phase": self.phase,
            "salt": self.salt,
            "control": self.control,
            "arms": [a.to_dict() for a in self.arms],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Experiment:
        phase = int(d.get("phase", 1))
        eid = str(d["experiment_id"])
        return cls(
            eid,
            phase,
            str(d.get("salt") or default_salt(eid, phase)),
            tuple(Arm.from_dict(a) for a in d["arms"]),
            str(d.get("control", "")),
        )
