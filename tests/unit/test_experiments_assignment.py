"""Experiment assignment and config: the committed vectors, the split, frozen phases."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter

import numpy as np
import pytest

from svc_rank.experiments import (
    Arm,
    Experiment,
    ExperimentConfigError,
    Experiments,
    RankingConfig,
    assign,
    bucket,
    srm_check,
)
from svc_rank.experiments.vectors import VECTORS_PATH, make_vectors, render

N_USERS = 100_000


def _independent_bucket(salt: str, unit: str) -> int:
    """The documented formula, written out again here (as another client would)."""
    return int.from_bytes(hashlib.sha256((salt + ":" + unit).encode("utf-8")).digest()[:8]) % 10000


def _arm_by_ranges(arms: list[dict[str, object]], b: int) -> str | None:
    upper = 0
    for arm in arms:
        upper += int(arm["share_bp"])  # type: ignore[call-overload]
        if b < upper:
            return str(arm["name"])
    return None


def test_committed_vectors_recompute() -> None:
    doc = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
    checked = 0
    for exp in doc["experiments"]:
        experiment = Experiment(
            exp["experiment_id"],
            exp["phase"],
            exp["salt"],
            tuple(Arm(a["name"], a["share_bp"]) for a in exp["arms"]),
        )
        for v in exp["vectors"]:
            assert v["salt"] == experiment.salt
            assert bucket(v["salt"], v["unit"]) == v["bucket"], v
            assert _independent_bucket(v["salt"], v["unit"]) == v["bucket"], v
            got = assign(experiment, v["unit"])
            assert (got.name if got else None) == v["arm"], v
            assert _arm_by_ranges(exp["arms"], v["bucket"]) == v["arm"], v
            checked += 1
    assert checked >= 90
    # Some vectors fall outside the partial experiment's 20 % (null arm).
    partial = [e for e in doc["experiments"] if e["experiment_id"] == "exp-partial"][0]
    assert any(v["arm"] is None for v in partial["vectors"])
    assert any(v["arm"] is not None for v in partial["vectors"])


def test_committed_vectors_are_what_the_code_generates() -> None:
    assert VECTORS_PATH.read_text(encoding="utf-8") == render(make_vectors())


def test_bucket_is_in_range_and_refuses_an_empty_unit() -> None:
    assert all(0 <= bucket("s", f"u{i}") < 10000 for i in range(1000))
    with pytest.raises(ValueError):
        bucket("s", "")


def _split(experiment: Experiment, n: int = N_USERS) -> Counter[str | None]:
    counts: Counter[str | None] = Counter()
    for i in range(n):
        arm = assign(experiment, f"user-{i}")
        counts[arm.name if arm else None] += 1
    return counts


@pytest.mark.parametrize(
    "shares",
    [
        {"control": 5000, "treatment": 5000},
        {"control": 3334, "b": 3333, "c": 3333},
        {"control": 1000, "treatment": 1000},  # 20 % enrolled, 80 % not
        {"control": 9000, "treatment": 1000},
    ],
)
def test_split_holds_within_one_percent_over_100k_users(shares: dict[str, int]) -> None:
    exp = Experiment.start("split-check", [Arm(n, s) for n, s in shares.items()])
    counts = _split(exp)
    for name, share_bp in shares.items():
        assert abs(counts[name] / N_USERS - share_bp / 10000) <= 0.01, (name, counts)
    assert abs(counts[None] / N_USERS - (1 - exp.enrolled_bp / 10000)) <= 0.01
    # The correct split passes the SRM check.
    assert not srm_check({k: v for k, v in counts.items() if k}, shares).flagged


def test_a_new_phase_rerandomises_users() -> None:
    p1 = Experiment.start("rerandomise", [Arm("control", 5000), Arm("treatment", 5000)])
    p2 = p1.next_phase()
    same = sum(
        (assign(p1, f"user-{i}") or p1.arms[0]).name == (assign(p2, f"user-{i}") or p2.arms[0]).name
        for i in range(20_000)
    )
    assert abs(same / 20_000 - 0.5) < 0.02  # independent of the previous phase


def test_experiment_is_frozen_and_next_phase_returns_a_new_one() -> None:
    control = Arm("control", 5000)
    treatment = Arm("treatment", 5000, RankingConfig.of(ranker_model_version="2"))
    exp = Experiment.start("ranker-v2", [control, treatment])
    assert (exp.phase, exp.salt, exp.control) == (1, "ranker-v2/p1", "control")
    with pytest.raises(dataclasses.FrozenInstanceError):
        exp.salt = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        exp.arms[0].share_bp = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        treatment.config.exploration_share = 0.5  # type: ignore[misc]
    reweighted = RankingConfig.of({"completion": 0.5, "affinity": 0.1})
    weights = reweighted.weights_map
    weights["completion"] = 99.0  # a copy: the config is unchanged
    assert reweighted.weights_map == {"affinity": 0.1, "completion": 0.5}
    assert RankingConfig.from_dict(reweighted.to_dict()) == reweighted
    assert control.config == RankingConfig() and control.config.to_dict() == {}

    v3 = RankingConfig.of(ranker_model_version="3", exploration_share=0.15)
    nxt = exp.next_phase(configs={"treatment": v3}, shares={"control": 4000, "treatment": 4000})
    assert (nxt.phase, nxt.salt) == (2, "ranker-v2/p2")
    assert nxt.arm("treatment").config == v3 and nxt.enrolled_bp == 8000
    assert exp.arm("treatment").config.ranker_model_version == "2"  # old phase untouched
    assert exp.phase == 1 and exp.enrolled_bp == 10000

    added = nxt.next_phase(add=[Arm("explore", 2000)], remove=["treatment"])
    assert [a.name for a in added.arms] == ["control", "explore"] and added.phase == 3
    with pytest.raises(ExperimentConfigError):
        exp.next_phase(salt=exp.salt)  # a new phase needs a new salt
    with pytest.raises(ExperimentConfigError):
        exp.next_phase(shares={"nope": 1})


@pytest.mark.parametrize(
    "build",
    [
        lambda: Experiment.start("x", [Arm("control", 10000)]),  # one arm
        lambda: Experiment.start("x", [Arm("a", 6000), Arm("b", 5000)]),  # > 100 %
        lambda: Experiment.start("x", [Arm("a", 5000), Arm("a", 5000)]),  # duplicate
        lambda: Experiment.start("x", [Arm("a", 5000), Arm("b", 5000)], control="c"),
        lambda: Experiment("x", 0, "s", (Arm("a", 1), Arm("b", 1))),  # phase 0
        lambda: Arm("a", 0),
        lambda: Arm("a", 50.5),  # type: ignore[arg-type]
        lambda: RankingConfig.of({"completion": -1.0}),
        lambda: RankingConfig.of({"completoin": 0.5}),  # typo: unknown term
        lambda: RankingConfig.of(exploration_share=1.0),
    ],
)
def test_invalid_configs_are_refused(build: object) -> None:
    with pytest.raises(ExperimentConfigError):
        build()  # type: ignore[operator]


def test_experiments_serve_the_first_enrolling_experiment_and_round_trip_json() -> None:
    first = Experiment.start("first", [Arm("control", 1000), Arm("treatment", 1000)])
    second = Experiment.start(
        "second", [Arm("control", 5000), Arm("fast", 5000, RankingConfig.of(exploration_share=0))]
    )
    running = Experiments.of([first, second])
    assert Experiments.from_json(json.dumps(running.to_dict())) == running
    by_exp: Counter[str] = Counter()
    for i in range(20_000):
        a = running.assignment(f"user-{i}")
        assert a is not None  # second enrolls everyone the first does not
        assert a.arm == (assign(a.experiment, f"user-{i}"))
        assert a.bucket == bucket(a.experiment.salt, f"user-{i}")
        by_exp[a.experiment.experiment_id] += 1
    assert abs(by_exp["first"] / 20_000 - 0.2) < 0.01
    assert running.assignment("") is None
    assert Experiments().assignment("user-1") is None
    with pytest.raises(ExperimentConfigError):
        Experiments.of([first, first.next_phase()])


def test_bucket_distribution_is_uniform() -> None:
    buckets = np.array([bucket("uniform", f"user-{i}") for i in range(N_USERS)])
    counts = np.bincount(buckets // 100, minlength=100)  # 100 bins of 100 buckets
    chi2 = float(((counts - N_USERS / 100) ** 2 / (N_USERS / 100)).sum())
    from svc_rank.experiments.stats import chi2_sf

    assert chi2_sf(chi2, 99) > 0.001
