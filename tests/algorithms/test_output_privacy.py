"""Issue 15's attacks on what leaves a node, run by a curious researcher with a valid kit.

A real hub and real node processes (:class:`LocalConsortium`); the researcher uses the
public client, and also reads the raw secure sums directly (``Client.secure_sum``), as an
attacker would, rather than trusting the client's own suppression.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from confide._errors import ConfideError
from confide.algorithms import SecureRound, get_algorithm, split_withheld
from confide.algorithms.federated_query import QueryParams
from confide.client import Client
from confide.local import COLLABORATION, LocalConsortium, patients

Vector = npt.NDArray[np.float64]

NODES = ["node-a", "node-b", "node-c"]
ROWS = 60
MIN_COUNT = 5


def _ids() -> list[str]:
    return [pid for i in range(3) for pid in patients(i, ROWS).column("patient_id").to_pylist()]


def _volumes() -> set[float]:
    return {round(v, 3) for i in range(3) for v in patients(i, ROWS).column("hippocampus_ml").to_pylist()}


def _schema(patient_ids: list[str]) -> dict[str, object]:
    """The researcher's own schema: every patient id declared as a category (the attack)."""
    return {
        "tables": {
            "patients": {
                "parties": NODES,
                "columns": {
                    "patient_id": {"type": "str", "categories": patient_ids},
                    "sex": {"type": "str", "categories": ["F", "M"]},
                    "age": {"type": "int", "bins": [0, 40, 60, 70, 80, 120]},
                    "hippocampus_ml": {"type": "float", "bounds": [0, 20]},
                },
            }
        }
    }


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalConsortium]:
    root: Path = tmp_path_factory.mktemp("attacks")
    policy = {"min_count": MIN_COUNT}
    with LocalConsortium(root, hospitals=3, rows=ROWS, tls=False, policy=policy) as started:
        yield started


def _rounds(params: QueryParams) -> list[SecureRound]:
    return get_algorithm("query.sql").secure_rounds(params, NODES)


def _raw_total(client: Client, task_id: str, params: QueryParams, label: str = "q0") -> Vector:
    """What the attacker reads: the round's total, pads removed, without the client's suppression."""
    rounds = {r.label: r for r in _rounds(params)}
    summed = client.secure_sum(task_id, label, wait_s=60)
    return rounds[label].encoding.decode(summed.total)


def test_grouping_by_patient_id_with_invented_categories_reads_no_patient(
    consortium: LocalConsortium,
) -> None:
    ids = _ids()
    schema = _schema(ids)
    sql = "SELECT patient_id, COUNT(*) AS n, SUM(hippocampus_ml) AS v FROM patients GROUP BY patient_id"

    with Client(consortium.researcher_kit, timeout_s=60) as client:
        result = client.run_query(COLLABORATION, sql, schema, timeout_s=120)
        params = QueryParams.model_validate({"sql": sql, "schema": schema})
        raw = _raw_total(client, result.task_id, params)

    # the researcher's own view: every group withheld, each flagged as withheld at the nodes
    assert all(row["v"] is None for row in result)
    assert len(result.withheld) == len(ids)
    # the attacker's view of the raw sum: every per-patient value is zero, every flag raised
    (secure_round,) = _rounds(params)
    values, flags = split_withheld(secure_round, raw)
    assert flags is not None and flags.all()
    assert not np.any(values), "a node released figures of a group of one patient"
    volumes = _volumes()
    assert not any(round(float(v), 3) in volumes for v in values if v)


def test_groups_each_node_holds_enough_of_are_still_released_exactly(consortium: LocalConsortium) -> None:
    sql = "SELECT sex, COUNT(*) AS n, AVG(hippocampus_ml) AS m FROM patients GROUP BY sex"
    schema = _schema(["unused"])

    with Client(consortium.researcher_kit, timeout_s=60) as client:
        result = client.run_query(COLLABORATION, sql, schema, timeout_s=120)

    pooled = [patients(i, ROWS) for i in range(3)]
    for row in result:
        n = sum(int(np.sum(np.asarray(t.column("sex").to_pylist()) == row["sex"])) for t in pooled)
        assert row["n"] == n
    assert result.withheld == ()


def test_a_histogram_bin_below_min_count_at_a_node_is_withheld_there(consortium: LocalConsortium) -> None:
    # Narrow bins at the top of the age range: a few patients each, at some nodes below min_count.
    edges = [20, 60, 85, 86, 87, 88, 89, 90]
    params = {"table": "patients", "column": "age", "bins": edges}

    with Client(consortium.researcher_kit, timeout_s=60) as client:
        result = client.run_statistic(COLLABORATION, "stats.histogram", params, timeout_s=120)

    per_node = [
        np.histogram(np.clip(patients(i, ROWS).column("age").to_numpy(), 20, 90), bins=edges)[0]
        for i in range(3)
    ]
    released = sum(np.where(c >= MIN_COUNT, c, 0) for c in per_node)
    small_somewhere = np.any([c < MIN_COUNT for c in per_node], axis=0)
    assert small_somewhere.any() and not small_somewhere.all()  # the data exercise both cases
    (group,) = result.output.groups  # type: ignore[attr-defined]
    for b, total in zip(group.bins, released, strict=True):
        assert b.count == (int(total) if total >= MIN_COUNT else None)
    labels = [f"age {b.label}" for b in group.bins]
    assert list(result.withheld) == [
        label for label, small in zip(labels, small_somewhere, strict=True) if small
    ]
    assert any("withheld at some nodes" in line for line in result.notes())


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalConsortium]:
    """A consortium whose hospitals declare patient_id an identifier (a fresh release record)."""
    root: Path = tmp_path_factory.mktemp("guarded")
    policy = {"min_count": MIN_COUNT, "tables": {"patients": {"identifiers": ["patient_id"]}}}
    with LocalConsortium(root, hospitals=3, rows=ROWS, tls=False, policy=policy) as started:
        yield started


