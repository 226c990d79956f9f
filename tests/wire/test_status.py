"""Run and task statuses (``confide.wire._status``): one vocabulary from the node to the researcher."""

from __future__ import annotations

import dataclasses
import json

import pytest

from confide._errors import WireError
from confide.wire import HUB, RunStatus, RunStatusUpdate, TaskStatus, decode_control, encode_control

P, D, R, C, F = (
    RunStatus.PENDING,
    RunStatus.DELIVERED,
    RunStatus.RUNNING,
    RunStatus.COMPLETED,
    RunStatus.FAILED,
)


def test_statuses_are_their_plain_values_on_the_wire() -> None:
    assert [s.value for s in RunStatus] == ["pending", "delivered", "running", "completed", "failed"]
    assert [s.value for s in TaskStatus] == ["pending", "running", "completed", "failed"]
    assert json.dumps([RunStatus.COMPLETED, TaskStatus.FAILED]) == '["completed", "failed"]'
    assert RunStatus.RUNNING == "running" and f"{TaskStatus.PENDING}" == "pending"


def test_only_completed_and_failed_are_finished() -> None:
    assert {s for s in RunStatus if s.finished} == {RunStatus.COMPLETED, RunStatus.FAILED}
    assert {s for s in TaskStatus if s.finished} == {TaskStatus.COMPLETED, TaskStatus.FAILED}


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        ([], TaskStatus.PENDING),
        ([P, P], TaskStatus.PENDING),
        ([P, D], TaskStatus.RUNNING),
        ([P, R], TaskStatus.RUNNING),
        ([C, P], TaskStatus.RUNNING),
        ([C, F, R], TaskStatus.RUNNING),
        ([C, C], TaskStatus.COMPLETED),
        ([C, F], TaskStatus.FAILED),
        ([F, F], TaskStatus.FAILED),
    ],
)
def test_a_task_status_is_derived_from_its_runs(runs: list[RunStatus], expected: TaskStatus) -> None:
    assert TaskStatus.from_runs(runs) is expected
    assert TaskStatus.from_runs(iter(runs)) is expected


@pytest.mark.parametrize("status", ["running", "completed", "failed", RunStatus.FAILED])
def test_a_status_update_takes_plain_strings_and_enum_members(status: str) -> None:
    update = RunStatusUpdate(run_id="r1", status=status)

    assert isinstance(update.status, RunStatus) and update.status == status


def test_a_status_update_travels_as_its_enum() -> None:
    envelope = encode_control(RunStatusUpdate(run_id="r1", status="completed"), "node-a", HUB)

    decoded, _ = decode_control(envelope, RunStatusUpdate)

    assert decoded.status is RunStatus.COMPLETED
    assert b'"status":"completed"' in envelope.body


def test_an_unknown_status_is_a_wire_error_naming_the_field() -> None:
    payload = json.dumps({"run_id": "r1", "status": "exploded"}).encode()
    honest = encode_control(RunStatusUpdate(run_id="r1", status="running"), "node-a", HUB)
    envelope = dataclasses.replace(honest, body=len(payload).to_bytes(4, "big") + payload)

    with pytest.raises(WireError, match=r"malformed RUN_STATUS message: status: Input should be 'pending'"):
        decode_control(envelope, RunStatusUpdate)
