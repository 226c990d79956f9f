"""The hub's task service: submit, watch and collect tasks on behalf of researchers.

The hub checks *who* may do *what* (membership of the collaboration) and routes the
sealed per-node inputs; it never opens them. Every entry point takes the authenticated
researcher, so authorisation cannot be forgotten by a caller.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from confide._errors import AuthError, NotFoundError, WireError
from confide.hub._directory import Directory
from confide.hub._records import AggregateRecord, Collaboration, ResearcherRecord, Result, Run, Task
from confide.hub._sessions import NodeSessions
from confide.hub._store import Store
from confide.hub._watch import TaskWatch
from confide.wire import Envelope, MessageKind, RunStatus, TaskStatus

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
    def finished(self) -> bool:
        """Whether every run has finished."""
        return self.status.finished

    @property
    def version(self) -> str:
        """Changes when a run finishes or a node comes or goes: what a waiting researcher needs."""
        return ",".join(
            f"{r.node_id}:{r.status.value if r.status.finished else 'open'}:{int(self.online[r.node_id])}"
            for r in self.runs
        )


class HubService:
    """Tasks as researchers see them."""

    def __init__(self, store: Store, directory: Directory, sessions: NodeSessions, watch: TaskWatch) -> None:
        self._store = store
        self._directory = directory
        self._sessions = sessions
        self._watch = watch

    async def collaboration(self, researcher: ResearcherRecord, collaboration_id: str) -> Collaboration:
        """A collaboration the researcher belongs to."""
        collab = await self._directory.collaboration(collaboration_id)
        if collab is None:
            raise NotFoundError(f"collaboration {collaboration_id!r} does not exist")
        if researcher.id not in collab.researcher_ids:
            raise AuthError(
                f"researcher {researcher.id!r} is not a member of collaboration {collaboration_id!r}"
            )
        return collab

    async def submit(
        self,
        researcher: ResearcherRecord,
        collaboration_id: str,
        algorithm: str,
        inputs: dict[str, bytes],
        task_id: str,
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
            _check_input(blob, researcher.id, node_id, task_id)
        now = _now_ms()
        task = Task(task_id, collab.id, researcher.id, algorithm, now)
        runs = [
            Run(f"{task.id}-{node_id}", task.id, node_id, RunStatus.PENDING, inputs[node_id], now, now)
            for node_id in sorted(inputs)
        ]
        await self._store.create_task(task, runs)
        nodes = [r.node_id for r in runs]
        for run in runs:
            await self._sessions.deliver(run, task, nodes)
        return self._view_of(task, runs)

    async def view(
        self, researcher: ResearcherRecord, task_id: str, wait_s: float = 0.0, known: str = ""
    ) -> TaskView:
        """The task's state; with ``wait_s``, held until its version differs from ``known``."""
        task = await self._visible_task(researcher, task_id)
        return await self._wait(task, wait_s, lambda v: v.version != known or v.finished)

    async def results(self, researcher: ResearcherRecord, task_id: str, wait_s: float = 0.0) -> list[Result]:
        """The sealed results of a visible task; with ``wait_s``, held until every run finished."""
        task = await self._visible_task(researcher, task_id)
        if wait_s > 0:
            await self._wait(task, wait_s, lambda v: v.finished)
        return await self._store.results(task_id)

    async def aggregate(
        self, researcher: ResearcherRecord, task_id: str, session: str, wait_s: float = 0.0
    ) -> AggregateRecord | None:
        """A round's outcome for a visible task; with ``wait_s``, held until the round ends."""
        task = await self._visible_task(researcher, task_id)
        deadline = time.monotonic() + wait_s
        while True:
            event = self._watch.event(task.id)
            found = await self._store.aggregate(task_id, session)
            left = deadline - time.monotonic()
            if found is not None or left <= 0:
                return found
            await self._watch.wait(event, left)

    async def tasks(self, researcher: ResearcherRecord, limit: int) -> list[Task]:
        """Tasks of the researcher's collaborations, newest first."""
        return await self._store.tasks_of(researcher.id, limit)

    async def _wait(self, task: Task, wait_s: float, done: Callable[[TaskView], bool]) -> TaskView:
        deadline = time.monotonic() + wait_s
        while True:
            event = self._watch.event(task.id)
            view = self._view_of(task, await self._store.runs(task.id))
            left = deadline - time.monotonic()
            if done(view) or left <= 0:
                return view
            await self._watch.wait(event, left)

    async def _visible_task(self, researcher: ResearcherRecord, task_id: str) -> Task:
        task = await self._store.task(task_id)
        collab = None if task is None else await self._directory.collaboration(task.collaboration_id)
        if task is None or collab is None or researcher.id not in collab.researcher_ids:
            # Same answer for a task of another study as for a missing one.
            raise NotFoundError(f"task {task_id!r} does not exist")
        return task

    def _view_of(self, task: Task, runs: list[Run]) -> TaskView:
        runs = [
            dataclasses.replace(r, status=RunStatus.RUNNING)
            if r.status is RunStatus.PENDING and self._sessions.running(r.id)
            else r
            for r in runs
        ]
        return TaskView(task, runs, {r.node_id: self._sessions.online(r.node_id) for r in runs})


def _check_input(blob: bytes, researcher_id: str, node_id: str, task_id: str) -> None:
    envelope = Envelope.decode(blob)
    if (
        envelope.kind is not MessageKind.TASK_INPUT
        or not envelope.sealed
        or envelope.sender != researcher_id
        or envelope.recipient != node_id
    ):
        raise WireError(
            f"input for {node_id!r} must be a TASK_INPUT sealed by {researcher_id!r} to {node_id!r}"
        )
    if envelope.task_id != task_id:
        raise WireError(f"sealed input for {node_id!r} is bound to another task id; seal it for {task_id!r}")
