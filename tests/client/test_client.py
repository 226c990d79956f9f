"""The researcher SDK against a real hub and real node agents."""

from __future__ import annotations

import math

import numpy as np
import pytest

from confide._errors import AuthError, NotFoundError, TaskError
from confide.local import patients
from tests.conftest import COLLABORATION, SUMMARY_PARAMS, InProcessConsortium


def test_summary_task_returns_each_nodes_statistics(consortium: InProcessConsortium) -> None:
    with consortium.client() as client:
        results = client.run(COLLABORATION, "stats.summary", SUMMARY_PARAMS, timeout_s=30)

    assert [r.node for r in results] == consortium.node_ids
    for index, result in enumerate(results):
        assert result.ok, result.error
        ages = patients(index, 200).column("age").to_numpy().astype(float)
        got = result.output["columns"]["age"]  # type: ignore[index]
        assert got["count"] == 200
        assert math.isclose(got["mean"], ages.mean())
        assert math.isclose(got["std"], float(np.std(ages, ddof=1)))
        assert got["min"] == ages.min() and got["max"] == ages.max()


def test_unknown_algorithm_is_reported_by_every_node(consortium: InProcessConsortium) -> None:
    with consortium.client() as client:
        results = client.run(COLLABORATION, "stats.nonexistent", {}, timeout_s=30)

    assert len(results.failed) == 3
    for r in results.failed:
        assert "stats.nonexistent" in (r.error or "")
    with pytest.raises(TaskError, match="failed on 3 node"):
        results.raise_for_errors()


def test_bad_parameters_name_the_field_and_the_node(consortium: InProcessConsortium) -> None:
    with consortium.client() as client:
        results = client.run(
            COLLABORATION,
            "stats.summary",
            {"table": "patients", "columns": ["no_such_column"]},
            timeout_s=30,
        )

    assert {r.node for r in results.failed} == set(consortium.node_ids)
    assert "no_such_column" in (results.failed[0].error or "")


def test_only_selected_nodes_run(consortium: InProcessConsortium) -> None:
    with consortium.client() as client:
        results = client.run(COLLABORATION, "stats.summary", SUMMARY_PARAMS, nodes=["node-b"], timeout_s=30)

    assert [r.node for r in results] == ["node-b"]


def test_node_outside_the_collaboration_is_refused_before_submitting(
    consortium: InProcessConsortium,
) -> None:
    with consortium.client() as client, pytest.raises(AuthError, match="node-z"):
        client.submit(COLLABORATION, "stats.summary", SUMMARY_PARAMS, nodes=["node-z"])


def test_unknown_collaboration_and_task_are_clear_errors(consortium: InProcessConsortium) -> None:
    with consortium.client() as client:
        with pytest.raises(NotFoundError, match="no-such-study"):
            client.submit("no-such-study", "stats.summary", SUMMARY_PARAMS)
        with pytest.raises(NotFoundError, match="does not exist"):
            client.status("deadbeef")


def test_waiting_on_an_offline_node_names_it(consortium: InProcessConsortium) -> None:
    consortium.stop_node("node-c")
    consortium.wait_online(["node-c"], online=False)

    with consortium.client() as client:
        task_id = client.submit(COLLABORATION, "stats.summary", SUMMARY_PARAMS)
        with pytest.raises(TaskError, match=r"node-c \(offline, pending\)"):
            client.wait(task_id, timeout_s=1.0)

        # the run waited in the store: when the node returns the task completes
        consortium.start_node("node-c")
        state = client.wait(task_id, timeout_s=30)
        results = client.results(task_id)

    assert state.status == "completed"
    assert all(r.ok for r in results) and len(results) == 3


def test_results_can_be_read_again(consortium: InProcessConsortium) -> None:
    with consortium.client() as client:
        first = client.run(COLLABORATION, "stats.summary", SUMMARY_PARAMS, timeout_s=30)
        again = client.results(first.task_id)
    with consortium.client() as other_session:
        later = other_session.results(first.task_id)

    assert first.results == again.results == later.results
