"""The hub's SQL store: ``Store`` on SQLAlchemy 2 async, SQLite by default, PostgreSQL by URL.

``SqlStore(url)`` accepts ``sqlite:///hub.db`` or ``postgresql://...`` (and their async
spellings) and talks to them through aiosqlite and psycopg 3. ``initialise`` migrates the
schema with Alembic (``migrations/``) in a worker thread. Each method runs in one
transaction; database errors leave as ``ConflictError`` or ``StoreError`` naming what was
being done, never as a raw SQLAlchemy exception. The tables live in ``_tables.py``.

Run status changes are conditional updates (``WHERE status NOT IN finished``), so two hub
processes racing to finish one run cannot both succeed, on either backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from alembic.util import CommandError
from sqlalchemy import ColumnElement, Select, Table, delete, event, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.engine import URL, Row, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from confide._errors import ConfigError, ConflictError, NotFoundError, StoreError
from confide.hub import _tables as t
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
from confide.hub._tables import upgrade_to_head

__all__ = ["SqlStore", "driver_urls", "wall_clock_ms"]

R = TypeVar("R")
_FINISHED = [s.value for s in RunStatus if s.finished]
_SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000", "foreign_keys=ON")


def wall_clock_ms() -> int:
    """Milliseconds since the epoch, the store's default clock."""
    return time.time_ns() // 1_000_000


