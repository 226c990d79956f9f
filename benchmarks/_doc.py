"""Writing a benchmark's figures into docs/benchmarks.md, between its own markers."""

from __future__ import annotations

import platform
import time
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine() -> str:
    """Date, CPU architecture and Python version, for the record."""
    return f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, Python {platform.python_version()}"


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def write_section(key: str, heading: str, lines: list[str]) -> None:
    """Replace (or append) the section marked ``key`` in docs/benchmarks.md."""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    section = "\n".join([start, *lines, end])
    if start in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n" + section + "\n"
    DOC.write_text(text)
