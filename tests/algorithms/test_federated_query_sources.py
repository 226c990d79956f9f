"""``query.sql`` where the data is: pushed down to PostgreSQL and SQLite, DuckDB over files."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from confide._errors import QueryError
from confide.algorithms import decode_vector
from confide.algorithms.federated_query import QUERY_SQL
from confide.local import PATIENT_COLUMNS, patients
from confide.node import DataSourceConfig, LocalData
from tests.conftest import COLLABORATION, InProcessConsortium
from tests.node.test_database import POSTGRES_URL, postgres_table

NODES = ["node-a", "node-b", "node-c"]
SCHEMA = {
    "tables": {
        "patients": {
            "parties": NODES,
            "columns": {
                "patient_id": {"type": "str"},
                "sex": {"type": "str", "categories": ["F", "M"]},
                "age": {"type": "int", "bins": [0, 40, 60, 70, 80, 120]},
                "hippocampus_ml": {"type": "float", "bounds": [3, 11]},
                "brain_ml": {"type": "float", "bounds": [500, 2000]},
            },
        }
    }
}
SQL = (
    "SELECT sex, age, COUNT(*) AS n, AVG(hippocampus_ml) AS mean, STDDEV(hippocampus_ml) AS sd, "
    "CORR(hippocampus_ml, brain_ml) AS r FROM patients "
    "WHERE NOT (age < 30 OR sex = 'X') AND brain_ml / hippocampus_ml > 100 GROUP BY sex, age"
)


class RecordingData(LocalData):
    """The node's LocalData, noting which SQL it was asked to run in a database."""

    def __init__(self, sources: Sequence[DataSourceConfig]) -> None:
        super().__init__(sources, node_id="node-a")
        self.ran: list[str] = []

    def run_sql(self, sql: str, tables: Sequence[str]) -> list[tuple[object, ...]]:
        self.ran.append(sql)
        return super().run_sql(sql, tables)


def _local(data: LocalData, sql: str = SQL) -> dict[str, Any]:
    return QUERY_SQL.run(data, {"sql": sql, "schema": SCHEMA})


def _csv(rows: pa.Table, folder: Path) -> LocalData:
    path = folder / "patients.csv"
    pacsv.write_csv(rows, path)
    return LocalData(node_id="node-a", sources=[DataSourceConfig.model_validate(_entry("csv", path=path))])


def _entry(format: str, **where: Any) -> dict[str, Any]:
    return {"name": "patients", "format": format, **where, "columns": PATIENT_COLUMNS}


def test_the_local_part_runs_in_sqlite_where_the_table_is_and_agrees_with_duckdb(tmp_path: Path) -> None:
    rows = patients(0, 300)
    database = tmp_path / "hospital.db"
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.execute(
            "CREATE TABLE patients (patient_id TEXT, age INTEGER, sex TEXT, hippocampus_ml REAL, "
            "ventricles_ml REAL, brain_ml REAL, diagnosis TEXT)"
        )
        connection.executemany(
            "INSERT INTO patients VALUES (?, ?, ?, ?, ?, ?, 'secret')",
            [tuple(r.values()) for r in rows.to_pylist()],
        )
        connection.commit()
    data = RecordingData(
        [DataSourceConfig.model_validate(_entry("sql", url=f"sqlite:///{database}", table="patients"))]
    )

    pushed = _local(data)

    [ran] = data.ran
    assert "FROM patients" in ran and "read_csv" not in ran
    expected = _local(_csv(rows, tmp_path))
    assert pushed["rows"] == expected["rows"]
    np.testing.assert_allclose(
        decode_vector(pushed["vectors"]["q0"]), decode_vector(expected["vectors"]["q0"]), rtol=1e-12
    )


@pytest.mark.postgres
def test_the_local_part_runs_in_postgresql_where_the_table_is_and_agrees_with_duckdb(tmp_path: Path) -> None:
    rows = patients(0, 300)
    with postgres_table(rows, {"age": sa.Integer(), "hippocampus_ml": sa.Numeric(6, 3)}) as name:
        data = RecordingData([DataSourceConfig.model_validate(_entry("sql", url=POSTGRES_URL, table=name))])

        pushed = _local(data)

    [ran] = data.ran
    assert f"FROM {name}" in ran
    expected = _local(_csv(rows, tmp_path))
    assert pushed["rows"] == expected["rows"]
    np.testing.assert_allclose(
        decode_vector(pushed["vectors"]["q0"]), decode_vector(expected["vectors"]["q0"]), rtol=1e-12
    )


def test_a_csv_value_of_the_wrong_type_fails_naming_the_table_not_the_value(tmp_path: Path) -> None:
    path = tmp_path / "patients.csv"
    pacsv.write_csv(patients(0, 50), path)
    lines = path.read_text().splitlines()
    cells = lines[7].split(",")
    cells[list(PATIENT_COLUMNS).index("age")] = '"sixty-one"'
    lines[7] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    data = LocalData(node_id="node-a", sources=[DataSourceConfig.model_validate(_entry("csv", path=path))])

    with pytest.raises(QueryError, match="table 'patients' does not match the types declared") as raised:
        _local(data)

    assert "sixty-one" not in str(raised.value)
    assert str(tmp_path) not in str(raised.value)


