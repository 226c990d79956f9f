"""The node's DP-SGD accountant: one history of noisy steps per training data set, persisted.

Every round of DP-SGD a node runs on a data set adds ``(noise_multiplier, sample_rate,
steps)`` to that data set's history, whichever job or researcher asked for it; the epsilon
spent is the composition of the whole history (Rényi DP or PRV, computed by
:func:`confide.learning.epsilon_spent`), which is far tighter than adding up each job's
epsilon as the statistics ledger (:mod:`confide.node._ledger`) does. Before a job goes
on, :meth:`TrainingLedger.check` refuses a plan that would take the data set past its
budget and says how much is left; each round is then recorded with
:meth:`TrainingLedger.charge` *before* its update leaves the node, so a crash can make the
node over-count, never under-count.

Storage is the ``noisy_steps`` table of the node's privacy file
(:class:`~confide.node._privacy_store.PrivacyStore`), beside the statistics ledger's
``charges``: one row per (data set, job, round) so a redelivered round is not charged
twice, every charge a check-and-insert under ``BEGIN IMMEDIATE`` so two processes can
never both spend the last of a budget. Rows are plain numbers, never pickled objects.

Importing this module imports the epsilon maths, hence Opacus and torch (seconds): the
node imports it in a thread (:class:`confide.node._budget.PrivacyBudget`), never on its
event loop.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from confide._errors import PolicyError
from confide.learning import Accounting, NoisySteps, epsilon_spent
from confide.node._privacy_store import BudgetLike, PrivacyStore, amount

__all__ = ["AccountedRound", "TrainingLedger"]

# Accountants are numerical; a relative slack this small cannot buy a meaningful overspend.
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class AccountedRound:
    """One recorded round: which job, round and researcher, what it cost, when (ms since the epoch)."""

    job_id: str
    round: int
    researcher: str
    spent: NoisySteps
    at_ms: int


class TrainingLedger:
    """The persisted DP-SGD history of every data set of a node: the ``noisy_steps`` table of ``store``.

    Parameters
    ----------
    store : PrivacyStore
        The node's privacy file; the ledger neither opens nor closes it.
    accounting : Accounting
        How a history becomes epsilon (RDP by default; PRV is tighter and slower).
    """

    def __init__(self, store: PrivacyStore, *, accounting: Accounting = Accounting.RDP) -> None:
        self._store = store
        self.accounting = accounting

    def rounds(self, dataset: str) -> list[AccountedRound]:
        """Every round recorded on ``dataset``, oldest first."""
        with self._store.transaction("BEGIN") as conn:
            return _rounds(conn, dataset)

    def history(self, dataset: str) -> list[NoisySteps]:
        """The accountant's history of ``dataset``: one entry per recorded round, oldest first."""
        return [r.spent for r in self.rounds(dataset)]

    def epsilon_spent(self, dataset: str, delta: float) -> float:
        """The epsilon spent on ``dataset`` so far, at ``delta``."""
        return epsilon_spent(self.history(dataset), delta, self.accounting)

    def check(
        self, *, dataset: str, job_id: str, planned: Sequence[NoisySteps] | None, budget: BudgetLike | None
    ) -> float:
        """Refuse a planned job that would take ``dataset`` past ``budget``; call it before training.

        Parameters
        ----------
        dataset, job_id
            Which of the node's data sets, and the job (named in the message).
        planned : sequence of NoisySteps or None
            Everything the job will run (e.g. one entry of rounds x local steps); ``None`` for
            a job without differential privacy, allowed only under an infinite budget.
        budget
            The policy's (epsilon, delta) for this data set; epsilon is composed at its delta.
            ``None`` (no budget in the policy) refuses every job.

        Returns
        -------
        float
            The epsilon the data set will have spent once the job has run.

        Raises
        ------
        PolicyError
            The job would exceed the budget (the message says how much is left) or no budget.
        """
        limit = _limit(job_id, budget)
        with self._store.transaction("BEGIN") as conn:
            history = [r.spent for r in _rounds(conn, dataset)]
        return self._within_budget(dataset, job_id, history, planned, limit)

    def charge(
        self,
        *,
        dataset: str,
        job_id: str,
        round: int,
        spent: NoisySteps,
        budget: BudgetLike | None,
        researcher: str = "",
    ) -> float:
        """Record one round of ``job_id`` on ``dataset`` if the budget allows it; before its update leaves.

        Check and record are one ``BEGIN IMMEDIATE`` transaction. Recording the same round
        again with the same cost (a redelivered round) records nothing.

        Returns
        -------
        float
            The epsilon spent on ``dataset``, this round included, at the budget's delta.

        Raises
        ------
        PolicyError
            The round would exceed the budget, there is no budget, the round was recorded
            before with another cost, or another process held the file too long.
        """
        limit = _limit(job_id, budget)
        with self._store.transaction("BEGIN IMMEDIATE") as conn:
            recorded = _rounds(conn, dataset)
            history = [r.spent for r in recorded]
            before = next((r for r in recorded if (r.job_id, r.round) == (job_id, round)), None)
            if before is not None:
                if before.spent != spent:
                    raise PolicyError(
                        f"round {round} of job {job_id} on dataset {dataset} was recorded with "
                        f"{before.spent}, not {spent}; a round cannot change its noise after the fact"
                    )
                return epsilon_spent(history, limit[1], self.accounting)
            after = self._within_budget(dataset, job_id, history, [spent], limit)
            conn.execute(
                "INSERT INTO noisy_steps (dataset, job_id, round, noise_multiplier, sample_rate, steps, "
                "researcher, at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    dataset,
                    job_id,
                    round,
                    spent.noise_multiplier,
                    spent.sample_rate,
                    spent.steps,
                    researcher,
                    time.time_ns() // 1_000_000,
                ),
            )
            return after

    def _within_budget(
        self,
        dataset: str,
        job_id: str,
        history: list[NoisySteps],
        planned: Sequence[NoisySteps] | None,
        limit: tuple[float, float],
    ) -> float:
        limit_eps, delta = limit
        spent = epsilon_spent(history, delta, self.accounting)
        after = math.inf if planned is None else epsilon_spent([*history, *planned], delta, self.accounting)
        if after <= limit_eps * (1 + _TOLERANCE):
            return after
        asked = (
            "no differential privacy (infinite epsilon)"
            if planned is None
            else f"epsilon {_num(after - spent)} more"
        )
        left = _num(max(0.0, limit_eps - spent))
        raise PolicyError(
            f"job {job_id} would spend {asked} on dataset {dataset}, which has {left} "
            f"of {_num(limit_eps)} epsilon left (at delta {_num(delta)}); ask for a smaller epsilon or fewer "
            "rounds, or ask the hospital to raise the budget (policy.privacy_budget in node.yaml)"
        )


