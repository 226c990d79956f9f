"""Tables in a database (``format: sql``): PostgreSQL and SQLite through SQLAlchemy, read only."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from confide._errors import AlgorithmError
from confide.node import DataSourceConfig, LocalData

POSTGRES_URL = os.environ.get(
    "CONFIDE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
COLUMNS = {"patient_id": "str", "age": "int", "sex": "str", "volume": "float"}

_SQL_TYPES: Mapping[pa.DataType, sa.types.TypeEngine[Any]] = {
    pa.int64(): sa.BigInteger(),
    pa.float64(): sa.Double(),
    pa.string(): sa.Text(),
    pa.bool_(): sa.Boolean(),
}


@functools.cache
def _postgres_problem() -> str | None:
    engine = sa.create_engine(POSTGRES_URL, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return None
    except sa.exc.DBAPIError as exc:
        return str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    finally:
        engine.dispose()


@contextlib.contextmanager
def postgres_table(
    rows: pa.Table, types: Mapping[str, sa.types.TypeEngine[Any]] | None = None
) -> Iterator[str]:
    """A new PostgreSQL table (unique name) holding ``rows``; dropped afterwards."""
    problem = _postgres_problem()
    if problem is not None:
        where = sa.make_url(POSTGRES_URL).render_as_string(hide_password=True)
        pytest.skip(
            f"PostgreSQL not reachable at {where}: start it or set CONFIDE_TEST_POSTGRES_URL ({problem})"
        )
    name = f"confide_test_{uuid.uuid4().hex[:16]}"
    metadata = sa.MetaData()
    chosen = types or {}
    table = sa.Table(
        name, metadata, *(sa.Column(f.name, chosen.get(f.name, _SQL_TYPES[f.type])) for f in rows.schema)
    )
    engine = sa.create_engine(POSTGRES_URL, poolclass=NullPool)
    try:
        metadata.create_all(engine)
        with engine.begin() as connection:
            connection.execute(table.insert(), rows.to_pylist())
        yield name
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def _rows() -> pa.Table:
    return pa.table(
        {
            "patient_id": ["p1", "p2", "p3"],
            "age": pa.array([34, 71, 58], pa.int64()),
            "sex": ["F", "M", "F"],
            "volume": [7.25, 6.5, None],
            "diagnosis": ["secret-1", "secret-2", "secret-3"],
        }
    )


def _sql(name: str, url: str, table: str, columns: Mapping[str, str] = COLUMNS) -> DataSourceConfig:
    return DataSourceConfig.model_validate(
        {"name": name, "format": "sql", "url": url, "table": table, "columns": columns}
    )


def _sqlite(path: Path, statements: list[str]) -> str:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        for statement in statements:
            connection.execute(statement)
        connection.commit()
    return f"sqlite:///{path}"


# -- PostgreSQL -------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_postgresql_table_gives_only_its_declared_columns_with_the_declared_types() -> None:
    with postgres_table(_rows(), {"age": sa.Integer(), "volume": sa.Numeric(6, 2)}) as name:
        data = LocalData([_sql("patients", POSTGRES_URL, f"public.{name}")])

        table = data.table("patients")

    assert table.column_names == list(COLUMNS)  # never diagnosis
    assert table.schema.types == [pa.string(), pa.int64(), pa.string(), pa.float64()]
    assert table.column("volume").to_pylist() == [7.25, 6.5, None]


@pytest.mark.postgres
def test_a_postgresql_source_describes_its_select_in_its_dialect_without_the_password() -> None:
    url = sa.make_url(POSTGRES_URL).set(password="not-needed-with-trust")
    with postgres_table(_rows(), {"volume": sa.Numeric(6, 2)}) as name:
        data = LocalData([_sql("patients", url.render_as_string(hide_password=False), name)])

        source = data.source("patients")

    assert (source.name, source.dialect) == ("patients", "postgres")
    assert source.database is not None and "not-needed" not in source.database
    assert "CAST(volume AS DOUBLE PRECISION) AS volume" in source.select
    assert "diagnosis" not in source.select


@pytest.mark.postgres
def test_a_column_whose_database_type_cannot_hold_the_declared_type_is_named() -> None:
    with postgres_table(_rows()) as name:
        data = LocalData([_sql("patients", POSTGRES_URL, name, {"diagnosis": "int"})])

        with pytest.raises(AlgorithmError) as raised:
            data.table("patients")

    assert "column 'diagnosis' is TEXT" in str(raised.value)
    assert "declare it as str" in str(raised.value)
    assert "secret" not in str(raised.value)


@pytest.mark.postgres
def test_a_missing_table_or_column_is_named() -> None:
    with postgres_table(_rows()) as name:
        no_column = LocalData([_sql("patients", POSTGRES_URL, name, {"weight": "float"})])
        with pytest.raises(AlgorithmError, match=f"table {name} has no column 'weight'"):
            no_column.table("patients")
    no_table = LocalData([_sql("patients", POSTGRES_URL, "research.nowhere")])
    with pytest.raises(AlgorithmError, match=r"no table research\.nowhere"):
        no_table.table("patients")


@pytest.mark.postgres
def test_the_node_runs_sql_in_postgresql_read_only() -> None:
    with postgres_table(_rows()) as name:
        data = LocalData([_sql("patients", POSTGRES_URL, name)])

        with pytest.raises(AlgorithmError, match="ReadOnlySqlTransaction"):
            data.run_sql(f"DELETE FROM {name}", ["patients"])

        assert data.table("patients").num_rows == 3


def test_an_unreachable_database_is_named_without_its_password(caplog: pytest.LogCaptureFixture) -> None:
    data = LocalData(
        [_sql("patients", "postgresql+psycopg://confide:hunter2@127.0.0.1:1/research", "visits")]
    )

    with caplog.at_level(logging.ERROR, "confide.node.data"), pytest.raises(AlgorithmError) as raised:
        data.table("patients")

    message = str(raised.value)
    assert message.startswith("table 'patients': cannot connect to its database")
    assert "check its url in node.yaml" in message
    assert "hunter2" not in message and "hunter2" not in caplog.text
    assert "127.0.0.1:1" in caplog.text  # the operator's log says where


def test_a_missing_driver_says_what_to_install() -> None:
    data = LocalData([_sql("patients", "mysql+nosuchdriver://u:p@db/research", "visits")])

    with pytest.raises(AlgorithmError, match="knows no database 'mysql\\+nosuchdriver'"):
        data.table("patients")


# -- SQLite ---------------------------------------------------------------------------


def test_a_sqlite_table_gives_only_its_declared_columns_with_the_declared_types(tmp_path: Path) -> None:
    url = _sqlite(
        tmp_path / "hospital.db",
        [
            "CREATE TABLE visits (patient_id TEXT, age INTEGER, sex TEXT, volume INTEGER, diagnosis TEXT)",
            "INSERT INTO visits VALUES ('p1', 34, 'F', 7, 'secret'), ('p2', 71, 'M', NULL, 'secret')",
        ],
    )
    data = LocalData([_sql("patients", url, "visits")])

    table = data.table("patients")
    source = data.source("patients")

    assert table.to_pydict() == {
        "patient_id": ["p1", "p2"],
        "age": [34, 71],
        "sex": ["F", "M"],
        "volume": [7.0, None],  # an integer column declared float
    }
    assert source.dialect == "sqlite"
    assert "CAST(volume AS DOUBLE) AS volume" in source.select


def test_a_sqlite_value_that_is_not_of_the_declared_type_is_an_error_without_the_value(
    tmp_path: Path,
) -> None:
    # SQLite stores any value in any column: the value is checked as it is read.
    url = _sqlite(
        tmp_path / "hospital.db",
        [
            "CREATE TABLE visits (patient_id TEXT, age INTEGER, sex TEXT, volume REAL)",
            "INSERT INTO visits VALUES ('p1', 'forty-two', 'F', 7.5)",
        ],
    )
    data = LocalData([_sql("patients", url, "visits")])

    with pytest.raises(AlgorithmError, match="table 'patients' does not match the schema") as raised:
        data.table("patients")

    assert "forty-two" not in str(raised.value)


def test_the_node_runs_sql_in_sqlite_read_only(tmp_path: Path) -> None:
    url = _sqlite(
        tmp_path / "hospital.db",
        ["CREATE TABLE visits (patient_id TEXT, age INTEGER, sex TEXT, volume REAL)"],
    )
    data = LocalData([_sql("patients", url, "visits")])

    with pytest.raises(AlgorithmError, match="OperationalError"):
        data.run_sql("INSERT INTO visits VALUES ('p9', 1, 'F', 1.0)", ["patients"])

    assert data.table("patients").num_rows == 0


def test_url_env_names_the_variable_that_holds_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _sqlite(
        tmp_path / "hospital.db",
        ["CREATE TABLE visits (age INTEGER)", "INSERT INTO visits VALUES (40)"],
    )
    config = DataSourceConfig.model_validate(
        {
            "name": "visits",
            "format": "sql",
            "url_env": "HOSPITAL_DB_URL",
            "table": "visits",
            "columns": {"age": "int"},
        }
    )
    data = LocalData([config])

    with pytest.raises(AlgorithmError, match=r"environment variable HOSPITAL_DB_URL .* is not set"):
        data.table("visits")
    monkeypatch.setenv("HOSPITAL_DB_URL", url)
    assert data.table("visits").column("age").to_pylist() == [40]


def test_sql_runs_only_where_all_its_tables_share_one_database(tmp_path: Path) -> None:
    one = _sqlite(tmp_path / "one.db", ["CREATE TABLE t (age INTEGER)"])
    two = _sqlite(tmp_path / "two.db", ["CREATE TABLE t (age INTEGER)"])
    data = LocalData([_sql("a", one, "t", {"age": "int"}), _sql("b", two, "t", {"age": "int"})])

    with pytest.raises(AlgorithmError, match="not all in one database"):
        data.run_sql("SELECT 1", ["a", "b"])
