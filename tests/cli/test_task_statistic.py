"""``confide task submit`` of a federated statistic prints the finalised table, or JSON."""

from __future__ import annotations

import json

import pytest

from tests.cli._run import confide as _confide
from tests.conftest import COLLABORATION, InProcessConsortium

ZSCORE = {
    "table": "patients",
    "column": "hippocampus_ml",
    "bounds": [3, 11],
    "value": 6.4,
    "group_by": [{"column": "age", "bins": [0, 60, 70, 120]}],
    "group": {"age": 67},
}


def test_a_statistic_is_printed_finalised_and_as_json(
    consortium: InProcessConsortium, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    submit = [
        "task",
        "submit",
        "-C",
        COLLABORATION,
        "-a",
        "stats.zscore",
        "--kit",
        str(consortium.researcher_kit),
    ]
    monkeypatch.setenv("COLUMNS", "200")

    code, text = _confide(capsys, monkeypatch, *submit, "-p", json.dumps(ZSCORE))
    json_code, json_text = _confide(capsys, monkeypatch, *submit, "-p", json.dumps(ZSCORE), "--json")

    assert code == 0, text
    assert "age=[60, 70)" in text
    assert "secure aggregation over 3 node(s): node-a, node-b, node-c" in text
    assert json_code == 0
    data = json.loads(json_text)
    assert data["statistic"]["statistic"] == "stats.zscore"
    assert data["statistic"]["survivors"] == ["node-a", "node-b", "node-c"]
    assert isinstance(data["statistic"]["output"]["z"], float)
