"""The Alembic migrations build exactly the schema ``_tables.metadata`` describes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from confide.hub._records import AuditEvent
from confide.hub._sqlstore import SqlStore, driver_urls
from confide.hub._tables import MIGRATIONS_DIR, metadata

from .test_store_contract import postgres_schema


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with contextlib.ExitStack() as cleanup:
        if request.param == "sqlite":
            yield f"sqlite:///{tmp_path / 'hub.db'}"
        else:
            yield cleanup.enter_context(postgres_schema())


def _schema_report(url: str) -> tuple[str | None, list[object], set[str]]:
    """The revision the database is at, its differences from the metadata, its tables."""
    engine = create_engine(driver_urls(url)[1])
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, metadata)
            return context.get_current_revision(), list(diff), set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _head() -> str | None:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


async def test_migrated_schema_matches_the_table_metadata(database_url: str) -> None:
    store = SqlStore(database_url)

    await store.initialise()
    await store.close()

    revision, diff, tables = _schema_report(database_url)
    assert revision == _head() == "0002"
    assert diff == []
    assert tables == {*metadata.tables, "alembic_version"}


async def test_initialise_again_at_head_keeps_schema_and_data(database_url: str) -> None:
    event = AuditEvent(1_000, "hub", "hub.start", "hub", "ok")
    first = SqlStore(database_url)
    await first.initialise()
    await first.audit(event)
    await first.close()

    second = SqlStore(database_url)
    await second.initialise()
    kept = await second.audit_events()
    await second.close()

    assert kept == [event]
    revision, diff, _ = _schema_report(database_url)
    assert (revision, diff) == ("0002", [])


def test_there_is_one_linear_history_of_migrations() -> None:
    script = ScriptDirectory(str(MIGRATIONS_DIR))

    assert script.get_heads() == ["0002"]
    assert [r.revision for r in script.walk_revisions()] == ["0002", "0001"]
