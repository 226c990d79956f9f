"""Tables in a hospital's database (``format: sql``), reached through SQLAlchemy, read only.

Where it sits: under :class:`~confide.node._datasource.LocalData`, which offers these tables
to algorithms like files. Every use opens one connection (no pool, so a worker holds no idle
connection to the hospital's database) and runs in a transaction that is rolled back, read
only where the database can say so (PostgreSQL's ``SET TRANSACTION READ ONLY``, SQLite's
``query_only``).

Before reading, the declared columns are checked against the database's catalogue: a
missing column, or one whose type cannot hold the declared type, is an error naming the
table and the column. What is read is one SELECT of exactly the declared columns, cast
where the database's type differs from the declaration. Errors say which table and what
failed; the database's own message, which may quote a value or name a host, goes to the
node's log only, and the URL's password never appears anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, NoSuchTableError, SAWarning
from sqlalchemy.pool import NullPool

from confide._errors import AlgorithmError
from confide.algorithms import TableSource
from confide.node._config import ColumnType, DataSourceConfig

__all__ = ["database_url", "fetch_rows", "run_select", "table_source"]

log = logging.getLogger("confide.node.data")

# SQLAlchemy backends whose SQL the query generator writes (their sqlglot dialect); a table
# in any other database is still read, into Arrow, but the query runs over it in DuckDB.
PUSH_DOWN_DIALECTS = {"postgresql": "postgres", "sqlite": "sqlite"}

_PYTHON = {ColumnType.INT: int, ColumnType.FLOAT: float, ColumnType.STR: str, ColumnType.BOOL: bool}
_SQL_TYPES: dict[ColumnType, sa.types.TypeEngine[Any]] = {
    ColumnType.INT: sa.BigInteger(),
    ColumnType.FLOAT: sa.Double(),
    ColumnType.STR: sa.Text(),
    ColumnType.BOOL: sa.Boolean(),
}
_CONNECT_TIMEOUT_S = 10


def database_url(config: DataSourceConfig) -> URL:
    """The source's SQLAlchemy URL, from ``url`` or the environment variable ``url_env`` names."""
    if config.url is not None:
        return make_url(config.url.get_secret_value())  # checked when node.yaml was read
    variable = str(config.url_env)
    text = os.environ.get(variable, "")
    if not text:
        raise AlgorithmError(
            f"table {config.name!r}: the environment variable {variable} (its url_env) is not set on "
            "this node; set it to the database's SQLAlchemy URL where the node starts"
        )
    try:
        return make_url(text)
    except ArgumentError:
        raise AlgorithmError(
            f"table {config.name!r}: the environment variable {variable} does not hold a SQLAlchemy URL; "
            "write dialect+driver://user:password@host:port/database"
        ) from None


@contextlib.contextmanager
def connected(config: DataSourceConfig) -> Iterator[Connection]:
    """A read-only connection to the source's database, rolled back and closed afterwards."""
    url = database_url(config)
    backend = url.get_backend_name()
    options: dict[str, object] = {}
    if backend == "postgresql" and "connect_timeout" not in url.query:
        options["connect_args"] = {"connect_timeout": _CONNECT_TIMEOUT_S}
    try:
        engine = sa.create_engine(url, poolclass=NullPool, **options)
    except (NoSuchModuleError, ArgumentError):
        raise AlgorithmError(
            f"table {config.name!r}: SQLAlchemy knows no database {url.drivername!r}; check the scheme "
            "of its url in node.yaml (postgresql+psycopg://..., sqlite:///...)"
        ) from None
    except ImportError as exc:
        raise AlgorithmError(
            f"table {config.name!r}: the database driver for {url.drivername} is not installed on this "
            f"node ({exc}); install it (for postgresql+psycopg: pip install 'confide[postgres]')"
        ) from None
    try:
        try:
            connection = engine.connect()
        except DBAPIError as exc:
            log.error("table %s: cannot connect to %s: %s", config.name, url, _first_line(exc.orig))
            raise AlgorithmError(
                f"table {config.name!r}: cannot connect to its database ({_kind(exc)}); check its url in "
                "node.yaml, that the database server is up and reachable from this node, and the user "
                "and password; the node's log has the database's message"
            ) from None
        with connection:
            _read_only(connection, backend)
            try:
                yield connection
            finally:
                with contextlib.suppress(DBAPIError):  # a lost connection has nothing to roll back
                    connection.rollback()
    finally:
        engine.dispose()


