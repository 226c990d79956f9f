"""FedAvg through hub and nodes: DP-SGD at each node, updates summed securely, budgets enforced."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("opacus")
# Each test trains through a hub and three node processes' workers: minutes on 2 busy cores.
pytestmark = pytest.mark.timeout(600)

from confide._errors import TaskError  # noqa: E402
from confide.fl import RoundResult, TrainingPlan, train  # noqa: E402
from confide.learning import MNIST_MEAN_STD, load_mnist_5k, normalise  # noqa: E402
from tests.conftest import COLLABORATION, InProcessConsortium  # noqa: E402

SMALL_CNN = {"channels": [4, 8], "hidden": 16}


def _digits(node_id: str, index: int, folder: Path) -> list[dict[str, Any]]:
    """Each of three nodes holds one IID third of 1,800 images drawn from the MNIST 5k sample."""
    return [
        {
            "name": "digits",
            "format": "mnist-5k",
            "limit": 1800,
            "normalise": "mnist",
            "test_fraction": 0.2,
            "partition": {"parts": 3, "index": index},
        }
    ]


def _consortium(tmp_path: Path, budget: float) -> InProcessConsortium:
    return InProcessConsortium(
        tmp_path / "consortium",
        training=_digits,
        policy={"privacy_budget": {"epsilon": budget, "delta": 1e-5}},
    )


@pytest.fixture
def digits(tmp_path: Path) -> Iterator[InProcessConsortium]:
    c = _consortium(tmp_path, budget=10.0)
    try:
        yield c.start()
    finally:
        c.close()


def _plan(**changes: Any) -> TrainingPlan:
    settings: dict[str, Any] = {
        "dataset": "digits",
        "model_config": SMALL_CNN,
        "rounds": 3,
        "epsilon": 4.0,
        "delta": 1e-5,
        "batch_size": 64,
        "local_steps": 12,
        "learning_rate": 1.0,
        "timeout_s": 120,
    }
    return TrainingPlan.model_validate({**settings, **changes})


def test_fedavg_with_dp_sgd_learns_and_reports_the_epsilon_each_node_spent(
    digits: InProcessConsortium, tmp_path: Path
) -> None:
    # The researcher's own test set: the images the nodes' 1,800 were not drawn from.
    drawn = np.random.default_rng(0).permutation(5000)[:1800]
    test_set = normalise(load_mnist_5k(), *MNIST_MEAN_STD).subset(np.setdiff1d(np.arange(5000), drawn))
    seen: list[RoundResult] = []
    with digits.client() as client:
        result = train(
            client, COLLABORATION, _plan(), test_set=test_set, progress=lambda r, _: seen.append(r)
        )

    assert [r.round for r in seen] == [0, 1, 2]
    assert all(r.participants == ("node-a", "node-b", "node-c") for r in seen)
    assert seen[0].samples == 3 * 480
    # The first round evaluates the untrained model: about chance; training improves it.
    first, final = seen[0].evaluation, result.federated
    assert first is not None and final is not None
    assert final.samples == 360
    assert final.accuracy > first.accuracy + 0.2
    assert result.researcher is not None and result.researcher.accuracy > 0.4
    # Every node spent no more than the target over the whole job, and most of it.
    assert set(result.epsilon) == {"node-a", "node-b", "node-c"}
    for spent in result.epsilon.values():
        assert 3.0 < spent <= 4.0 * (1 + 1e-6)
    assert all(s is not None and s > 0 for s in result.noise_multiplier.values())


def test_a_stopped_coordinator_resumes_from_its_checkpoint(
    digits: InProcessConsortium, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "run"

    def stop_after_first(finished: RoundResult, plan: TrainingPlan) -> None:
        if finished.round == 0:
            raise KeyboardInterrupt

    with digits.client() as client:
        with pytest.raises(KeyboardInterrupt):
            train(client, COLLABORATION, _plan(rounds=2), checkpoint=checkpoint, progress=stop_after_first)
        resumed: list[int] = []
        result = train(
            client,
            COLLABORATION,
            _plan(rounds=2),
            checkpoint=checkpoint,
            progress=lambda r, _: resumed.append(r.round),
        )
        with pytest.raises(Exception, match="other settings \\(rounds differ\\)"):
            train(client, COLLABORATION, _plan(rounds=5), checkpoint=checkpoint)

    assert resumed == [1]
    assert [r.round for r in result.rounds] == [0, 1]
    assert sorted(p.name for p in checkpoint.iterdir()) == ["job.json", "model-round-00001.safetensors"]


def test_a_job_past_the_budget_is_refused_saying_how_much_is_left(tmp_path: Path) -> None:
    # Two jobs of epsilon 2 (2 steps each) compose (RDP) to 2.35: past a budget of 2.2.
    consortium = _consortium(tmp_path, budget=2.2).start()
    try:
        with consortium.client() as client:
            first = train(client, COLLABORATION, _plan(rounds=1, epsilon=2.0, local_steps=2))
            with pytest.raises(TaskError, match=r"epsilon left") as refused:
                train(client, COLLABORATION, _plan(rounds=1, epsilon=2.0, local_steps=2))
    finally:
        consortium.close()

    assert all(1.5 < e <= 2.0 for e in first.epsilon.values())
    assert "node-a" in str(refused.value) and "policy.privacy_budget" in str(refused.value)


def test_training_without_dp_needs_the_policy_to_allow_it(digits: InProcessConsortium) -> None:
    with digits.client() as client, pytest.raises(TaskError, match="allow_training_without_dp"):
        train(client, COLLABORATION, _plan(rounds=1, epsilon=math.inf, local_steps=1))


def test_the_scattering_model_trains_through_hub_and_nodes(digits: InProcessConsortium) -> None:
    # The fixed scattering runs once in each node's worker and in the researcher's process,
    # then only GroupNorm and the linear layer travel (sealed, summed securely) and learn.
    drawn = np.random.default_rng(0).permutation(5000)[:1800]
    held = np.setdiff1d(np.arange(5000), drawn)[:500]
    test_set = normalise(load_mnist_5k(), *MNIST_MEAN_STD).subset(held)
    plan = _plan(
        model="image.scatter28",
        model_config={},
        rounds=2,
        epsilon=2.0,
        batch_size=128,
        local_steps=8,
        learning_rate=2.0,
        momentum=0.9,
        clip_norm=0.1,
    )
    with digits.client() as client:
        result = train(client, COLLABORATION, plan, test_set=test_set)

    assert result.federated is not None and result.federated.accuracy > 0.7
    assert result.researcher is not None and result.researcher.accuracy > 0.7
    assert set(result.model().state_dict()) == {"1.weight", "1.bias", "3.weight", "3.bias"}
    for spent in result.epsilon.values():
        assert 1.5 < spent <= 2.0 * (1 + 1e-6)
