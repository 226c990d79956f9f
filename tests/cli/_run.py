"""Running the ``confide`` command in-process, as a user would type it."""

from __future__ import annotations

import sys

import pytest

from confide.cli import main


def confide(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str]:
    """Run ``confide *args``; return its exit status and everything it printed."""
    monkeypatch.setattr(sys, "argv", ["confide", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out + captured.err
