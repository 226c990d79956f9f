"""The hub's answers as the client reads them: typed by ``confide.wire``, malformed ones named."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from confide import Client
from confide._errors import TaskError, WireError
from confide.client._results import PaddedSum, parse_padded_sum, state_of
from confide.local import LocalConsortium
from confide.protocols.secagg import SecAggConfig, config_fields
from confide.wire import AggregateMeta, RunStatus, TaskStatus, encode_aggregate

CONFIG = SecAggConfig.create("t1/sum", ["node-a", "node-b", "node-c"], 3, researcher="alice")


def _task(**changes: Any) -> dict[str, Any]:
    task = {
        "id": "t1",
        "collaboration": "brain-study",
        "researcher": "alice",
        "algorithm": "stats.summary",
        "created_ms": 1,
        "status": "running",
        "version": "v",
        "runs": [
            {"node": "node-a", "status": "completed", "online": True},
            {"node": "node-b", "status": "pending", "online": False},
        ],
    }
    return {**task, **changes}


def _outcome(config: SecAggConfig = CONFIG, **changes: Any) -> AggregateMeta:
    fields: dict[str, Any] = {
        "ok": True,
        "bits": config.bits,
        "length": config.length,
        "config": config_fields(config),
        "survivors": ("node-a", "node-b"),
        "dropped": ("node-c",),
        "pads": {"node-a": b"pad-a", "node-b": b"pad-b"},
    }
    return AggregateMeta.model_validate({**fields, **changes})


def test_a_task_state_is_typed() -> None:
    state = state_of(_task())

    assert state.status is TaskStatus.RUNNING and not state.finished
    assert state.runs == {"node-a": RunStatus.COMPLETED, "node-b": RunStatus.PENDING}
    assert state.online == {"node-a": True, "node-b": False}
    assert state_of(_task(status="failed")).finished


@pytest.mark.parametrize(
    ("answer", "field"),
    [
        (_task(runs=[{"node": "node-a", "online": True}]), r"runs\.0\.status: Field required"),
        (_task(status="done"), "status: Input should be"),
        ({"message": "hub: oops"}, "id: Field required"),
    ],
)
def test_a_malformed_task_answer_is_a_wire_error_naming_the_field(answer: object, field: str) -> None:
    with pytest.raises(WireError, match=rf"the hub's answer about a task is malformed: {field}"):
        state_of(answer)


def test_a_padded_sum_is_parsed() -> None:
    total = np.array([1, 2**64 - 1, 7], dtype="<u8")

    padded = parse_padded_sum("t1", "sum", encode_aggregate(_outcome(), total.tobytes()))

    assert isinstance(padded, PaddedSum) and padded.config == CONFIG
    assert padded.values.tolist() == [1, 2**64 - 1, 7] and padded.values.dtype == np.uint64
    assert padded.survivors == ("node-a", "node-b") and padded.dropped == ("node-c",)
    assert padded.pads == {"node-a": b"pad-a", "node-b": b"pad-b"}


def test_a_32_bit_sum_is_read_little_endian() -> None:
    config = SecAggConfig.create("t1/sum", ["node-a", "node-b"], 2, bits=32, researcher="alice")

    padded = parse_padded_sum("t1", "sum", encode_aggregate(_outcome(config), b"\x01\0\0\0\0\0\0\x80"))

    assert padded.values.tolist() == [1, 2**31]


def test_a_failed_round_is_a_task_error_with_the_hubs_reason() -> None:
    failed = _outcome(ok=False, error="only 1 node left", survivors=(), dropped=(), pads={})

    with pytest.raises(TaskError, match="secure sum 'sum' of task t1 failed: only 1 node left"):
        parse_padded_sum("t1", "sum", encode_aggregate(failed, b""))


def test_an_answer_for_another_round_is_refused() -> None:
    with pytest.raises(WireError, match="the hub answered with round 't1/sum' for t1/other"):
        parse_padded_sum("t1", "other", encode_aggregate(_outcome(), bytes(24)))


def _raw(meta: dict[str, Any], total: bytes) -> bytes:
    encoded = json.dumps(meta).encode()
    return len(encoded).to_bytes(4, "big") + encoded + total


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pads": {"node-a": "%%%"}}, r"pads\.node-a: Value error, must be base64"),
        ({"survivors": None}, "survivors: Input should be a valid array"),
        ({"config": {**config_fields(CONFIG), "threshold": 9}}, "threshold 9 must be a strict majority"),
    ],
)
def test_a_malformed_padded_sum_is_a_wire_error_naming_what(change: dict[str, Any], message: str) -> None:
    meta = {**_outcome().model_dump(mode="json"), **change}

    with pytest.raises(WireError, match=rf"the hub's answer for secure sum 'sum' of task t1: .*{message}"):
        parse_padded_sum("t1", "sum", _raw(meta, bytes(24)))


def test_a_padded_sum_of_the_wrong_size_is_a_wire_error() -> None:
    meta = _outcome().model_dump(mode="json")

    with pytest.raises(WireError, match="padded total is 16 bytes; 3 values of 64 bits are 24 bytes"):
        parse_padded_sum("t1", "sum", _raw(meta, bytes(16)))


# --- the client against a hub that answers nonsense -------------------------------------


@pytest.fixture(scope="module")
def researcher_kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    local = LocalConsortium(tmp_path_factory.mktemp("kits"), hospitals=2, rows=5, tls=False)
    local.prepare()
    return local.researcher_kit


@pytest.fixture
def client_answering(researcher_kit: Path) -> Iterator[Callable[[object], Client]]:
    clients: list[Client] = []

    def make(answer: object) -> Client:
        client = Client(researcher_kit)
        transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
        client._http = httpx.Client(base_url=client.kit.hub_url, transport=transport)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_a_malformed_collaboration_answer_names_the_field(
    client_answering: Callable[[object], Client],
) -> None:
    client = client_answering(
        {"id": "brain-study", "name": "b", "nodes": [{"id": "node-a"}], "researchers": []}
    )

    with pytest.raises(WireError, match=r"collaboration 'brain-study' is malformed: nodes\.0\.online"):
        client.nodes("brain-study")


def test_a_malformed_results_answer_names_the_row(client_answering: Callable[[object], Client]) -> None:
    client = client_answering([{"node": "node-a", "status": "completed", "envelope": 12}])

    with pytest.raises(WireError, match=r"results of task t1 is malformed: 0\.envelope"):
        client.results("t1")


def test_a_result_that_is_not_base64_is_a_wire_error(client_answering: Callable[[object], Client]) -> None:
    client = client_answering([{"node": "node-a", "status": "completed", "envelope": "%%%"}])

    with pytest.raises(WireError, match="the result filed for 'node-a' is not valid base64"):
        client.results("t1")


def test_a_refused_run_is_reported_without_opening_anything(
    client_answering: Callable[[object], Client],
) -> None:
    client = client_answering([{"node": "node-a", "status": "failed", "envelope": ""}])

    [result] = client.results("t1")

    assert not result.ok and "refused the task before opening it" in (result.error or "")


def test_the_task_state_and_whoami_are_checked(client_answering: Callable[[object], Client]) -> None:
    with pytest.raises(WireError, match="the hub's answer about a task is malformed: version"):
        client_answering({k: v for k, v in _task().items() if k != "version"}).status("t1")
    with pytest.raises(WireError, match="the hub's answer to whoami is malformed: organisation"):
        client_answering({"id": "alice", "collaborations": []}).whoami()
    me = {"id": "alice", "organisation": "hospital-a", "collaborations": ["brain-study"]}
    assert client_answering(me).whoami() == me
