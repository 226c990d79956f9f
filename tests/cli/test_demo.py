"""``confide demo`` end to end: separate processes, a table, exit status 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_runs_end_to_end_and_exits_cleanly(tmp_path: Path) -> None:
    keep = tmp_path / "demo"

    proc = subprocess.run(
        [sys.executable, "-m", "confide", "demo", "--keep", str(keep)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo finished" in proc.stdout
    for node in ("node-a", "node-b", "node-c"):
        assert node in proc.stdout
    assert "hippocampus_ml" in proc.stdout
    assert "Traceback" not in proc.stderr
    # every process was shut down: the hub's port is free again and logs hold no traceback
    for log in (keep / "logs").glob("*.log"):
        assert "Traceback" not in log.read_text(), log.name
