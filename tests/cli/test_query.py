"""``confide query``: a federated SQL query compiled and explained, or refused with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.cli._run import confide

SCHEMA = {
    "tables": {
        "employees": {
            "parties": ["acme", "globex", "initech"],
            "columns": {
                "employee_id": {"type": "str"},
                "gender": {"type": "str", "categories": ["F", "M"]},
                "salary": {"type": "float", "bounds": [0, 1000000]},
            },
        }
    }
}


@pytest.fixture
def schema(tmp_path: Path) -> str:
    path = tmp_path / "federation.yaml"
    path.write_text(yaml.safe_dump(SCHEMA))
    return str(path)


def test_a_grouped_mean_is_explained_operator_by_operator(
    schema: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sql = "SELECT gender, AVG(salary) AS avg_salary FROM employees WHERE salary > 0 GROUP BY gender"

    code, text = confide(capsys, monkeypatch, "query", "--schema", schema, sql)

    assert code == 0, text
    lines = text.splitlines()
    assert lines[0] == "collect to researcher  [at the receiver]"
    assert any("secure sum over acme, globex, initech" in line for line in lines)
    assert any(line.strip().startswith("filter") and "[local at initech]" in line for line in lines)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT MEDIAN(salary) FROM employees", "needs general MPC"),
        ("SELECT salary FROM employees", "row-level output"),
        (
            "SELECT employee_id, COUNT(*) FROM employees GROUP BY employee_id",
            "no declared categories or bins",
        ),
        ("SELEC 1", "syntax error"),
    ],
)
def test_unsafe_or_malformed_queries_get_one_clear_line(
    schema: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, sql: str, message: str
) -> None:
    code, text = confide(capsys, monkeypatch, "query", "--schema", schema, sql)

    assert code == 1
    assert message in text.lower() or message in text
    assert "Traceback" not in text
