"""``confide fl run`` and ``confide fl sweep`` as a user types them."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("opacus")

from confide.learning import build_model, from_safetensors
from tests.cli._run import confide
from tests.conftest import COLLABORATION, InProcessConsortium
from tests.fl.test_fedavg import SMALL_CNN, _digits

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def digits(tmp_path: Path) -> Iterator[InProcessConsortium]:
    c = InProcessConsortium(
        tmp_path / "consortium", training=_digits, policy={"privacy_budget": {"epsilon": 10, "delta": 1e-5}}
    )
    try:
        yield c.start()
    finally:
        c.close()


def test_fl_run_trains_checkpoints_and_writes_a_model_that_loads_safely(
    digits: InProcessConsortium,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model_file = tmp_path / "model.safetensors"
    code, text = confide(
        capsys, monkeypatch, "fl", "run", "--kit", str(digits.researcher_kit), "-C", COLLABORATION,
        "--dataset", "digits", "--model-config", json.dumps(SMALL_CNN), "--rounds", "2", "--eps", "3",
        "--batch-size", "64", "--local-steps", "8", "--lr", "1", "--checkpoint", str(tmp_path / "ckpt"),
        "--out", str(model_file), "--json",
    )  # fmt: skip

    assert code == 0, text
    summary, _ = json.JSONDecoder().raw_decode(text[text.index("{") :])  # the progress bar follows
    assert summary["rounds"] == 2
    assert summary["test_samples"] == 360 and summary["test_accuracy"] > 0.3
    assert all(0 < e <= 3.0 + 1e-6 for e in summary["epsilon_spent"].values())
    model = build_model("image.cnn28", SMALL_CNN)
    model.load_state_dict(from_safetensors(model_file.read_bytes(), like=model))
    assert json.loads((tmp_path / "ckpt" / "job.json").read_text())["job_id"] == summary["job_id"]


def test_fl_run_with_a_bad_model_config_says_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, text = confide(
        capsys, monkeypatch, "fl", "run", "--kit", str(tmp_path), "-C", "x", "--dataset", "d",
        "--model-config", "{hidden: 3}",
    )  # fmt: skip

    assert code == 1
    assert "--model-config is not JSON" in text and "Traceback" not in text


def test_fl_sweep_writes_the_table_and_the_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "sweep"
    code, text = confide(
        capsys, monkeypatch, "fl", "sweep", "--dataset", "mnist5k", "--clients", "2", "--rounds", "1",
        "--eps", "1,inf", "--limit", "600", "--local-steps", "3", "--model-config", json.dumps(SMALL_CNN),
        "--out", str(out),
    )  # fmt: skip

    assert code == 0, text
    with open(out / "results.csv") as table:
        rows = list(csv.DictReader(table))
    assert [r["epsilon"] for r in rows] == ["1", "inf"]
    assert [r["privacy_level"] for r in rows] == ["strong", "none (no DP)"]
    assert 0 < float(rows[0]["epsilon_spent"]) <= 1.0 + 1e-6
    assert rows[1]["epsilon_spent"] == "inf"
    assert all(0 <= float(r["test_accuracy"]) <= 1 for r in rows)
    assert (out / "accuracy_vs_epsilon.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 1 | strong |" in (out / "results.md").read_text()
