"""The statistics ledger: how much (epsilon, delta) each researcher has spent per dataset.

The ledger sits between the policy (``policy.privacy_budget`` in ``node.yaml``, see
:mod:`confide.node._config`) and the agent: before a differentially private statistic
or query is released, the node's budget (:mod:`confide.node._budget`) charges what it
asks for; the charge is refused if it would take the researcher past the budget on that
dataset. DP-SGD training rounds are accounted apart, much more tightly, by
:mod:`confide.node._training_ledger`.

Composition is *basic* (sequential): the epsilons of all charges add up, and so do the
deltas. That is conservative: advanced composition or a Rényi-DP accountant would let
the same budget cover more tasks, never fewer, so basic composition never under-counts.

Storage is the ``charges`` table of the node's privacy file
(:class:`~confide.node._privacy_store.PrivacyStore`), one row per charge, keyed by
(researcher, dataset, task id) so a redelivered run is not charged twice. Every
operation is one transaction; a charge checks and records under ``BEGIN IMMEDIATE``, so
two threads, or two processes opening the same file, can never both spend the last of
a budget.
"""

from __future__ import annotations

import math
import sqlite3
import time
from dataclasses import dataclass

from confide._errors import PolicyError
from confide.node._privacy_store import BudgetLike, PrivacyStore, amount

__all__ = ["BudgetLike", "Charge", "PrivacyLedger", "Spend"]

# Sums of floats drift by a few ulps (0.1 * 10 != 1.0 when added one at a time); a
# relative slack this small cannot let anyone spend a meaningful amount over budget.
_TOLERANCE = 1e-12

_NO_BUDGET = (
    "this node has no privacy_budget in its policy; add one to node.yaml to allow "
    "differentially private tasks"
)


@dataclass(frozen=True)
class Spend:
    """What a researcher has spent on a dataset: summed epsilon and delta over ``tasks`` charges."""

    epsilon: float
    delta: float
    tasks: int


@dataclass(frozen=True)
class Charge:
    """One recorded charge: the task, what it spent, and when (milliseconds since the epoch)."""

    task_id: str
    epsilon: float
    delta: float
    at_ms: int


class PrivacyLedger:
    """The persisted privacy spent per (researcher, dataset): the ``charges`` table of ``store``.

    Parameters
    ----------
    store
        The node's privacy file; the ledger neither opens nor closes it.
    """

    def __init__(self, store: PrivacyStore) -> None:
        self._store = store

    def spent(self, researcher: str, dataset: str) -> Spend:
        """What ``researcher`` has spent on ``dataset`` so far (basic composition: sums)."""
        with self._store.transaction("BEGIN") as conn:
            return _spend(conn, researcher, dataset)

    def history(self, researcher: str, dataset: str) -> list[Charge]:
        """Every charge of ``researcher`` on ``dataset``, oldest first."""
        with self._store.transaction("BEGIN") as conn:
            rows = conn.execute(
                "SELECT task_id, epsilon, delta, at_ms FROM charges "
                "WHERE researcher = ? AND dataset = ? ORDER BY rowid",
                (researcher, dataset),
            ).fetchall()
        return [Charge(str(t), float(e), float(d), int(at)) for t, e, d, at in rows]

    def charge(
        self,
        *,
        researcher: str,
        dataset: str,
        task_id: str,
        epsilon: float,
        delta: float,
        budget: BudgetLike | tuple[float, float] | None,
    ) -> Spend:
        """Record that ``task_id`` spends (``epsilon``, ``delta``) if the budget allows it.

        Check and record are one ``BEGIN IMMEDIATE`` transaction. Charging a task again
        with the same amounts (a redelivered run) records nothing and returns the current
        spend.

        Parameters
        ----------
        researcher, dataset, task_id
            Who spends, on which of this node's data sources, for which task.
        epsilon, delta
            What the task asks for: ``epsilon > 0`` and ``0 <= delta < 1``.
        budget
            The total allowed for this pair, e.g. ``policy.budget_for(researcher, dataset)``;
            ``None`` (the policy has no privacy budget) refuses every charge.

        Returns
        -------
        Spend
            What the researcher has spent on the dataset, this task included.

        Raises
        ------
        PolicyError
            The budget would be exceeded (the message says what remains), there is no
            budget, the amounts are invalid, the task was charged before with other
            amounts, or another process held the ledger too long.
        """
        _check_request(task_id, epsilon, delta)
        if budget is None:
            raise PolicyError(f"task {task_id} asks for differential privacy but {_NO_BUDGET}")
        limit_eps, limit_delta = budget if isinstance(budget, tuple) else (budget.epsilon, budget.delta)
        with self._store.transaction("BEGIN IMMEDIATE") as conn:
            before = conn.execute(
                "SELECT epsilon, delta FROM charges WHERE researcher = ? AND dataset = ? AND task_id = ?",
                (researcher, dataset, task_id),
            ).fetchone()
            if before is not None:
                _check_same_amounts(task_id, researcher, dataset, (epsilon, delta), before)
                return _spend(conn, researcher, dataset)
            spent = _spend(conn, researcher, dataset)
            _check_room(task_id, researcher, dataset, (epsilon, delta), spent, (limit_eps, limit_delta))
            conn.execute(
                "INSERT INTO charges (researcher, dataset, task_id, epsilon, delta, at_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (researcher, dataset, task_id, epsilon, delta, time.time_ns() // 1_000_000),
            )
            return _spend(conn, researcher, dataset)