def table_source(config: DataSourceConfig) -> TableSource:
    """The SELECT of the source's declared columns, in its database's dialect, checked."""
    url = database_url(config)
    with connected(config) as connection:
        select = _select(config, connection)
    dialect = PUSH_DOWN_DIALECTS.get(url.get_backend_name())
    return TableSource(config.name, select, dialect, url.render_as_string(hide_password=True))


def fetch_rows(config: DataSourceConfig) -> list[Sequence[object]]:
    """Every row of the source's declared columns, in declaration order."""
    with connected(config) as connection:
        select = _select(config, connection)
        try:
            return list(connection.exec_driver_sql(select).fetchall())
        except DBAPIError as exc:
            raise _failed([config.name], "reading it", exc) from None


def run_select(configs: Sequence[DataSourceConfig], sql: str) -> list[tuple[object, ...]]:
    """Run one SELECT in the database all of ``configs`` live in; its rows."""
    with connected(configs[0]) as connection:
        try:
            return [tuple(row) for row in connection.exec_driver_sql(sql).fetchall()]
        except DBAPIError as exc:
            raise _failed([c.name for c in configs], "the query over it", exc) from None


def _read_only(connection: Connection, backend: str) -> None:
    # Defence in depth: confide only ever sends one SELECT, but the database should refuse
    # anything else too. The connection is new (NullPool), so no transaction is open yet.
    if backend == "postgresql":
        connection.execution_options(postgresql_readonly=True)
    elif backend == "sqlite":
        connection.exec_driver_sql("PRAGMA query_only = ON")
    # The statement is executed as written, never with parameters: a % or : in it is literal.
    connection.execution_options(no_parameters=True)


def _select(config: DataSourceConfig, connection: Connection) -> str:
    schema, _, name = str(config.table).rpartition(".")
    try:
        with warnings.catch_warnings():
            # Columns of types SQLAlchemy does not know warn; only the declared ones matter.
            warnings.simplefilter("ignore", SAWarning)
            found = {c["name"]: c["type"] for c in sa.inspect(connection).get_columns(name, schema or None)}
    except NoSuchTableError:
        found = {}
    except DBAPIError as exc:
        raise _failed([config.name], "looking up its columns", exc) from None
    if not found:
        raise AlgorithmError(
            f"table {config.name!r}: its database has no table {config.table} that this node's database "
            "user can see; check table: in node.yaml and the user's privileges"
        )
    columns = []
    for column, declared in config.columns.items():
        if column not in found:
            raise AlgorithmError(
                f"table {config.name!r}: the database table {config.table} has no column {column!r}, which "
                "the node config declares"
            )
        expression: sa.ColumnElement[object] = sa.column(column)
        if _needs_cast(config, column, declared, found[column]):
            expression = sa.cast(expression, _SQL_TYPES[declared])
        columns.append(expression.label(column))
    statement = sa.select(*columns).select_from(sa.table(name, schema=schema or None))
    return str(statement.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))


def _needs_cast(config: DataSourceConfig, column: str, declared: ColumnType, sql_type: object) -> bool:
    """Whether the column is read with a cast; :class:`AlgorithmError` if its type cannot fit."""
    try:
        python = getattr(sql_type, "python_type", object)
    except NotImplementedError:
        python = object
    if python is _PYTHON[declared]:
        return False
    if python is object or declared is ColumnType.STR:
        return True  # an untyped (SQLite) or unknown column: values are checked as they are read
    if declared is ColumnType.FLOAT and python in (int, Decimal):
        return True
    hint = {int: "int or float", float: "float", Decimal: "float", bool: "bool"}.get(python, "str")
    raise AlgorithmError(
        f"table {config.name!r}: column {column!r} is {type(sql_type).__name__} in the database, which "
        f"cannot hold {declared.value} values; declare it as {hint} in node.yaml"
    )


def _failed(tables: Sequence[str], doing: str, exc: DBAPIError) -> AlgorithmError:
    names = ", ".join(repr(t) for t in tables)
    log.error("table %s: %s failed in the database: %s", names, doing, _first_line(exc.orig))
    detail = ""
    if str(getattr(exc.orig, "sqlstate", "") or "").startswith("42"):
        # SQLSTATE class 42 (an unknown column, table or privilege) names objects, never values.
        detail = f": {_first_line(exc.orig)}"
    return AlgorithmError(
        f"table {names}: {doing} failed in this node's database ({_kind(exc)}{detail}); "
        "the node's log has the database's message"
    )


def _kind(exc: DBAPIError) -> str:
    return type(exc.orig).__name__


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
