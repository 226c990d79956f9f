"""Alembic environment for the hub's store.

``SqlStore.initialise`` builds the Alembic config in code and hands over an open
connection in ``config.attributes["connection"]``; run from the command line instead,
give ``-x url=sqlite:///hub.db`` (or set ``sqlalchemy.url``) and this file connects itself.
SQLite migrations use batch mode, since SQLite cannot alter most constraints in place.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlalchemy.pool import NullPool

from confide.hub._tables import metadata


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run() -> None:
    config = context.config
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        _migrate(given)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass -x url=sqlite:///hub.db or set sqlalchemy.url")
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run against a database")
_run()
