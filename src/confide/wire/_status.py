"""Where a run and a task stand: the statuses nodes report, the hub stores and researchers read.

One vocabulary on every path: a node's ``RunStatusUpdate``, the hub's store and its REST
answers (``RunOut``, ``TaskOut``, ``ResultOut``), and the researcher's ``TaskState``. Both
are string enums, so their JSON form is the plain value (``"completed"``) and a plain
string with a known value still validates as one.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

__all__ = ["RunStatus", "TaskStatus"]


class RunStatus(enum.StrEnum):
    """Where one node's part of a task stands."""

    PENDING = "pending"  # stored, not yet handed to the node
    DELIVERED = "delivered"  # sent to the node, not yet acknowledged as started
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        """Whether the run has reached a final state (completed or failed)."""
        return self in (RunStatus.COMPLETED, RunStatus.FAILED)


class TaskStatus(enum.StrEnum):
    """A task's state, derived from its runs."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        """Whether every run of the task has finished (completed or failed)."""
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED)

    @classmethod
    def from_runs(cls, statuses: Iterable[RunStatus]) -> TaskStatus:
        """Completed when every run completed, failed when all finished and one failed.

        Otherwise running once any run has moved from pending, else pending.
        """
        statuses = list(statuses)
        if statuses and all(s is RunStatus.COMPLETED for s in statuses):
            return cls.COMPLETED
        if statuses and all(s.finished for s in statuses):
            return cls.FAILED
        if any(s is not RunStatus.PENDING for s in statuses):
            return cls.RUNNING
        return cls.PENDING
