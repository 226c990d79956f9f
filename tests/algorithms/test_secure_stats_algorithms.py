"""Federated statistics end to end: nodes, a blind hub, secure aggregation, the researcher finalises."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from confide._errors import AlgorithmError, ConfideError, TaskError
from confide.local import patients
from tests.conftest import COLLABORATION, InProcessConsortium

BOUNDS = {"hippocampus_ml": (3.0, 11.0), "age": (0.0, 120.0)}
AGE_BINS = [0.0, 40.0, 60.0, 70.0, 80.0, 120.0]


def _pooled(hospitals: int = 3, rows: int = 200) -> pa.Table:
    return pa.concat_tables([patients(i, rows) for i in range(hospitals)])


def test_moments_grouped_by_sex_match_the_pooled_data(consortium: InProcessConsortium) -> None:
    params = {
        "table": "patients",
        "columns": ["hippocampus_ml", "age"],
        "bounds": BOUNDS,
        "group_by": [{"column": "sex", "categories": ["F", "M"]}],
    }
    with consortium.client() as client:
        result = client.run_statistic(COLLABORATION, "stats.moments", params, timeout_s=60)

    pooled = _pooled()
    assert result.survivors == tuple(consortium.node_ids)
    assert result.privacy is None and result.refused == {}
    for group in result.output.groups:  # type: ignore[attr-defined]
        mask = np.asarray(pooled.column("sex").to_pylist()) == group.group["sex"]
        x = pooled.column("hippocampus_ml").to_numpy()[mask]
        column = group.columns["hippocampus_ml"]
        assert column.count == mask.sum()
        assert column.mean == pytest.approx(x.mean(), abs=1e-3)
        assert column.std_sample == pytest.approx(x.std(ddof=1), abs=1e-3)
    assert result.tables and result.tables[0].rows


def test_zscore_of_a_patient_in_his_age_group(consortium: InProcessConsortium) -> None:
    params = {
        "table": "patients",
        "column": "hippocampus_ml",
        "bounds": (3.0, 11.0),
        "value": 6.1,
        "group_by": [{"column": "age", "bins": AGE_BINS}],
        "group": {"age": 67},
    }
    with consortium.client() as client:
        result = client.run_statistic(COLLABORATION, "stats.zscore", params, timeout_s=60)

    pooled = _pooled()
    age = pooled.column("age").to_numpy()
    x = pooled.column("hippocampus_ml").to_numpy()[(age >= 60) & (age < 70)]
    out = result.output
    assert out.count == x.size  # type: ignore[attr-defined]
    assert out.z == pytest.approx((6.1 - x.mean()) / x.std(ddof=1), abs=1e-3)  # type: ignore[attr-defined]


def test_a_node_below_min_count_sits_out_says_so_and_the_others_still_finish(
    consortium: InProcessConsortium,
) -> None:
    # ages 86-87: node-a has 5 patients, node-b 3 (below min_count 5), node-c 8
    params = {
        "table": "patients",
        "column": "hippocampus_ml",
        "bounds": (3.0, 11.0),
        "value": 7.0,
        "group_by": [{"column": "age", "bins": [86.0, 87.5], "other": True}],
        "group": {"age": 86},
    }
    with consortium.client() as client:
        result = client.run_statistic(COLLABORATION, "stats.zscore", params, timeout_s=60)

    assert result.survivors == ("node-a", "node-c")
    assert "has fewer rows for this task than its min_count 5" in result.refused["node-b"]
    assert "3 rows" not in result.refused["node-b"]  # how many it has is the node's business
    ages = np.concatenate([patients(i, 200).column("age").to_numpy() for i in (0, 2)])
    assert result.output.count == ((ages >= 86) & (ages < 88)).sum()  # type: ignore[attr-defined]


def test_too_few_contributing_nodes_give_a_clear_error(consortium: InProcessConsortium) -> None:
    params = {"table": "patients", "column": "age", "bins": [0.0, 200.0], "max_rows": 150}
    with consortium.client() as client:
        task_id = client.submit(COLLABORATION, "stats.histogram", params)
        with pytest.raises(TaskError, match=r"no node contributed.*more rows than max_rows=150"):
            client.statistic(task_id, wait_s=30)


def test_differential_privacy_is_charged_reported_and_refused_past_the_budget(
    consortium: InProcessConsortium,
) -> None:
    params = {
        "table": "patients",
        "columns": ["hippocampus_ml"],
        "bounds": {"hippocampus_ml": (3.0, 11.0)},
        "decimals": 2,
        "privacy": {"epsilon": 2.0, "delta": 1e-6},
    }
    with consortium.client() as client:
        result = client.run_statistic(COLLABORATION, "stats.moments", params, timeout_s=60)
        assert result.privacy is not None
        assert result.privacy.epsilon <= 2.0 + 1e-9
        pooled = _pooled().column("hippocampus_ml").to_numpy()
        column = result.output.groups[0].columns["hippocampus_ml"]  # type: ignore[attr-defined]
        assert column.mean == pytest.approx(pooled.mean(), abs=0.5)  # noisy, but close

        # the budget is 3.0 per researcher and table: a second epsilon-2 task is refused
        task_id = client.submit(COLLABORATION, "stats.moments", params)
        with pytest.raises(TaskError, match="no node contributed"):
            client.statistic(task_id, wait_s=30)
        errors = [r.error or "" for r in client.results(task_id, wait_s=10)]
    assert all("asks for epsilon 2.0" in e and "1.0 of 3.0 left" in e for e in errors), errors


def test_an_encoding_that_could_overflow_is_refused_before_submitting(
    consortium: InProcessConsortium,
) -> None:
    params = {"table": "patients", "columns": ["age"], "bounds": {"age": [0, 40000]}, "decimals": 6}
    with consortium.client() as client:
        with pytest.raises(ConfideError, match="overflow"):
            client.run_statistic(COLLABORATION, "stats.moments", params)
        # one node's vector fits, three nodes' sum would not
        wide = {"table": "patients", "columns": ["age"], "bounds": {"age": [0, 40000]}}
        with pytest.raises(ConfideError, match="fixed-point overflow: 3 parties"):
            client.run_statistic(COLLABORATION, "stats.moments", wide)
        with pytest.raises(AlgorithmError, match=r"invalid parameters for stats\.moments"):
            client.run_statistic(COLLABORATION, "stats.moments", {"table": "patients"})
        assert client.whoami()  # nothing was submitted: no task to wait for
