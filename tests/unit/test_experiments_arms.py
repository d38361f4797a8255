"""The pipeline hook: arm choice (pure) and which serves become exposures."""

from __future__ import annotations

from collections import Counter

from svc_rank.experiments import (
    Arm,
    Experiment,
    ExperimentArms,
    Experiments,
    RankingConfig,
    assign,
)
from svc_rank.experiments.arms import label, ranking_params
from svc_rank.feed import RankingParams
from svc_rank.scorer import rules

V2 = RankingConfig.of({"affinity": 0.35}, ranker_model_version="2", exploration_share=0.2)
EXP = Experiment.start("ranker-v2", [Arm("control", 5000), Arm("treatment", 5000, V2)])


def test_users_get_their_arm_and_its_params() -> None:
    service_weights = rules.Weights(0.5, 0.2, 0.2, 0.1)
    arms = ExperimentArms(Experiments.of([EXP]), default_weights=service_weights)
    seen: Counter[str] = Counter()
    for i in range(2000):
        user = f"user-{i}"
        got_label, params = arms(user, None)
        arm = assign(EXP, user)
        assert arm is not None and got_label == f"ranker-v2:1:{arm.name}"
        if arm.name == "control":
            assert params is None  # production ranking, untouched
        else:
            assert params == RankingParams(
                weights=rules.Weights(0.5, 0.2, 0.35, 0.1),  # affinity overridden only
                ranker_version="2",
                exploration_share=0.2,
            )
        seen[arm.name] += 1
    assert abs(seen["treatment"] / 2000 - 0.5) < 0.05
    assert ExperimentArms(Experiments())("user-1", None) == ("", None)


def test_rules_only_arm_pins_the_rule_scorer() -> None:
    params = ranking_params(RankingConfig.of(ranker_model_version=""))
    assert params.ranker_version == "" and params.weights == rules.Weights()
    assert RankingConfig.of(ranker_model_version="").ranker_label == "rules"
    assert RankingConfig().ranker_label == "" and V2.ranker_label == "2"


def test_forced_arms_are_served_but_never_exposures() -> None:
    arms = ExperimentArms(Experiments.of([EXP]))
    user = next(
        f"u{i}" for i in range(100) if (assign(EXP, f"u{i}") or EXP.arms[0]).name == "control"
    )
    for forced in ("ranker-v2:1:treatment", "ranker-v2:treatment", "treatment"):
        got, params = arms(user, forced)
        assert got == "ranker-v2:1:treatment" and params is not None
        assert arms.exposure_for(user, got) is None  # not the user's assignment
    own, _ = arms(user, "control")
    assert arms.exposure_for(user, own) == (EXP, EXP.arm("control"))
    assert arms(user, "no-such-arm") == arms(user, None)  # unknown: normal assignment
    assert arms.served(user, own) is None  # no recorder: nothing to do


def test_a_stale_phase_label_is_not_an_exposure() -> None:
    user = "user-42"
    old = label(EXP, assign(EXP, user) or EXP.arms[0])
    new_phase = EXP.next_phase()
    arms = ExperimentArms(Experiments.of([new_phase]))
    assert arms.exposure_for(user, old) is None  # list cached under phase 1
    current, _ = arms(user, None)
    assert current.startswith("ranker-v2:2:")
    assert arms.exposure_for(user, current) is not None
    assert arms.exposure_for(user, "") is None