def _spend(conn: sqlite3.Connection, researcher: str, dataset: str) -> Spend:
    rows = conn.execute(
        "SELECT epsilon, delta FROM charges WHERE researcher = ? AND dataset = ?", (researcher, dataset)
    ).fetchall()
    # fsum: exact, so the total does not depend on the order rows come back in.
    return Spend(math.fsum(r[0] for r in rows), math.fsum(r[1] for r in rows), len(rows))


def _check_room(
    task_id: str,
    researcher: str,
    dataset: str,
    asked: tuple[float, float],
    spent: Spend,
    limit: tuple[float, float],
) -> None:
    """Refuse a charge that would take the researcher past the budget, saying what is left."""
    (epsilon, delta), (limit_eps, limit_delta) = asked, limit
    after_eps = math.fsum([spent.epsilon, epsilon])
    after_delta = math.fsum([spent.delta, delta])
    if not (_within(after_eps, limit_eps) and _within(after_delta, limit_delta)):
        raise PolicyError(
            f"task {task_id} asks for epsilon {_num(epsilon)} (delta {_num(delta)}) but researcher "
            f"{researcher} has {_num(_left(limit_eps, spent.epsilon))} of {_num(limit_eps)} left on "
            f"dataset {dataset} (delta {_num(_left(limit_delta, spent.delta))} of "
            f"{_num(limit_delta)} left); ask for less or ask the hospital to raise the budget "
            f"(policy.privacy_budget in node.yaml)"
        )


def _check_request(task_id: str, epsilon: float, delta: float) -> None:
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise PolicyError(f"task {task_id} asks for epsilon {epsilon}; it must be a positive finite number")
    if not (0 <= delta < 1):
        raise PolicyError(f"task {task_id} asks for delta {delta}; it must be at least 0 and below 1")


def _check_same_amounts(
    task_id: str, researcher: str, dataset: str, asked: tuple[float, float], recorded: tuple[float, float]
) -> None:
    if not all(
        math.isclose(a, r, rel_tol=_TOLERANCE, abs_tol=0.0) for a, r in zip(asked, recorded, strict=True)
    ):
        raise PolicyError(
            f"task {task_id} asks for epsilon {_num(asked[0])} (delta {_num(asked[1])}) on dataset {dataset} "
            f"for researcher {researcher}, which conflicts with the charge recorded for the same task "
            f"(epsilon {_num(recorded[0])}, delta {_num(recorded[1])}); submit it as a new task"
        )


def _within(total: float, limit: float) -> bool:
    return total <= limit + _TOLERANCE * limit


def _left(limit: float, spent: float) -> float:
    return max(0.0, limit - spent)


def _num(x: float) -> str:
    """``0.30000000000000004`` as ``0.3``, ``2.0`` as ``2.0``, ``1e-06`` as ``1e-06``."""
    return amount(x, 10)
