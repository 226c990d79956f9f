"""One contract for every ``Store``: memory, SQLite and PostgreSQL must behave alike."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from confide._errors import ConfigError, ConflictError, NotFoundError, StoreError
from confide.hub._memstore import MemoryStore
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
from confide.hub._sqlstore import SqlStore, driver_urls
from confide.hub._store import Store

POSTGRES_URL = os.environ.get(
    "CONFIDE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
NOW = 5_000  # the stores' clock in these tests


# -- a clean PostgreSQL schema per test ----------------------------------------------------


def _libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@functools.cache
def _postgres_problem() -> str | None:
    try:
        with psycopg.connect(_libpq_url(POSTGRES_URL), connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """Yield a URL whose connections see only a fresh, empty schema; drop it afterwards."""
    problem = _postgres_problem()
    if problem is not None:
        where = make_url(POSTGRES_URL).render_as_string(hide_password=True)
        pytest.skip(
            f"PostgreSQL not reachable at {where}: start it or set CONFIDE_TEST_POSTGRES_URL ({problem})"
        )
    schema = sql.Identifier(f"confide_test_{uuid.uuid4().hex[:16]}")
    with psycopg.connect(_libpq_url(POSTGRES_URL), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema.as_string(None)}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq_url(POSTGRES_URL), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    with contextlib.ExitStack() as cleanup:
        made: Store
        if request.param == "memory":
            made = MemoryStore(clock=lambda: NOW)
        elif request.param == "sqlite":
            made = SqlStore(f"sqlite:///{tmp_path / 'hub.db'}", clock=lambda: NOW)
        else:
            made = SqlStore(cleanup.enter_context(postgres_schema()), clock=lambda: NOW)
        await made.initialise()
        try:
            yield made
        finally:
            await made.close()


# -- a small directory: two studies sharing node n2 -----------------------------------------


def _node(node_id: str, org: str) -> NodeRecord:
    return NodeRecord(node_id, org, f"hash-{node_id}", f"PEM {node_id}".encode())


def _researcher(researcher_id: str, org: str) -> ResearcherRecord:
    return ResearcherRecord(researcher_id, org, f"hash-{researcher_id}", f"PEM {researcher_id}".encode())


DIRECTORY = SeedData(
    organisations=(Organisation("o1", "Hospital One"), Organisation("o2", "Hospital Two")),
    nodes=(_node("n1", "o1"), _node("n2", "o2"), _node("n3", "o2")),
    researchers=(_researcher("r1", "o1"), _researcher("r1b", "o1"), _researcher("r2", "o2")),
    collaborations=(
        Collaboration("c2", "Second study", ("n3", "n2"), ("r2",)),
        Collaboration("c1", "First study", ("n2", "n1"), ("r1b", "r1")),
    ),
)
C1 = Collaboration("c1", "First study", ("n1", "n2"), ("r1", "r1b"))
C2 = Collaboration("c2", "Second study", ("n2", "n3"), ("r2",))


@pytest.fixture
async def seeded(store: Store) -> Store:
    await store.seed(DIRECTORY)
    return store


def _task(task_id: str, created_ms: int, collab: str = "c1", researcher: str = "r1") -> Task:
    return Task(task_id, collab, researcher, "stats.summary", created_ms)


def _runs(task: Task, *node_ids: str) -> list[Run]:
    return [
        Run(
            f"{task.id}-{n}",
            task.id,
            n,
            RunStatus.PENDING,
            f"in {n}".encode() + b"\x00\xff",
            task.created_ms,
            task.created_ms,
        )
        for n in node_ids
    ]


async def _add_task(store: Store, task_id: str, created_ms: int, *node_ids: str) -> list[Run]:
    task = _task(task_id, created_ms)
    runs = _runs(task, *(node_ids or ("n1", "n2")))
    await store.create_task(task, runs)
    return runs


def _result(run: Run, status: RunStatus = RunStatus.COMPLETED, at_ms: int = 9_000) -> Result:
    return Result(run.id, run.task_id, run.node_id, status, b"sealed " + run.id.encode(), at_ms)


async def _directory(store: Store) -> tuple[object, ...]:
    nodes = [await store.node_by_token_hash(f"hash-{p}") for p in ("n1", "n2", "n3")]
    researchers = [await store.researcher_by_token_hash(f"hash-{p}") for p in ("r1", "r1b", "r2")]
    collabs = [await store.collaborations_of(p) for p in ("n1", "n2", "n3", "r1", "r2")]
    certificates = [await store.party_certificate(p) for p in ("n1", "r2")]
    return (*nodes, *researchers, *collabs, *certificates)


# -- directory -----------------------------------------------------------------------------


async def test_seed_makes_parties_findable_by_token_hash(seeded: Store) -> None:
    assert await seeded.node_by_token_hash("hash-n2") == _node("n2", "o2")
    assert await seeded.researcher_by_token_hash("hash-r1") == _researcher("r1", "o1")
    assert await seeded.node_by_token_hash("hash-r1") is None
    assert await seeded.researcher_by_token_hash("hash-n1") is None
    assert await seeded.node_by_token_hash("unknown") is None


async def test_seeding_twice_changes_nothing(seeded: Store) -> None:
    before = await _directory(seeded)

    await seeded.seed(DIRECTORY)

    assert await _directory(seeded) == before


async def test_seed_updates_changed_entities_and_replaces_membership(seeded: Store) -> None:
    rotated = dataclasses.replace(_node("n1", "o1"), token_hash="hash-n1-new", certificate_pem=b"PEM 2")
    moved = Collaboration("c1", "First study, renamed", ("n3", "n1"), ("r2",))

    await seeded.seed(SeedData(nodes=(rotated,), collaborations=(moved,)))

    assert await seeded.node_by_token_hash("hash-n1") is None
    assert await seeded.node_by_token_hash("hash-n1-new") == rotated
    assert await seeded.party_certificate("n1") == b"PEM 2"
    assert await seeded.collaboration("c1") == Collaboration(
        "c1", "First study, renamed", ("n1", "n3"), ("r2",)
    )
    assert await seeded.collaborations_of("r1") == []
    assert [c.id for c in await seeded.collaborations_of("n2")] == ["c2"]


async def test_seed_with_unknown_organisation_writes_nothing(store: Store) -> None:
    bad = SeedData(organisations=(Organisation("o1", "One"),), nodes=(_node("n9", "nowhere"),))

    with pytest.raises(NotFoundError, match="organisation nowhere"):
        await store.seed(bad)

    assert await store.node_by_token_hash("hash-n9") is None
    await store.seed(SeedData(nodes=(_node("n9", "o1"),), organisations=(Organisation("o1", "One"),)))


async def test_seed_with_unknown_member_writes_nothing(seeded: Store) -> None:
    bad = SeedData(collaborations=(Collaboration("c1", "Renamed", ("n1", "ghost"), ("r1",)),))

    with pytest.raises(NotFoundError, match=r"node ghost does not exist \(named by collaboration c1\)"):
        await seeded.seed(bad)

    assert await seeded.collaboration("c1") == C1


async def test_seed_with_a_token_hash_already_used_conflicts(seeded: Store) -> None:
    clash = dataclasses.replace(_node("n9", "o1"), token_hash="hash-n1")

    with pytest.raises(ConflictError):
        await seeded.seed(SeedData(nodes=(clash,)))

    assert await seeded.party_certificate("n9") is None


async def test_party_certificate_of_nodes_and_researchers(seeded: Store) -> None:
    assert await seeded.party_certificate("n3") == b"PEM n3"
    assert await seeded.party_certificate("r2") == b"PEM r2"
    assert await seeded.party_certificate("nobody") is None


async def test_collaborations_are_read_with_sorted_members(seeded: Store) -> None:
    assert await seeded.collaboration("c1") == C1
    assert await seeded.collaboration("nope") is None
    assert await seeded.collaborations_of("n2") == [C1, C2]
    assert await seeded.collaborations_of("r1b") == [C1]
    assert await seeded.collaborations_of("stranger") == []


# -- tasks and runs ------------------------------------------------------------------------


async def test_create_task_stores_task_and_runs(seeded: Store) -> None:
    task = _task("t1", 1_000)
    runs = _runs(task, "n2", "n1")

    await seeded.create_task(task, runs)

    assert await seeded.task("t1") == task
    assert await seeded.runs("t1") == sorted(runs, key=lambda r: r.node_id)
    assert await seeded.task("t2") is None
    assert await seeded.runs("t2") == []


async def test_create_task_with_existing_id_conflicts_and_changes_nothing(seeded: Store) -> None:
    runs = await _add_task(seeded, "t1", 1_000)
    again = _task("t1", 2_000)

    with pytest.raises(ConflictError, match="t1"):
        await seeded.create_task(again, [Run("other", "t1", "n3", RunStatus.PENDING, b"", 2_000, 2_000)])

    assert await seeded.task("t1") == _task("t1", 1_000)
    assert await seeded.runs("t1") == runs
    assert await seeded.open_runs_for("n3") == []


async def test_create_task_with_a_taken_run_id_writes_nothing(seeded: Store) -> None:
    taken = await _add_task(seeded, "t1", 1_000)
    task = _task("t2", 2_000)
    runs = [dataclasses.replace(taken[0], task_id="t2"), *_runs(task, "n2")]

    with pytest.raises(ConflictError, match=taken[0].id):
        await seeded.create_task(task, runs)

    assert await seeded.task("t2") is None
    assert await seeded.runs("t2") == []


async def test_create_task_with_unknown_parties_writes_nothing(seeded: Store) -> None:
    task = _task("t1", 1_000)

    with pytest.raises(NotFoundError, match="node ghost"):
        await seeded.create_task(task, _runs(task, "n1", "ghost"))
    with pytest.raises(NotFoundError, match="collaboration c9"):
        await seeded.create_task(_task("t1", 1_000, collab="c9"), [])

    assert await seeded.task("t1") is None
    assert await seeded.open_runs_for("n1") == []


async def test_create_task_refuses_runs_of_another_task(seeded: Store) -> None:
    with pytest.raises(ValueError, match="belongs to task t2"):
        await seeded.create_task(_task("t1", 1_000), _runs(_task("t2", 1_000), "n1"))


async def test_tasks_of_shows_the_collaborations_tasks_newest_first(seeded: Store) -> None:
    await _add_task(seeded, "t-old", 1_000)
    await _add_task(seeded, "t-new", 3_000)
    await _add_task(seeded, "t-mid", 2_000)
    other = _task("t-c2", 4_000, collab="c2", researcher="r2")
    await seeded.create_task(other, _runs(other, "n2"))

    mine = await seeded.tasks_of("r1")
    colleague = await seeded.tasks_of("r1b")

    assert [t.id for t in mine] == ["t-new", "t-mid", "t-old"]
    assert colleague == mine
    assert [t.id for t in await seeded.tasks_of("r1", limit=2)] == ["t-new", "t-mid"]
    assert [t.id for t in await seeded.tasks_of("r2")] == ["t-c2"]
    assert await seeded.tasks_of("stranger") == []


async def test_open_runs_for_lists_unfinished_runs_oldest_first(seeded: Store) -> None:
    later = await _add_task(seeded, "t2", 2_000, "n2")
    earlier = await _add_task(seeded, "t1", 1_000, "n1", "n2")
    await seeded.save_result(_result(earlier[1]))
    running = await seeded.set_run_status(later[0].id, "n2", RunStatus.RUNNING)

    assert await seeded.open_runs_for("n2") == [running]
    assert await seeded.open_runs_for("n1") == [earlier[0]]
    assert await seeded.open_runs_for("n3") == []


async def test_set_run_status_moves_an_open_run(seeded: Store) -> None:
    runs = await _add_task(seeded, "t1", 1_000)

    moved = await seeded.set_run_status(runs[0].id, "n1", RunStatus.DELIVERED)

    assert moved == dataclasses.replace(runs[0], status=RunStatus.DELIVERED, updated_ms=NOW)
    assert (await seeded.runs("t1"))[0] == moved


async def test_set_run_status_of_another_nodes_run_is_not_found(seeded: Store) -> None:
    runs = await _add_task(seeded, "t1", 1_000)

    with pytest.raises(NotFoundError, match="not addressed to node n2"):
        await seeded.set_run_status(runs[0].id, "n2", RunStatus.RUNNING)
    with pytest.raises(NotFoundError, match="not addressed to node n1"):
        await seeded.set_run_status("no-such-run", "n1", RunStatus.RUNNING)

    assert await seeded.runs("t1") == runs


async def test_set_run_status_of_a_finished_run_conflicts(seeded: Store) -> None:
    runs = await _add_task(seeded, "t1", 1_000)
    await seeded.set_run_status(runs[0].id, "n1", RunStatus.FAILED)

    with pytest.raises(ConflictError, match="already failed"):
        await seeded.set_run_status(runs[0].id, "n1", RunStatus.RUNNING)


async def test_save_result_finishes_the_run(seeded: Store) -> None:
    runs = await _add_task(seeded, "t1", 1_000, "n2", "n1")
    by_node = {r.node_id: r for r in runs}
    second, first = _result(by_node["n2"], RunStatus.FAILED), _result(by_node["n1"])

    await seeded.save_result(second)
    await seeded.save_result(first)

    assert await seeded.results("t1") == [first, second]
    assert [r.status for r in await seeded.runs("t1")] == [RunStatus.COMPLETED, RunStatus.FAILED]
    assert {r.updated_ms for r in await seeded.runs("t1")} == {9_000}
    assert await seeded.results("t2") == []


async def test_save_result_refuses_wrong_node_task_status_and_repeats(seeded: Store) -> None:
    run = (await _add_task(seeded, "t1", 1_000, "n1"))[0]
    result = _result(run)

    with pytest.raises(NotFoundError, match="not addressed to node n2"):
        await seeded.save_result(dataclasses.replace(result, node_id="n2"))
    with pytest.raises(NotFoundError, match="not part of task t9"):
        await seeded.save_result(dataclasses.replace(result, task_id="t9"))
    with pytest.raises(ValueError, match="not final"):
        await seeded.save_result(dataclasses.replace(result, status=RunStatus.RUNNING))
    assert await seeded.results("t1") == []

    await seeded.save_result(result)
    with pytest.raises(ConflictError, match="already completed"):
        await seeded.save_result(dataclasses.replace(result, envelope=b"second"))
    with pytest.raises(ConflictError):
        await seeded.set_run_status(run.id, "n1", RunStatus.RUNNING)
    assert await seeded.results("t1") == [result]


async def test_racing_results_for_one_run_store_exactly_one(seeded: Store) -> None:
    run = (await _add_task(seeded, "t1", 1_000, "n1"))[0]
    attempts = [dataclasses.replace(_result(run), envelope=bytes([i])) for i in range(4)]

    outcomes = await asyncio.gather(*(seeded.save_result(a) for a in attempts), return_exceptions=True)

    assert sum(o is None for o in outcomes) == 1
    assert all(isinstance(o, ConflictError) for o in outcomes if o is not None)
    assert len(await seeded.results("t1")) == 1


# -- mailbox -------------------------------------------------------------------------------


def _message(message_id: str, created_ms: int, expires_ms: int, recipient: str = "n1") -> MailboxMessage:
    return MailboxMessage(
        message_id,
        recipient,
        "n2",
        "t1",
        b"sealed \x00" + message_id.encode(),
        created_ms,
        expires_ms,
    )


async def test_messages_for_lists_unexpired_messages_oldest_first(store: Store) -> None:
    late, early, stale = (
        _message("m2", 200, 10_000),
        _message("m1", 100, 10_000),
        _message("m0", 50, 1_000),
    )
    for message in (late, stale, early, _message("m3", 100, 10_000, recipient="n2")):
        await store.put_message(message)

    assert await store.messages_for("n1", now_ms=999) == [stale, early, late]
    assert await store.messages_for("n1", now_ms=1_000) == [early, late]
    assert await store.messages_for("n1", now_ms=1_000, limit=1) == [early]
    assert await store.messages_for("n3", now_ms=0) == []


async def test_put_message_with_a_duplicate_id_conflicts(store: Store) -> None:
    original = _message("m1", 100, 10_000)
    await store.put_message(original)

    with pytest.raises(ConflictError, match="m1"):
        await store.put_message(dataclasses.replace(original, envelope=b"other"))

    assert await store.messages_for("n1", now_ms=0) == [original]


async def test_delete_message_only_for_its_recipient(store: Store) -> None:
    await store.put_message(_message("m1", 100, 10_000))

    assert await store.delete_message("m1", "n2") is False
    assert await store.delete_message("m1", "n1") is True
    assert await store.delete_message("m1", "n1") is False
    assert await store.messages_for("n1", now_ms=0) == []


async def test_purge_expired_drops_messages_past_their_time(store: Store) -> None:
    keep = _message("m2", 100, 2_001)
    for message in (_message("m0", 100, 1_000), _message("m1", 100, 2_000), keep):
        await store.put_message(message)

    assert await store.purge_expired(now_ms=2_000) == 2
    assert await store.purge_expired(now_ms=2_000) == 0
    assert await store.messages_for("n1", now_ms=0) == [keep]


# -- audit ---------------------------------------------------------------------------------


async def test_audit_events_are_listed_newest_first(store: Store) -> None:
    events = [
        AuditEvent(1_000, "r1", "task.create", "t1", "ok"),
        AuditEvent(3_000, "n1", "run.result", "t1/n1", "ok", detail="12 bytes"),
        AuditEvent(2_000, "r2", "task.create", "t2", "denied", detail="not a member of c1"),
        AuditEvent(3_000, "n2", "run.result", "t1/n2", "ok"),
    ]
    for event in events:
        await store.audit(event)

    newest = await store.audit_events()

    assert newest == [events[3], events[1], events[2], events[0]]
    assert all(e.id is not None for e in newest)
    assert len({e.id for e in newest}) == 4
    assert await store.audit_events(limit=2) == [events[3], events[1]]


async def test_limits_must_be_positive(store: Store) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.audit_events(limit=0)
    with pytest.raises(ValueError, match="limit"):
        await store.messages_for("n1", now_ms=0, limit=-1)


# -- SqlStore only: URLs and errors --------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "async_url", "sync_url"),
    [
        ("sqlite:///hub.db", "sqlite+aiosqlite:///hub.db", "sqlite:///hub.db"),
        ("sqlite+aiosqlite:///hub.db", "sqlite+aiosqlite:///hub.db", "sqlite:///hub.db"),
        (
            "postgresql://u:pw@db/hub",
            "postgresql+psycopg://u:pw@db/hub",
            "postgresql+psycopg://u:pw@db/hub",
        ),
        (
            "postgresql+psycopg://u@db/hub",
            "postgresql+psycopg://u@db/hub",
            "postgresql+psycopg://u@db/hub",
        ),
    ],
)
def test_driver_urls_map_plain_urls_to_the_drivers(given: str, async_url: str, sync_url: str) -> None:
    assert tuple(u.render_as_string(hide_password=False) for u in driver_urls(given)) == (
        async_url,
        sync_url,
    )


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "mysql://db/hub", "not a url"])
def test_unusable_database_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        SqlStore(url)


async def test_an_unopenable_database_is_a_store_error(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'hub.db'}")

    with pytest.raises(StoreError, match="could not migrate the store"):
        await store.initialise()
    with pytest.raises(StoreError, match="could not store message m1 in the store at sqlite"):
        await store.put_message(_message("m1", 100, 1_000))
    await store.close()


async def test_an_aggregate_is_stored_once_and_read_back_whole(seeded: Store) -> None:
    task = _task("t1", 1_000)
    await seeded.create_task(task, _runs(task, "n1", "n2"))
    total = bytes(range(256)) * 4096  # 1 MiB of padded sum
    record = AggregateRecord("t1", "t1/sum", '{"ok": true}', total, 5_000)

    await seeded.save_aggregate(record)

    assert await seeded.aggregate("t1", "t1/sum") == record
    assert await seeded.aggregate("t1", "t1/other") is None
    with pytest.raises(ConflictError):
        await seeded.save_aggregate(dataclasses.replace(record, meta='{"ok": false}'))
    assert await seeded.aggregate("t1", "t1/sum") == record
