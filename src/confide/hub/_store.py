"""The hub's store interface: a small async Protocol with SQL and in-memory implementations.

Every method is one transaction: it either happens whole or raises and changes nothing.
Implementations: ``SqlStore`` (SQLAlchemy 2, SQLite file by default, PostgreSQL by URL)
and ``MemoryStore`` (tests). One contract suite in ``tests/hub/test_store_contract.py``
runs against all of them.
"""

from __future__ import annotations

from typing import Protocol

from confide.hub._records import (
    AggregateRecord,
    AuditEvent,
    Collaboration,
    MailboxMessage,
    NodeRecord,
    ResearcherRecord,
    Result,
    Run,
    RunStatus,
    SeedData,
    Task,
)


class Store(Protocol):
    """Persistence for the hub. Raise ``NotFoundError``/``ConflictError`` as documented."""

    async def initialise(self) -> None:
        """Create or migrate the schema; safe to call on every start."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

    async def seed(self, data: SeedData) -> None:
        """Insert or update the directory entities in ``data`` (idempotent)."""
        ...

    async def node_by_token_hash(self, token_hash: str) -> NodeRecord | None:
        """The node whose token hashes to ``token_hash``, if any."""
        ...

    async def researcher_by_token_hash(self, token_hash: str) -> ResearcherRecord | None:
        """The researcher whose token hashes to ``token_hash``, if any."""
        ...

    async def party_certificate(self, party_id: str) -> bytes | None:
        """The PEM certificate of a node or researcher, if known."""
        ...

    async def collaboration(self, collaboration_id: str) -> Collaboration | None:
        """One collaboration, if it exists."""
        ...

    async def collaborations_of(self, party_id: str) -> list[Collaboration]:
        """Collaborations a node or researcher belongs to, ordered by id."""
        ...

    async def create_task(self, task: Task, runs: list[Run]) -> None:
        """Store a task and its runs atomically; ``ConflictError`` if the id exists."""
        ...

    async def task(self, task_id: str) -> Task | None:
        """One task, if it exists."""
        ...

    async def tasks_of(self, researcher_id: str, limit: int = 100) -> list[Task]:
        """Tasks a researcher can see (those of their collaborations), newest first."""
        ...

    async def runs(self, task_id: str) -> list[Run]:
        """The runs of a task, ordered by node id."""
        ...

    async def open_runs_for(self, node_id: str) -> list[Run]:
        """Runs addressed to ``node_id`` not yet finished, oldest first."""
        ...

    async def set_run_status(self, run_id: str, node_id: str, status: RunStatus) -> Run:
        """Move an unfinished run of ``node_id`` to ``status``.

        ``NotFoundError`` if no such run is addressed to that node; ``ConflictError`` if
        the run is already finished (its result is final).
        """
        ...

    async def save_result(self, result: Result) -> None:
        """Store a result and finish its run in one transaction.

        Same errors as :meth:`set_run_status`; ``result.status`` must be final.
        """
        ...

    async def results(self, task_id: str) -> list[Result]:
        """Results of a task, ordered by node id."""
        ...

    async def put_message(self, message: MailboxMessage) -> None:
        """Store a relayed envelope (``ConflictError`` on a duplicate id)."""
        ...

    async def messages_for(self, recipient: str, now_ms: int, limit: int = 100) -> list[MailboxMessage]:
        """Unexpired messages waiting for ``recipient``, oldest first."""
        ...

    async def delete_message(self, message_id: str, recipient: str) -> bool:
        """Remove an acknowledged message; False if it was not there."""
        ...

    async def purge_expired(self, now_ms: int) -> int:
        """Drop messages past their time-to-live; return how many."""
        ...

    async def save_aggregate(self, aggregate: AggregateRecord) -> None:
        """Store a round's outcome (``ConflictError`` if that session is stored already)."""
        ...

    async def aggregate(self, task_id: str, session: str) -> AggregateRecord | None:
        """One round's outcome, if the round has ended."""
        ...

    async def audit(self, *events: AuditEvent) -> None:
        """Append audit events, all in one transaction."""
        ...

    async def audit_events(self, limit: int = 100) -> list[AuditEvent]:
        """The newest audit events, newest first."""
        ...
