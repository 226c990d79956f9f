"""The node's privacy budget: releases and training rounds charged to one file, off the event loop.

A node upgraded in place keeps counting what it spent under an earlier confide: its v1
ledger's charges and the rounds of the DP-SGD accountant file it kept beside it.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from confide._errors import ConfigError, PolicyError
from confide.algorithms import TrainingCost, TrainingSpend
from confide.node import _budget
from confide.node._budget import PrivacyBudget
from confide.node._config import Policy
from confide.node._privacy_store import PrivacyStore
from tests.node.test_privacy_store import OLD_ROUNDS, _old_accountant, _read, _v1_ledger

DELTA = 1e-5
# One round as the old accountant recorded them: noise 1.5, rate 0.02, 50 steps.
ROUND_COST = TrainingCost(noise_multiplier=1.5, sample_rate=0.02, steps=50, rounds_left=1, delta=DELTA)


def _budget_at(directory: Path, epsilon: float = 10.0, **policy: object) -> PrivacyBudget:
    return PrivacyBudget(Policy(privacy_budget={"epsilon": epsilon, "delta": DELTA}, **policy), directory)  # type: ignore[arg-type]


async def _train(
    budget: PrivacyBudget, job_id: str, task_id: str = "t1", dataset: str = "scans"
) -> TrainingSpend:
    return await budget.charge_training(
        researcher="alice", task_id=task_id, dataset=dataset, job_id=job_id, round=0, cost=ROUND_COST
    )


async def test_a_release_is_charged_in_the_default_file_opened_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened_on: list[threading.Thread] = []

    def store(path: Path) -> PrivacyStore:
        opened_on.append(threading.current_thread())
        return PrivacyStore(path)

    monkeypatch.setattr(_budget, "PrivacyStore", store)
    budget = _budget_at(tmp_path)

    await budget.charge_release(researcher="alice", task_id="t1", dataset="patients", epsilon=0.5, delta=1e-6)
    budget.close()

    assert opened_on and opened_on[0] is not threading.main_thread()
    charges = _read(tmp_path / "privacy-ledger.sqlite")[2]
    assert [row[:5] for row in charges] == [("alice", "patients", "t1", 0.5, 1e-6)]


async def test_a_release_past_the_budget_is_refused_saying_what_is_left(tmp_path: Path) -> None:
    budget = _budget_at(tmp_path, epsilon=1.0)
    await budget.charge_release(researcher="alice", task_id="t1", dataset="patients", epsilon=0.75, delta=0)

    with pytest.raises(PolicyError, match=r"researcher alice has 0\.25 of 1\.0 left on dataset patients"):
        await budget.charge_release(
            researcher="alice", task_id="t2", dataset="patients", epsilon=0.5, delta=0
        )
    budget.close()


async def test_without_a_budget_in_the_policy_releases_are_refused(tmp_path: Path) -> None:
    budget = PrivacyBudget(Policy(), tmp_path)

    with pytest.raises(PolicyError, match="this node has no privacy_budget in its policy"):
        await budget.charge_release(
            researcher="alice", task_id="t1", dataset="patients", epsilon=0.1, delta=0
        )
    budget.close()


async def test_training_without_dp_needs_the_policy_to_allow_it(tmp_path: Path) -> None:
    no_dp = TrainingCost(noise_multiplier=None, sample_rate=0.1, steps=5, rounds_left=1, delta=DELTA)
    refusing, allowing = _budget_at(tmp_path), _budget_at(tmp_path, allow_training_without_dp=True)

    with pytest.raises(PolicyError, match="allow_training_without_dp: true"):
        await refusing.charge_training(
            researcher="alice", task_id="t1", dataset="scans", job_id="j", round=0, cost=no_dp
        )
    spend = await allowing.charge_training(
        researcher="alice", task_id="t1", dataset="scans", job_id="j", round=0, cost=no_dp
    )

    assert spend.job_epsilon == spend.dataset_epsilon == float("inf")
    assert not (tmp_path / "privacy-ledger.sqlite").exists()  # nothing to record


async def test_releases_and_training_rounds_share_one_file(tmp_path: Path) -> None:
    pytest.importorskip("opacus")
    ledger = tmp_path / "node-ledger.sqlite"
    budget = _budget_at(tmp_path, ledger=ledger)

    await budget.charge_release(researcher="alice", task_id="t1", dataset="scans", epsilon=0.5, delta=0)
    spend = await _train(budget, "job-1")
    budget.close()

    _, _, charges, steps = _read(ledger)
    assert len(charges) == 1
    assert [row[:3] for row in steps] == [("scans", "job-1/t1", 0)]
    assert 0 < spend.job_epsilon == spend.dataset_epsilon
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".sqlite") == ["node-ledger.sqlite"]


async def test_a_node_upgraded_in_place_still_counts_what_it_spent_before(tmp_path: Path) -> None:
    pytest.importorskip("opacus")
    from confide.learning import NoisySteps, epsilon_spent

    old_scans = [NoisySteps(s, q, n) for d, _, _, s, q, n, _, _ in OLD_ROUNDS if d == "scans"]
    one_round = NoisySteps(1.5, 0.02, 50)
    # Room for the two old rounds on scans and nothing more; one new round alone would fit.
    limit = epsilon_spent(old_scans, DELTA) * 1.01
    assert epsilon_spent([one_round], DELTA) < limit < epsilon_spent([*old_scans, one_round], DELTA)
    _v1_ledger(tmp_path / "privacy-ledger.sqlite", [("alice", "patients", "t0", limit - 0.05, 0.0, 1)])
    old = _old_accountant(tmp_path)
    budget = _budget_at(tmp_path, epsilon=limit)

    with pytest.raises(PolicyError, match=r"job job-3 would spend epsilon [\d.]+ more on dataset scans"):
        await _train(budget, "job-3")
    with pytest.raises(PolicyError, match=r"researcher alice has 0\.05 of"):
        await budget.charge_release(
            researcher="alice", task_id="t1", dataset="patients", epsilon=0.1, delta=0
        )
    await budget.charge_release(researcher="alice", task_id="t2", dataset="patients", epsilon=0.04, delta=0)
    await _train(budget, "job-3", dataset="xrays")  # no old rounds there: room left
    budget.close()

    assert not old.exists() and (tmp_path / "dpsgd-accountant.sqlite.imported").exists()
    _, version, charges, steps = _read(tmp_path / "privacy-ledger.sqlite")
    assert version == 3 and len(charges) == 2
    assert steps[:3] == OLD_ROUNDS and len(steps) == 4


def test_prepare_imports_the_accountant_and_a_broken_install_is_only_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(name: str) -> object:
        raise ImportError(f"no module named {name}")

    monkeypatch.setattr(_budget.importlib, "import_module", broken)

    _budget_at(tmp_path).prepare()

    assert "could not import the DP-SGD accountant" in caplog.text


async def test_a_foreign_file_at_policy_ledger_is_reported_on_first_use(tmp_path: Path) -> None:
    ledger = tmp_path / "hub.sqlite"
    with sqlite3.connect(ledger) as conn:
        conn.execute("CREATE TABLE tasks (id TEXT)")
    conn.close()
    budget = _budget_at(tmp_path, ledger=ledger)

    with pytest.raises(ConfigError, match="not a confide privacy ledger"):
        await budget.charge_release(
            researcher="alice", task_id="t1", dataset="patients", epsilon=0.1, delta=0
        )
