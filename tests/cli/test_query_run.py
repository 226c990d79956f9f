"""``confide query --run`` and ``confide submit job.json``: a federated query run through the hub."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml

from confide.local import patients
from tests.cli._run import confide
from tests.conftest import COLLABORATION, InProcessConsortium

NODES = ["node-a", "node-b", "node-c"]
COLUMNS = {
    "sex": {"type": "str", "categories": ["F", "M"]},
    "age": {"type": "int", "bins": [0, 40, 60, 70, 80, 120]},
    "hippocampus_ml": {"type": "float", "bounds": [3, 11]},
}
SQL = "SELECT sex, COUNT(*) AS n, AVG(hippocampus_ml) AS mean FROM patients WHERE age >= 60 GROUP BY sex"


def _pooled_means() -> dict[str, tuple[int, float]]:
    pooled = pa.concat_tables([patients(i, 200) for i in range(3)])
    age = pooled.column("age").to_numpy()
    sex = np.asarray(pooled.column("sex").to_pylist())
    volume = pooled.column("hippocampus_ml").to_numpy()
    return {
        s: (int(((age >= 60) & (sex == s)).sum()), float(volume[(age >= 60) & (sex == s)].mean()))
        for s in "FM"
    }


def test_query_run_prints_the_rows_and_json_gives_them_exactly(
    consortium: InProcessConsortium,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schema = tmp_path / "schema.yaml"
    schema.write_text(yaml.safe_dump({"tables": {"patients": {"parties": NODES, "columns": COLUMNS}}}))
    run = ["query", "--schema", str(schema), SQL, "--run", "-C", COLLABORATION, "--kit"]
    monkeypatch.setenv("COLUMNS", "200")

    code, text = confide(capsys, monkeypatch, *run, str(consortium.researcher_kit))
    json_code, json_text = confide(capsys, monkeypatch, *run, str(consortium.researcher_kit), "--json")

    assert code == 0, text
    assert "secure aggregation over 3 node(s): node-a, node-b, node-c" in text
    assert json_code == 0, json_text
    data = json.loads(json_text)
    assert data["columns"] == ["sex", "n", "mean"]
    assert data["survivors"] == NODES
    expected = _pooled_means()
    for row in data["rows"]:
        n, mean = expected[row["sex"]]
        assert row["n"] == n
        assert row["mean"] == pytest.approx(mean, abs=1e-3)
        assert f"{n}" in text


def test_query_run_without_a_kit_says_what_it_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = tmp_path / "schema.yaml"
    schema.write_text(yaml.safe_dump({"tables": {"patients": {"parties": NODES, "columns": COLUMNS}}}))
    monkeypatch.delenv("CONFIDE_KIT", raising=False)

    code, text = confide(capsys, monkeypatch, "query", "--schema", str(schema), SQL, "--run")

    assert code == 1
    assert "needs --collaboration (-C) and --kit" in text


def _job(tmp_path: Path, endpoints: list[dict[str, object]]) -> Path:
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump({"tables": {"patients": {"columns": COLUMNS}}}))
    spec = {
        "protocol": {"data": base64.b64encode(SQL.encode()).decode(), "format": "b64"},
        "config": {
            "ID": "brain-2026",
            "backend": "secagg",
            "collaboration": COLLABORATION,
            "schema": "schema.yaml",
            "parties": {"1": "node-a", "2": "node-b", "3": "node-c"},
        },
        "swift": {"endpoints": endpoints},
    }
    path = tmp_path / "job.json"
    path.write_text(json.dumps(spec))
    return path


def test_submit_runs_a_c2d_job_on_the_parties_it_names(
    consortium: InProcessConsortium,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The demo's first hospitals hold patients.csv, the third patients.parquet.
    job = _job(
        tmp_path, [{"partyId": 1, "table": "patients"}, {"partyId": 3, "fileName": "patients.parquet"}]
    )

    code, text = confide(
        capsys, monkeypatch, "submit", str(job), "--kit", str(consortium.researcher_kit), "--json"
    )

    assert code == 0, text
    data = json.loads(text)
    assert data["survivors"] == ["node-a", "node-c"]
    pooled = pa.concat_tables([patients(i, 200) for i in (0, 2)])
    age, sex = pooled.column("age").to_numpy(), np.asarray(pooled.column("sex").to_pylist())
    assert {r["sex"]: r["n"] for r in data["rows"]} == {
        s: int(((age >= 60) & (sex == s)).sum()) for s in "FM"
    }


def test_submit_refuses_a_malformed_job_before_anything_is_sent(
    consortium: InProcessConsortium,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = _job(tmp_path, [{"partyId": 9, "table": "patients"}])

    code, text = confide(capsys, monkeypatch, "submit", str(job), "--kit", str(consortium.researcher_kit))

    assert code == 1
    assert "swift.endpoints[0].partyId '9' is not mapped in config.parties" in text
    assert "Traceback" not in text


def test_submit_naming_a_file_a_node_does_not_hold_fails_saying_which(
    consortium: InProcessConsortium,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = _job(
        tmp_path, [{"partyId": 1, "fileName": "patients.parquet"}, {"partyId": 2, "table": "patients"}]
    )

    code, text = confide(capsys, monkeypatch, "submit", str(job), "--kit", str(consortium.researcher_kit))

    assert code == 1
    assert "no declared table in a file named 'patients.parquet'" in text
    assert "its files: patients.csv" in text
    assert "Traceback" not in text
