"""Issue 15's budget and summary attacks against a real hub and real node processes.

A curious researcher with a valid kit, at nodes whose policy sets a ``privacy_budget`` and
so requires differential privacy (the default): spending the whole budget and then asking
for the same statistic without ``privacy``, for ``stats.summary``, for ``query.sql`` and for
the ring sum. Each refusal comes back as the node's sealed error, nothing of the figures
comes back, and a refusal spends nothing. Then ``stats.summary`` at nodes that allow exact
per-node results: extremes withheld unless a node allows them, small columns withheld.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from confide._errors import ConfideError, TaskError
from confide.client import Client
from confide.local import COLLABORATION, LocalConsortium, patients, write_sample_patients

NODES = ["node-a", "node-b", "node-c"]
ROWS = 60
MOMENTS = {
    "table": "patients",
    "columns": ["hippocampus_ml"],
    "bounds": {"hippocampus_ml": (3.0, 11.0)},
    "decimals": 2,
}
DP_MOMENTS = {**MOMENTS, "privacy": {"epsilon": 2.0, "delta": 1e-6}}  # the budget is 3.0
SCHEMA = {
    "tables": {
        "patients": {
            "parties": NODES,
            "columns": {
                "sex": {"type": "str", "categories": ["F", "M"]},
                "hippocampus_ml": {"type": "float", "bounds": [3, 11]},
            },
        }
    }
}
QUERY = {
    "sql": "SELECT sex, COUNT(*) AS n, SUM(hippocampus_ml) AS v FROM patients GROUP BY sex",
    "schema": SCHEMA,
    "decimals": 3,
    "sources": {},
}
DEFAULT_DP = "policy.require_dp, on by default because policy.privacy_budget is set"


@pytest.fixture(scope="module")
def dp_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalConsortium]:
    root: Path = tmp_path_factory.mktemp("require-dp")
    # The local consortium's default budget (3.0) with require_dp left at its default.
    policy = {"require_dp": None, "tables": {}}
    with LocalConsortium(root, hospitals=3, rows=ROWS, tls=False, policy=policy) as started:
        yield started


def _refusals(client: Client, task_id: str) -> list[str]:
    """Every node's sealed error; asserts that no node sent figures."""
    results = client.results(task_id, wait_s=60)
    assert sorted(r.node for r in results) == NODES
    assert all(not r.ok and r.output is None for r in results), [r.output for r in results]
    return [r.error or "" for r in results]


def _no_secure_total(client: Client, task_id: str, label: str) -> None:
    with pytest.raises(ConfideError):
        client.secure_sum(task_id, label, wait_s=5)


def _exact_moments(client: Client) -> list[str]:
    task_id = client.submit(COLLABORATION, "stats.moments", MOMENTS)
    with pytest.raises(TaskError, match="no node contributed"):
        client.statistic(task_id, wait_s=60)
    _no_secure_total(client, task_id, "stat")
    return _refusals(client, task_id)


def _summary(client: Client) -> list[str]:
    task_id = client.submit(COLLABORATION, "stats.summary", {"table": "patients", "columns": ["age"]})
    return _refusals(client, task_id)


def _query(client: Client) -> list[str]:
    task_id = client.submit(COLLABORATION, "query.sql", QUERY)
    errors = _refusals(client, task_id)
    _no_secure_total(client, task_id, "q0")
    return errors


def test_a_spent_budget_binds_every_release_of_the_table(dp_nodes: LocalConsortium) -> None:
    with Client(dp_nodes.researcher_kit, timeout_s=60) as client:
        # before spending anything: every release without noise is refused, and spends nothing
        before = (_exact_moments(client), _summary(client), _query(client))
        result = client.run_statistic(COLLABORATION, "stats.moments", DP_MOMENTS, timeout_s=60)
        assert result.privacy is not None and result.survivors == tuple(NODES)

        # (a) the budget spent: a DP request is refused as exhausted, by every node
        task_id = client.submit(COLLABORATION, "stats.moments", DP_MOMENTS)
        with pytest.raises(TaskError, match="no node contributed"):
            client.statistic(task_id, wait_s=60)
        exhausted = _refusals(client, task_id)
        _no_secure_total(client, task_id, "stat")
        # (b) the same statistic without privacy, (c) stats.summary, (d) query.sql
        after = (_exact_moments(client), _summary(client), _query(client))

    # 1.0 left: the refusals before the DP task were charged nothing
    assert all("asks for epsilon 2.0" in e and "1.0 of 3.0 left" in e for e in exhausted), exhausted
    for exact, summary, query in (before, after):
        for error in [*exact, *query]:
            assert "without differential privacy on every round" in error, error
            assert "requires it" in error and DEFAULT_DP in error
        for error in summary:
            assert "stats.summary releases exact per-node figures of table 'patients'" in error, error
            assert DEFAULT_DP in error
        assert all(e.startswith(f"node '{n}' refuses") for n, e in zip(NODES, summary, strict=True))