def driver_urls(url: str) -> tuple[URL, URL]:
    """Map a database URL to the (async, sync) URLs the store uses.

    Parameters
    ----------
    url
        ``sqlite:///path`` or ``postgresql://user@host/db``, with or without a driver.

    Returns
    -------
    tuple[URL, URL]
        The aiosqlite / psycopg URL for the store, and the sync URL for Alembic.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"malformed database URL {url!r}: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ConfigError(
                f"database URL {url!r} is an in-memory SQLite database, which each "
                "connection sees empty: give a file path (sqlite:///hub.db) or use MemoryStore"
            )
        return parsed.set(drivername="sqlite+aiosqlite"), parsed.set(drivername="sqlite")
    if backend in ("postgresql", "postgres"):
        psycopg = parsed.set(drivername="postgresql+psycopg")
        return psycopg, psycopg
    raise ConfigError(
        f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
        "use sqlite:///path or postgresql://user@host/db"
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in _SQLITE_PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _reason(exc: BaseException) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


class SqlStore:
    """``Store`` backed by SQLite or PostgreSQL.

    Parameters
    ----------
    url
        Database URL: ``sqlite:///hub.db`` (embedded default) or ``postgresql://...``.
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

    def __init__(self, url: str, *, clock: Callable[[], int] = wall_clock_ms) -> None:
        async_url, self._sync_url = driver_urls(url)
        self._where = self._sync_url.render_as_string(hide_password=True)
        self._clock = clock
        self._engine: AsyncEngine = create_async_engine(async_url)
        # SQLite allows one writer; concurrent transactions on several connections would
        # meet in its busy handler, which sleeps in milliseconds. Queue them here instead.
        self._serial: contextlib.AbstractAsyncContextManager[object] = contextlib.nullcontext()
        if async_url.get_backend_name() == "sqlite":
            event.listen(self._engine.sync_engine, "connect", _sqlite_pragmas)
            self._serial = asyncio.Lock()

    async def initialise(self) -> None:
        try:
            await asyncio.to_thread(upgrade_to_head, self._sync_url)
        except (SQLAlchemyError, CommandError, OSError) as exc:
            raise StoreError(
                f"could not migrate the store at {self._where} to the latest schema: {_reason(exc)}"
            ) from exc

    async def close(self) -> None:
        await self._engine.dispose()

    @asynccontextmanager
    async def _transaction(self, doing: str) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._serial, self._engine.begin() as conn:
                yield conn
        except IntegrityError as exc:
            raise ConflictError(f"could not {doing}: it conflicts with stored data ({_reason(exc)})") from exc
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"could not {doing} in the store at {self._where}: {_reason(exc)}") from exc

    async def _select(self, doing: str, cls: type[R], query: Select[Any]) -> list[R]:
        async with self._transaction(doing) as conn:
            return [_record(cls, row) for row in await conn.execute(query)]

    # -- directory -------------------------------------------------------------------

    async def seed(self, data: SeedData) -> None:
        async with self._transaction("seed the directory") as conn:
            await _upsert(conn, t.organisations, data.organisations)
            for kind, parties in (("node", data.nodes), ("researcher", data.researchers)):
                known = await _existing(conn, t.organisations, {p.organisation_id for p in parties})
                for party in (p for p in parties if p.organisation_id not in known):
                    raise NotFoundError(
                        f"{kind} {party.id} names organisation {party.organisation_id}, "
                        "which is not in the directory"
                    )
            await _upsert(conn, t.nodes, data.nodes)
            await _upsert(conn, t.researchers, data.researchers)
            await _upsert(conn, t.collaborations, data.collaborations)
            for collab in data.collaborations:
                await _replace_members(conn, collab)

    async def node_by_token_hash(self, token_hash: str) -> NodeRecord | None:
        query = select(t.nodes).where(t.nodes.c.token_hash == token_hash)
        found = await self._select("look up a node by token", NodeRecord, query)
        return found[0] if found else None

    async def researcher_by_token_hash(self, token_hash: str) -> ResearcherRecord | None:
        query = select(t.researchers).where(t.researchers.c.token_hash == token_hash)
        found = await self._select("look up a researcher by token", ResearcherRecord, query)
        return found[0] if found else None

    async def party_certificate(self, party_id: str) -> bytes | None:
        async with self._transaction(f"read the certificate of {party_id}") as conn:
            for table in (t.nodes, t.researchers):
                query = select(table.c.certificate_pem).where(table.c.id == party_id)
                pem = (await conn.execute(query)).scalar_one_or_none()
                if pem is not None:
                    return bytes(pem)
        return None

    async def collaboration(self, collaboration_id: str) -> Collaboration | None:
        async with self._transaction(f"read collaboration {collaboration_id}") as conn:
            found = await _collaborations(conn, t.collaborations.c.id == collaboration_id)
        return found[0] if found else None

    async def collaborations_of(self, party_id: str) -> list[Collaboration]:
        members = t.collaboration_members
        mine = select(members.c.collaboration_id).where(members.c.party_id == party_id)
        async with self._transaction(f"list the collaborations of {party_id}") as conn:
            return await _collaborations(conn, t.collaborations.c.id.in_(mine))

    # -- tasks and runs --------------------------------------------------------------

    async def create_task(self, task: Task, runs: list[Run]) -> None:
        for run in runs:
            if run.task_id != task.id:
                raise ValueError(f"run {run.id} belongs to task {run.task_id}, not {task.id}")
        try:
            # Happy path: two inserts; the keys and foreign keys guard consistency.
            async with self._transaction(f"create task {task.id}") as conn:
                await conn.execute(insert(t.tasks), [_row(task)])
                if runs:
                    await conn.execute(insert(t.runs), [_row(run) for run in runs])
        except ConflictError:
            await self._explain_task_conflict(task, runs)
            raise

    async def _explain_task_conflict(self, task: Task, runs: list[Run]) -> None:
        """Raise the specific error for a task the database refused."""
        async with self._transaction(f"check task {task.id}") as conn:
            if await _existing(conn, t.tasks, {task.id}):
                raise ConflictError(f"task {task.id} already exists")
            run_ids = [run.id for run in runs]
            taken = await _existing(conn, t.runs, set(run_ids))
            taken |= {i for i in run_ids if run_ids.count(i) > 1}
            if taken:
                raise ConflictError(f"task {task.id}: run id {min(taken)} is already used")
            await _require(conn, t.collaborations, {task.collaboration_id}, "collaboration")
            await _require(conn, t.researchers, {task.researcher_id}, "researcher")
            await _require(conn, t.nodes, {run.node_id for run in runs}, "node")

    async def task(self, task_id: str) -> Task | None:
        query = select(t.tasks).where(t.tasks.c.id == task_id)
        found = await self._select(f"read task {task_id}", Task, query)
        return found[0] if found else None

    async def tasks_of(self, researcher_id: str, limit: int = 100) -> list[Task]:
        members = t.collaboration_members
        theirs = select(members.c.collaboration_id).where(
            members.c.party_id == researcher_id, members.c.role == "researcher"
        )
        query = (
            select(t.tasks)
            .where(t.tasks.c.collaboration_id.in_(theirs))
            .order_by(t.tasks.c.created_ms.desc(), t.tasks.c.id.desc())
            .limit(_positive(limit))
        )
        return await self._select(f"list the tasks of {researcher_id}", Task, query)

    async def runs(self, task_id: str) -> list[Run]:
        query = select(t.runs).where(t.runs.c.task_id == task_id)
        query = query.order_by(t.runs.c.node_id, t.runs.c.id)
        return await self._select(f"list the runs of task {task_id}", Run, query)

    async def open_runs_for(self, node_id: str) -> list[Run]:
        query = select(t.runs).where(t.runs.c.node_id == node_id, t.runs.c.status.not_in(_FINISHED))
        query = query.order_by(t.runs.c.created_ms, t.runs.c.id)
        return await self._select(f"list the open runs of node {node_id}", Run, query)

    async def set_run_status(self, run_id: str, node_id: str, status: RunStatus) -> Run:
        async with self._transaction(f"set run {run_id} to {status}") as conn:
            await _move_run(conn, run_id, node_id, None, status, self._clock())
            row = (await conn.execute(select(t.runs).where(t.runs.c.id == run_id))).one()
        return _record(Run, row)

    async def save_result(self, result: Result) -> None:
        if not result.status.finished:
            raise ValueError(f"result of run {result.run_id} has status {result.status}, not final")
        run_id, node_id, task_id = result.run_id, result.node_id, result.task_id
        async with self._transaction(f"store the result of run {run_id}") as conn:
            await _move_run(conn, run_id, node_id, task_id, result.status, result.created_ms)
            await conn.execute(insert(t.results), [_row(result)])

    async def results(self, task_id: str) -> list[Result]:
        query = select(t.results).where(t.results.c.task_id == task_id)
        query = query.order_by(t.results.c.node_id, t.results.c.run_id)
        return await self._select(f"list the results of task {task_id}", Result, query)

    # -- mailbox ---------------------------------------------------------------------

    async def put_message(self, message: MailboxMessage) -> None:
        async with self._transaction(f"store message {message.id}") as conn:
            if await _existing(conn, t.mailbox, {message.id}):
                raise ConflictError(f"message {message.id} is already stored")
            await conn.execute(insert(t.mailbox), [_row(message)])

    async def messages_for(self, recipient: str, now_ms: int, limit: int = 100) -> list[MailboxMessage]:
        box = t.mailbox
        query = (
            select(box)
            .where(box.c.recipient == recipient, box.c.expires_ms > now_ms)
            .order_by(box.c.created_ms, box.c.id)
            .limit(_positive(limit))
        )
        return await self._select(f"read the mailbox of {recipient}", MailboxMessage, query)

    async def delete_message(self, message_id: str, recipient: str) -> bool:
        box = t.mailbox
        query = delete(box).where(box.c.id == message_id, box.c.recipient == recipient)
        async with self._transaction(f"delete message {message_id}") as conn:
            return (await conn.execute(query)).rowcount > 0

    async def purge_expired(self, now_ms: int) -> int:
        query = delete(t.mailbox).where(t.mailbox.c.expires_ms <= now_ms)
        async with self._transaction("purge expired messages") as conn:
            return (await conn.execute(query)).rowcount

    # -- secure aggregation ----------------------------------------------------------

    async def save_aggregate(self, aggregate: AggregateRecord) -> None:
        async with self._transaction(f"store aggregate {aggregate.session}") as conn:
            found = select(t.aggregates.c.session).where(
                t.aggregates.c.task_id == aggregate.task_id, t.aggregates.c.session == aggregate.session
            )
            if (await conn.execute(found)).first() is not None:
                raise ConflictError(
                    f"aggregate {aggregate.session} of task {aggregate.task_id} is stored already"
                )
            await conn.execute(insert(t.aggregates), [_row(aggregate)])

    async def aggregate(self, task_id: str, session: str) -> AggregateRecord | None:
        query = select(t.aggregates).where(
            t.aggregates.c.task_id == task_id, t.aggregates.c.session == session
        )
        found = await self._select(f"read aggregate {session}", AggregateRecord, query)
        return found[0] if found else None

    # -- audit -----------------------------------------------------------------------

    async def audit(self, *events: AuditEvent) -> None:
        if not events:
            return
        rows = [{k: v for k, v in _row(event).items() if k != "id"} for event in events]
        async with self._transaction(f"record {len(rows)} audit event(s)") as conn:
            await conn.execute(insert(t.audit_events), rows)

    async def audit_events(self, limit: int = 100) -> list[AuditEvent]:
        table = t.audit_events
        query = select(table).order_by(table.c.at_ms.desc(), table.c.id.desc())
        return await self._select("list audit events", AuditEvent, query.limit(_positive(limit)))


