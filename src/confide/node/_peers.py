"""What a multi-party algorithm sees at this node: :class:`TaskPeers`, the node's ``PeerContext``.

It composes the parts the node gives one task, each an object with a name rather than a
callback into the agent:

- the task's :class:`~confide.node._channel.PeerChannel` (sealed messages and streams to
  the other nodes) and :class:`~confide.node._sums.SecureSums` (its secure-aggregation
  rounds, the hub as server);
- a :class:`StepRunner` that runs the algorithm's steps in the node's worker processes;
- the node's :class:`~confide.node._budget.PrivacyBudget`, charged on behalf of the
  task's researcher, and the node's :class:`~confide.node._policy.Policy`.

It records which declared tables the task's steps read. Anything derived from a table
whose policy requires differential privacy leaves this node (a secure-sum input, a peer
message, the task's output) only after :meth:`TaskPeers.authorise_release` has passed a
release that is noised on every round and charged to that table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from confide._errors import AlgorithmError, PolicyError
from confide.algorithms import MAIN_STEP, TrainingCost, TrainingSpend
from confide.node._budget import PrivacyBudget
from confide.node._channel import PeerChannel
from confide.node._policy import Policy, check_secure_release
from confide.node._sums import SecureSums
from confide.node._worker import StepOutcome
from confide.protocols.secagg import Contribution

__all__ = ["StepRunner", "TaskFacts", "TaskPeers"]


class StepRunner(Protocol):
    """Runs an algorithm's step on the node's data (the worker pool)."""

    async def run(self, algorithm: str, params: dict[str, object], step: str = MAIN_STEP) -> StepOutcome:
        """Run ``step`` of ``algorithm`` with ``params``."""
        ...


@dataclass(frozen=True)
class TaskFacts:
    """Who a task is for and what it runs, as the node checked them."""

    task_id: str
    algorithm: str
    researcher: str
    min_count: int


class TaskPeers:
    """One task's peers, secure sums, steps and budget, as a multi-party algorithm sees them."""

    def __init__(
        self,
        facts: TaskFacts,
        *,
        channel: PeerChannel,
        sums: SecureSums,
        steps: StepRunner,
        budget: PrivacyBudget | None,
        policy: Policy,
    ) -> None:
        self.facts = facts
        self.channel = channel
        self.sums = sums
        self._steps = steps
        self._budget = budget
        self._policy = policy
        self._read: set[str] = set()  # declared tables the task's steps read here
        self._released: set[str] = set()  # tables a differentially private release has covered

    @property
    def tables_read(self) -> tuple[str, ...]:
        """The declared tables this task's steps have read at this node, sorted."""
        return tuple(sorted(self._read))

    def check_leaving(self, what: str) -> None:
        """Refuse (:class:`PolicyError`) ``what`` leaving this node unless its tables allow it.

        A table whose policy requires differential privacy may be the source of what leaves
        only once :meth:`authorise_release` has covered it.
        """
        for name in sorted(self._read - self._released):
            table = self._policy.for_table(name)
            if table.require_dp:
                raise PolicyError(
                    f"node {self.node_id!r} refuses: {self.facts.algorithm} would send {what} derived "
                    f"from table {name!r}, whose policy requires differential privacy "
                    f"({table.require_dp_key}), without a differentially private release"
                )

    @property
    def node_id(self) -> str:
        """This node's id."""
        return self.sums.node_id

    @property
    def nodes(self) -> list[str]:
        """Every node of the task, sorted (the same list at every node)."""
        return self.sums.nodes

    @property
    def min_count(self) -> int:
        """The node policy's smallest number of rows a statistic may cover."""
        return self.facts.min_count

    async def local(self, params: Mapping[str, object], step: str = MAIN_STEP) -> dict[str, object]:
        """Run one of the algorithm's steps in the worker; :class:`AlgorithmError` with its reason."""
        outcome = await self._steps.run(self.facts.algorithm, dict(params), step)
        self._read.update(outcome.tables)
        if outcome.error is not None or outcome.output is None:
            raise AlgorithmError(outcome.error or f"{self.facts.algorithm} produced no local figures")
        return outcome.output

    async def send(self, peer: str, data: bytes) -> None:
        """Send ``data`` to ``peer``, sealed end to end (refused as :meth:`check_leaving` says)."""
        self.check_leaving("a message to a peer")
        await self.channel.send(peer, data)

    async def recv(self, peer: str, timeout_s: float = 60.0) -> bytes:
        """The next message from ``peer``."""
        return await self.channel.recv(peer, timeout_s)

    async def send_stream(self, peer: str, data: bytes, *, window: int = 8) -> None:
        """Send a large payload to ``peer`` as sealed 1 MiB chunks (refused as :meth:`check_leaving` says)."""
        self.check_leaving("a stream to a peer")
        await self.channel.send_stream(peer, data, window=window)

    async def recv_stream(self, peer: str, timeout_s: float = 60.0) -> bytes:
        """The next stream from ``peer``, whole."""
        return await self.channel.recv_stream(peer, timeout_s)

    async def secure_sum(
        self,
        values: npt.NDArray[np.unsignedinteger[Any]],
        *,
        label: str = "sum",
        bits: int = 64,
        threshold: int | None = None,
        timeout_s: float = 300.0,
        leave_after_input: bool = False,
        masked: bool = True,
    ) -> Contribution:
        """Add ``values`` to the task's secure sum ``label`` (see :class:`SecureSums`).

        Refused as :meth:`check_leaving` says, before anything is sent.
        """
        self.check_leaving(f"an input to secure sum {label!r}")
        return await self.sums.secure_sum(
            values,
            label=label,
            bits=bits,
            threshold=threshold,
            timeout_s=timeout_s,
            leave_after_input=leave_after_input,
            masked=masked,
        )

    async def withdraw_from_sum(
        self, length: int, reason: str, *, label: str = "sum", bits: int = 64, threshold: int | None = None
    ) -> None:
        """Sit out the secure sum ``label`` and log why."""
        await self.sums.withdraw_from_sum(length, reason, label=label, bits=bits, threshold=threshold)

    async def charge_privacy(self, dataset: str, epsilon: float, delta: float) -> None:
        """Spend (epsilon, delta) of the researcher's budget on ``dataset``; PolicyError past it."""
        await self._budget_or_refuse("run DP tasks").charge_release(
            researcher=self.facts.researcher,
            task_id=self.facts.task_id,
            dataset=dataset,
            epsilon=epsilon,
            delta=delta,
        )

    async def authorise_release(self, charges: Mapping[str, tuple[float, float]], *, noised: bool) -> None:
        """Check a secure release against the per-table policy, then charge its noise.

        Refused (:class:`PolicyError`, nothing charged) when a table the task's steps read
        requires differential privacy and the release is not ``noised`` on every round or
        not charged to that table; then each table of ``charges`` is charged (epsilon, delta)
        as :meth:`charge_privacy` does. The tables read so far are covered from then on.
        """
        check_secure_release(
            self._policy, self.node_id, tables=self._read, charged=charges.keys(), noised=noised
        )
        for table, (epsilon, delta) in charges.items():
            await self.charge_privacy(table, epsilon, delta)
        if noised:
            self._released.update(self._read & set(charges))

    async def check_differencing(self, table: str, cells: Sequence[npt.NDArray[np.uint64]]) -> None:
        """Refuse (PolicyError) cells too close to ones released before from ``table``; else record them."""
        await self._budget_or_refuse("release figures").check_differencing(
            node_id=self.node_id, task_id=self.facts.task_id, dataset=table, cells=cells
        )

    async def charge_training(
        self, dataset: str, job_id: str, round: int, cost: TrainingCost
    ) -> TrainingSpend:
        """Record one round of DP-SGD on ``dataset``; PolicyError past the budget."""
        return await self._budget_or_refuse("train").charge_training(
            researcher=self.facts.researcher,
            task_id=self.facts.task_id,
            dataset=dataset,
            job_id=job_id,
            round=round,
            cost=cost,
        )

    def _budget_or_refuse(self, what: str) -> PrivacyBudget:
        if self._budget is None:
            raise PolicyError(f"node {self.node_id!r} keeps no privacy budget; it cannot {what}")
        return self._budget
