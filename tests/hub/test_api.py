"""The researcher REST API: authentication, membership, validation, audit, OpenAPI docs."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from confide.kit import Kit
from confide.wire import Envelope, MessageKind, seal_envelope
from tests.conftest import COLLABORATION, SUMMARY_PARAMS, InProcessConsortium


def _url(c: InProcessConsortium, path: str) -> str:
    return c.local.hub_url + path


def _get(c: InProcessConsortium, path: str, **kw: Any) -> httpx.Response:
    return httpx.get(_url(c, path), verify=c.verify, **kw)


def _post(c: InProcessConsortium, path: str, **kw: Any) -> httpx.Response:
    return httpx.post(_url(c, path), verify=c.verify, **kw)


def test_missing_and_wrong_credentials_get_401_with_advice(consortium: InProcessConsortium) -> None:
    missing = _get(consortium, ("/api/whoami"))
    wrong = _get(consortium, ("/api/whoami"), headers={"Authorization": "Bearer not-a-real-token"})

    assert missing.status_code == 401 and "Bearer" in missing.json()["message"]
    assert wrong.status_code == 401 and "kit" in wrong.json()["message"]


def test_researcher_outside_the_collaboration_sees_nothing(consortium: InProcessConsortium) -> None:
    with consortium.client("alice") as alice:
        task_id = alice.submit(COLLABORATION, "stats.summary", SUMMARY_PARAMS)
    with consortium.client("bob") as bob:
        bob_kit = bob.kit
        collab = _get(
            consortium,
            (f"/api/collaborations/{COLLABORATION}"),
            headers={"Authorization": f"Bearer {bob_kit.token}"},
        )
        task = _get(
            consortium,
            (f"/api/tasks/{task_id}"),
            headers={"Authorization": f"Bearer {bob_kit.token}"},
        )
        results = _get(
            consortium,
            (f"/api/tasks/{task_id}/results"),
            headers={"Authorization": f"Bearer {bob_kit.token}"},
        )
        listed = _get(consortium, ("/api/tasks"), headers={"Authorization": f"Bearer {bob_kit.token}"})

    assert collab.status_code == 403 and "not a member" in collab.json()["message"]
    assert task.status_code == 404 and results.status_code == 404
    assert listed.json() == []


def _sealed_input(kit: Kit, node_kit: Kit, task_id: str, recipient: str | None = None) -> str:
    envelope = Envelope.new(
        MessageKind.TASK_INPUT, kit.party_id, recipient or node_kit.party_id, task_id=task_id
    )
    return base64.b64encode(seal_envelope(envelope, b"{}", kit.identity, node_kit.public).encode()).decode()


def test_hub_refuses_inputs_not_sealed_for_their_node(consortium: InProcessConsortium) -> None:
    alice = Kit.load(consortium.researcher_kit)
    node_a = Kit.load(consortium.local.kits / "nodes" / "node-a")
    headers = {"Authorization": f"Bearer {alice.token}"}
    # the envelope for node-a is filed under node-b
    body = {
        "id": "t1",
        "collaboration": COLLABORATION,
        "algorithm": "stats.summary",
        "inputs": {"node-b": _sealed_input(alice, node_a, "t1")},
    }

    crossed = _post(consortium, ("/api/tasks"), json=body, headers=headers)
    bad_b64 = _post(consortium, ("/api/tasks"), json={**body, "inputs": {"node-a": "%%%"}}, headers=headers)
    wrong_task = _post(
        consortium,
        ("/api/tasks"),
        json={**body, "id": "t2", "inputs": {"node-a": _sealed_input(alice, node_a, "t1")}},
        headers=headers,
    )
    outsider = _post(
        consortium,
        ("/api/tasks"),
        json={**body, "inputs": {"node-x": _sealed_input(alice, node_a, "t1")}},
        headers=headers,
    )
    extra = _post(consortium, ("/api/tasks"), json={**body, "surprise": 1}, headers=headers)

    assert crossed.status_code == 400 and "node-b" in crossed.json()["message"]
    assert bad_b64.status_code == 400 and "base64" in bad_b64.json()["message"]
    assert wrong_task.status_code == 400 and "another task" in wrong_task.json()["message"]
    assert outsider.status_code == 403 and "node-x" in outsider.json()["message"]
    assert extra.status_code == 422
    # nothing was half-written
    assert _get(consortium, ("/api/tasks"), headers=headers).json() == []


def test_duplicate_task_id_is_a_conflict_and_keeps_the_first(
    consortium: InProcessConsortium,
) -> None:
    alice = Kit.load(consortium.researcher_kit)
    node_a = Kit.load(consortium.local.kits / "nodes" / "node-a")
    headers = {"Authorization": f"Bearer {alice.token}"}
    body = {
        "id": "dup",
        "collaboration": COLLABORATION,
        "algorithm": "stats.summary",
        "inputs": {"node-a": _sealed_input(alice, node_a, "dup")},
    }

    first = _post(consortium, ("/api/tasks"), json=body, headers=headers)
    second = _post(consortium, ("/api/tasks"), json=body, headers=headers)

    assert first.status_code == 201
    assert second.status_code == 409


def test_every_call_is_audited_with_its_actor_and_outcome(consortium: InProcessConsortium) -> None:
    with consortium.client("alice") as alice:
        alice.run(COLLABORATION, "stats.summary", SUMMARY_PARAMS, timeout_s=30)
    _get(consortium, ("/api/whoami"), headers={"Authorization": "Bearer forged"})

    state = consortium.app_state
    consortium.bg.call(state.audit.flush())
    events = consortium.bg.call(state.store.audit_events(500))

    actions = {(e.actor, e.action, e.outcome) for e in events}
    assert ("alice", "POST", "201") in actions
    assert ("anonymous", "GET", "401") in actions
    assert any(e.actor == "node-a" and e.action == "run.completed" for e in events)
    assert any(e.actor == "node-b" and e.action == "node.connect" for e in events)


def test_openapi_docs_are_served(consortium: InProcessConsortium) -> None:
    docs = _get(consortium, ("/docs"))
    spec = _get(consortium, ("/openapi.json")).json()

    assert docs.status_code == 200
    assert "/api/tasks" in spec["paths"] and "/api/tasks/{task_id}/results" in spec["paths"]


@pytest.mark.parametrize("path", ["/api/tasks/..%2F..", "/api/tasks/" + "x" * 300])
def test_malformed_ids_are_rejected(consortium: InProcessConsortium, path: str) -> None:
    alice = Kit.load(consortium.researcher_kit)
    response = _get(consortium, (path), headers={"Authorization": f"Bearer {alice.token}"})
    assert response.status_code in (404, 422)


async def test_a_node_cannot_file_a_result_for_another_nodes_run(consortium: InProcessConsortium) -> None:
    from websockets.asyncio.client import connect

    from confide.wire import HUB, ErrorNotice, Hello, RunStatusUpdate, decode_control, encode_control

    with consortium.client() as client:
        consortium.stop_node("node-b")
        consortium.wait_online(["node-b"], online=False)
        task_id = client.submit(COLLABORATION, "stats.summary", SUMMARY_PARAMS, nodes=["node-b"])
    node_a = Kit.load(consortium.local.kits / "nodes" / "node-a")
    consortium.stop_node("node-a")
    url = consortium.local.hub_url.replace("https://", "wss://").replace("http://", "ws://") + "/ws/node"
    forged = Envelope.new(MessageKind.TASK_RESULT, "node-b", "alice", task_id=task_id)

    async with connect(url, ssl=consortium.local.tls_context() if consortium.local.tls else None) as ws:
        await ws.send(encode_control(Hello(node_id="node-a", token=node_a.token), "node-a", HUB).encode())
        await ws.recv()  # WELCOME
        update = RunStatusUpdate(run_id=f"{task_id}-node-b", status="completed")
        await ws.send(encode_control(update, "node-a", HUB, forged.encode(), task_id).encode())
        reply = Envelope.decode(await ws.recv())

    notice, _ = decode_control(reply, ErrorNotice)
    assert "not addressed to node node-a" in notice.message or "not open for node node-a" in notice.message
    with consortium.client() as client:
        assert client.status(task_id).runs == {"node-b": "pending"}


def test_a_rounds_outcome_is_served_as_stored_and_read_by_the_client(consortium: InProcessConsortium) -> None:
    import json

    import numpy as np

    from confide._errors import TaskError
    from confide.hub._records import AggregateRecord
    from confide.protocols.secagg import SecAggConfig, config_fields

    with consortium.client() as client:
        task_id = client.submit(COLLABORATION, "stats.summary", SUMMARY_PARAMS)
    config = SecAggConfig.create(f"{task_id}/sum", consortium.node_ids, 3, masked=False)
    # the meta as hubs have always written it: a dict through json.dumps
    meta = {
        "ok": True,
        "error": "",
        "bits": 64,
        "length": 3,
        "config": config_fields(config),
        "survivors": ["node-a", "node-b"],
        "dropped": ["node-c"],
        "pads": {},
    }
    total = np.array([5, 2**64 - 1, 0], dtype="<u8").tobytes()
    failed = {**meta, "ok": False, "error": "too few nodes", "survivors": [], "dropped": []}
    failed["config"] = config_fields(SecAggConfig.create(f"{task_id}/fail", consortium.node_ids, 3))
    corrupt = {**meta, "survivors": "node-a"}
    store = consortium.app_state.store
    for label, stored, padded in [("sum", meta, total), ("fail", failed, b""), ("bad", corrupt, total)]:
        record = AggregateRecord(task_id, f"{task_id}/{label}", json.dumps(stored), padded, 1)
        consortium.bg.call(store.save_aggregate(record))
    headers = {"Authorization": f"Bearer {Kit.load(consortium.researcher_kit).token}"}

    raw = _get(consortium, f"/api/tasks/{task_id}/aggregates/sum", headers=headers)
    bad = _get(consortium, f"/api/tasks/{task_id}/aggregates/bad", headers=headers)
    with consortium.client() as client:
        summed = client.secure_sum(task_id, "sum")
        with pytest.raises(TaskError, match=rf"secure sum 'fail' of task {task_id} failed: too few nodes"):
            client.secure_sum(task_id, "fail")

    encoded = json.dumps(meta).encode()
    assert raw.content == len(encoded).to_bytes(4, "big") + encoded + total  # the bytes did not change
    assert summed.total.tolist() == [5, 2**64 - 1, 0]
    assert summed.survivors == ("node-a", "node-b") and summed.dropped == ("node-c",)
    assert bad.status_code == 500 and "round 'bad' is malformed: survivors:" in bad.json()["message"]
