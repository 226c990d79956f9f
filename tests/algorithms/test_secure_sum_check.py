"""Secure aggregation through a real hub: exact totals for the researcher, a padded sum at the hub."""

from __future__ import annotations

import json

import numpy as np
import pytest

from confide._errors import TaskError
from confide.algorithms.secure_sum_check import expected_total
from tests.conftest import COLLABORATION, InProcessConsortium


def test_the_researcher_gets_the_exact_total_and_the_hub_only_a_padded_one(
    consortium: InProcessConsortium,
) -> None:
    nodes = consortium.node_ids
    with consortium.client() as client:
        results = client.run(COLLABORATION, "diagnostics.secure_sum", {"length": 5000}, timeout_s=60)
        results.raise_for_errors()
        task_id = results.task_id
        summed = client.secure_sum(task_id, "check", wait_s=10)

    assert summed.survivors == tuple(nodes)
    np.testing.assert_array_equal(summed.total, expected_total(nodes, nodes, 5000, 64))
    stored = consortium.bg.call(consortium.app_state.store.aggregate(task_id, f"{task_id}/check"))
    assert stored is not None
    hub_total = np.frombuffer(stored.total, dtype="<u8")
    assert np.mean(hub_total == summed.total) < 0.01  # the hub holds only the padded sum
    assert set(json.loads(stored.meta)["pads"]) == set(nodes)


def test_a_node_that_drops_after_its_masked_input_is_still_summed(consortium: InProcessConsortium) -> None:
    nodes = consortium.node_ids
    with consortium.client() as client:
        params = {"length": 2000, "bits": 32, "leave_after_input": ["node-b"]}
        task_id = client.submit(COLLABORATION, "diagnostics.secure_sum", params)
        summed = client.secure_sum(task_id, "check", wait_s=60)
        results = client.results(task_id, wait_s=30)

    assert summed.survivors == tuple(nodes)
    assert summed.dropped == ()
    np.testing.assert_array_equal(summed.total, expected_total(nodes, nodes, 2000, 32))
    left = {r.node: r.output for r in results if r.output}
    assert left["node-b"] is not None and left["node-b"]["left"] is True


def test_a_round_below_the_threshold_fails_with_a_clear_error(consortium: InProcessConsortium) -> None:
    with consortium.client() as client:
        params = {"length": 100, "threshold": 3, "leave_after_input": ["node-b"]}
        task_id = client.submit(COLLABORATION, "diagnostics.secure_sum", params)
        with pytest.raises(TaskError, match=r"failed: .*only 2 of 'node-.'.s share holders answered"):
            client.secure_sum(task_id, "check", wait_s=60)
        results = client.results(task_id, wait_s=30)
    errors = {r.node: r.error for r in results}
    assert "aborted" in (errors["node-a"] or "") and "aborted" in (errors["node-c"] or "")


def test_a_node_offline_at_submission_joins_the_round_when_it_returns(
    consortium: InProcessConsortium,
) -> None:
    consortium.stop_node("node-c")
    consortium.wait_online(["node-c"], online=False)
    with consortium.client() as client:
        params = {"length": 10, "threshold": 3, "timeout_s": 20}
        task_id = client.submit(
            COLLABORATION, "diagnostics.secure_sum", params, nodes=["node-a", "node-b", "node-c"]
        )
        consortium.start_node("node-c")
        # node-c comes back and joins: with all three the round completes
        summed = client.secure_sum(task_id, "check", wait_s=60)
    assert summed.survivors == tuple(consortium.node_ids)


def test_a_missing_round_is_reported_not_hung(consortium: InProcessConsortium) -> None:
    with consortium.client() as client:
        task_id = client.submit(COLLABORATION, "stats.summary", {"table": "patients", "columns": ["age"]})
        with pytest.raises(TaskError, match="has not finished"):
            client.secure_sum(task_id, "check", wait_s=0.5)


def test_the_unmasked_baseline_round_sums_in_the_clear_at_the_hub(consortium: InProcessConsortium) -> None:
    nodes = consortium.node_ids
    with consortium.client() as client:
        results = client.run(COLLABORATION, "diagnostics.secure_sum", {"length": 300, "masked": False})
        results.raise_for_errors()
        summed = client.secure_sum(results.task_id, "check", wait_s=10)
    stored = consortium.bg.call(
        consortium.app_state.store.aggregate(results.task_id, f"{results.task_id}/check")
    )
    expected = expected_total(nodes, nodes, 300, 64)
    np.testing.assert_array_equal(summed.total, expected)
    np.testing.assert_array_equal(np.frombuffer(stored.total, dtype="<u8"), expected)  # the hub saw it all
    # a masked round moves more bytes (keys, shares) than the baseline, which moves the vectors
    for r in results:
        assert r.output is not None and r.output["bytes_sent"] >= 300 * 8