def test_a_column_the_node_does_not_declare_is_not_there_for_the_query(tmp_path: Path) -> None:
    path = tmp_path / "patients.parquet"
    pq.write_table(patients(0, 50), path)
    columns = {k: v for k, v in PATIENT_COLUMNS.items() if k != "brain_ml"}
    data = LocalData(
        node_id="node-a",
        sources=[DataSourceConfig(name="patients", format="parquet", path=path, columns=columns)],  # type: ignore[arg-type]
    )

    with pytest.raises(QueryError, match='column "brain_ml" not found'):
        _local(data)


def _ward_files(tmp_path: Path) -> LocalData:
    """A node whose patients sit in two files under its own table names, none named ``patients``."""
    for ward, index in (("ward7", 0), ("ward9", 1)):
        pq.write_table(patients(index, 120), tmp_path / f"{ward}.parquet")
    return LocalData(
        node_id="node-a",
        sources=[
            DataSourceConfig(
                name=w, format="parquet", path=tmp_path / f"{w}.parquet", columns=PATIENT_COLUMNS
            )  # type: ignore[arg-type]
            for w in ("ward7", "ward9")
        ],
    )


@pytest.mark.parametrize("ref", [{"file": "ward9.parquet"}, {"table": "ward9"}])
def test_a_job_maps_the_schema_table_to_the_source_it_names(tmp_path: Path, ref: dict[str, str]) -> None:
    data = _ward_files(tmp_path)
    params = {"sql": SQL, "schema": SCHEMA, "sources": {"node-a": {"patients": ref}}}

    mapped = QUERY_SQL.run(data, params)

    folder = tmp_path / "plain"
    folder.mkdir()
    expected = _local(_csv(pq.read_table(tmp_path / "ward9.parquet"), folder))
    assert mapped["rows"] == expected["rows"]
    np.testing.assert_allclose(
        decode_vector(mapped["vectors"]["q0"]), decode_vector(expected["vectors"]["q0"]), rtol=1e-12
    )


def test_a_file_name_the_node_does_not_hold_is_refused_naming_its_files(tmp_path: Path) -> None:
    data = _ward_files(tmp_path)
    ref = {"file": "ward3.parquet"}
    params = {"sql": SQL, "schema": SCHEMA, "sources": {"node-a": {"patients": ref}}}

    with pytest.raises(
        QueryError,
        match=r"no declared table in a file named 'ward3.parquet' \(for schema table "
        r"'patients'\); its files: ward7.parquet, ward9.parquet",
    ):
        QUERY_SQL.run(data, params)


@pytest.mark.postgres
def test_a_query_over_postgresql_parquet_and_csv_nodes_matches_the_pooled_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pooled = pa.concat_tables([patients(i, 200) for i in range(3)])
    with postgres_table(patients(0, 200), {"hippocampus_ml": sa.Numeric(6, 3)}) as name:
        monkeypatch.setenv("CONFIDE_TEST_NODE_A_DB", POSTGRES_URL)  # inherited by the worker processes

        def tables(node_id: str, index: int, folder: Path) -> list[dict[str, Any]]:
            if index == 0:
                return [_entry("sql", url_env="CONFIDE_TEST_NODE_A_DB", table=f"public.{name}")]
            if index == 1:
                pq.write_table(patients(1, 200), folder / "patients.parquet")
                return [_entry("parquet", path="patients.parquet")]
            pacsv.write_csv(patients(2, 200), folder / "patients.csv")
            return [_entry("csv", path="patients.csv")]

        consortium = InProcessConsortium(tmp_path / "consortium", tables=tables)
        try:
            consortium.start()
            with consortium.client() as client:
                result = client.run_query(
                    COLLABORATION,
                    "SELECT sex, COUNT(*) AS n, AVG(hippocampus_ml) AS mean, STDDEV(hippocampus_ml) AS sd "
                    "FROM patients WHERE age >= 60 GROUP BY sex",
                    SCHEMA,
                    timeout_s=60,
                )
        finally:
            consortium.close()

    age = pooled.column("age").to_numpy()
    sex = np.asarray(pooled.column("sex").to_pylist())
    volume = pooled.column("hippocampus_ml").to_numpy()
    rows = list(result)
    assert sorted(result.survivors) == NODES
    assert [r["sex"] for r in rows] == ["F", "M"]
    for row in rows:
        x = volume[(age >= 60) & (sex == row["sex"])]
        assert row["n"] == x.size
        assert row["mean"] == pytest.approx(x.mean(), abs=1e-3)
        assert row["sd"] == pytest.approx(x.std(ddof=1), abs=1e-3)
