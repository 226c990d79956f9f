"""``query.sql`` end to end: local DuckDB SQL per node, secure sums, finalised at the receiver."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from confide._errors import QueryError
from confide.local import patients
from tests.conftest import COLLABORATION, InProcessConsortium

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
            },
        }
    }
}


def _pooled() -> pa.Table:
    return pa.concat_tables([patients(i, 200) for i in range(3)])


def test_a_grouped_mean_and_std_match_the_pooled_data(consortium: InProcessConsortium) -> None:
    sql = (
        "SELECT sex, COUNT(*) AS n, AVG(hippocampus_ml) AS mean, STDDEV(hippocampus_ml) AS sd "
        "FROM patients WHERE age >= 60 GROUP BY sex"
    )
    with consortium.client() as client:
        rows = client.run_query(COLLABORATION, sql, SCHEMA, timeout_s=60)

    pooled = _pooled()
    age = pooled.column("age").to_numpy()
    sex = np.asarray(pooled.column("sex").to_pylist())
    volume = pooled.column("hippocampus_ml").to_numpy()
    assert [r["sex"] for r in rows] == ["F", "M"]
    for row in rows:
        x = volume[(age >= 60) & (sex == row["sex"])]
        assert row["n"] == x.size
        assert row["mean"] == pytest.approx(x.mean(), abs=1e-3)
        assert row["sd"] == pytest.approx(x.std(ddof=1), abs=1e-3)


def test_a_query_needing_general_mpc_is_refused_before_anything_is_sent(
    consortium: InProcessConsortium,
) -> None:
    with consortium.client() as client, pytest.raises(QueryError, match="row-level output"):
        client.run_query(COLLABORATION, "SELECT patient_id FROM patients", SCHEMA)


def test_a_node_with_fewer_rows_than_its_min_count_sits_out_even_of_a_sum_alone(
    consortium: InProcessConsortium,
) -> None:
    # Patients aged 88 and over: 4 at node-a, 9 at node-b, 7 at node-c; every min_count is 5.
    sql = "SELECT SUM(hippocampus_ml) AS total FROM patients WHERE age >= 88"
    with consortium.client() as client:
        result = client.run_query(COLLABORATION, sql, SCHEMA, timeout_s=60)

    assert result.survivors == ("node-b", "node-c")
    assert "has fewer rows for this task than its min_count 5" in result.sat_out["node-a"]
    assert "4" not in result.sat_out["node-a"]  # its exact count is not disclosed
    expected = 0.0
    for index in (1, 2):
        table = patients(index, 200)
        volume, age = table.column("hippocampus_ml").to_numpy(), table.column("age").to_numpy()
        expected += float(volume[age >= 88].sum())
    [row] = result
    assert row["total"] == pytest.approx(expected, abs=1e-2)
