"""The hub's in-memory store: ``Store`` on dicts, with ``SqlStore``'s semantics, for tests.

Every method checks everything before it changes anything and never awaits in between,
so each call is atomic on the event loop, as a transaction is in ``SqlStore``. The
contract suite in ``tests/hub/test_store_contract.py`` holds both stores to the same
behaviour, down to the error types and orderings.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping

from confide._errors import ConflictError, NotFoundError
from confide.hub._records import (
    AggregateRecord,
    AuditEvent,
    Collaboration,
    MailboxMessage,
    NodeRecord,
    Organisation,
    ResearcherRecord,
    Result,
    Run,
    RunStatus,
    SeedData,
    Task,
)

__all__ = ["MemoryStore"]


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class MemoryStore:
    """``Store`` kept in dictionaries; everything is lost when the object goes.

    Parameters
    ----------
    clock
        Milliseconds since the epoch; stamps ``Run.updated_ms`` in ``set_run_status``
        (``save_result`` stamps it with ``Result.created_ms``).

    Notes
    -----
    Beyond the ``Store`` Protocol: unknown organisations, nodes, researchers or
    collaborations named by ``seed`` or ``create_task`` raise ``NotFoundError``; runs of
    another task, a non-final result status or a ``limit`` below 1 raise ``ValueError``.
    Collaboration members come back sorted by id, without duplicates.
    """

    def __init__(self, *, clock: Callable[[], int] = _wall_clock_ms) -> None:
        self._clock = clock
        self._organisations: dict[str, Organisation] = {}
        self._nodes: dict[str, NodeRecord] = {}
        self._researchers: dict[str, ResearcherRecord] = {}
        self._collaborations: dict[str, Collaboration] = {}
        self._tasks: dict[str, Task] = {}
        self._runs: dict[str, Run] = {}
        self._results: dict[str, Result] = {}
        self._mailbox: dict[str, MailboxMessage] = {}
        self._aggregates: dict[tuple[str, str], AggregateRecord] = {}
        self._audit: list[AuditEvent] = []

    async def initialise(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # -- directory -------------------------------------------------------------------

    async def seed(self, data: SeedData) -> None:
        organisations = {**self._organisations, **{o.id: o for o in data.organisations}}
        nodes = {**self._nodes, **{n.id: n for n in data.nodes}}
        researchers = {**self._researchers, **{r.id: r for r in data.researchers}}
        for kind, parties in (("node", data.nodes), ("researcher", data.researchers)):
            for party in parties:
                if party.organisation_id not in organisations:
                    raise NotFoundError(
                        f"{kind} {party.id} names organisation {party.organisation_id}, "
                        "which is not in the directory"
                    )
        for kind, table in (("node", nodes), ("researcher", researchers)):
            _unique_token_hashes(kind, table.values())
        collaborations = dict(self._collaborations)
        for collab in data.collaborations:
            named_by = f" (named by collaboration {collab.id})"
            _require(nodes, collab.node_ids, "node", named_by)
            _require(researchers, collab.researcher_ids, "researcher", named_by)
            collaborations[collab.id] = dataclasses.replace(
                collab,
                node_ids=tuple(sorted(set(collab.node_ids))),
                researcher_ids=tuple(sorted(set(collab.researcher_ids))),
            )
        self._organisations, self._nodes, self._researchers = organisations, nodes, researchers
        self._collaborations = collaborations

    async def node_by_token_hash(self, token_hash: str) -> NodeRecord | None:
        return next((n for n in self._nodes.values() if n.token_hash == token_hash), None)

    async def researcher_by_token_hash(self, token_hash: str) -> ResearcherRecord | None:
        return next((r for r in self._researchers.values() if r.token_hash == token_hash), None)

    async def party_certificate(self, party_id: str) -> bytes | None:
        party = self._nodes.get(party_id) or self._researchers.get(party_id)
        return None if party is None else party.certificate_pem

    async def collaboration(self, collaboration_id: str) -> Collaboration | None:
        return self._collaborations.get(collaboration_id)

    async def collaborations_of(self, party_id: str) -> list[Collaboration]:
        return [
            c
            for _, c in sorted(self._collaborations.items())
            if party_id in c.node_ids or party_id in c.researcher_ids
        ]

    # -- tasks and runs --------------------------------------------------------------

    async def create_task(self, task: Task, runs: list[Run]) -> None:
        for run in runs:
            if run.task_id != task.id:
                raise ValueError(f"run {run.id} belongs to task {run.task_id}, not {task.id}")
        if task.id in self._tasks:
            raise ConflictError(f"task {task.id} already exists")
        run_ids = [run.id for run in runs]
        clashes = {i for i in run_ids if i in self._runs or run_ids.count(i) > 1}
        if clashes:
            raise ConflictError(f"task {task.id}: run id {min(clashes)} is already used")
        _require(self._collaborations, [task.collaboration_id], "collaboration")
        _require(self._researchers, [task.researcher_id], "researcher")
        _require(self._nodes, [run.node_id for run in runs], "node")
        self._tasks[task.id] = task
        self._runs.update((run.id, run) for run in runs)

    async def task(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    async def tasks_of(self, researcher_id: str, limit: int = 100) -> list[Task]:
        _positive(limit)
        theirs = {c.id for c in self._collaborations.values() if researcher_id in c.researcher_ids}
        visible = [task for task in self._tasks.values() if task.collaboration_id in theirs]
        visible.sort(key=lambda task: (task.created_ms, task.id), reverse=True)
        return visible[:limit]

    async def runs(self, task_id: str) -> list[Run]:
        found = [run for run in self._runs.values() if run.task_id == task_id]
        return sorted(found, key=lambda run: (run.node_id, run.id))

    async def open_runs_for(self, node_id: str) -> list[Run]:
        found = [r for r in self._runs.values() if r.node_id == node_id and not r.status.finished]
        return sorted(found, key=lambda run: (run.created_ms, run.id))

    async def set_run_status(self, run_id: str, node_id: str, status: RunStatus) -> Run:
        run = self._movable_run(run_id, node_id, None)
        moved = dataclasses.replace(run, status=status, updated_ms=self._clock())
        self._runs[run_id] = moved
        return moved

    async def save_result(self, result: Result) -> None:
        if not result.status.finished:
            raise ValueError(f"result of run {result.run_id} has status {result.status}, not final")
        run = self._movable_run(result.run_id, result.node_id, result.task_id)
        self._runs[run.id] = dataclasses.replace(run, status=result.status, updated_ms=result.created_ms)
        self._results[run.id] = result

    async def results(self, task_id: str) -> list[Result]:
        found = [result for result in self._results.values() if result.task_id == task_id]
        return sorted(found, key=lambda result: (result.node_id, result.run_id))

    def _movable_run(self, run_id: str, node_id: str, task_id: str | None) -> Run:
        run = self._runs.get(run_id)
        if run is None or run.node_id != node_id:
            raise NotFoundError(f"run {run_id} is not addressed to node {node_id}")
        if task_id is not None and run.task_id != task_id:
            raise NotFoundError(f"run {run_id} is not part of task {task_id}")
        if run.status.finished:
            raise ConflictError(f"run {run_id} is already {run.status}; its result is final")
        return run

    # -- mailbox ---------------------------------------------------------------------

    async def put_message(self, message: MailboxMessage) -> None:
        if message.id in self._mailbox:
            raise ConflictError(f"message {message.id} is already stored")
        self._mailbox[message.id] = message

    async def messages_for(self, recipient: str, now_ms: int, limit: int = 100) -> list[MailboxMessage]:
        _positive(limit)
        waiting = [m for m in self._mailbox.values() if m.recipient == recipient and m.expires_ms > now_ms]
        waiting.sort(key=lambda m: (m.created_ms, m.id))
        return waiting[:limit]

    async def delete_message(self, message_id: str, recipient: str) -> bool:
        message = self._mailbox.get(message_id)
        if message is None or message.recipient != recipient:
            return False
        del self._mailbox[message_id]
        return True

    async def purge_expired(self, now_ms: int) -> int:
        expired = [m.id for m in self._mailbox.values() if m.expires_ms <= now_ms]
        for message_id in expired:
            del self._mailbox[message_id]
        return len(expired)

    # -- secure aggregation ----------------------------------------------------------

    async def save_aggregate(self, aggregate: AggregateRecord) -> None:
        key = (aggregate.task_id, aggregate.session)
        if key in self._aggregates:
            raise ConflictError(
                f"aggregate {aggregate.session} of task {aggregate.task_id} is stored already"
            )
        if aggregate.task_id not in self._tasks:
            raise NotFoundError(f"task {aggregate.task_id} does not exist")
        self._aggregates[key] = aggregate

    async def aggregate(self, task_id: str, session: str) -> AggregateRecord | None:
        return self._aggregates.get((task_id, session))

    # -- audit -----------------------------------------------------------------------

    async def audit(self, *events: AuditEvent) -> None:
        for event in events:
            self._audit.append(dataclasses.replace(event, id=len(self._audit) + 1))

    async def audit_events(self, limit: int = 100) -> list[AuditEvent]:
        _positive(limit)
        newest = sorted(self._audit, key=lambda e: (e.at_ms, e.id or 0), reverse=True)
        return newest[:limit]


def _require(known: Mapping[str, object], ids: Iterable[str], kind: str, context: str = "") -> None:
    missing = set(ids) - known.keys()
    if missing:
        raise NotFoundError(f"{kind} {min(missing)} does not exist{context}")


def _unique_token_hashes(kind: str, parties: Iterable[NodeRecord | ResearcherRecord]) -> None:
    seen: dict[str, str] = {}
    for party in parties:
        if party.token_hash in seen:
            raise ConflictError(
                f"could not seed the directory: {kind}s {seen[party.token_hash]} and {party.id} "
                "have the same token hash"
            )
        seen[party.token_hash] = party.id


def _positive(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
