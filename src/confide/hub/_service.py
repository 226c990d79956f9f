"""The hub's task service: submit, watch and collect tasks on behalf of researchers.

The hub checks *who* may do *what* (membership of the collaboration) and routes the
sealed per-node inputs; it never opens them. Every entry point takes the authenticated
researcher, so authorisation cannot be forgotten by a caller.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from confide._errors import AuthError, NotFoundError, WireError
from confide.hub._records import Collaboration, ResearcherRecord, Result, Run, RunStatus, Task, TaskStatus
from confide.hub._sessions import NodeSessions
from confide.hub._store import Store
from confide.hub._watch import TaskWatch
from confide.wire import Envelope, MessageKind

__all__ = ["HubService", "TaskView"]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class TaskView:
    """A task with its runs and whether each run's node is online."""

    task: Task
    runs: list[Run]
    online: dict[str, bool]

    @property
    def status(self) -> TaskStatus:
        """The task's overall status."""
        return TaskStatus.from_runs([r.status for r in self.runs])

    @property
    def version(self) -> str:
        """Changes whenever a run's status or a node's presence changes (for long-polls)."""
        return ",".join(f"{r.node_id}:{r.status.value}:{int(self.online[r.node_id])}" for r in self.runs)


class HubService:
    """Tasks as researchers see them."""

    def __init__(self, store: Store, sessions: NodeSessions, watch: TaskWatch) -> None:
        self._store = store
        self._sessions = sessions
        self._watch = watch

    async def collaboration(self, researcher: ResearcherRecord, collaboration_id: str) -> Collaboration:
        """A collaboration the researcher belongs to."""
        collab = await self._store.collaboration(collaboration_id)
        if collab is None:
            raise NotFoundError(f"collaboration {collaboration_id!r} does not exist")
        if researcher.id not in collab.researcher_ids:
            raise AuthError(f"researcher {researcher.id!r} is not a member of collaboration {collaboration_id!r}")
        return collab

    async def submit(
        self, researcher: ResearcherRecord, collaboration_id: str, algorithm: str, inputs: dict[str, bytes], task_id: str | None = None
    ) -> TaskView:
        """Create a task with one run per node in ``inputs`` and push the runs to online nodes."""
        collab = await self.collaboration(researcher, collaboration_id)
        if not inputs:
            raise WireError("a task needs a sealed input for at least one node")
        for node_id, blob in inputs.items():
            if node_id not in collab.node_ids:
                raise AuthError(
                    f"node {node_id!r} is not part of collaboration {collaboration_id!r}; "
                    f"its nodes are: {', '.join(collab.node_ids)}"
                )
            _check_input(blob, researcher.id, node_id)
        now = _now_ms()
        task = Task(task_id or secrets.token_hex(12), collab.id, researcher.id, algorithm, now)
        runs = [
            Run(f"{task.id}-{node_id}", task.id, node_id, RunStatus.PENDING, inputs[node_id], now, now)
            for node_id in sorted(inputs)
        ]
        for blob, node_id in ((inputs[r.node_id], r.node_id) for r in runs):
            if Envelope.decode(blob).task_id != task.id:
                raise WireError(f"sealed input for {node_id!r} is bound to another task id; seal it for {task.id!r}")
        await self._store.create_task(task, runs)
        for run in runs:
            await self._sessions.deliver(run, await self._sessions.assignment(run))
        return await self._view(task)

    async def view(self, researcher: ResearcherRecord, task_id: str, wait_s: float = 0.0, known: str = "") -> TaskView:
        """The task's state; with ``wait_s``, held until it differs from ``known`` or finishes."""
        event = self._watch.event(task_id)
        view = await self._view(await self._visible_task(researcher, task_id))
        if wait_s > 0 and view.version == known and view.status not in (TaskStatus.COMPLETED, TaskStatus.FAILED):
            await self._watch.wait(event, wait_s)
            view = await self._view(view.task)
        return view

    async def tasks(self, researcher: ResearcherRecord, limit: int) -> list[Task]:
        """Tasks of the researcher's collaborations, newest first."""
        return await self._store.tasks_of(researcher.id, limit)

    async def results(self, researcher: ResearcherRecord, task_id: str) -> list[Result]:
        """The sealed results of a visible task."""
        await self._visible_task(researcher, task_id)
        return await self._store.results(task_id)

    async def _visible_task(self, researcher: ResearcherRecord, task_id: str) -> Task:
        task = await self._store.task(task_id)
        if task is None:
            raise NotFoundError(f"task {task_id!r} does not exist")
        collab = await self._store.collaboration(task.collaboration_id)
        if collab is None or researcher.id not in collab.researcher_ids:
            # Same answer as a missing task: do not confirm that the id exists.
            raise NotFoundError(f"task {task_id!r} does not exist")
        return task

    async def _view(self, task: Task) -> TaskView:
        runs = await self._store.runs(task.id)
        return TaskView(task, runs, {r.node_id: self._sessions.online(r.node_id) for r in runs})


def _check_input(blob: bytes, researcher_id: str, node_id: str) -> None:
    envelope = Envelope.decode(blob)
    if (
        envelope.kind is not MessageKind.TASK_INPUT
        or not envelope.sealed
        or envelope.sender != researcher_id
        or envelope.recipient != node_id
    ):
        raise WireError(f"input for {node_id!r} must be a TASK_INPUT sealed by {researcher_id!r} to {node_id!r}")


