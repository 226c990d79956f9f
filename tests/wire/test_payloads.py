"""What researchers and nodes seal to each other (``confide.wire._payloads``)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from confide.wire import TaskOutcome, TaskRequest


def test_task_request_roundtrips_through_json() -> None:
    request = TaskRequest(collaboration="c1", algorithm="stats.summary", params={"columns": ["age"], "k": 5})

    decoded = TaskRequest.model_validate_json(request.model_dump_json())

    assert decoded == request


@pytest.mark.parametrize(
    "outcome",
    [
        TaskOutcome(node="node-a", ok=True, output={"mean": 41.5, "n": 120}),
        TaskOutcome(node="node-a", ok=False, error="policy refuses column 'name'"),
    ],
    ids=["ok", "error"],
)
def test_task_outcome_roundtrips_through_json(outcome: TaskOutcome) -> None:
    decoded = TaskOutcome.model_validate_json(outcome.model_dump_json())

    assert decoded == outcome


@pytest.mark.parametrize("algorithm", ["", "a" * 201])
def test_task_request_algorithm_name_is_bounded(algorithm: str) -> None:
    with pytest.raises(ValidationError, match="algorithm"):
        TaskRequest(collaboration="c1", algorithm=algorithm, params={})


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (TaskRequest, {"collaboration": "c1", "algorithm": "a", "params": {}, "code": "import os"}),
        (TaskOutcome, {"node": "node-a", "ok": True, "extra": 1}),
    ],
    ids=["request", "outcome"],
)
def test_unknown_fields_are_refused(
    model: type[TaskRequest] | type[TaskOutcome], data: dict[str, object]
) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        model.model_validate(data)


def test_task_request_needs_params() -> None:
    with pytest.raises(ValidationError, match="params"):
        TaskRequest.model_validate({"collaboration": "c1", "algorithm": "a"})


def test_payloads_are_frozen() -> None:
    outcome = TaskOutcome(node="node-a", ok=True)

    with pytest.raises(ValidationError, match="frozen"):
        outcome.ok = False  # type: ignore[misc]
