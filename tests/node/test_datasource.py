"""Declaring a node's tables in node.yaml, scanning its files with DuckDB, and what a step read."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from confide._errors import AlgorithmError, ConfigError
from confide.node import DataSourceConfig, LocalData, Policy, load_node_config


def _node_yaml(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "node.yaml"
    path.write_text(f"kit: kit\ndata:\n  - {{name: patients, columns: {{age: int}}, {source}}}\n")
    return path


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("format: sql, path: p.csv, url: 'sqlite:///h.db', table: t", "path is for csv and parquet files"),
        ("format: sql, table: t", "format sql needs exactly one of url .* and url_env"),
        ("format: sql, url: 'sqlite:///h.db', url_env: DB, table: t", "exactly one of url .* and url_env"),
        ("format: sql, url: 'sqlite:///h.db'", "format sql needs table"),
        ("format: csv, path: p.csv, url: 'sqlite:///h.db'", "url is only for format sql"),
        ("format: parquet, path: p.parquet, table: t", "table is only for format sql"),
        ("format: csv", "format csv needs path"),
        ("format: sql, url: 'sqlite:///h.db', table: 'visits; DROP TABLE x'", r"data\.0\.table"),
        ("format: sql, url_env: 'not a name', table: t", r"data\.0\.url_env"),
        ("format: excel, path: p.xlsx", "'csv', 'parquet' or 'sql'"),
    ],
)
def test_a_source_with_the_wrong_fields_for_its_format_is_refused_naming_them(
    tmp_path: Path, source: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_node_config(_node_yaml(tmp_path, source))


def test_a_malformed_url_is_refused_without_echoing_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.0\.url: .*not a SQLAlchemy URL") as raised:
        load_node_config(_node_yaml(tmp_path, "format: sql, url: 'hunter2 is my password', table: t"))

    assert "hunter2" not in str(raised.value)


def test_a_relative_sqlite_file_is_resolved_against_node_yaml_and_the_password_is_hidden(
    tmp_path: Path,
) -> None:
    config = load_node_config(_node_yaml(tmp_path, "format: sql, url: 'sqlite:///data/h.db', table: t"))
    secret = load_node_config(
        _node_yaml(tmp_path, "format: sql, url: 'postgresql+psycopg://u:hunter2@db/research', table: t")
    )

    [source] = config.data
    assert source.url is not None
    assert source.url.get_secret_value() == f"sqlite:///{tmp_path.resolve() / 'data' / 'h.db'}"
    assert "hunter2" not in repr(secret)


def test_a_csv_source_is_scanned_by_duckdb_as_its_declared_columns_and_types(tmp_path: Path) -> None:
    path = tmp_path / "it's here.csv"
    path.write_text("id,age,sex,note\np1,34,F,x\np2,,M,y\n")
    data = LocalData(
        [DataSourceConfig(name="patients", format="csv", path=path, columns={"age": "float", "sex": "str"})]
    )

    source = data.source("patients")
    with duckdb.connect() as connection:
        scanned = connection.sql(source.select).to_arrow_table()

    assert (source.dialect, source.database) == ("duckdb", None)
    assert scanned.schema == pa.schema([("age", pa.float64()), ("sex", pa.string())])
    assert scanned.to_pydict() == {"age": [34.0, None], "sex": ["F", "M"]}


def test_a_parquet_source_is_cast_to_the_declared_types(tmp_path: Path) -> None:
    path = tmp_path / "patients.parquet"
    pq.write_table(
        pa.table({"age": pa.array([34, 71], pa.int32()), "volume": pa.array([7, 6], pa.int16())}), path
    )
    data = LocalData(
        [
            DataSourceConfig(
                name="patients", format="parquet", path=path, columns={"age": "int", "volume": "float"}
            )
        ]
    )

    with duckdb.connect() as connection:
        scanned = connection.sql(data.source("patients").select).to_arrow_table()

    assert scanned.schema == pa.schema([("age", pa.int64()), ("volume", pa.float64())])


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"age": "int"}, "column 'age' is DOUBLE in its Parquet file, which cannot hold int values"),
        ({"weight": "float"}, "its Parquet file has no column 'weight'"),
    ],
)
def test_a_parquet_column_that_does_not_fit_its_declaration_is_named(
    tmp_path: Path, columns: dict[str, str], message: str
) -> None:
    path = tmp_path / "patients.parquet"
    pq.write_table(pa.table({"age": [34.5, 71.0]}), path)
    data = LocalData(
        [
            DataSourceConfig.model_validate(
                {"name": "p", "format": "parquet", "path": path, "columns": columns}
            )
        ]
    )

    with pytest.raises(AlgorithmError, match=message):
        data.source("p")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    data = LocalData(
        [DataSourceConfig(name="patients", format="csv", path=tmp_path / "gone.csv", columns={"age": "int"})]
    )

    with pytest.raises(AlgorithmError, match="table 'patients': its file is missing"):
        data.source("patients")


# -- what a step read -------------------------------------------------------------------


def _two_tables(tmp_path: Path) -> LocalData:
    csv = tmp_path / "patients.csv"
    csv.write_text("age\n34\n71\n")
    db = tmp_path / "hospital.db"
    with contextlib.closing(sqlite3.connect(db)) as connection:
        connection.execute("CREATE TABLE visits (age INTEGER)")
        connection.execute("INSERT INTO visits VALUES (50)")
        connection.commit()
    return LocalData(
        [
            DataSourceConfig(name="patients", format="csv", path=csv, columns={"age": "int"}),
            DataSourceConfig.model_validate(
                {"name": "visits", "format": "sql", "url": f"sqlite:///{db}", "table": "visits"}
                | {"columns": {"age": "int"}}
            ),
        ]
    )


def test_every_way_of_reading_a_table_is_recorded_until_the_next_step(tmp_path: Path) -> None:
    data = _two_tables(tmp_path)

    data.start_step()
    data.table("patients")
    first = data.tables_read
    data.start_step()
    data.source("patients")
    second = data.tables_read
    data.start_step()
    data.run_sql("SELECT count(*) FROM visits", ["visits"])
    third = data.tables_read
    data.start_step()

    assert (first, second, third) == (("patients",), ("patients",), ("visits",))
    assert data.tables_read == ()


def test_listing_tables_reads_none_and_an_unknown_table_is_not_recorded(tmp_path: Path) -> None:
    data = _two_tables(tmp_path)
    data.start_step()

    data.table_names()
    data.files()
    with pytest.raises(AlgorithmError, match="no table 'nowhere'"):
        data.table("nowhere")

    assert data.tables_read == ()


def test_a_read_that_fails_still_counts_as_read(tmp_path: Path) -> None:
    data = LocalData(
        [DataSourceConfig(name="patients", format="csv", path=tmp_path / "gone.csv", columns={"age": "int"})]
    )
    data.start_step()

    with pytest.raises(AlgorithmError):
        data.table("patients")

    assert data.tables_read == ("patients",)


def test_the_disclosure_rules_come_from_the_policy() -> None:
    policy = Policy(min_count=12, tables={"patients": {"allow_extremes": True}})  # type: ignore[dict-item]
    data = LocalData([], policy=policy)

    assert data.min_count == 12
    assert data.allows_extremes("patients") and not data.allows_extremes("visits")
    assert LocalData([]).min_count == Policy().min_count and not LocalData([]).allows_extremes("patients")
