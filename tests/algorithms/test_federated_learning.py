"""``fl.train``'s plan step: the plan of a round, and a node that cannot take part saying why."""

from __future__ import annotations

import pytest

pytest.importorskip("opacus")

from confide._errors import ConfideError
from confide.algorithms.federated_learning import FL_TRAIN, PLAN
from confide.learning import build_model, vector_length
from confide.node import LocalData
from confide.node._config import TrainingDataConfig

DIGITS = TrainingDataConfig.model_validate({"name": "digits", "format": "mnist-5k", "limit": 600})
ROUND = {
    "job_id": "j1",
    "dataset": "digits",
    "model": "image.cnn28",
    "weights": "AA==",
    "parameters": vector_length(build_model("image.cnn28", {})),
    "round": 0,
    "rounds": 5,
}


def test_the_plan_gives_this_nodes_noise_for_the_whole_jobs_epsilon() -> None:
    plan = FL_TRAIN.run(LocalData([], [DIGITS]), {**ROUND, "epsilon": 2.0, "batch_size": 60}, PLAN)

    assert plan["n_train"] == 540 and plan["n_test"] == 60
    assert plan["steps"] == 9 and plan["sample_rate"] == pytest.approx(60 / 540)
    assert 0.5 < plan["noise_multiplier"] < 5


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"epsilon": 1e-9}, "no noise reaches epsilon 1e-09 at this node"),
        ({"epsilon": 1.0, "dataset": "scans"}, "no training data 'scans'; it offers: digits"),
    ],
)
def test_a_node_that_cannot_train_says_why_in_its_plan(change: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfideError) as refused:
        FL_TRAIN.run(LocalData([], [DIGITS]), {**ROUND, **change}, PLAN)

    assert problem in str(refused.value)


def test_a_parameter_count_that_is_not_the_models_is_refused_before_any_budget_is_spent() -> None:
    with pytest.raises(ConfideError, match="parameters, not the 1234 the task declares"):
        FL_TRAIN.run(LocalData([], [DIGITS]), {**ROUND, "epsilon": 1.0, "parameters": 1234}, PLAN)


def test_the_round_is_declared_by_the_task_so_a_node_that_cannot_plan_can_still_withdraw() -> None:
    params = FL_TRAIN.parse_params({**ROUND, "epsilon": 1.0, "parameters": 1234})

    (update,) = FL_TRAIN.secure_rounds(params, ["node-a", "node-b", "node-c"])

    assert update.label == "update" and update.length == 1234 + 6


def test_the_researcher_cannot_turn_off_the_nodes_secure_noise() -> None:
    from confide.learning import LocalTraining

    with pytest.raises(ConfideError, match="secure_noise"):
        FL_TRAIN.run(LocalData([], [DIGITS]), {**ROUND, "epsilon": 2.0, "secure_noise": False})
    assert LocalTraining(steps=1, batch_size=1, learning_rate=1.0).secure_noise
