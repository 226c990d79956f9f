"""The hub's REST answers (``confide.wire._rest``) and ``validate_as``, which names the bad field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from confide._errors import WireError
from confide.wire import (
    CollaborationOut,
    ResultOut,
    RunOut,
    RunStatus,
    TaskOut,
    TaskStatus,
    WhoAmI,
    validate_as,
)


def _task(**changes: Any) -> dict[str, Any]:
    task = {
        "id": "t1",
        "collaboration": "brain-study",
        "researcher": "alice",
        "algorithm": "stats.summary",
        "created_ms": 1_700_000_000_000,
        "status": "running",
        "version": "node-a:open:1,node-b:completed:0",
        "runs": [
            {"node": "node-a", "status": "running", "online": True},
            {"node": "node-b", "status": "completed", "online": False},
        ],
    }
    return {**task, **changes}


def test_a_task_answer_is_typed() -> None:
    task = validate_as(TaskOut, _task(), what="the task")

    assert task.status is TaskStatus.RUNNING
    assert task.runs == [
        RunOut(node="node-a", status=RunStatus.RUNNING, online=True),
        RunOut(node="node-b", status=RunStatus.COMPLETED, online=False),
    ]


def test_the_json_is_the_plain_values() -> None:
    task = validate_as(TaskOut, _task(), what="the task")

    assert json.loads(task.model_dump_json()) == _task()


def test_unknown_fields_are_ignored_so_a_hub_can_add_some() -> None:
    assert validate_as(TaskOut, _task(priority="high"), what="the task") == validate_as(
        TaskOut, _task(), what="the task"
    )


@pytest.mark.parametrize(
    ("answer", "field"),
    [
        (_task(status="exploded"), "status"),
        ({k: v for k, v in _task().items() if k != "version"}, "version"),
        (_task(runs=[{"node": "node-a", "status": "lost", "online": True}]), r"runs\.0\.status"),
        (_task(runs=[{"node": "node-a", "status": "running"}]), r"runs\.0\.online"),
        (_task(created_ms="yesterday"), "created_ms"),
        (["not", "an", "object"], "message"),
    ],
)
def test_a_malformed_answer_is_a_wire_error_naming_the_field(answer: object, field: str) -> None:
    with pytest.raises(WireError, match=rf"^the task is malformed: {field}: "):
        validate_as(TaskOut, answer, what="the task")


def test_a_list_answer_names_the_row() -> None:
    rows = [
        {"node": "node-a", "status": "completed", "envelope": "AAAA"},
        {"node": "node-b", "status": "completed"},
    ]

    with pytest.raises(WireError, match=r"the list of results is malformed: 1\.envelope: Field required"):
        validate_as(list[ResultOut], rows, what="the list of results")
    assert validate_as(list[ResultOut], rows[:1], what="the list of results")[0].status is RunStatus.COMPLETED


def test_the_directory_answers() -> None:
    collab = validate_as(
        CollaborationOut,
        {
            "id": "brain-study",
            "name": "Brain volumes",
            "nodes": [{"id": "node-a", "online": True, "certificate": "PEM"}],
            "researchers": ["alice"],
        },
        what="the collaboration",
    )
    me = validate_as(WhoAmI, {"id": "alice", "organisation": "h-a", "collaborations": []}, what="whoami")

    assert collab.nodes[0].certificate == "PEM" and me.organisation == "h-a"
    with pytest.raises(WireError, match=r"nodes\.0\.certificate: Field required"):
        validate_as(
            CollaborationOut, {**collab.model_dump(), "nodes": [{"id": "n", "online": True}]}, what="c"
        )