# -- statements shared by the methods ----------------------------------------------------


async def _existing(conn: AsyncConnection, table: Table, ids: Iterable[str]) -> set[str]:
    wanted = list(ids)
    if not wanted:
        return set()
    return set((await conn.execute(select(table.c.id).where(table.c.id.in_(wanted)))).scalars())


async def _require(
    conn: AsyncConnection, table: Table, ids: Iterable[str], kind: str, context: str = ""
) -> None:
    missing = set(ids) - await _existing(conn, table, ids)
    if missing:
        raise NotFoundError(f"{kind} {min(missing)} does not exist{context}")


async def _upsert(conn: AsyncConnection, table: Table, records: Sequence[Any]) -> None:
    """Insert new records, update changed ones, leave equal ones untouched."""
    if not records:
        return
    names = set(table.c.keys())
    rows = [{k: v for k, v in _row(r).items() if k in names} for r in records]
    ids = [row["id"] for row in rows]
    stored = {r.id: r._asdict() for r in await conn.execute(select(table).where(table.c.id.in_(ids)))}
    fresh = [row for row in rows if row["id"] not in stored]
    if fresh:
        await conn.execute(insert(table), fresh)
    for row in rows:
        if row["id"] in stored and stored[row["id"]] != row:
            await conn.execute(sql_update(table).where(table.c.id == row["id"]).values(**row))


