"""The statistics ledger: charges add up, persist, refuse past the budget, and never race past it.

How the file itself is opened, migrated and refused is tested in ``test_privacy_store.py``.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import stat
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from confide._errors import PolicyError
from confide.node._config import EpsilonDelta, PrivacyBudget
from confide.node._ledger import BudgetLike, Charge, PrivacyLedger, Spend
from confide.node._privacy_store import PrivacyStore

BUDGET = (2.0, 1e-5)


@contextmanager
def _ledger(path: Path, *, busy_timeout_s: float = 5.0) -> Iterator[PrivacyLedger]:
    with PrivacyStore(path, busy_timeout_s=busy_timeout_s) as store:
        yield PrivacyLedger(store)


def _charge(
    ledger: PrivacyLedger,
    task_id: str,
    epsilon: float,
    delta: float = 1e-6,
    *,
    researcher: str = "alice",
    dataset: str = "patients",
    budget: BudgetLike | tuple[float, float] | None = BUDGET,
) -> Spend:
    return ledger.charge(
        researcher=researcher, dataset=dataset, task_id=task_id, epsilon=epsilon, delta=delta, budget=budget
    )


def test_charges_add_up_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with _ledger(path) as ledger:
        _charge(ledger, "t1", 0.5)
        after = _charge(ledger, "t2", 0.75, 2e-6)

    with _ledger(path) as reopened:
        spent = reopened.spent("alice", "patients")
        history = reopened.history("alice", "patients")

    assert after == spent
    assert spent == Spend(epsilon=1.25, delta=3e-6, tasks=2)
    assert [(c.task_id, c.epsilon, c.delta) for c in history] == [("t1", 0.5, 1e-6), ("t2", 0.75, 2e-6)]
    assert all(isinstance(c, Charge) and c.at_ms > 1_600_000_000_000 for c in history)
    assert history[0].at_ms <= history[1].at_ms


def test_nothing_spent_is_zero(tmp_path: Path) -> None:
    with _ledger(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.spent("alice", "patients") == Spend(0.0, 0.0, 0)
        assert ledger.history("alice", "patients") == []


def test_refusal_says_what_remains_and_records_nothing(tmp_path: Path) -> None:
    with _ledger(tmp_path / "ledger.sqlite") as ledger:
        _charge(ledger, "t0", 1.75, 9e-6)

        with pytest.raises(PolicyError) as refused:
            _charge(ledger, "t1", 1.0)

        assert ledger.spent("alice", "patients") == Spend(1.75, 9e-6, 1)
    message = str(refused.value)
    assert "task t1 asks for epsilon 1.0" in message
    assert "researcher alice has 0.25 of 2.0 left on dataset patients" in message
    assert "(delta 1e-06 of 1e-05 left)" in message
    assert "ask for less or ask the hospital to raise the budget" in message


def test_delta_alone_can_exhaust_the_budget(tmp_path: Path) -> None:
    with _ledger(tmp_path / "ledger.sqlite") as ledger:
        _charge(ledger, "t0", 0.1, 8e-6)

        with pytest.raises(PolicyError, match=r"delta 2e-06 of 1e-05 left"):
            _charge(ledger, "t1", 0.1, 5e-6)


def test_the_exact_remainder_can_be_spent_despite_float_rounding(tmp_path: Path) -> None:
    with _ledger(tmp_path / "ledger.sqlite") as ledger:
        for i in range(10):
            _charge(ledger, f"t{i}", 0.1, 0.0, budget=(1.0, 1e-5))

        with pytest.raises(PolicyError, match=r"0\.0 of 1\.0 left"):
            _charge(ledger, "t10", 1e-9, 0.0, budget=(1.0, 1e-5))


def test_a_redelivered_task_is_charged_once(tmp_path: Path) -> None:
    with _ledger(tmp_path / "ledger.sqlite") as ledger:
        first = _charge(ledger, "t1", 1.5)

        again = _charge(ledger, "t1", 1.5)  # would exceed 2.0 if charged twice

        assert again == first == Spend(1.5, 1e-6, 1)
        assert len(ledger.history("alice", "patients")) == 1


def test_a_redelivered_task_is_not_refused_after_the_budget_shrank(tmp_path: Path) -> None:
    with _ledger(tmp_path / "ledger.sqlite") as ledger:
        _charge(ledger, "t1", 1.5)

        assert _charge(ledger, "t1", 1.5, budget=(1.0, 1e-5)) == Spend(1.5, 1e-6, 1)


def test_same_task_with_other_amounts_conflicts(tmp_path: Path) -> None:
    with _ledger(tmp_path / "ledger.sqlite") as ledger:
        _charge(ledger, "t1", 0.5)

        with pytest.raises(PolicyError, match=r"task t1 .*conflicts with the charge recorded.*epsilon 0.5"):
            _charge(ledger, "t1", 0.6)
        with pytest.raises(PolicyError, match="conflicts"):
            _charge(ledger, "t1", 0.5, 2e-6)

        assert ledger.spent("alice", "patients") == Spend(0.5, 1e-6, 1)


def test_each_researcher_and_dataset_has_its_own_budget(tmp_path: Path) -> None:
    with _ledger(tmp_path / "ledger.sqlite") as ledger:
        _charge(ledger, "t1", 2.0)
        _charge(ledger, "t1", 2.0, researcher="bob")
        _charge(ledger, "t1", 2.0, dataset="imaging")

        for who, what in [("alice", "patients"), ("bob", "patients"), ("alice", "imaging")]:
            assert ledger.spent(who, what) == Spend(2.0, 1e-6, 1)
        assert ledger.spent("bob", "imaging") == Spend(0.0, 0.0, 0)
        with pytest.raises(PolicyError, match=r"researcher bob has 0\.0 of 2\.0 left on dataset patients"):
            _charge(ledger, "t2", 0.1, researcher="bob")


def test_budget_from_the_policy_is_accepted(tmp_path: Path) -> None:
    policy_budget = PrivacyBudget(epsilon=1.0, delta=1e-5)
    with _ledger(tmp_path / "ledger.sqlite") as ledger:
        _charge(ledger, "t1", 1.0, budget=policy_budget.for_pair("alice", "patients"))

        with pytest.raises(PolicyError, match=r"0\.0 of 1\.0 left"):
            _charge(ledger, "t2", 0.5, budget=EpsilonDelta(epsilon=1.0, delta=1e-5))


def test_no_budget_refuses_differentially_private_tasks(tmp_path: Path) -> None:
    with _ledger(tmp_path / "ledger.sqlite") as ledger:
        with pytest.raises(PolicyError, match="this node has no privacy_budget in its policy; add one"):
            _charge(ledger, "t1", 0.1, budget=None)

        assert ledger.spent("alice", "patients").tasks == 0


@pytest.mark.parametrize(("epsilon", "delta"), [(0.0, 0.0), (-1.0, 0.0), (float("inf"), 0.0), (1.0, 1.0)])
def test_invalid_amounts_are_refused(tmp_path: Path, epsilon: float, delta: float) -> None:
    with _ledger(tmp_path / "ledger.sqlite") as ledger, pytest.raises(PolicyError, match="task t1"):
        _charge(ledger, "t1", epsilon, delta)


def _race(ledgers: list[PrivacyLedger], attempts: int) -> int:
    barrier = threading.Barrier(attempts)

    def attempt(i: int) -> bool:
        barrier.wait()
        try:
            _charge(ledgers[i % len(ledgers)], f"t{i}", 0.1, 0.0, budget=(1.0, 1e-5))
        except PolicyError:
            return False
        return True

    with ThreadPoolExecutor(attempts) as pool:
        return sum(pool.map(attempt, range(attempts)))


def test_threads_sharing_a_ledger_never_overspend(tmp_path: Path) -> None:
    with _ledger(tmp_path / "ledger.sqlite") as ledger:
        succeeded = _race([ledger], 20)

        assert succeeded == 10
        assert ledger.spent("alice", "patients").tasks == 10


def test_two_ledgers_on_one_file_never_overspend(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with _ledger(path) as one, _ledger(path) as two:
        succeeded = _race([one, two], 20)

        assert succeeded == 10
        assert one.spent("alice", "patients") == two.spent("alice", "patients")
        assert two.spent("alice", "patients").tasks == 10


def _charge_in_process(path: str, task_ids: list[str]) -> int:
    succeeded = 0
    with _ledger(Path(path)) as ledger:
        for task_id in task_ids:
            try:
                _charge(ledger, task_id, 0.1, 0.0, budget=(1.0, 1e-5))
            except PolicyError:
                continue
            succeeded += 1
    return succeeded


def test_processes_sharing_a_file_never_overspend(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    PrivacyStore(path).close()
    batches = [[f"p{p}-t{i}" for i in range(5)] for p in range(4)]

    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        succeeded = sum(pool.map(_charge_in_process, [str(path)] * 4, batches))

    assert succeeded == 10
    with _ledger(path) as ledger:
        assert ledger.spent("alice", "patients").tasks == 10


def test_file_is_private_to_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with _ledger(path) as ledger:
        _charge(ledger, "t1", 0.1)

        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}

    assert modes["ledger.sqlite"] == 0o600
    assert all(mode == 0o600 for mode in modes.values())  # the -wal and -shm files too


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = PrivacyStore(tmp_path / "ledger.sqlite")
    ledger = PrivacyLedger(store)
    store.close()
    store.close()

    with pytest.raises(ValueError, match="closed"):
        ledger.spent("alice", "patients")


def test_a_ledger_locked_too_long_by_another_process_refuses_saying_so(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with _ledger(path, busy_timeout_s=0.05) as ledger:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(PolicyError, match="is locked by another process; try the task again"):
                _charge(ledger, "t1", 0.1)
        finally:
            other.execute("ROLLBACK")
            other.close()

        assert _charge(ledger, "t1", 0.1).tasks == 1


def test_usable_from_another_thread(tmp_path: Path) -> None:
    with _ledger(tmp_path / "ledger.sqlite") as ledger, ThreadPoolExecutor(1) as pool:
        spend = pool.submit(_charge, ledger, "t1", 0.5).result()

        assert spend == ledger.spent("alice", "patients") == Spend(0.5, 1e-6, 1)
