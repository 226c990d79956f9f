"""The node's DP-SGD accountant: one history per dataset, kept across jobs, enforcing the budget.

It is the ``noisy_steps`` table of the node's privacy file; how that file is opened,
migrated and refused is tested in ``test_privacy_store.py``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("opacus")

from confide._errors import PolicyError
from confide.learning import NoisySteps, epsilon_spent
from confide.node._ledger import PrivacyLedger
from confide.node._privacy_store import PrivacyStore
from confide.node._training_ledger import TrainingLedger

DELTA = 1e-5
ROUND = NoisySteps(noise_multiplier=1.5, sample_rate=0.02, steps=50)  # epsilon 0.62 at DELTA


@dataclass(frozen=True)
class Budget:
    epsilon: float
    delta: float


BUDGET = Budget(3.0, DELTA)


@contextmanager
def _accountant(path: Path, *, busy_timeout_s: float = 5.0) -> Iterator[TrainingLedger]:
    with PrivacyStore(path, busy_timeout_s=busy_timeout_s) as store:
        yield TrainingLedger(store)


def _charge(acc: TrainingLedger, job: str, rnd: int, spent: NoisySteps = ROUND, **kw: object) -> float:
    args: dict[str, object] = {"dataset": "scans", "budget": BUDGET} | kw
    return acc.charge(job_id=job, round=rnd, spent=spent, **args)  # type: ignore[arg-type]


def test_history_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "accountant.sqlite"
    with _accountant(path) as acc:
        _charge(acc, "job-1", 0, researcher="alice")
        after = _charge(acc, "job-2", 0, researcher="bob")

    with _accountant(path) as reopened:
        history = reopened.history("scans")
        rounds = reopened.rounds("scans")
        spent = reopened.epsilon_spent("scans", DELTA)

    assert history == [ROUND, ROUND]
    assert [(r.job_id, r.round, r.researcher) for r in rounds] == [("job-1", 0, "alice"), ("job-2", 0, "bob")]
    assert spent == pytest.approx(after) and spent == pytest.approx(epsilon_spent([ROUND, ROUND], DELTA))


def test_datasets_are_accounted_separately(tmp_path: Path) -> None:
    with _accountant(tmp_path / "a.sqlite") as acc:
        _charge(acc, "job-1", 0, dataset="scans")

        assert acc.history("labs") == [] and acc.epsilon_spent("labs", DELTA) == 0.0
        assert acc.history("scans") == [ROUND]


def test_a_plan_over_budget_is_refused_saying_what_is_left(tmp_path: Path) -> None:
    with _accountant(tmp_path / "a.sqlite") as acc:
        _charge(acc, "job-1", 0)
        spent = acc.epsilon_spent("scans", DELTA)
        big = NoisySteps(1.1, 0.05, 2000)

        with pytest.raises(PolicyError) as refused:
            acc.check(dataset="scans", job_id="job-2", planned=[big], budget=BUDGET)

    left = float(f"{3.0 - spent:.3g}")
    assert f"has {left!r} of 3.0 epsilon left" in str(refused.value)
    assert re.search(r"job job-2 would spend epsilon [\d.]+ more on dataset scans", str(refused.value))


def test_a_plan_within_budget_returns_the_epsilon_after_it(tmp_path: Path) -> None:
    with _accountant(tmp_path / "a.sqlite") as acc:
        _charge(acc, "job-1", 0)

        after = acc.check(dataset="scans", job_id="job-2", planned=[ROUND, ROUND], budget=BUDGET)

        assert after == pytest.approx(epsilon_spent([ROUND] * 3, DELTA))
        assert acc.history("scans") == [ROUND]  # checking records nothing


def test_a_charge_past_the_budget_is_refused_and_records_nothing(tmp_path: Path) -> None:
    with _accountant(tmp_path / "a.sqlite") as acc:
        charged, heavy = 0, NoisySteps(1.1, 0.05, 50)  # epsilon 2.58, two of them 3.31
        with pytest.raises(PolicyError, match="epsilon left"):
            for rnd in range(10):
                _charge(acc, "job-1", rnd, heavy)
                charged += 1

        assert charged == 1
        assert len(acc.history("scans")) == charged
        assert acc.epsilon_spent("scans", DELTA) <= 3.0


def test_a_redelivered_round_is_charged_once(tmp_path: Path) -> None:
    with _accountant(tmp_path / "a.sqlite") as acc:
        first = _charge(acc, "job-1", 0)
        again = _charge(acc, "job-1", 0)

        assert first == again and acc.history("scans") == [ROUND]
        with pytest.raises(PolicyError, match="cannot change its noise"):
            _charge(acc, "job-1", 0, NoisySteps(0.5, 0.05, 50))


def test_no_budget_refuses_and_no_dp_needs_an_infinite_budget(tmp_path: Path) -> None:
    with _accountant(tmp_path / "a.sqlite") as acc:
        with pytest.raises(PolicyError, match="no privacy_budget in its policy"):
            acc.check(dataset="scans", job_id="j", planned=[ROUND], budget=None)
        with pytest.raises(PolicyError, match="no differential privacy"):
            acc.check(dataset="scans", job_id="j", planned=None, budget=BUDGET)

        assert acc.check(
            dataset="scans", job_id="j", planned=None, budget=Budget(float("inf"), DELTA)
        ) == float("inf")


def test_two_handles_cannot_both_spend_the_last_of_a_budget(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    # A budget with room for exactly one more round after the first.
    budget = Budget(epsilon_spent([ROUND, ROUND], DELTA) * 1.0001, DELTA)
    with _accountant(path) as acc:
        _charge(acc, "job-0", 0, budget=budget)
    stores = [PrivacyStore(path, busy_timeout_s=30) for _ in range(2)]
    handles = [TrainingLedger(store) for store in stores]
    outcomes: list[str] = []

    def spend(acc: TrainingLedger, job: str) -> None:
        try:
            _charge(acc, job, 0, budget=budget)
            outcomes.append("charged")
        except PolicyError:
            outcomes.append("refused")

    threads = [threading.Thread(target=spend, args=(h, f"job-{i + 1}")) for i, h in enumerate(handles)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for store in stores:
        store.close()

    assert sorted(outcomes) == ["charged", "refused"]
    with _accountant(path) as acc:
        assert len(acc.history("scans")) == 2


def test_the_statistics_ledger_and_the_accountant_share_one_file_and_keep_apart(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with PrivacyStore(path) as store:
        statistics, training = PrivacyLedger(store), TrainingLedger(store)
        statistics.charge(
            researcher="alice", dataset="scans", task_id="t1", epsilon=1.0, delta=1e-6, budget=(1.0, DELTA)
        )
        _charge(training, "job-1", 0, researcher="alice")

    with PrivacyStore(path) as store:
        assert PrivacyLedger(store).spent("alice", "scans").tasks == 1
        assert TrainingLedger(store).history("scans") == [ROUND]
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".sqlite") == ["ledger.sqlite"]