def _age_held_by_a_few_at_every_node() -> int:
    """An age that 1 to MIN_COUNT - 1 patients have at each hospital: one SQL sum apart from another."""
    ages = [patients(i, ROWS).column("age").to_numpy() for i in range(3)]
    for age in range(40, 90):
        if all(0 < int(np.sum(a == age)) < MIN_COUNT for a in ages):
            return age
    raise AssertionError("the sample data has no such age")


def test_two_sums_over_cohorts_a_few_patients_apart_are_not_both_released(guarded: LocalConsortium) -> None:
    age = _age_held_by_a_few_at_every_node()
    schema = _schema(["unused"])
    first = f"SELECT SUM(hippocampus_ml) AS v FROM patients WHERE age >= {age}"
    second = f"SELECT SUM(hippocampus_ml) AS v FROM patients WHERE age > {age}"

    with Client(guarded.researcher_kit, timeout_s=60) as client:
        (released,) = client.run_query(COLLABORATION, first, schema, timeout_s=120)
        with pytest.raises(ConfideError) as refused:
            client.run_query(COLLABORATION, second, schema, timeout_s=120)

    assert released["v"] is not None
    assert "differencing" in str(refused.value)
    exact = [patients(i, ROWS) for i in range(3)]
    values = {round(float(v), 3) for t in exact for v in t.column("hippocampus_ml").to_numpy()}
    assert not any(word.strip(",.;()") in {str(v) for v in values} for word in str(refused.value).split())


def test_the_same_query_asked_again_is_answered_again(guarded: LocalConsortium) -> None:
    sql = "SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex"
    schema = _schema(["unused"])

    with Client(guarded.researcher_kit, timeout_s=60) as client:
        first = client.run_query(COLLABORATION, sql, schema, timeout_s=120)
        again = client.run_query(COLLABORATION, sql, schema, timeout_s=120)

    assert [r["n"] for r in first] == [r["n"] for r in again]
    assert all(n is not None for n in (r["n"] for r in again))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT patient_id, COUNT(*) AS n FROM patients GROUP BY patient_id",
        "SELECT SUM(hippocampus_ml) AS v FROM patients WHERE patient_id = 'H0-00007'",
    ],
)
def test_an_identifier_column_cannot_be_grouped_by_or_compared(guarded: LocalConsortium, sql: str) -> None:
    schema = _schema(_ids())

    with Client(guarded.researcher_kit, timeout_s=60) as client, pytest.raises(ConfideError) as refused:
        client.run_query(COLLABORATION, sql, schema, timeout_s=120)

    assert "H0-" not in str(refused.value).replace("H0-00007", "")  # no other identifier is quoted


def test_a_statistic_cannot_group_by_an_identifier(guarded: LocalConsortium) -> None:
    params = {
        "table": "patients",
        "columns": ["hippocampus_ml"],
        "bounds": {"hippocampus_ml": [0, 20]},
        "group_by": [{"column": "patient_id", "categories": _ids()}],
    }

    with Client(guarded.researcher_kit, timeout_s=60) as client, pytest.raises(ConfideError) as refused:
        client.run_statistic(COLLABORATION, "stats.moments", params, timeout_s=120)

    assert "patient_id" in str(refused.value)


def test_a_value_outside_its_declared_bounds_is_clipped_not_refused(consortium: LocalConsortium) -> None:
    # A refusal would tell, with a WHERE on one patient, whether their value lies outside.
    schema = _schema(["unused"])
    schema["tables"]["patients"]["columns"]["hippocampus_ml"]["bounds"] = [0, 6.5]  # type: ignore[index]
    sql = "SELECT COUNT(*) AS n, SUM(hippocampus_ml) AS v FROM patients WHERE age < 70"

    with Client(consortium.researcher_kit, timeout_s=60) as client:
        (row,) = client.run_query(COLLABORATION, sql, schema, timeout_s=120)

    tables = [patients(i, ROWS) for i in range(3)]
    young = [t.column("hippocampus_ml").to_numpy()[t.column("age").to_numpy() < 70] for t in tables]
    assert any((v > 6.5).any() for v in young)  # the data exercise the clip
    assert row["v"] == pytest.approx(sum(float(np.clip(v, 0, 6.5).sum()) for v in young), abs=1e-2)


def test_max_rows_cannot_be_searched_for_a_small_cohorts_size(consortium: LocalConsortium) -> None:
    # max_rows 1, 2, 3, ... would otherwise refuse exactly from the cohort's size on.
    schema = _schema(["unused"])
    sql = "SELECT COUNT(*) AS n FROM patients WHERE age >= 85"

    with Client(consortium.researcher_kit, timeout_s=60) as client, pytest.raises(ConfideError) as refused:
        client.compute(COLLABORATION, "query.sql", {"sql": sql, "schema": schema, "max_rows": 3})

    assert "below ten times" in str(refused.value)