def test_the_ring_sum_cannot_carry_a_dp_tables_figures_to_a_peer(dp_nodes: LocalConsortium) -> None:
    params = {"table": "patients", "column": "hippocampus_ml", "timeout_s": 3}

    with Client(dp_nodes.researcher_kit, timeout_s=60) as client:
        task_id = client.submit(COLLABORATION, "secure.ring_sum", params)
        errors = dict(zip(NODES, _refusals(client, task_id), strict=True))

    # the first node refuses to send its masked figures; the others never receive any
    assert "would send a message to a peer derived from table 'patients'" in errors["node-a"]
    assert DEFAULT_DP in errors["node-a"]
    volumes = {f"{v:.3f}" for i in range(3) for v in patients(i, ROWS).column("hippocampus_ml").to_pylist()}
    assert not any(v in e for e in errors.values() for v in volumes)


# -- stats.summary where exact per-node results are allowed ------------------------------


def _with_rare_column(node_id: str, index: int, folder: Path) -> list[dict[str, Any]]:
    """The sample patients plus ``rare_ml``, measured for 3 patients per node (below min_count 5)."""
    [entry] = write_sample_patients(index, folder, ROWS)
    table = patients(index, ROWS)
    rare = [f"{7.0 + i}" if i < 3 else "" for i in range(ROWS)]
    lines = [",".join(["age", "hippocampus_ml", "rare_ml"])]
    lines += [
        f"{a},{h},{r}"
        for a, h, r in zip(
            table.column("age").to_pylist(), table.column("hippocampus_ml").to_pylist(), rare, strict=True
        )
    ]
    (folder / "summary.csv").write_text("\n".join(lines) + "\n")
    columns = {"age": "int", "hippocampus_ml": "float", "rare_ml": "float"}
    return [entry, {"name": "measures", "format": "csv", "path": "summary.csv", "columns": columns}]


@pytest.fixture(scope="module")
def summary_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalConsortium]:
    root: Path = tmp_path_factory.mktemp("summary")
    # no DP required, extremes at the node-wide default (withheld) ...
    policy = {"require_dp": False, "tables": {}, "min_count": 5}
    consortium = LocalConsortium(
        root, hospitals=3, rows=ROWS, tls=False, policy=policy, tables=_with_rare_column
    )
    consortium.prepare()
    # ... except at node-b, whose hospital allows them for this table
    path = consortium.node_config_path("node-b")
    config = yaml.safe_load(path.read_text())
    config["policy"]["tables"] = {"measures": {"allow_extremes": True}}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        consortium.start_hub()
        for node_id in NODES:
            consortium.start_node(node_id)
        consortium.wait_online()
        yield consortium
    finally:
        consortium.close()


def test_summary_withholds_extremes_unless_a_node_allows_them_and_withholds_small_columns(
    summary_nodes: LocalConsortium,
) -> None:
    params = {"table": "measures", "columns": ["age", "rare_ml"]}

    with Client(summary_nodes.researcher_kit, timeout_s=60) as client:
        results = {r.node: r.output or {} for r in client.run(COLLABORATION, "stats.summary", params)}

    for index, node in enumerate(NODES):
        out = results[node]
        ages = patients(index, ROWS).column("age").to_pylist()
        age, rare = out["columns"]["age"], out["columns"]["rare_ml"]
        assert age["count"] == ROWS and age["withheld"] is False
        if node == "node-b":
            assert out["extremes"] == "released"
            assert (age["min"], age["max"]) == (min(ages), max(ages))
        else:
            assert out["extremes"] == "withheld by the node's policy"
            assert (age["min"], age["max"]) == (None, None)
        # 3 values, below min_count 5: nothing of the column, not even how many
        assert rare == {"count": None, "mean": None, "std": None, "min": None, "max": None, "withheld": True}


def test_summary_of_a_table_below_min_count_says_only_that(summary_nodes: LocalConsortium) -> None:
    params = {"table": "measures", "columns": ["age"]}
    path = summary_nodes.node_config_path("node-c")
    config = yaml.safe_load(path.read_text())
    config["policy"]["min_count"] = ROWS + 1
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    summary_nodes.stop("node-c")
    summary_nodes.start_node("node-c")
    summary_nodes.wait_online()
    try:
        with Client(summary_nodes.researcher_kit, timeout_s=60) as client:
            results = {r.node: r for r in client.run(COLLABORATION, "stats.summary", params)}
    finally:
        config["policy"]["min_count"] = 5
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        summary_nodes.stop("node-c")
        summary_nodes.start_node("node-c")
        summary_nodes.wait_online()

    refused = results["node-c"]
    assert not refused.ok and refused.output is None
    assert f"fewer rows than this node's min_count {ROWS + 1}" in (refused.error or "")
    assert str(ROWS) not in (refused.error or "").replace(str(ROWS + 1), "")
    assert results["node-a"].ok and results["node-b"].ok
