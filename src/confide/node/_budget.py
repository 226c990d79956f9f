"""The node's privacy budget: every differentially private release is charged here before it leaves.

Two kinds of release draw on the policy's ``privacy_budget`` (per researcher and table):

- a statistic or query with distributed noise charges its (epsilon, delta) to the
  statistics ledger (:class:`~confide.node._ledger.PrivacyLedger`, basic composition);
- a DP-SGD training round is checked, with the rounds of its job still to come, against
  the DP-SGD accountant, which keeps one history per training data set across jobs
  (:class:`~confide.node._training_ledger.TrainingLedger`, RDP/PRV composition), and
  recorded.

Both are tables of one SQLite file (:class:`~confide.node._privacy_store.PrivacyStore`,
``policy.ledger``, by default ``<kit dir>/privacy-ledger.sqlite``), which also imports,
once, the ``dpsgd-accountant.sqlite`` an earlier confide kept beside it. The file is
opened on first use, in a thread, never on the event loop; the epsilon maths (Opacus,
torch) is imported there too, by the first training charge or by :meth:`PrivacyBudget.prepare`.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import threading
from collections.abc import Sequence
from pathlib import Path

from confide._errors import PolicyError
from confide.algorithms import TrainingCost, TrainingSpend
from confide.node._config import Policy
from confide.node._ledger import PrivacyLedger, Spend
from confide.node._privacy_store import PrivacyStore
from confide.node._releases import Keys, ReleaseRecord

__all__ = ["PrivacyBudget"]

log = logging.getLogger("confide.node")
LEDGER_FILE = "privacy-ledger.sqlite"


class PrivacyBudget:
    """What the node's policy lets each researcher spend, and what has been spent."""

    def __init__(self, policy: Policy, directory: Path) -> None:
        self._policy = policy
        self._path = policy.ledger or directory / LEDGER_FILE
        self._store: PrivacyStore | None = None
        self._lock = threading.Lock()  # the file is opened once, by whichever thread comes first

    def prepare(self) -> None:
        """Import the DP-SGD accountant (Opacus, torch) now; blocking: call it in a thread."""
        try:
            importlib.import_module("confide.node._training_ledger")
        except Exception:  # a broken install: the first training round will report it
            log.warning("could not import the DP-SGD accountant (torch, opacus)", exc_info=True)

    async def charge_release(
        self, *, researcher: str, task_id: str, dataset: str, epsilon: float, delta: float
    ) -> None:
        """Record a DP release's spend in the ledger, or refuse it (PolicyError) saying what is left."""
        await asyncio.to_thread(self._charge_release, researcher, task_id, dataset, epsilon, delta)

    async def charge_training(
        self, *, researcher: str, task_id: str, dataset: str, job_id: str, round: int, cost: TrainingCost
    ) -> TrainingSpend:
        """Check a DP-SGD round (and the rounds left after it) against the budget, and record it.

        The round is recorded under the task that runs it, so a round run again (a restarted
        coordinator) is a new release and is charged again.
        """
        if cost.noise_multiplier is None:
            if not self._policy.allow_training_without_dp:
                raise PolicyError(
                    f"job {job_id} asks to train on {dataset} without differential privacy (epsilon inf); "
                    "this node allows that only with policy.allow_training_without_dp: true in node.yaml"
                )
            return TrainingSpend(math.inf, math.inf, cost.delta)
        return await asyncio.to_thread(
            self._charge_training, researcher, f"{job_id}/{task_id}", dataset, job_id, round, cost
        )

    async def check_differencing(
        self, *, node_id: str, task_id: str, dataset: str, cells: Sequence[Keys]
    ) -> None:
        """Check the rows behind a release's cells against the release record, and record them.

        Tables whose policy turns the record off give no row keys, so never come here.
        """
        await asyncio.to_thread(
            lambda: ReleaseRecord(self._store_now()).check_and_record(
                node_id, dataset, cells, min_count=self._policy.min_count, task_id=task_id
            )
        )

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._store is not None:
                self._store.close()
            self._store = None

    def _store_now(self) -> PrivacyStore:
        # In a thread: opening may migrate the file and import an old accountant file.
        with self._lock:
            if self._store is None:
                self._store = PrivacyStore(self._path)
            return self._store

    def _charge_release(
        self, researcher: str, task_id: str, dataset: str, epsilon: float, delta: float
    ) -> Spend:
        budget = self._policy.budget_for(researcher, dataset)
        return PrivacyLedger(self._store_now()).charge(
            researcher=researcher,
            dataset=dataset,
            task_id=task_id,
            epsilon=epsilon,
            delta=delta,
            budget=budget,
        )

    def _charge_training(
        self, researcher: str, run: str, dataset: str, job_id: str, round: int, cost: TrainingCost
    ) -> TrainingSpend:
        # In a thread: the first import of the epsilon maths loads Opacus and torch.
        from confide.learning import NoisySteps, epsilon_spent
        from confide.node._training_ledger import TrainingLedger

        accountant = TrainingLedger(self._store_now())
        budget = self._policy.budget_for(researcher, dataset)
        sigma = cost.noise_multiplier
        if sigma is None:  # pragma: no cover - charge_training handles training without DP
            raise PolicyError("a DP-SGD round without a noise multiplier")
        spent = NoisySteps(sigma, cost.sample_rate, cost.steps)
        planned = [NoisySteps(sigma, cost.sample_rate, cost.steps * cost.rounds_left)]
        accountant.check(dataset=dataset, job_id=job_id, planned=planned, budget=budget)
        total = accountant.charge(
            dataset=dataset, job_id=run, round=round, spent=spent, budget=budget, researcher=researcher
        )
        delta = budget.delta if budget is not None else cost.delta
        mine = [r.spent for r in accountant.rounds(dataset) if r.job_id.startswith(f"{job_id}/")]
        return TrainingSpend(epsilon_spent(mine, delta, accountant.accounting), total, delta)