async def _replace_members(conn: AsyncConnection, collab: Collaboration) -> None:
    members = t.collaboration_members
    named_by = f" (named by collaboration {collab.id})"
    await _require(conn, t.nodes, collab.node_ids, "node", named_by)
    await _require(conn, t.researchers, collab.researcher_ids, "researcher", named_by)
    wanted = {("node", p) for p in collab.node_ids} | {("researcher", p) for p in collab.researcher_ids}
    mine = members.c.collaboration_id == collab.id
    have = {(r.role, r.party_id) for r in await conn.execute(select(members).where(mine))}
    for role, party_id in have - wanted:
        await conn.execute(
            delete(members).where(mine, members.c.role == role, members.c.party_id == party_id)
        )
    added = [{"collaboration_id": collab.id, "role": r, "party_id": p} for r, p in sorted(wanted - have)]
    if added:
        await conn.execute(insert(members), added)


async def _collaborations(conn: AsyncConnection, where: ColumnElement[bool]) -> list[Collaboration]:
    found = list(await conn.execute(select(t.collaborations).where(where).order_by(t.collaborations.c.id)))
    members = t.collaboration_members
    query = select(members).where(members.c.collaboration_id.in_([c.id for c in found]))
    party_ids: dict[tuple[str, str], list[str]] = {}
    for row in await conn.execute(query.order_by(members.c.party_id)):
        party_ids.setdefault((row.collaboration_id, row.role), []).append(row.party_id)
    return [
        Collaboration(
            c.id,
            c.name,
            tuple(party_ids.get((c.id, "node"), ())),
            tuple(party_ids.get((c.id, "researcher"), ())),
        )
        for c in found
    ]


async def _move_run(
    conn: AsyncConnection,
    run_id: str,
    node_id: str,
    task_id: str | None,
    status: RunStatus,
    at_ms: int,
) -> None:
    """Set an unfinished run's status, or raise saying why the run cannot move."""
    runs = t.runs
    match = [runs.c.id == run_id, runs.c.node_id == node_id, runs.c.status.not_in(_FINISHED)]
    if task_id is not None:
        match.append(runs.c.task_id == task_id)
    moved = await conn.execute(sql_update(runs).where(*match).values(status=status.value, updated_ms=at_ms))
    if moved.rowcount == 1:
        return
    row = (await conn.execute(select(runs).where(runs.c.id == run_id))).first()
    if row is None or row.node_id != node_id:
        raise NotFoundError(f"run {run_id} is not addressed to node {node_id}")
    if task_id is not None and row.task_id != task_id:
        raise NotFoundError(f"run {run_id} is not part of task {task_id}")
    raise ConflictError(f"run {run_id} is already {row.status}; its result is final")


def _positive(limit: int) -> int:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    return limit


# -- rows <-> records --------------------------------------------------------------------


def _row(record: Any) -> dict[str, Any]:
    """Turn a frozen record into column values (enums by value)."""
    return {k: v.value if isinstance(v, RunStatus) else v for k, v in vars(record).items()}


def _record(cls: type[R], row: Row[Any]) -> R:
    """Build a frozen record from a row whose columns are named like its fields."""
    fields: dict[str, Any] = row._asdict()
    fields = {k: bytes(v) if isinstance(v, memoryview) else v for k, v in fields.items()}
    if "status" in fields:
        fields["status"] = RunStatus(fields["status"])
    return cls(**fields)
