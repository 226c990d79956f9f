"""Bad input on the command line: one clear line naming the problem, exit 1, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from confide.local import LocalConsortium
from tests.cli._run import confide as _confide


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> LocalConsortium:
    consortium = LocalConsortium(tmp_path_factory.mktemp("cli"))
    consortium.prepare()
    return consortium


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kit: [unclosed\n", "not valid YAML at line"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("kit: x\nsurprise: 1\n", "surprise"),
        ("data: []\n", "kit"),
        ("kit: x\nworkers: 0\n", "workers"),
    ],
)
def test_malformed_node_config(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    expected: str,
) -> None:
    config = tmp_path / "node.yaml"
    config.write_text(text)

    code, output = _confide(capsys, monkeypatch, "node", "start", "--config", str(config))

    assert code == 1
    assert "error:" in output and expected in output and str(config) in output
    assert "Traceback" not in output


def test_missing_hub_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, output = _confide(capsys, monkeypatch, "hub", "start", "--config", str(tmp_path / "nope.yaml"))

    assert code == 1 and "does not exist" in output and "Traceback" not in output


def test_node_config_pointing_at_a_broken_kit(
    prepared: LocalConsortium,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kit = tmp_path / "kit"
    kit.mkdir()
    (kit / "kit.yaml").write_text("party_id: node-a\n")
    config = tmp_path / "node.yaml"
    config.write_text(f"kit: {kit}\n")

    code, output = _confide(capsys, monkeypatch, "node", "start", "--config", str(config))

    assert code == 1 and "kit" in output and "consortium" in output and "Traceback" not in output


def test_bad_consortium_description(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "consortium.yaml"
    spec.write_text(
        "consortium: x\norganisations: [{id: a}]\n"
        "nodes: [{id: n, organisation: zz}]\nresearchers: [{id: r, organisation: a}]\n"
    )

    code, output = _confide(capsys, monkeypatch, "provision", str(spec), "--out", str(tmp_path / "out"))

    assert code == 1 and "unknown organisation 'zz'" in output
    assert not (tmp_path / "out").exists()


def test_task_submit_with_bad_params_and_missing_kit(
    prepared: LocalConsortium,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kit = str(prepared.researcher_kit)
    bad_json = _confide(
        capsys,
        monkeypatch,
        "task",
        "submit",
        "-C",
        "brain-study",
        "-a",
        "stats.summary",
        "--kit",
        kit,
        "--params",
        "{not json",
    )
    not_object = _confide(
        capsys,
        monkeypatch,
        "task",
        "submit",
        "-C",
        "brain-study",
        "-a",
        "stats.summary",
        "--kit",
        kit,
        "--params",
        "[1]",
    )
    no_kit = _confide(
        capsys,
        monkeypatch,
        "task",
        "submit",
        "-C",
        "brain-study",
        "-a",
        "stats.summary",
        "--kit",
        str(tmp_path / "none"),
    )

    assert bad_json[0] == 1 and "not valid JSON" in bad_json[1]
    assert not_object[0] == 1 and "JSON object" in not_object[1]
    assert no_kit[0] == 1 and "does not exist" in no_kit[1] and "confide provision" in no_kit[1]


def test_hub_not_running_is_named(
    prepared: LocalConsortium, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, output = _confide(
        capsys, monkeypatch, "task", "status", "abc", "--kit", str(prepared.researcher_kit)
    )

    assert code == 1 and "cannot reach the hub" in output and "Traceback" not in output


def test_a_node_kit_cannot_be_used_as_a_researcher(
    prepared: LocalConsortium, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    node_kit = prepared.kits / "nodes" / "node-a"

    code, output = _confide(capsys, monkeypatch, "task", "status", "abc", "--kit", str(node_kit))

    assert code == 1 and "not a researcher" in output


def test_help_for_every_command() -> None:
    for args in (
        [],
        ["hub", "start"],
        ["node", "start"],
        ["task", "submit"],
        ["task", "status"],
        ["task", "result"],
        ["provision"],
        ["demo"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "confide", *args, "--help"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert proc.returncode == 0 and "Usage" in proc.stdout, args


def test_hub_with_an_unusable_database_is_one_clear_line(prepared: LocalConsortium, tmp_path: Path) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text("database_url: postgresql://nobody@127.0.0.1:1/nothing\nport: 1\ninsecure: true\n")

    proc = subprocess.run(
        [sys.executable, "-m", "confide", "hub", "start", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert proc.returncode == 1
    assert "error:" in proc.stderr and "127.0.0.1:1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_hub_log_level_is_validated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text("log_level: loud\n")

    code, output = _confide(capsys, monkeypatch, "hub", "start", "--config", str(config))

    assert code == 1 and "log_level" in output