def _rounds(conn: sqlite3.Connection, dataset: str) -> list[AccountedRound]:
    rows = conn.execute(
        "SELECT job_id, round, researcher, noise_multiplier, sample_rate, steps, at_ms FROM noisy_steps "
        "WHERE dataset = ? ORDER BY rowid",
        (dataset,),
    ).fetchall()
    return [
        AccountedRound(str(job), int(rnd), str(who), NoisySteps(float(sigma), float(q), int(steps)), int(at))
        for job, rnd, who, sigma, q, steps, at in rows
    ]


def _limit(job_id: str, budget: BudgetLike | None) -> tuple[float, float]:
    if budget is None:
        raise PolicyError(
            f"job {job_id} trains with differential privacy but this node has no privacy_budget in its "
            "policy; add one to node.yaml to allow it"
        )
    if not (budget.epsilon > 0 and 0 < budget.delta < 1):
        raise PolicyError(
            f"the privacy budget (epsilon {budget.epsilon}, delta {budget.delta}) is invalid: epsilon "
            "must be positive and delta strictly between 0 and 1"
        )
    return budget.epsilon, budget.delta


def _num(x: float) -> str:
    """``0.30000000000000004`` as ``0.3``, ``1.2345678`` as ``1.23``: enough digits to decide on."""
    return amount(x, 3)
