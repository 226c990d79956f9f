"""``secure.ring_sum`` end to end: sealed node-to-node messages relayed by a blind hub."""

from __future__ import annotations

import pytest

from confide.local import patients
from tests.conftest import COLLABORATION, InProcessConsortium

PARAMS = {"table": "patients", "column": "hippocampus_ml", "decimals": 3}


def _pooled(column: str, hospitals: int = 3, rows: int = 200) -> tuple[float, int]:
    values = [v for i in range(hospitals) for v in patients(i, rows).column(column).to_pylist()]
    return sum(values), len(values)


def test_ring_sum_equals_the_pooled_sum_and_only_the_initiator_reports_it(
    consortium: InProcessConsortium,
) -> None:
    with consortium.client() as client:
        results = client.run(COLLABORATION, "secure.ring_sum", PARAMS, timeout_s=30).raise_for_errors()

    initiator, *relays = results
    total, count = _pooled("hippocampus_ml")
    assert initiator.node == "node-a" and initiator.output is not None
    assert initiator.output["role"] == "initiator"
    assert initiator.output["total"] == pytest.approx(total, abs=3 * 0.0005 * count)
    assert initiator.output["count"] == count
    assert all(
        r.output == {"role": "relay", "nodes": 3, "total": None, "count": None, "ring_ms": None}
        for r in relays
    )
    # every relayed message was acknowledged and dropped from the hub's mailbox
    for node in consortium.node_ids:
        assert consortium.bg.call(consortium.app_state.store.messages_for(node, 0)) == []


def test_peer_messages_wait_for_a_node_that_comes_back(consortium: InProcessConsortium) -> None:
    consortium.stop_node("node-b")
    consortium.wait_online(["node-b"], online=False)

    with consortium.client() as client:
        task_id = client.submit(COLLABORATION, "secure.ring_sum", {**PARAMS, "column": "age", "decimals": 0})
        # node-a's masked running sum is now waiting at the hub for node-b
        consortium.start_node("node-b")
        client.wait(task_id, timeout_s=30)
        results = client.results(task_id).raise_for_errors()

    assert results.results[0].output is not None
    assert results.results[0].output["total"] == _pooled("age")[0]


def test_a_ring_with_a_missing_node_fails_with_a_clear_error(consortium: InProcessConsortium) -> None:
    with consortium.client() as client:
        results = client.run(
            COLLABORATION,
            "secure.ring_sum",
            {**PARAMS, "timeout_s": 0.5},
            nodes=["node-a", "node-b"],
            timeout_s=30,
        )

    assert [r.ok for r in results] == [True, True]  # a two-node ring works
    with consortium.client() as client:
        consortium.stop_node("node-c")
        consortium.wait_online(["node-c"], online=False)
        task_id = client.submit(COLLABORATION, "secure.ring_sum", {**PARAMS, "timeout_s": 0.5})
        state = client.status(task_id)
        for _ in range(100):
            state = client.status(task_id, wait_s=5, known=state.version)
            if state.runs["node-a"] in ("completed", "failed") and state.runs["node-b"] in (
                "completed",
                "failed",
            ):
                break
        partial = client.results(task_id)

    initiator, relay = partial
    assert (initiator.node, initiator.ok) == ("node-a", False)
    assert "no message from 'node-c'" in (initiator.error or "") and "offline" in (initiator.error or "")
    assert (relay.node, relay.ok) == ("node-b", True)  # it passed its sum on; the hub holds it for node-c
